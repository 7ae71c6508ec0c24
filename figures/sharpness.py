"""Sharpness against the perturbation's radius at each point: adaptive and raw average case (±1 SE), worst case."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .spectrum import _colour

__all__ = ["sharpness_figure", "sharpness_plotly"]

_PANELS = (("adaptive", "adaptive: perturbation relative to each weight"),
           ("raw", "raw: one scale for every weight"))


def _label(n: str) -> str:
    return n.upper() if n in ("sgd", "swa") else n


def sharpness_figure(s: dict) -> plt.Figure:
    """``s`` maps point names to their ``/sharpness/<point>`` groups (as read into dicts)."""
    names = [n for n in s if not n.startswith("_")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for ax, (kind, title) in zip(axes, _PANELS):
        for n in names:
            g = s[n]
            ax.errorbar(g["rhos"], g[f"{kind}_mean"], yerr=g[f"{kind}_se"], marker="o", capsize=4,
                        color=_colour(n), label=f"{_label(n)} average case")
            if f"worst_{kind}_inf" in g:
                ax.scatter([float(g["radius_inf"])], [float(g[f"worst_{kind}_inf"])], marker="*", s=120,
                           color=_colour(n), label=f"{_label(n)} worst case (l_inf)")
        ax.set_xscale("log")
        ax.set_xlabel("radius rho")
        ax.set_ylabel("increase of the training loss")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return fig


def sharpness_plotly(s: dict) -> go.Figure:
    names = [n for n in s if not n.startswith("_")]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in _PANELS])
    for col, (kind, _) in enumerate(_PANELS, start=1):
        for n in names:
            g = s[n]
            fig.add_trace(go.Scatter(x=np.asarray(g["rhos"]), y=np.asarray(g[f"{kind}_mean"]), mode="lines+markers",
                                     name=f"{_label(n)} {kind}", marker_color=_colour(n),
                                     error_y={"type": "data", "array": np.asarray(g[f"{kind}_se"])}), 1, col)
            if f"worst_{kind}_inf" in g:
                fig.add_trace(go.Scatter(x=[float(g["radius_inf"])], y=[float(g[f"worst_{kind}_inf"])], mode="markers",
                                         marker={"symbol": "star", "size": 12, "color": _colour(n)},
                                         name=f"{_label(n)} worst case (l_inf)"), 1, col)
        fig.update_xaxes(type="log", title_text="radius rho", row=1, col=col)
    fig.update_yaxes(title_text="increase of the training loss", row=1, col=1)
    fig.update_layout(height=420, width=1000, title="Sharpness of the training loss")
    return fig
