"""The paper's figures: matplotlib for papers, plotly for interactive exploration.

Each ``*_figure`` function takes what :mod:`figures.data` reads and returns a
matplotlib figure; each ``*_plotly`` the interactive version. Non-finite values
(divergent points) are clipped to the largest finite value and marked, never
passed to a plot. Colour maps are viridis/cividis: monotone in lightness, so they
read in greyscale and for colour-blind readers.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from .data import RunSummary  # noqa: E402

__all__ = ["clip_finite", "schedule_figure", "plane_figure", "rays_figure", "segment_figure", "fge_figure",
           "plane_plotly", "rays_plotly", "segment_plotly", "schedule_plotly"]

SWA_C, SGD_C = "#0072B2", "#D55E00"  # Okabe-Ito blue / vermillion: distinct for colour-blind readers


def clip_finite(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace inf/NaN by the largest finite value; returns (clipped copy, mask of clipped entries)."""
    a = np.asarray(a, dtype=float)
    bad = ~np.isfinite(a)
    out = a.copy()
    if bad.any():
        fin = a[~bad]
        out[bad] = fin.max() if fin.size else 0.0
    return out, bad


def _log_levels(z: np.ndarray, n: int = 12) -> np.ndarray:
    lo, hi = max(float(np.min(z)), 1e-6), max(float(np.max(z)), 1e-6)
    if hi <= lo * 1.0001:
        hi = lo * 1.01
    return np.geomspace(lo, hi, n)


def schedule_figure(run: RunSummary) -> plt.Figure:
    """Learning rate and test error against iteration, both branches, captured models marked (paper Figure 2)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for br, c, lab in (("sgd", SGD_C, "conventional SGD"), ("swa", SWA_C, "SWA branch")):
        m = run.branch == br
        a1.plot(run.iteration[m], run.lr[m], ".-", color=c, ms=3, lw=1, label=lab)
        ok = m & np.isfinite(run.test_acc)
        a2.plot(run.iteration[ok], 100 * (1 - run.test_acc[ok]), ".-", color=c, ms=3, lw=1, label=lab)
    cap = run.captured & np.isfinite(run.test_acc)
    a1.plot(run.iteration[run.captured], run.lr[run.captured], "o", mfc="none", mec="k", label="captured")
    a2.plot(run.iteration[cap], 100 * (1 - run.test_acc[cap]), "o", mfc="none", mec="k", label="captured")
    if "swa" in run.solutions:
        a2.axhline(100 * (1 - run.solutions["swa"]["test_acc"]), color=SWA_C, ls="--", lw=1, label="SWA average")
    a1.set_ylabel("learning rate")
    a1.set_yscale("log")
    a2.set_ylabel("test error (%)")
    a2.set_xlabel("iteration")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plane_figure(p: dict) -> plt.Figure:
    """Train loss and test error on the plane, anchors, projected trajectory with off-plane distance (Figures 1, 3)."""
    x, y = p["x"], p["y"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, key, title, cmap in ((axes[0], "train_loss", "train loss", "viridis"),
                                 (axes[1], "test_error", "test error", "cividis")):
        z, bad = clip_finite(p[key])
        zt = z.T  # arrays are [x, y]; contourf wants [y, x]
        if key == "test_error":
            zt = np.maximum(zt, 1e-4)
        cs = ax.contourf(x, y, zt, levels=_log_levels(zt), norm=LogNorm(), cmap=cmap, extend="both")
        fig.colorbar(cs, ax=ax, label=title + " (log levels)")
        if bad.any():
            gx, gy = np.meshgrid(x, y, indexing="ij")
            ax.plot(gx[bad], gy[bad], "x", color="red", ms=5, label="diverged (clipped)")
        pxy, off = p["projection_xy"], p["off_plane"]
        if len(pxy):
            br = p.get("projected_branch", np.array([b"swa"] * len(pxy))).astype(str)
            m = br == "swa"
            sc = ax.scatter(pxy[m, 0], pxy[m, 1], c=off[m], s=14, cmap="magma", edgecolors="white", linewidths=0.4,
                            zorder=3)
            ax.plot(pxy[m, 0], pxy[m, 1], "-", color="white", lw=0.6, alpha=0.7, zorder=2)
            if key == "test_error":
                fig.colorbar(sc, ax=ax, label="snapshot distance from plane")
        ax.plot(p["anchor_xy"][:, 0], p["anchor_xy"][:, 1], "k+", ms=12, mew=2, label="anchors (in the plane)", zorder=4)
        for name, xy, o in zip(p.get("solutions", []), p.get("solutions_xy", []), p.get("solutions_off_plane", [])):
            name = name.decode() if isinstance(name, bytes) else str(name)
            ax.plot(*xy, "D" if name == "swa" else "s", color=SWA_C if name == "swa" else SGD_C, mec="white",
                    ms=8, zorder=5, label=f"{name.upper()} ({o:.2g} off plane)")
        ax.set_title(title)
        ax.set_xlabel("u (parameter-space L2)")
        ax.set_ylabel("v (parameter-space L2)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def rays_figure(r: dict) -> plt.Figure:
    """Train loss and test error along random rays from SWA and SGD on shared axes, widths annotated (Figure 4)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, c in (("swa", SWA_C), ("sgd", SGD_C)):
        if name not in r:
            continue
        g = r[name]
        t = g["t"]
        loss, lbad = clip_finite(g["train_loss"])
        err, ebad = clip_finite(g["test_error"])
        for i in range(loss.shape[0]):
            a1.plot(t, loss[i], color=c, lw=1, alpha=0.6, label=name.upper() if i == 0 else None)
            a2.plot(t, 100 * err[i], color=c, lw=1, alpha=0.6, label=name.upper() if i == 0 else None)
        if lbad.any() or ebad.any():
            a1.plot(np.broadcast_to(t, loss.shape)[lbad], loss[lbad], "x", color="red")
        we = g["width_error"][np.isfinite(g["width_error"])]
        wl = g["width_loss"][np.isfinite(g["width_loss"])]
        if we.size:
            a2.axvline(we.mean(), color=c, ls="--", lw=1.5,
                       label=f"{name.upper()} width {we.mean():.3g} ± {we.std():.2g}")
        if wl.size:
            a1.axvline(wl.mean(), color=c, ls="--", lw=1.5, label=f"{name.upper()} width {wl.mean():.3g}")
    a1.set_yscale("log")
    a1.set_xlabel("distance t (parameter-space L2)")
    a2.set_xlabel("distance t (parameter-space L2)")
    a1.set_ylabel("train loss")
    a2.set_ylabel("test error (%)")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.suptitle("random rays w + t d (width: first distance where the margin is exceeded)")
    fig.tight_layout()
    return fig


