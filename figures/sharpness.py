"""Sharpness against the perturbation's radius at each point: adaptive and raw average case (±1 SE), worst case."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import point_colour, point_label

__all__ = ["sharpness_figure", "sharpness_plotly", "sharpness_runs_figure"]

_PANELS = (("adaptive", "adaptive: perturbation relative to each weight"),
           ("raw", "raw: one scale for every weight"))


def _rho_axis(ax, rhos) -> None:
    """A log radius axis labelled at the radii measured (plain numbers, no crowded minor labels)."""
    ax.set_xscale("log")
    ax.set_xticks(np.asarray(rhos, dtype=float), [f"{r:g}" for r in rhos])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("radius rho")


def sharpness_figure(s: dict) -> plt.Figure:
    """``s`` maps point names to their ``/sharpness/<point>`` groups (as read into dicts)."""
    names = [n for n in s if not n.startswith("_")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for ax, (kind, title) in zip(axes, _PANELS):
        for n in names:
            g = s[n]
            ax.errorbar(g["rhos"], g[f"{kind}_mean"], yerr=g[f"{kind}_se"], marker="o", capsize=4,
                        color=point_colour(n), label=f"{point_label(n)} average case")
            if f"worst_{kind}_inf" in g:
                ax.scatter([float(g["radius_inf"])], [float(g[f"worst_{kind}_inf"])], marker="*", s=120,
                           color=point_colour(n), label=f"{point_label(n)} worst case (l_inf)")
        _rho_axis(ax, s[names[0]]["rhos"])
        ax.set_ylabel("increase of the training loss")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return fig


def sharpness_plotly(s: dict) -> go.Figure:
    """The sharpness figure (:func:`sharpness_figure`) as an interactive plotly figure."""
    names = [n for n in s if not n.startswith("_")]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in _PANELS])
    for col, (kind, _) in enumerate(_PANELS, start=1):
        for n in names:
            g = s[n]
            fig.add_trace(go.Scatter(x=np.asarray(g["rhos"]), y=np.asarray(g[f"{kind}_mean"]), mode="lines+markers",
                                     name=f"{point_label(n)} {kind}", marker_color=point_colour(n),
                                     error_y={"type": "data", "array": np.asarray(g[f"{kind}_se"])}), 1, col)
            if f"worst_{kind}_inf" in g:
                fig.add_trace(go.Scatter(x=[float(g["radius_inf"])], y=[float(g[f"worst_{kind}_inf"])], mode="markers",
                                         marker={"symbol": "star", "size": 12, "color": point_colour(n)},
                                         name=f"{point_label(n)} worst case (l_inf)"), 1, col)
        fig.update_xaxes(type="log", title_text="radius rho", row=1, col=col)
    fig.update_yaxes(title_text="increase of the training loss", row=1, col=1)
    fig.update_layout(height=420, width=1000, title="Sharpness of the training loss")
    return fig


def sharpness_runs_figure(results: list[dict]) -> plt.Figure:
    """Average-case sharpness against the radius at SWA and SGD over several runs.

    Each run's curve thin, the mean over runs thick with ±1 std (ddof 1) shaded. ``results``: per run its
    results (as read into dicts) holding ``sharpness/swa`` and ``sharpness/sgd`` on the same radii.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for ax, (kind, title) in zip(axes, _PANELS):
        for n in ("swa", "sgd"):
            rhos = np.asarray(results[0]["sharpness"][n]["rhos"])
            curves = np.stack([np.asarray(r["sharpness"][n][f"{kind}_mean"]) for r in results])
            for c in curves:
                ax.plot(rhos, c, color=point_colour(n), lw=0.7, alpha=0.45)
            mean = curves.mean(0)
            std = curves.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            ax.plot(rhos, mean, color=point_colour(n), lw=2, marker="o",
                    label=f"{point_label(n)}: mean of {len(curves)} runs")
            ax.fill_between(rhos, mean - std, mean + std, color=point_colour(n), alpha=0.15, lw=0)
        _rho_axis(ax, rhos)
        ax.set_ylabel("increase of the training loss (average case)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return fig
