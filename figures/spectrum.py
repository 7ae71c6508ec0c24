"""The Hessian at SGD and SWA: top eigenvalues side by side and the Hutchinson trace with its standard error."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import point_colour, point_label

__all__ = ["hessian_figure", "hessian_plotly"]


def _points(h: dict) -> list[str]:
    """The named points of a Hessian group (snapshots along the trajectory have their own figure)."""
    names = [n for n in h if not n.startswith("_")]
    return [n for n in names if not n.isdigit()] or names


def hessian_figure(h: dict) -> plt.Figure:
    """Top-k eigenvalues per point (grouped bars) and traces with ±1 SE; ``h`` maps point names to groups."""
    names = _points(h)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    width = 0.8 / max(1, len(names))
    for j, n in enumerate(names):
        if "eigenvalues" in h[n]:
            ev = np.asarray(h[n]["eigenvalues"])
            a1.bar(np.arange(1, len(ev) + 1) + (j - (len(names) - 1) / 2) * width, ev, width, color=point_colour(n),
                   label=point_label(n))
        if "trace" in h[n]:
            a2.bar(j, float(h[n]["trace"]), 0.6, yerr=float(h[n]["trace_se"]), capsize=6, color=point_colour(n))
    a1.set_xlabel("eigenvalue rank")
    a1.set_ylabel("Hessian eigenvalue (train loss)")
    a1.set_title("top eigenvalues (Lanczos)")
    a1.legend(fontsize=8)
    a2.set_xticks(range(len(names)), [point_label(n) for n in names])
    a2.set_ylabel("trace of the Hessian")
    a2.set_title("trace (Hutchinson, ±1 standard error)")
    return fig


def hessian_plotly(h: dict) -> go.Figure:
    """The Hessian figure (:func:`hessian_figure`) as an interactive plotly figure."""
    names = _points(h)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top eigenvalues", "trace (±1 SE)"))
    for n in names:
        if "eigenvalues" in h[n]:
            ev = np.asarray(h[n]["eigenvalues"])
            fig.add_trace(go.Bar(x=np.arange(1, len(ev) + 1), y=ev, name=n, marker_color=point_colour(n)), 1, 1)
    tr = [n for n in names if "trace" in h[n]]
    fig.add_trace(go.Bar(x=tr, y=[float(h[n]["trace"]) for n in tr], showlegend=False,
                         error_y={"type": "data", "array": [float(h[n]["trace_se"]) for n in tr]},
                         marker_color=[point_colour(n) for n in tr]), 1, 2)
    fig.update_layout(height=420, width=1000, barmode="group", title="Hessian of the training loss")
    return fig
