"""The paper's line figures: schedule (Figure 2), rays (Figure 4), segment (Figure 5), FGE (section 3.5).

Each ``*_figure`` function takes a results group (nested dicts of arrays) or a :class:`figures.data.RunSummary`
and returns a matplotlib figure;
each ``*_plotly`` the interactive version. Non-finite values (divergent points) are clipped to the
largest finite value and marked, never passed to a plot. Colour maps are viridis/cividis: monotone
in lightness, so they read in greyscale and for colour-blind readers. Planes are in
:mod:`figures.planes`, the Hessian spectrum in :mod:`figures.spectrum`.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .data import RunSummary, names_of

__all__ = ["SWA_C", "SGD_C", "point_colour", "point_label", "clip_finite", "compact", "compact_ticks", "log_levels", "train_loss_key", "schedule_figure",
           "rays_figure", "segment_figure", "fge_figure", "rays_plotly", "segment_plotly", "schedule_plotly",
           "fge_plotly"]

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


def point_colour(name: str) -> str:
    """The colour of a named point in every figure: SWA blue, SGD vermillion, any other point grey."""
    return SWA_C if name == "swa" else SGD_C if name == "sgd" else "#777777"


def point_label(name: str) -> str:
    """A named point as the figures write it: ``SWA``, ``SGD``, any other name as it is."""
    return name.upper() if name in ("sgd", "swa") else name


def compact(v: float) -> str:
    """A short tick or label number: three significant digits, no trailing zeros (``0.00555``, ``1.2e+03``)."""
    return f"{v:.3g}"


def compact_ticks(ax) -> None:
    """Plain short labels on a log-scaled y axis (not ``8.6 x 10^1``).

    Minor ticks labelled only where the axis spans little more than a decade, so labels never crowd
    (matplotlib's ``LogFormatter`` rules).
    """
    ax.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.5)))


def log_levels(z: np.ndarray, n: int = 12) -> np.ndarray:
    """``n`` contour levels spaced evenly in log between the least and the largest value of ``z`` (at least 1e-6)."""
    lo, hi = max(float(np.min(z)), 1e-6), max(float(np.max(z)), 1e-6)
    if hi <= lo * 1.0001:
        hi = lo * 1.01
    return np.geomspace(lo, hi, n)


def train_loss_key(g: dict) -> tuple[str, str]:
    """The train loss a figure draws: the L2-regularised one where stored (the paper's), else the objective's own."""
    if "train_loss_l2" in g:
        return "train_loss_l2", "train loss + L2 (the paper's)"
    return "train_loss", f"train loss ({names_of(g).loss})"


def _has_positive(ax) -> bool:
    """Whether any line drawn on ``ax`` has a finite positive value (so a log scale can show it)."""
    return any(np.any(np.isfinite(y := np.asarray(line.get_ydata(), dtype=float)) & (y > 0)) for line in ax.lines)


def schedule_figure(run: RunSummary) -> plt.Figure:
    """Learning rate at every step from the run's config, captured models marked; test error on a log axis (Figure 2)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.5), sharex=True, layout="constrained")
    n, err = run.names, run.test_error * run.names.scale
    for br, c, lab in (("sgd", SGD_C, "conventional SGD"), ("swa", SWA_C, "SWA branch")):
        it, lr = run.lr_trace.get(br, ([], []))
        a1.plot(it, lr, "-", color=c, lw=1, label=lab)
        m = (run.branch == br) & np.isfinite(err)
        a2.plot(run.iteration[m], err[m], ".-", color=c, ms=3, lw=1, label=lab)
    cap = run.captured & (run.branch == "swa")
    a1.plot(run.iteration[cap], run.lr[cap], "o", mfc="none", mec="k", ms=5, label="captured (averaged)")
    ok = cap & np.isfinite(err)
    a2.plot(run.iteration[ok], err[ok], "o", mfc="none", mec="k", ms=5, label="captured")
    for name, c, ls in (("swa", SWA_C, "--"), ("sgd", SGD_C, ":")):
        if name in run.solutions:
            v = n.scale * run.solutions[name]["test_error"]
            a2.axhline(v, color=c, ls=ls, lw=1.2,
                       label=f"{name.upper()} solution " + (f"{v:.2f}%" if n.percent else compact(v)))
    a1.set_ylabel("learning rate")
    for ax, what in ((a1, "learning rate"), (a2, f"test {n.error}")):
        if _has_positive(ax):  # the end of training (a few %) is visible next to the first epochs (tens of %)
            ax.set_yscale("log")
        else:  # a recorded or imported run that did not record it
            ax.text(0.5, 0.5, f"{what} not recorded", transform=ax.transAxes, ha="center", va="center")
            ax.set_yticks([])
    if a2.get_yscale() == "log":
        compact_ticks(a2)
    a2.set_ylabel(n.error_label(extra="log"))
    a2.set_xlabel("iteration")
    a1.legend(fontsize=8, loc="lower left")
    a2.legend(fontsize=8, loc="upper right", ncol=2)
    return fig


def rays_figure(r: dict, title: str = "random rays w + t d (width: first distance where the margin is exceeded)"
                ) -> plt.Figure:
    """Train loss and test error along rays from SWA and SGD on shared axes, widths annotated (Figure 4)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for name, c in (("swa", SWA_C), ("sgd", SGD_C)):
        if name not in r:
            continue
        g = r[name]
        t = g["t"]
        loss_key, loss_label = train_loss_key(g)
        loss, lbad = clip_finite(g[loss_key])
        err, _ = clip_finite(g["test_error"])
        for i in range(loss.shape[0]):
            a1.plot(t, loss[i], color=c, lw=1, alpha=0.6, label=name.upper() if i == 0 else None)
            a2.plot(t, names_of(g).scale * err[i], color=c, lw=1, alpha=0.6, label=name.upper() if i == 0 else None)
        if lbad.any():
            a1.plot(np.broadcast_to(t, loss.shape)[lbad], loss[lbad], "x", color="red")
        for ax, key in ((a2, "width_error"), (a1, "width_loss_l2" if loss_key == "train_loss_l2" else "width_loss")):
            if key not in g:
                continue
            w = g[key][np.isfinite(g[key])]
            if w.size:
                ax.axvline(w.mean(), color=c, ls="--", lw=1.5, label=f"{name.upper()} width {compact(w.mean())} ± "
                                                                    f"{compact(w.std())}")
    a1.set_yscale("log")
    compact_ticks(a1)
    for ax in (a1, a2):
        ax.set_xlabel("distance t")
        ax.legend(fontsize=8, loc="upper left")
    a1.set_ylabel(loss_label)
    a2.set_ylabel(names_of(r).error_label())
    fig.suptitle(title)
    return fig


def segment_figure(s: dict) -> plt.Figure:
    """Train loss and test error along w(t) = t w_SGD + (1-t) w_SWA against signed distance (Figure 5)."""
    d = s["distance"]
    key, label = train_loss_key(s)
    loss, _ = clip_finite(s[key])
    err, _ = clip_finite(s["test_error"])
    fig, a1 = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    a1.plot(d, loss, "o-", color="#009E73", ms=3, label=label)
    n = names_of(s)
    if key != "train_loss":
        a1.plot(d, clip_finite(s["train_loss"])[0], "-", color="#009E73", lw=0.8, alpha=0.5,
                label=f"train loss ({n.loss} only)")
    a1.set_yscale("log")
    compact_ticks(a1)
    a1.set_ylabel("train loss", color="#009E73")
    a2 = a1.twinx()
    a2.plot(d, n.scale * err, "s-", color="#CC79A7", ms=3, label=f"test {n.error}")
    a2.set_ylabel(n.error_label(), color="#CC79A7")
    length = float(s["length"]) if "length" in s else float(np.max(np.abs(d)))
    for x, name, c in ((0.0, "SWA", SWA_C), (length, "SGD", SGD_C)):
        a1.axvline(x, color=c, ls="--", lw=1.2)
        a1.annotate(name, (x, 1.01), xycoords=("data", "axes fraction"), ha="center", va="bottom", color=c)
    h1, l1 = a1.get_legend_handles_labels()
    h2, l2 = a2.get_legend_handles_labels()
    a1.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
    a1.set_xlabel("signed distance from w_SWA toward w_SGD (parameter-space L2)")
    return fig


_FGE = ["prob_diff_consecutive", "prob_diff_swa_ensemble", "agree_consecutive", "agree_swa_ensemble"]
_FGE_LABELS = ["‖p_i − p_i+1‖\n(consecutive)", "‖p_SWA − p_FGE‖", "label agreement\nconsecutive",
               "label agreement\nSWA vs FGE"]


def fge_figure(f: dict) -> plt.Figure:
    """The four SWA-vs-FGE quantities with the paper's CIFAR-100 values, and accuracies."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    vals = [float(np.mean(f[n])) for n in _FGE]
    a1.bar(range(4), vals, color=[SGD_C, SWA_C, SGD_C, SWA_C], hatch=["", "//", "", "//"], edgecolor="k",
           label="this run")
    paper = [f["_attrs"].get(f"paper_{n}", np.nan) for n in _FGE]  # the analysis stores the paper's values
    a1.plot(range(4), paper, "k_", ms=30, mew=3, label="paper (PreResNet-110, CIFAR-100)")
    a1.set_xticks(range(4), _FGE_LABELS, fontsize=8)
    a1.set_ylim(0, 1.35)  # room above the bars for the legend
    a1.legend(fontsize=8, loc="upper center", ncol=2, markerscale=0.4)
    a1.set_title("this run vs paper")
    acc = f["acc_proposals"]
    a2.plot(range(1, len(acc) + 1), 100 * acc, "o-", color=SGD_C, label="FGE proposals")
    a2.axhline(100 * float(f["acc_ensemble"]), color="k", ls="--", label="FGE ensemble")
    a2.axhline(100 * float(f["acc_swa"]), color=SWA_C, ls="-.", lw=2, label="SWA")
    a2.set_xlabel("proposal")
    a2.set_ylabel("test accuracy (%)")
    a2.legend(fontsize=8)
    return fig


# --- plotly -----------------------------------------------------------------------------------------


def rays_plotly(r: dict, title: str = "random rays from SWA (blue) and SGD (vermillion)") -> go.Figure:
    """The rays figure (:func:`rays_figure`) as an interactive plotly figure."""
    n = names_of(r)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"train loss ({n.loss})", f"test {n.error}"))
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
    fig.update_layout(height=420, width=1100, title=title)
    return fig