def segment_figure(s: dict) -> plt.Figure:
    """Train loss and test error along w(t) = t w_SGD + (1-t) w_SWA against signed distance (Figure 5)."""
    d = s["distance"]
    loss, _ = clip_finite(s["train_loss"])
    err, _ = clip_finite(s["test_error"])
    fig, a1 = plt.subplots(figsize=(7, 4.5))
    a1.plot(d, loss, "o-", color="#009E73", ms=3, label="train loss")
    a1.set_yscale("log")
    a1.set_ylabel("train loss", color="#009E73")
    a2 = a1.twinx()
    a2.plot(d, 100 * err, "s-", color="#CC79A7", ms=3, label="test error")
    a2.set_ylabel("test error (%)", color="#CC79A7")
    length = float(s["length"]) if "length" in s else float(np.max(np.abs(d)))
    for x, name, c in ((0.0, "SWA", SWA_C), (length, "SGD", SGD_C)):
        a1.axvline(x, color=c, ls="--", lw=1.2)
        a1.annotate(name, (x, 1), xycoords=("data", "axes fraction"), ha="center", va="bottom", color=c)
    a1.set_xlabel("signed distance from w_SWA toward w_SGD (parameter-space L2)")
    fig.tight_layout()
    return fig


def fge_figure(f: dict) -> plt.Figure:
    """The four SWA-vs-FGE quantities with the paper's CIFAR-100 values, and accuracies."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["prob_diff_consecutive", "prob_diff_swa_ensemble", "agree_consecutive", "agree_swa_ensemble"]
    labels = ["‖p_i − p_i+1‖\n(consecutive)", "‖p_SWA − p_FGE‖", "label agreement\nconsecutive",
              "label agreement\nSWA vs FGE"]
    vals = [float(np.mean(f[n])) for n in names]
    a1.bar(range(4), vals, color=[SGD_C, SWA_C, SGD_C, SWA_C], hatch=["", "//", "", "//"], edgecolor="k")
    paper = [f["_attrs"].get(f"paper_{n}", np.nan) for n in names]  # the analysis stores the paper's values
    a1.plot(range(4), paper, "k_", ms=30, mew=3, label="paper (PreResNet-110, CIFAR-100)")
    a1.set_xticks(range(4), labels, fontsize=8)
    a1.legend(fontsize=8)
    a1.set_title("this run vs paper")
    acc = f["acc_proposals"]
    a2.plot(range(1, len(acc) + 1), 100 * acc, "o-", color=SGD_C, label="FGE proposals")
    a2.axhline(100 * float(f["acc_ensemble"]), color="k", ls="--", label="FGE ensemble")
    a2.axhline(100 * float(f["acc_swa"]), color=SWA_C, ls="-.", lw=2, label="SWA")
    a2.set_xlabel("proposal")
    a2.set_ylabel("test accuracy (%)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- plotly -----------------------------------------------------------------------------------------


def plane_plotly(p: dict) -> go.Figure:
    """Interactive contours and a 3-D surface of the plane, with hover values and the projected trajectory."""
    x, y = p["x"], p["y"]
    loss, _ = clip_finite(p["train_loss"])
    err, _ = clip_finite(p["test_error"])
    fig = make_subplots(rows=1, cols=3, specs=[[{}, {}, {"type": "surface"}]],
                        subplot_titles=("log10 train loss", "test error", "log10 train loss (surface)"))
    fig.add_trace(go.Contour(x=x, y=y, z=np.log10(np.maximum(loss.T, 1e-12)), colorscale="Viridis",
                             colorbar={"x": 0.28}, hovertemplate="u %{x:.3g}<br>v %{y:.3g}<br>log10 loss %{z:.3f}"), 1, 1)
    fig.add_trace(go.Contour(x=x, y=y, z=err.T, colorscale="Cividis", colorbar={"x": 0.63},
                             hovertemplate="u %{x:.3g}<br>v %{y:.3g}<br>test error %{z:.4f}"), 1, 2)
    fig.add_trace(go.Surface(x=x, y=y, z=np.log10(np.maximum(loss.T, 1e-12)), colorscale="Viridis", showscale=False), 1, 3)
    pxy, off = p["projection_xy"], p["off_plane"]
    for col in (1, 2):
        fig.add_trace(go.Scatter(x=pxy[:, 0], y=pxy[:, 1], mode="markers+lines",
                                 marker={"size": 5, "color": off, "colorscale": "Magma"}, line={"width": 0.5},
                                 customdata=np.stack([p["projected_indices"], off], 1),
                                 hovertemplate="snapshot %{customdata[0]}<br>%{customdata[1]:.3g} off the plane",
                                 name="projected snapshots", showlegend=col == 1), 1, col)
        fig.add_trace(go.Scatter(x=p["anchor_xy"][:, 0], y=p["anchor_xy"][:, 1], mode="markers",
                                 marker={"symbol": "cross", "size": 12, "color": "black"}, name="anchors",
                                 showlegend=col == 1), 1, col)
    fig.update_layout(height=480, width=1400, title="plane through three points (coordinates: parameter-space L2)")
    return fig


def rays_plotly(r: dict) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "test error"))
    for name, c in (("swa", SWA_C), ("sgd", SGD_C)):
        if name not in r:
            continue
        g = r[name]
        loss, _ = clip_finite(g["train_loss"])
        err, _ = clip_finite(g["test_error"])
        for i in range(loss.shape[0]):
            fig.add_trace(go.Scatter(x=g["t"], y=loss[i], line={"color": c, "width": 1}, name=f"{name} d{i}",
                                     legendgroup=name, showlegend=i == 0), 1, 1)
            fig.add_trace(go.Scatter(x=g["t"], y=err[i], line={"color": c, "width": 1}, name=f"{name} d{i}",
                                     legendgroup=name, showlegend=False), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=420, width=1100, title="random rays from SWA (blue) and SGD (vermillion)")
    return fig


def segment_plotly(s: dict) -> go.Figure:
    loss, _ = clip_finite(s["train_loss"])
    err, _ = clip_finite(s["test_error"])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=s["distance"], y=loss, name="train loss"), secondary_y=False)
    fig.add_trace(go.Scatter(x=s["distance"], y=err, name="test error"), secondary_y=True)
    fig.update_yaxes(type="log", secondary_y=False)
    fig.update_layout(height=420, width=800, title="segment: signed distance from SWA toward SGD")
    return fig


def schedule_plotly(run: RunSummary) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("learning rate", "test error"))
    for br, c in (("sgd", SGD_C), ("swa", SWA_C)):
        m = run.branch == br
        fig.add_trace(go.Scatter(x=run.iteration[m], y=run.lr[m], name=f"lr {br}", line={"color": c}), 1, 1)
        ok = m & np.isfinite(run.test_acc)
        fig.add_trace(go.Scatter(x=run.iteration[ok], y=1 - run.test_acc[ok], name=f"test error {br}",
                                 line={"color": c}), 2, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=500, width=900)
    return fig
