"""Planes in weight space (paper Figures 1 and 3, the PCA plane): matplotlib and plotly.

A plane's coordinates are parameter-space L2 distances (the plane is isometric to the weights), so
both axes have the same scale. The evaluated grid is drawn whole; snapshots projected outside it are
drawn on its edge with their own marker, and their distance from the plane is one colour bar below
the panels, apart from the loss colour bars.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, MaxNLocator
from plotly.subplots import make_subplots

from .data import names_of
from .plots import SGD_C, SWA_C, clip_finite, compact, log_levels, train_loss_key

__all__ = ["clip_to_grid", "plane_figure", "plane_plotly"]


def clip_to_grid(xy: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N, 2]`` moved onto the grid's edge where they lie outside it, and the mask of moved points."""
    lo, hi = np.array([x[0], y[0]]), np.array([x[-1], y[-1]])
    out = (xy < lo).any(1) | (xy > hi).any(1)
    return np.clip(xy, lo, hi), out


def _names(p: dict) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in p.get("solutions", [])]


def plane_figure(p: dict, title: str = "") -> plt.Figure:
    """Train loss and test error on a plane with the projected SWA branch, equal aspect (Figures 1, 3).

    Args:
        p: The plane's results group (``x``, ``y``, losses, projections, anchors).
        title: Figure title.
    """
    x, y = p["x"], p["y"]
    loss_key, loss_label = train_loss_key(p)
    aspect = (y[-1] - y[0]) / max(x[-1] - x[0], 1e-30)  # equal scales: the figure takes the grid's shape
    fig, axes = plt.subplots(1, 2, figsize=(12, float(np.clip(4.3 * aspect + 2.2, 3.8, 10.0))), layout="constrained")
    off = p["off_plane"]
    br = p.get("projected_branch", np.array([b"swa"] * len(off))).astype(str)
    m = br == "swa"
    pxy, outside = clip_to_grid(p["projection_xy"], x, y)
    sc = None
    for ax, key, label, cmap in ((axes[0], loss_key, loss_label, "viridis"),
                                 (axes[1], "test_error", f"test {names_of(p).error}", "cividis")):
        z, bad = clip_finite(p[key])
        zt = np.maximum(z.T, 1e-4)  # arrays are [x, y]; contourf wants [y, x]
        levels = log_levels(zt)
        cs = ax.contourf(x, y, zt, levels=levels, norm=LogNorm(), cmap=cmap, extend="both")
        cb = fig.colorbar(cs, ax=ax, shrink=0.9, pad=0.02)
        cb.set_ticks(levels[::3])
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
        cb.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        cb.set_label(label)
        if bad.any():
            gx, gy = np.meshgrid(x, y, indexing="ij")
            ax.plot(gx[bad], gy[bad], "x", color="red", ms=5, label="diverged (clipped)")
        if m.any():
            ax.plot(pxy[m, 0], pxy[m, 1], "-", color="white", lw=0.6, alpha=0.7, zorder=2)
            inside = m & ~outside
            sc = ax.scatter(pxy[inside, 0], pxy[inside, 1], c=off[inside], s=14, cmap="magma", edgecolors="white",
                            linewidths=0.4, zorder=3, vmin=off[m].min(), vmax=max(off[m].max(), 1e-12))
            if (m & outside).any():
                ax.scatter(pxy[m & outside, 0], pxy[m & outside, 1], c=off[m & outside], s=30, marker="^",
                           cmap="magma", edgecolors="red", linewidths=0.8, zorder=3, vmin=off[m].min(),
                           vmax=max(off[m].max(), 1e-12), label="snapshot outside the grid (drawn at its edge)")
        if "anchor_xy" in p and len(p["anchor_xy"]) == 3:
            ax.plot(p["anchor_xy"][:, 0], p["anchor_xy"][:, 1], "k+", ms=12, mew=2, label="anchors", zorder=4)
        for name, xy, o in zip(_names(p), p.get("solutions_xy", []), p.get("solutions_off_plane", [])):
            xy_c, out = clip_to_grid(np.asarray(xy)[None], x, y)
            ax.plot(*xy_c[0], "D" if name == "swa" else "s", color=SWA_C if name == "swa" else SGD_C, mec="white",
                    ms=8, zorder=5, label=f"{name.upper()} ({compact(o)} off plane{', outside' if out[0] else ''})")
        ax.set_aspect("equal")  # the plane is isometric to the weights
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, prune="lower"))  # no label in the corner, by the x axis's
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
        ax.set_title(label)
        ax.set_xlabel("u (parameter-space L2)")
        ax.set_ylabel("v (parameter-space L2)")
        ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    if sc is not None:
        cb = fig.colorbar(sc, ax=axes, orientation="horizontal", location="bottom", shrink=0.5, pad=0.02, aspect=40)
        cb.set_label("distance of the SWA branch's snapshots from the plane (parameter-space L2)")
        cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
    if title:
        fig.suptitle(title)
    return fig


