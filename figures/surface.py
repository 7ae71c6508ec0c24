"""A loss surface at one or several centres along two directions each, on one colour scale.

One picture for every plane drawn around a point: the classic random surface (the same two directions at SWA and
SGD), the planes of each solution's top two Hessian eigenvectors, and the trajectory's principal plane. Each
centre's panel is a filled contour of the train loss (the L2-regularised one where stored) with labelled contour
lines; every panel shares the levels and the colour scale, so the wider basin is the one whose low colours reach
further. Where a group holds the trajectory projected onto its plane (``projection_xy``, ``solutions_xy``), the
SWA branch and the solutions are drawn on it. Below, the 1-D curves through each centre along each direction.
The plotly version shows the same panels as contours on one colour axis and each centre's 3-D surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import LogNorm
from plotly.subplots import make_subplots

from .planes import clip_to_grid
from .plots import SGD_C, SWA_C, clip_finite, compact, compact_ticks, log_levels, train_loss_key

__all__ = ["Coordinates", "RANDOM", "surface_figure", "surface_plotly", "surface_csv"]

VALUES = ("train_loss", "train_loss_l2", "train_error", "test_loss", "test_error")


@dataclass(frozen=True)
class Coordinates:
    """What a surface's two coordinates are, for the axis labels.

    Attributes:
        names: The two directions' names (``"direction 1"``, ``"eigenvector 1"``, ``"PC 1 (61%)"``).
        unit: Their unit (``"normalised units"`` for filter-normalised directions, ``"parameter-space L2"``).
    """

    names: tuple[str, str] = ("direction 1", "direction 2")
    unit: str = "normalised units"


RANDOM = Coordinates()
"""The classic surface's axes: two random directions, normalised at each centre."""


def _name(center: str) -> str:
    return center.upper() if center in ("swa", "sgd") else center


def _title(center: str) -> str:
    return f"around {_name(center)}"


def _branch_xy(g: dict) -> np.ndarray:
    """The SWA branch's snapshots ``[n, 2]`` as projected onto the group's plane, clipped to its grid."""
    branch = np.asarray(g.get("projected_branch", [b"swa"] * len(g["projection_xy"]))).astype(str) == "swa"
    return clip_to_grid(np.asarray(g["projection_xy"])[branch], g["x"], g["y"])[0]


def _trajectory(ax: plt.Axes, g: dict) -> None:
    """The SWA branch's snapshots and both solutions projected onto the panel's plane, clipped to its grid."""
    if "projection_xy" not in g:
        return
    xy = _branch_xy(g)
    ax.plot(xy[:, 0], xy[:, 1], ".-", color="white", lw=0.6, ms=3, alpha=0.8, label="SWA-branch snapshots")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.get("solutions", [])]
    for name, sxy in zip(names, g.get("solutions_xy", [])):
        c, _ = clip_to_grid(np.asarray(sxy)[None], g["x"], g["y"])
        ax.plot(*c[0], "D" if name == "swa" else "s", color=_colour(name, 0), mec="white", ms=8, label=name.upper())
    ax.legend(fontsize=7, loc="upper right", framealpha=0.7)


def _colour(center: str, i: int) -> str:
    return {"swa": SWA_C, "sgd": SGD_C}.get(center, plt.get_cmap("tab10")(i + 2))


def _shared(groups: dict[str, dict]) -> tuple[str, str, np.ndarray]:
    key, label = train_loss_key(next(iter(groups.values())))
    values = np.concatenate([clip_finite(g[key])[0].ravel() for g in groups.values()])
    return key, label, log_levels(np.maximum(values, 1e-4), 14)


