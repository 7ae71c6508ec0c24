"""Write every available figure (PNG + PDF, plotly HTML) and one offline ``index.html``."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs

from . import plots
from .data import read_results, read_run

__all__ = ["make_figures"]

# Records JavaScript errors, non-local resource requests and rendered plotly plots on <body> (read by the tests).
_PROBE = """<script>window.__errs=[];window.addEventListener('error',function(e){window.__errs.push(String(e.message));});
window.addEventListener('load',function(){var r=performance.getEntriesByType('resource').map(function(e){return e.name;})
.filter(function(n){return !(n.startsWith('file:')||n.startsWith('data:')||n.startsWith('blob:'));});
document.body.setAttribute('data-js-errors',String(window.__errs.length));
document.body.setAttribute('data-network',String(r.length));
document.body.setAttribute('data-plotly',String(document.querySelectorAll('.js-plotly-plot .main-svg').length));
document.body.setAttribute('data-images',String(Array.prototype.filter.call(document.images,function(i){return i.complete&&i.naturalWidth>0;}).length));});</script>"""


def _save(fig: plt.Figure, out: Path, name: str) -> list[str]:
    files = []
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=130)
        files.append(f"{name}.{ext}")
    plt.close(fig)
    return files


def _fmt(v: float, pct: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{100 * v:.2f}%" if pct else f"{v:.4g}"


def _summary_rows(run, res: dict) -> list[tuple[str, str, str]]:
    rows = []
    for name in ("sgd", "swa"):
        s = run.solutions.get(name)
        if s:
            rows.append((f"{name.upper()} test accuracy", _fmt(s["test_acc"], True), f"train loss {_fmt(s['train_loss'])}"))
    for name in ("swa", "sgd"):
        g = res.get("rays", {}).get(name)
        if g:
            w = g["width_error"][np.isfinite(g["width_error"])]
            rows.append((f"width from {name.upper()} (test error +{g['_attrs'].get('margin_error', 0.05)})",
                         f"{w.mean():.4g} ± {w.std():.2g}" if w.size else "beyond range",
                         f"{w.size}/{len(g['width_error'])} directions"))
    seg = res.get("segment")
    if seg:
        rows.append(("segment: t of minimal train loss / test error",
                     f"{float(seg['t_min_train_loss']):.3g} / {float(seg['t_min_test_error']):.3g}", "t=0 SWA, t=1 SGD"))
    f = res.get("fge")
    if f:
        paper = {k: f["_attrs"].get(f"paper_{k}") for k in ("prob_diff_consecutive", "prob_diff_swa_ensemble",
                                                             "agree_consecutive", "agree_swa_ensemble")}
        rows += [("‖p_i − p_i+1‖ mean", _fmt(float(np.mean(f["prob_diff_consecutive"]))),
                  f"paper {paper['prob_diff_consecutive']}"),
                 ("‖p_SWA − p_FGE‖", _fmt(float(f["prob_diff_swa_ensemble"])), f"paper {paper['prob_diff_swa_ensemble']}"),
                 ("label agreement consecutive", _fmt(float(np.mean(f["agree_consecutive"])), True),
                  f"paper ≤ {paper['agree_consecutive']}"),
                 ("label agreement SWA vs FGE", _fmt(float(f["agree_swa_ensemble"]), True),
                  f"paper {paper['agree_swa_ensemble']}"),
                 ("accuracy FGE ensemble / SWA", f"{_fmt(float(f['acc_ensemble']), True)} / {_fmt(float(f['acc_swa']), True)}",
                  ""),
                 ("linearisation: gap orders (theory 1, 2)",
                  f"{float(f['order_consecutive']):.2f}, {float(f['order_gap']):.2f}", "consecutive, SWA-FGE")]
    return rows


def make_figures(run: str | os.PathLike, results: str | os.PathLike | None, out: str | os.PathLike) -> Path:
    """Render all figures available for the run (and its results) into ``out``.

    Args:
        run: Run file.
        results: Results file of the analyses (None or missing: run figures only).
        out: Output directory (created).

    Returns:
        Path of ``index.html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r = read_run(run)
    res = read_results(results) if results and Path(results).exists() else {}
    sections: list[tuple[str, list[str], str | None]] = []

    def add(title: str, name: str, fig: plt.Figure, interactive=None) -> None:
        files = _save(fig, out, name)
        div = None
        if interactive is not None:
            interactive.write_html(out / f"{name}.html", include_plotlyjs=True, full_html=True)
            files.append(f"{name}.html")
            div = pio.to_html(interactive, include_plotlyjs=False, full_html=False)
        sections.append((title, files, div))

    add("Learning rate and test error against iteration (paper Figure 2)", "schedule", plots.schedule_figure(r),
        plots.schedule_plotly(r))
    if "plane" in res:
        anchors = res["plane"]["_attrs"].get("anchors", "")
        add(f"Plane through anchors {anchors} (paper Figures 1 and 3)", "plane", plots.plane_figure(res["plane"]),
            plots.plane_plotly(res["plane"]))
    if "rays" in res:
        add("Random rays from SWA and SGD (paper Figure 4)", "rays", plots.rays_figure(res["rays"]),
            plots.rays_plotly(res["rays"]))
    if "segment" in res:
        add("Line through SGD and SWA (paper Figure 5)", "segment", plots.segment_figure(res["segment"]),
            plots.segment_plotly(res["segment"]))
    if "fge" in res:
        add("FGE ensemble versus SWA (paper section 3.5)", "fge", plots.fge_figure(res["fge"]))
    rows = _summary_rows(r, res)
    table = "".join(f"<tr><td>{html.escape(a)}</td><td><b>{html.escape(b)}</b></td><td>{html.escape(c)}</td></tr>"
                    for a, b, c in rows)
    body = []
    for title, files, div in sections:
        links = " · ".join(f'<a href="{f}">{f.rsplit(".", 1)[1].upper()}</a>' for f in files)
        png = next(f for f in files if f.endswith(".png"))
        body.append(f'<section><h2>{html.escape(title)}</h2><p class="files">{links}</p>'
                    f'<img src="{png}" alt="{html.escape(title)}">' + (f'<div class="interactive">{div}</div>' if div else "")
                    + "</section>")
    settings = html.escape(json.dumps({"model": r.model, "dataset": r.dataset, "config": r.config}, indent=1))
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>swa-landscape report</title>
{_PROBE}<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1450px;margin:auto;padding:1em}} img{{max-width:100%}}
table{{border-collapse:collapse}} td{{border:1px solid #ccc;padding:4px 8px}} pre{{background:#f6f6f6;padding:8px}}
</style></head><body>
<h1>swa-landscape report</h1><p>run file: <code>{html.escape(str(Path(run).resolve()))}</code> (status {html.escape(r.status)})
{'' if res else ' — no analysis results yet: run <code>swa-landscape analyze RUN all</code>'}</p>
<h2>Summary</h2><table>{table}</table>
{''.join(body)}
<h2>Settings</h2><pre>{settings}</pre></body></html>"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
