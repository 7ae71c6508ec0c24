"""Write every available figure (PNG, PDF and interactive HTML) and one offline ``index.html``.

The report opens with the verdicts of the paper's findings on the run (:func:`analyses.compare.compare`),
then shows the figures in the order of the paper, each with what to look for and its downloads.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs

from analyses.compare import compare

from . import planes, plots, spectrum
from .data import read_results, read_run

__all__ = ["make_figures", "page_html", "save_figure", "verdict_table", "quantity_table"]

# Records JavaScript errors, non-local resource requests, rendered plotly plots and, for the contour plots, the
# smallest fraction of a plot area the contour covers (plotly's axis ranges against the trace) on <body>.
_PROBE = """<script>window.__errs=[];window.addEventListener('error',function(e){window.__errs.push(String(e.message));});
window.addEventListener('load',function(){var r=performance.getEntriesByType('resource').map(function(e){return e.name;})
.filter(function(n){return !(n.startsWith('file:')||n.startsWith('data:')||n.startsWith('blob:'));});
document.body.setAttribute('data-js-errors',String(window.__errs.length));
document.body.setAttribute('data-network',String(r.length));
document.body.setAttribute('data-plotly',String(document.querySelectorAll('.js-plotly-plot .main-svg').length));
document.body.setAttribute('data-images',String(Array.prototype.filter.call(document.images,function(i){return i.complete&&i.naturalWidth>0;}).length));
var fill=1;document.querySelectorAll('.js-plotly-plot').forEach(function(gd){(gd._fullData||[]).forEach(function(t){
if(t.type!=='contour')return;var L=gd._fullLayout,ax=L['xaxis'+(t.xaxis||'x').slice(1)],ay=L['yaxis'+(t.yaxis||'y').slice(1)];
function f(v,a){var lo=Math.min.apply(null,v),hi=Math.max.apply(null,v),r0=Math.min(a.range[0],a.range[1]),r1=Math.max(a.range[0],a.range[1]);
return Math.max(0,Math.min(hi,r1)-Math.max(lo,r0))/(r1-r0);}fill=Math.min(fill,f(t.x,ax)*f(t.y,ay));});});
document.body.setAttribute('data-contour-fill',fill.toFixed(3));});</script>"""


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[str]:
    files = []
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=130)
        files.append(f"{name}.{ext}")
    plt.close(fig)
    return files


def verdict_table(comparison) -> str:
    """The findings' verdicts of an :class:`analyses.compare.Comparison` as an HTML table."""
    rows = "".join(
        f'<tr><td>{html.escape(v.finding.title)}</td><td class="{"holds" if v.holds else "fails"}"><b>'
        f'{html.escape(v.word)}</b></td><td>{html.escape(" ".join({True: "yes", False: "no", None: "–"}[p] for p in v.per_run))}'
        f'</td><td>{html.escape(v.finding.criterion)}</td><td>{html.escape(v.margin)}</td></tr>'
        for v in comparison.verdicts)
    return ("<table><tr><th>finding</th><th>verdict</th><th>per run</th><th>criterion</th><th>margins</th></tr>"
            f"{rows}</table>")


def quantity_table(comparison) -> str:
    """The measured quantities of a comparison (mean ± std and per run) as an HTML table."""
    heads = "".join(f"<th>run {i + 1}</th>" for i in range(len(comparison.runs))) if len(comparison.runs) > 1 else ""
    rows = "".join(f"<tr><td>{html.escape(a)}</td><td><b>{html.escape(b)}</b></td>"
                   + ("".join(f"<td>{html.escape(c)}</td>" for c in cs) if heads else "") + "</tr>"
                   for a, b, cs in comparison.rows())
    return f"<table><tr><th>quantity</th><th>{'mean ± std' if heads else 'value'}</th>{heads}</tr>{rows}</table>"