def plane_plotly(p: dict, title: str = "") -> go.Figure:
    """Interactive contours of a plane with equal axes, the projected SWA branch, and a 3-D surface."""
    x, y = p["x"], p["y"]
    loss_key, loss_label = train_loss_key(p)
    loss, _ = clip_finite(p[loss_key])
    err, _ = clip_finite(p["test_error"])
    fig = make_subplots(rows=1, cols=3, specs=[[{}, {}, {"type": "surface"}]], horizontal_spacing=0.08,
                        subplot_titles=(f"log10 {loss_label}", f"test {names_of(p).error}",
                                        f"log10 {loss_label} (surface)"))
    zl = np.log10(np.maximum(loss.T, 1e-12))
    fig.add_trace(go.Contour(x=x, y=y, z=zl, colorscale="Viridis", colorbar={"x": 0.27, "len": 0.8, "thickness": 12},
                             name="loss", hovertemplate="u %{x:.3g}<br>v %{y:.3g}<br>log10 loss %{z:.3f}"), 1, 1)
    fig.add_trace(go.Contour(x=x, y=y, z=err.T, colorscale="Cividis", colorbar={"x": 0.635, "len": 0.8, "thickness": 12},
                             name="error", hovertemplate="u %{x:.3g}<br>v %{y:.3g}<br>test error %{z:.4f}"), 1, 2)
    fig.add_trace(go.Surface(x=x, y=y, z=zl, colorscale="Viridis", showscale=False), 1, 3)
    off = p["off_plane"]
    m = p.get("projected_branch", np.array([b"swa"] * len(off))).astype(str) == "swa"
    pxy, outside = clip_to_grid(p["projection_xy"], x, y)
    idx = p["projected_indices"]
    for col in (1, 2):
        for sel, sym, name in ((m & ~outside, "circle", "SWA-branch snapshots"),
                               (m & outside, "triangle-up-open", "outside the grid (at its edge)")):
            if sel.any():
                fig.add_trace(go.Scatter(x=pxy[sel, 0], y=pxy[sel, 1], mode="markers",
                                         marker={"size": 6, "symbol": sym, "color": off[sel], "colorscale": "Magma"},
                                         customdata=np.stack([idx[sel], off[sel]], 1), name=name, showlegend=col == 1,
                                         hovertemplate="snapshot %{customdata[0]}<br>%{customdata[1]:.3g} off the plane"),
                              1, col)
        for name, xy in zip(_names(p), p.get("solutions_xy", [])):
            xy_c, _ = clip_to_grid(np.asarray(xy)[None], x, y)
            fig.add_trace(go.Scatter(x=xy_c[:, 0], y=xy_c[:, 1], mode="markers", name=name.upper(),
                                     marker={"symbol": "diamond" if name == "swa" else "square", "size": 11,
                                             "color": SWA_C if name == "swa" else SGD_C}, showlegend=col == 1), 1, col)
        # equal scales; the plot area shrinks to the grid ("domain"), so the contour fills it
        fig.update_xaxes(range=[x[0], x[-1]], constrain="domain", row=1, col=col, title_text="u")
        fig.update_yaxes(range=[y[0], y[-1]], scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1,
                         constrain="domain", row=1, col=col, title_text="v")
    fig.update_layout(height=520, width=1400, legend={"orientation": "h", "y": -0.15},
                      title=title or "plane (coordinates: parameter-space L2)")
    return fig