def surface_figure(groups: dict[str, dict], coords: Coordinates = RANDOM) -> plt.Figure:
    """Side-by-side filled contours of the train loss around each centre, one colour scale, and the 1-D curves.

    Args:
        groups: Centre name to its results group (``x [Gx]``, ``y [Gy]``, ``train_loss [Gx, Gy]``, ... on the
            grid; optionally the trajectory projected onto it).
        coords: What the two coordinates are.
    """
    key, label, levels = _shared(groups)
    n = len(groups)
    fig = plt.figure(figsize=(4.6 * n + 1.2, 8.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.5, 1))
    panels = np.atleast_1d(top.subplots(1, n, sharex=True, sharey=True))
    cs, labels = None, []
    for ax, (center, g) in zip(panels, groups.items()):
        z, bad = clip_finite(g[key])
        zt = np.maximum(z.T, 1e-4)  # arrays are [x, y]; contour wants [y, x]
        cs = ax.contourf(g["x"], g["y"], zt, levels=levels, norm=LogNorm(), cmap="viridis", extend="both")
        lines = ax.contour(g["x"], g["y"], zt, levels=levels[::2], colors="white", linewidths=0.6)
        labels += [(ax, t) for t in ax.clabel(lines, fmt=compact, fontsize=7)]
        if bad.any():
            gx, gy = np.meshgrid(g["x"], g["y"], indexing="ij")
            ax.plot(gx[bad], gy[bad], "x", color="red", ms=5, label="diverged (clipped)")
            ax.legend(fontsize=7, loc="upper right")
        if "projection_xy" in g:
            _trajectory(ax, g)
        else:
            ax.plot(0, 0, "D" if center == "swa" else "s", color=_colour(center, 0), mec="white", ms=9)
        ax.set_aspect("equal")
        ax.set_title(_title(center))
        ax.set_xlabel(f"{coords.names[0]} ({coords.unit})")
    panels[0].set_ylabel(f"{coords.names[1]} ({coords.unit})")
    cb = top.colorbar(cs, ax=list(panels), shrink=0.9)
    cb.set_label(label)
    cb.set_ticks(levels[::3])
    cb.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: compact(v)))
    curves = bottom.subplots(1, 2, sharey=True)
    for i, (center, g) in enumerate(groups.items()):
        z = clip_finite(g[key])[0]
        cx, cy = int(np.argmin(np.abs(g["x"]))), int(np.argmin(np.abs(g["y"])))
        for ax, xs, ys in ((curves[0], g["x"], z[:, cy]), (curves[1], g["y"], z[cx, :])):
            ax.plot(xs, ys, "-", color=_colour(center, i), lw=1.5, label=_name(center))
    for ax, d in zip(curves, coords.names):
        ax.set_yscale("log")
        compact_ticks(ax)
        ax.set_xlabel(f"{d} through the centre")
        ax.legend(fontsize=8)
    curves[0].set_ylabel(label)
    fig.canvas.draw()  # a contour label that reaches past its panel would cover the tick labels: leave it out
    for ax, t in labels:
        box, frame = t.get_window_extent(), ax.get_window_extent()
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            t.remove()
    return fig


def surface_plotly(groups: dict[str, dict], coords: Coordinates = RANDOM) -> go.Figure:
    """The surfaces as contours on one colour axis (top) and each centre's 3-D surface (bottom)."""
    key, label, levels = _shared(groups)
    n = len(groups)
    fig = make_subplots(rows=2, cols=n, specs=[[{"type": "xy"}] * n, [{"type": "scene"}] * n],
                        subplot_titles=[_title(c) for c in groups] + [f"{_title(c)}: 3-D" for c in groups],
                        row_heights=[0.45, 0.55], vertical_spacing=0.06)
    lo, hi = np.log10(levels[0]), np.log10(levels[-1])
    for j, (center, g) in enumerate(groups.items(), start=1):
        z = np.log10(np.maximum(clip_finite(g[key])[0].T, 1e-4))
        fig.add_trace(go.Contour(x=g["x"], y=g["y"], z=z, coloraxis="coloraxis", contours={"showlabels": True},
                                 name=center, hovertemplate=f"{coords.names[0]} %{{x:.3g}}<br>{coords.names[1]} "
                                                            "%{y:.3g}<br>log10 loss %{z:.3f}"),
                      row=1, col=j)
        fig.update_xaxes(title_text=coords.names[0], row=1, col=j)
        fig.update_yaxes(title_text=coords.names[1], row=1, col=j)
        fig.add_trace(go.Surface(x=g["x"], y=g["y"], z=z, coloraxis="coloraxis", name=center, showscale=False),
                      row=2, col=j)
        if "projection_xy" in g:
            xy = _branch_xy(g)
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name="SWA-branch snapshots",
                                     marker={"size": 4, "color": "white"}, line={"width": 1, "color": "white"},
                                     showlegend=j == 1), row=1, col=j)
    fig.update_layout(coloraxis={"colorscale": "Viridis", "cmin": lo, "cmax": hi,
                                 "colorbar": {"title": f"log10 {label}"}},
                      height=900, title=f"loss surface ({coords.unit})")
    return fig


def surface_csv(groups: dict[str, dict], out: str | Path, prefix: str = "surface") -> list[str]:
    """Each centre's grid as ``<prefix>_<centre>.csv`` in ``out`` (for ParaView's CSV reader, a spreadsheet, pandas).

    One row per grid point: ``a`` and ``b`` (the coordinates along the two directions), then every value stored
    (train and test loss and error, the L2-regularised train loss); NaN where a point is not evaluated.

    Returns:
        The file names written.
    """
    names = []
    for center, g in groups.items():
        a, b = np.meshgrid(g["x"], g["y"], indexing="ij")
        cols = {"a": a.ravel(), "b": b.ravel(), **{k: np.asarray(g[k]).ravel() for k in VALUES if k in g}}
        name = f"{prefix}_{center.replace('=', '')}.csv"
        np.savetxt(Path(out) / name, np.column_stack(list(cols.values())), delimiter=",", header=",".join(cols),
                   comments="", fmt="%.10g")
        names.append(name)
    return names