def page_html(body: str) -> str:
    """A complete offline report page around ``body``: plotly.js embedded once, the page probe for the tests."""
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>swa-landscape report</title>
{_PROBE}<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1450px;margin:auto;padding:1em}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}} pre{{background:#f6f6f6;padding:8px}}
.holds{{color:#1a7f37}} .fails{{color:#b42318}}</style></head><body>
{body}</body></html>"""


def _sections(r, res: dict) -> list[tuple[str, str, str, object]]:
    """The figures available, in the order of the paper, each ``(file stem, title, what to look for, draw)``."""
    out = []

    def add(key, title, what, draw):
        out.append((key, title, what, draw))

    if "plane_fig1" in res:
        add("plane_fig1", "The plane through SGD, SWA and the SWA branch's start (paper Figure 1)",
            "The paper finds w_SWA near the centre of the low-error region and w_SGD near its edge. Look at where the "
            "SWA diamond and the SGD square sit relative to the test-error contours.",
            lambda: (planes.plane_figure(res["plane_fig1"]), planes.plane_plotly(res["plane_fig1"])))
    add("schedule", "Learning rate and test error against iteration (paper Figure 2)",
        "The learning rate of every step from the run's schedule, the averaged (captured) models circled. The SWA "
        "average's test error (dashed) should lie below that of every captured model and of conventional SGD.",
        lambda: (plots.schedule_figure(r), plots.schedule_plotly(r)))
    if "plane" in res:
        add("plane", f"Plane through three points of the SWA branch {res['plane']['_attrs'].get('anchors', '')} "
                     "(paper Figure 3)",
            "The SWA branch's snapshots circle a low-loss region; the paper finds their average, w_SWA, near its "
            "centre. Snapshots far off the plane (bright colours) are drawn where they project.",
            lambda: (planes.plane_figure(res["plane"]), planes.plane_plotly(res["plane"])))
    for g, kind in (("rays", "random directions"), ("rays_filter", "filter-normalised random directions"),
                    ("rays_hessian", "the top Hessian eigenvectors of each solution")):
        if g in res:
            add(g, f"Rays from SWA and SGD along {kind} (paper Figure 4)",
                "The paper finds the curves from SWA flatter: its width (dashed) is larger than SGD's. Compare the "
                "dashed lines of the two colours in both panels.",
                lambda g=g, kind=kind: (plots.rays_figure(res[g], f"rays along {kind} (width: first distance where "
                                                                  "the margin is exceeded)"),
                                        plots.rays_plotly(res[g], f"rays along {kind}")))
    if "segment" in res:
        add("segment", "Line through SWA and SGD (paper Figure 5)",
            "The paper finds the test error lowest near SWA and the train loss rising steeply just beyond SGD, which "
            "sits at the edge of the flat region. Compare the slopes beyond each dashed line.",
            lambda: (plots.segment_figure(res["segment"]), plots.segment_plotly(res["segment"])))
    if "fge" in res:
        add("fge", "FGE ensemble versus SWA (paper section 3.5)",
            "The SWA model's predictions should lie closer to the ensemble's than consecutive proposals to each "
            "other (hatched bars below plain ones), as the paper's linearisation argument predicts.",
            lambda: (plots.fge_figure(res["fge"]), plots.fge_plotly(res["fge"])))
    if "hessian" in res:
        add("hessian", "Hessian of the training loss at SGD and SWA",
            "Beside the paper: curvature without random directions. A flatter solution has smaller top eigenvalues "
            "and a smaller trace (error bars: one standard error of Hutchinson's estimate).",
            lambda: (spectrum.hessian_figure(res["hessian"]), spectrum.hessian_plotly(res["hessian"])))
    for name in ("swa", "sgd"):
        g = f"plane_hessian_{name}"
        if g in res:
            add(g, f"The plane of the top two Hessian eigenvectors at {name.upper()}",
                "Beside the paper: the loss along the sharpest directions, over the same extent at both solutions. "
                "Compare how far the low-loss region reaches here and in the other solution's plane.",
                lambda g=g: (planes.plane_figure(res[g]), planes.plane_plotly(res[g])))
    if "pca" in res:
        ratio = res["pca"]["explained_variance_ratio"]
        add("pca", f"The SWA branch's principal plane ({100 * ratio[0]:.1f}% + {100 * ratio[1]:.1f}% of the variance)",
            "Beside the paper: the plane the trajectory itself moves in most, centred at the snapshots' mean. Look "
            "at whether SWA sits in the middle of the low-loss region the snapshots explore.",
            lambda: (planes.plane_figure(res["pca"]), planes.plane_plotly(res["pca"])))
    return out


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
    sections: list[str] = []
    for key, title, what, draw in _sections(r, res):
        figure, interactive = draw()
        files = save_figure(figure, out, key)
        interactive.write_html(out / f"{key}.html", include_plotlyjs=True, full_html=True)
        files.append(f"{key}.html")
        links = " · ".join(f'<a href="{f}" download>{f.rsplit(".", 1)[1].upper()}</a>' for f in files)
        sections.append(f'<section id="{key}"><h2>{html.escape(title)}</h2><p>{html.escape(what)}</p>'
                        f'<p class="files">download: {links}</p><img src="{key}.png" alt="{html.escape(title)}">'
                        f'<div class="interactive">{pio.to_html(interactive, include_plotlyjs=False, full_html=False)}'
                        "</div></section>")
    summary = "<p>no analysis results yet: run <code>swa-landscape analyze RUN all</code></p>"
    if res and "sgd" in r.solutions and "swa" in r.solutions:
        c = compare([(run, results)])
        summary = (f"<h3>The paper's findings on this run</h3>{verdict_table(c)}<h3>Measured</h3>{quantity_table(c)}")
    settings = html.escape(json.dumps({"model": r.model, "dataset": r.dataset, "config": r.config}, indent=1))
    page = page_html(f"""<h1>swa-landscape report</h1><p>run file: <code>{html.escape(str(Path(run).resolve()))}</code>
(status {html.escape(r.status)})</p>
<h2>Summary</h2>{summary}
{''.join(sections)}
<h2>Settings</h2><pre>{settings}</pre>""")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
