"""Figures and the report of several runs: ray curves and widths on shared axes, the findings' verdicts.

The comparison itself (:func:`analyses.compare.compare`) is passed in; this module only draws it and
reads the ray arrays it draws from the results files (widths by the comparison's own rule, ``mean_width``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from analyses.widths import mean_width
from figures.plots import SGD_C, SWA_C, clip_finite
from figures.sharpness import sharpness_runs_figure

from .reading import read_results
from .report import page_html, quantity_table, save_figure, verdict_table

__all__ = ["mean_ray_curves", "rays_runs_figure", "rays_runs_plotly", "comparison_report"]

_KINDS = (("rays", "raw directions"), ("rays_filter", "filter-normalised directions"))


def mean_ray_curves(results: list[dict], group: str, origin: str, key: str = "test_error"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each run's mean over directions of ``key`` along its rays, on a common grid of distances.

    The grids of the runs differ (t_max is searched per run); the common grid runs from 0 to the
    shortest run's t_max with the finest run's step count, each run's mean curve interpolated onto it.

    Returns:
        ``(t [T], curves [R, T])``.
    """
    gs = [r[group][origin] for r in results]
    t = np.linspace(0.0, min(float(g["t"][-1]) for g in gs), max(len(g["t"]) for g in gs))
    return t, np.stack([np.interp(t, g["t"], clip_finite(g[key])[0].mean(0)) for g in gs])


def rays_runs_figure(results: list[dict]) -> plt.Figure:
    """Per ray kind: mean test-error curves of every run with the mean and spread over runs, and the widths."""
    kinds = [(g, lab) for g, lab in _KINDS if all(g in r for r in results)]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.8 * len(kinds)), squeeze=False)
    for (group, label), (a1, a2) in zip(kinds, axes):
        for k, (origin, c) in enumerate((("swa", SWA_C), ("sgd", SGD_C))):
            t, curves = mean_ray_curves(results, group, origin)
            for cur in curves:
                a1.plot(t, 100 * cur, color=c, lw=0.7, alpha=0.45)
            m, s = 100 * curves.mean(0), 100 * curves.std(0)
            a1.plot(t, m, color=c, lw=2, label=f"{origin.upper()}: mean of {len(curves)} runs")
            a1.fill_between(t, m - s, m + s, color=c, alpha=0.15, lw=0)
            paper_loss = "loss_l2" if all("width_loss_l2" in r[group][origin] for r in results) else "loss"
            for j, margin in enumerate(("error", paper_loss)):
                w = np.array([mean_width(r[group][origin], margin) for r in results])
                x = j + (k - 0.5) * 0.3
                a2.plot(np.full(len(w), x), w, "o", color=c, mfc="none", ms=6)
                a2.errorbar(x, w.mean(), yerr=w.std(ddof=1) if len(w) > 1 else 0, fmt="_", color=c, ms=18,
                            capsize=4, label=origin.upper() if j == 0 else None)
        a1.set_xlabel("distance t")
        a1.set_ylabel("test error (%)")
        a1.set_title(f"mean over directions, {label}", fontsize=10)
        a1.legend(fontsize=8)
        a2.set_xticks([0, 1], ["test-error margin", "train-loss margin" + (" (L2-reg.)" if paper_loss == "loss_l2" else "")])
        a2.set_xlim(-0.6, 1.6)
        a2.set_ylabel("width (distance t)")
        a2.set_title(f"widths per run (mean ± std), {label}", fontsize=10)
        a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rays_runs_plotly(results: list[dict], names: list[str]) -> go.Figure:
    """Interactive mean test-error curves of every run along its rays, per ray kind."""
    kinds = [(g, lab) for g, lab in _KINDS if all(g in r for r in results)]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[lab for _, lab in kinds])
    for col, (group, _) in enumerate(kinds, 1):
        for origin, c in (("swa", SWA_C), ("sgd", SGD_C)):
            t, curves = mean_ray_curves(results, group, origin)
            for name, cur in zip(names, curves):
                fig.add_trace(go.Scatter(x=t, y=cur, line={"color": c, "width": 1}, name=f"{origin} {name}",
                                         legendgroup=origin, showlegend=col == 1), 1, col)
    fig.update_layout(height=420, width=1100, title="mean test error along random rays, every run")
    return fig


def comparison_report(comparison, out: str | os.PathLike) -> Path:
    """Write ``out/index.html``: verdicts first, then the table of quantities and the multi-run ray figures.

    Args:
        comparison: An :class:`analyses.compare.Comparison`.
        out: Output directory (created); the CSV (``compare.csv``) is linked when it is there.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = "".join(f"<li>run {i + 1}: <code>{html.escape(str(Path(r).resolve()))}</code></li>"
                   for i, r in enumerate(comparison.runs))
    figs = ""
    results = [read_results(p) for p in comparison.results if p and Path(p).exists()]
    if len(results) == len(comparison.runs) and any(all(g in r for r in results) for g, _ in _KINDS):
        files = save_figure(rays_runs_figure(results), out, "rays_runs")
        inter = rays_runs_plotly(results, [f"run {i + 1}" for i in range(len(results))])
        inter.write_html(out / "rays_runs.html", include_plotlyjs=True, full_html=True)
        links = " · ".join(f'<a href="{f}">{f.rsplit(".", 1)[1].upper()}</a>' for f in files + ["rays_runs.html"])
        figs = (f'<section><h2>Random rays of every run (paper Figure 4)</h2><p>Each thin line is one run\'s mean '
                f'over directions, the thick line the mean over runs with ±1 std shaded. SWA is wider when its '
                f'widths (right) lie above SGD\'s.</p><p class="files">{links}</p><img src="{files[0]}" '
                f'alt="rays of every run"><div class="interactive">'
                f'{pio.to_html(inter, include_plotlyjs=False, full_html=False)}</div></section>')
    if len(results) == len(comparison.runs) and all("swa" in r.get("sharpness", {}) and "sgd" in r["sharpness"]
                                                    for r in results):
        files = save_figure(sharpness_runs_figure(results), out, "sharpness_runs")
        links = " · ".join(f'<a href="{f}">{f.rsplit(".", 1)[1].upper()}</a>' for f in files)
        figs += (f'<section><h2>Adaptive and raw sharpness of every run</h2><p>Each thin line is one run, the thick '
                 f'line the mean over runs with ±1 std shaded. SWA is flatter where its curve lies below SGD\'s.</p>'
                 f'<p class="files">{links}</p><img src="{files[0]}" alt="sharpness of every run"></section>')
    csv = '<p><a href="compare.csv">compare.csv</a></p>' if (out / "compare.csv").exists() else ""
    notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in comparison.notes)
    page = page_html(f"""<h1>swa-landscape comparison of {len(comparison.runs)} runs</h1><ul>{runs}</ul>
<h2>Findings</h2>{verdict_table(comparison)}{notes}
<h2>Quantities (mean ± std over runs)</h2>{csv}{quantity_table(comparison)}
{figs}""")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
