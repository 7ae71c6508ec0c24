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
import plotly.io as pio
from plotly.offline import get_plotlyjs

from analyses.compare import compare

from .notebook import sections
from .reading import read_results, read_run

__all__ = ["make_figures", "page_html", "save_figure", "verdict_table", "quantity_table"]

def save_figure(fig: plt.Figure, out: Path, name: str) -> list[str]:
    """Save ``fig`` as ``NAME.png`` and ``NAME.pdf`` in ``out`` and close it; returns the file names."""
    files = []
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=130)
        files.append(f"{name}.{ext}")
    plt.close(fig)
    return files


def verdict_table(comparison) -> str:
    """The findings' verdicts of an :class:`analyses.compare.Comparison` as an HTML table.

    Per claim its estimate and 95% interval over the runs (and, where the null pair was analysed, the null pair's and
    the paired difference, SWA's minus the null's); with one run, the within-run tests in a table of their own.
    """
    null = comparison.null is not None
    rows = []
    for v in comparison.verdicts:
        for i, m in enumerate(v.claims):
            head = (f'<td rowspan="{len(v.claims)}">{html.escape(v.finding.title)}</td><td rowspan="{len(v.claims)}" '
                    f'class="{"holds" if v.holds else "fails"}"><b>{html.escape(v.word)}</b>'
                    + (f"<br>null: {html.escape(v.null_word)}" if null else "") + "</td>") if i == 0 else ""
            cells = [m.claim.text, f"{m.estimate} {m.interval}", m.word]
            if null:
                n, p = v.null[i], v.paired[i]
                cells += [f"{n.estimate} {n.interval} {n.word}",
                          f"{p.estimate} {p.interval} {p.word}" if p is not None else "not compared"]
            rows.append("<tr>" + head + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    heads = ["finding", "verdict", "claim (positive: the paper's direction)", "estimate [95% interval over runs]",
             "claim verdict"] + (["null pair", "SWA minus null, paired"] if null else [])
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>" + "".join(rows) + "</table>"
    if comparison.within and len(comparison.runs) == 1:
        cells = "".join(f'<tr><td>{html.escape(w.finding)}</td><td>{html.escape(w.claim)}</td><td>{w.estimate:+.4g}'
                        f'</td><td>{html.escape(w.evidence)}</td><td class="{"holds" if w.word == "holds" else "fails"}">'
                        f"<b>{html.escape(w.word)}</b></td></tr>" for w in comparison.within)
        table += ("<h4>Within this run</h4><p>What this run's own test samples and ray directions show; not evidence "
                  "over training seeds, which needs several runs (<code>swa-landscape compare</code>).</p><table><tr>"
                  "<th>finding</th><th>claim</th><th>estimate</th><th>test</th><th>within-run verdict</th></tr>"
                  f"{cells}</table>")
    return table


def quantity_table(comparison) -> str:
    """The measured quantities of a comparison (mean ± std and per run) as an HTML table."""
    heads = "".join(f"<th>run {i + 1}</th>" for i in range(len(comparison.runs))) if len(comparison.runs) > 1 else ""
    rows = "".join(f"<tr><td>{html.escape(a)}</td><td><b>{html.escape(b)}</b></td>"
                   + ("".join(f"<td>{html.escape(c)}</td>" for c in cs) if heads else "") + "</tr>"
                   for a, b, cs in comparison.rows())
    return f"<table><tr><th>quantity</th><th>{'mean ± std' if heads else 'value'}</th>{heads}</tr>{rows}</table>"


def page_html(body: str) -> str:
    """A complete offline report page around ``body``, plotly.js embedded once."""
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>swa-landscape report</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1450px;margin:auto;padding:1em}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}} pre{{background:#f6f6f6;padding:8px}}
.holds{{color:#1a7f37}} .fails{{color:#b42318}}</style></head><body>
{body}</body></html>"""


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
    parts: list[str] = []
    for sec in sections(r, res):
        key, title, what = sec.key, sec.title, sec.what
        figure, interactive = sec.draw()
        files = save_figure(figure, out, key) + (sec.export(out) if sec.export else [])
        interactive.write_html(out / f"{key}.html", include_plotlyjs=True, full_html=True)
        files.append(f"{key}.html")
        links = " · ".join(f'<a href="{f}" download>{f.rsplit(".", 1)[1].upper() if f.startswith(key + ".") else f}</a>'
                           for f in files)
        parts.append(f'<section id="{key}"><h2>{html.escape(title)}</h2><p>{html.escape(what)}</p>'
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
{''.join(parts)}
<h2>Settings</h2><pre>{settings}</pre>""")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