def segment_plotly(s: dict) -> go.Figure:
    """The segment figure (:func:`segment_figure`) as an interactive plotly figure."""
    key, label = train_loss_key(s)
    err, _ = clip_finite(s["test_error"])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=s["distance"], y=clip_finite(s[key])[0], name=label), secondary_y=False)
    if key != "train_loss":
        fig.add_trace(go.Scatter(x=s["distance"], y=clip_finite(s["train_loss"])[0],
                                 name=f"train loss ({names_of(s).loss} only)", visible="legendonly"), secondary_y=False)
    fig.add_trace(go.Scatter(x=s["distance"], y=err, name=f"test {names_of(s).error}"), secondary_y=True)
    fig.update_yaxes(type="log", secondary_y=False)
    fig.update_layout(height=420, width=800, title="segment: signed distance from SWA (0) toward SGD")
    return fig


def schedule_plotly(run: RunSummary) -> go.Figure:
    """The schedule figure (:func:`schedule_figure`) as an interactive plotly figure."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("learning rate", f"test {run.names.error}"))
    for br, c in (("sgd", SGD_C), ("swa", SWA_C)):
        it, lr = run.lr_trace.get(br, ([], []))
        fig.add_trace(go.Scatter(x=it, y=lr, name=f"lr {br}", line={"color": c}), 1, 1)
        ok = (run.branch == br) & np.isfinite(run.test_error)
        fig.add_trace(go.Scatter(x=run.iteration[ok], y=run.test_error[ok], name=f"test {run.names.error} {br}",
                                 line={"color": c}), 2, 1)
    cap = run.captured & (run.branch == "swa")
    fig.add_trace(go.Scatter(x=run.iteration[cap], y=run.lr[cap], mode="markers", name="captured",
                             marker={"symbol": "circle-open", "color": "black"}), 1, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_layout(height=520, width=900)
    return fig


def fge_plotly(f: dict) -> go.Figure:
    """The FGE figure (:func:`fge_figure`) as an interactive plotly figure."""
    fig = go.Figure(go.Bar(x=[lab.replace("\n", " ") for lab in _FGE_LABELS], y=[float(np.mean(f[n])) for n in _FGE],
                           name="this run", marker_color=[SGD_C, SWA_C, SGD_C, SWA_C]))
    fig.add_trace(go.Scatter(x=[lab.replace("\n", " ") for lab in _FGE_LABELS],
                             y=[f["_attrs"].get(f"paper_{n}", None) for n in _FGE], mode="markers",
                             marker={"symbol": "line-ew-open", "size": 40, "color": "black"}, name="paper"))
    fig.update_layout(height=420, width=800, title="FGE ensemble versus SWA")
    return fig
