"""Curvature beyond the top eigenvalues: the spectral density, each layer's curvature, curvature along the run.

Each function takes the ``/hessian`` results group (point name to its group) and draws what it holds: the
eigenvalue densities of SWA and SGD on one axis (log density), the layers' top eigenvalue and trace as grouped
bars, and the top eigenvalue and trace of every captured snapshot of the SWA branch against those of w_SWA and
w_SGD (does averaging lower curvature below every point it averages?).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import point_colour, point_label

__all__ = ["density_figure", "density_plotly", "blocks_figure", "blocks_plotly", "trajectory_figure",
           "trajectory_plotly"]

_FLOOR = 1e-8  # log density: the Gaussian tails fall to 0 between isolated eigenvalues


def _with(h: dict, key: str) -> list[str]:
    return [n for n in h if not n.startswith("_") and not n.isdigit() and isinstance(h[n], dict) and key in h[n]]


def density_figure(h: dict) -> plt.Figure:
    """The eigenvalue density (stochastic Lanczos quadrature) of each point on one log axis, the nodes below."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(3, 1), layout="constrained")
    names = _with(h, "density")
    for j, n in enumerate(names):
        g = h[n]
        a1.semilogy(g["density_grid"], np.maximum(g["density"], _FLOOR), color=point_colour(n), lw=1.3, label=point_label(n))
        nodes, w = np.asarray(g["density_nodes"]), np.asarray(g["density_weights"])
        ok = np.isfinite(nodes) & (w > 0)
        a2.scatter(nodes[ok], np.full(ok.sum(), j), s=8 + 400 * w[ok], color=point_colour(n), alpha=0.6)
    a1.set_ylabel("density (log)")
    a1.set_title("Hessian eigenvalue density (stochastic Lanczos quadrature)")
    a1.legend(fontsize=8)
    a2.set_yticks(range(len(names)), [point_label(n) for n in names])
    a2.set_xlabel("eigenvalue of the training-loss Hessian")
    a2.set_title("quadrature nodes (size: weight)", fontsize=9)
    return fig


def density_plotly(h: dict) -> go.Figure:
    """The density figure (:func:`density_figure`) as an interactive plotly figure."""
    fig = go.Figure()
    for n in _with(h, "density"):
        fig.add_trace(go.Scatter(x=h[n]["density_grid"], y=np.maximum(h[n]["density"], _FLOOR), name=point_label(n),
                                 line={"color": point_colour(n)}))
    fig.update_yaxes(type="log", title_text="density")
    fig.update_xaxes(title_text="eigenvalue")
    fig.update_layout(height=420, width=900, title="Hessian eigenvalue density")
    return fig


def blocks_figure(h: dict) -> plt.Figure:
    """Each layer's top eigenvalue and trace (the Hessian's diagonal block), grouped by point, log scale."""
    names = _with(h, "block_names")
    layers = [b.decode() if isinstance(b, bytes) else str(b) for b in h[names[0]]["block_names"]]
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 0.7 * len(layers) + 4), 4.6), layout="constrained")
    width = 0.8 / max(1, len(names))
    for ax, key, what in ((axes[0], "block_top_eigenvalue", "top eigenvalue"), (axes[1], "block_trace", "trace")):
        for j, n in enumerate(names):
            v = np.abs(np.asarray(h[n][key], dtype=float))
            ax.bar(np.arange(len(layers)) + (j - (len(names) - 1) / 2) * width, np.maximum(v, 1e-12), width,
                   color=point_colour(n), label=point_label(n))
        ax.set_yscale("log")
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"per layer: {what} (absolute)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Hessian block of the layer's parameters")
    return fig


def blocks_plotly(h: dict) -> go.Figure:
    """The per-layer figure (:func:`blocks_figure`) as an interactive plotly figure."""
    names = _with(h, "block_names")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top eigenvalue per layer", "trace per layer"))
    for n in names:
        layers = [b.decode() if isinstance(b, bytes) else str(b) for b in h[n]["block_names"]]
        for col, key in ((1, "block_top_eigenvalue"), (2, "block_trace")):
            fig.add_trace(go.Bar(x=layers, y=np.asarray(h[n][key]), name=point_label(n), marker_color=point_colour(n),
                                 showlegend=col == 1), 1, col)
    fig.update_layout(height=420, width=1100, barmode="group")
    return fig


def _snapshots(h: dict) -> list[str]:
    return sorted((n for n in h if n.isdigit() and isinstance(h[n], dict)), key=int)


def trajectory_figure(h: dict) -> plt.Figure:
    """Top eigenvalue and trace of every captured snapshot (by index) against w_SWA's and w_SGD's (lines)."""
    snaps = _snapshots(h)
    idx = [int(n) for n in snaps]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for ax, key, what in ((axes[0], "eigenvalues", "top eigenvalue"), (axes[1], "trace", "trace")):
        vals = [float(np.atleast_1d(h[n][key])[0]) if key in h[n] else np.nan for n in snaps]
        ax.plot(idx, vals, "o-", color="#555555", ms=4, label="captured snapshots")
        for n, ls in (("swa", "--"), ("sgd", ":")):
            if n in h and key in h[n]:
                ax.axhline(float(np.atleast_1d(h[n][key])[0]), color=point_colour(n), ls=ls, lw=1.5, label=point_label(n))
        ax.set_xlabel("snapshot index (along the SWA branch)")
        ax.set_ylabel(f"Hessian {what}")
        ax.set_title(f"{what} along the trajectory")
        ax.legend(fontsize=8)
    return fig


def trajectory_plotly(h: dict) -> go.Figure:
    """The trajectory figure (:func:`trajectory_figure`) as an interactive plotly figure."""
    snaps = _snapshots(h)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top eigenvalue", "trace"))
    for col, key in ((1, "eigenvalues"), (2, "trace")):
        fig.add_trace(go.Scatter(x=[int(n) for n in snaps], y=[float(np.atleast_1d(h[n][key])[0]) if key in h[n]
                                                                else None for n in snaps],
                                 mode="lines+markers", name="snapshots", showlegend=col == 1), 1, col)
        for n in ("swa", "sgd"):
            if n in h and key in h[n]:
                fig.add_hline(y=float(np.atleast_1d(h[n][key])[0]), line_color=point_colour(n), row=1, col=col)
    fig.update_layout(height=420, width=1000, title="curvature along the SWA branch")
    return fig
