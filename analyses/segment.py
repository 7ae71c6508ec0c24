"""The line through w_SWA and w_SGD (paper section 3.4, Figure 5).

w(t) = t w_SGD + (1 - t) w_SWA = w_SWA + t (w_SGD - w_SWA); t = 0 is SWA, t = 1 is SGD,
and the signed distance from w_SWA toward w_SGD is t ||w_SGD - w_SWA|| (parameter-space L2).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import segment_points

from .common import VALUES, RunContext, evaluate_missing
from .distributed import ShardedResults
from .metrics import Claim, Finding, Metric
from .registry import Analysis, Section

__all__ = ["SegmentConfig", "centre_of_minima", "flat_region", "segment_statistics", "segment", "describe", "ANALYSIS"]

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (see the analysis function for their meaning)."""


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of the segment analysis.

    Attributes:
        t_min: Smallest t (negative: beyond SWA).
        t_max: Largest t (above 1: beyond SGD).
        steps: Number of points; t = 0 and t = 1 are always included.
    """

    t_min: float = bounded(-2.0, meaning="any t: below 0 lies beyond SWA")
    t_max: float = bounded(3.0, meaning="any t: above 1 lies beyond SGD")
    steps: int = bounded(51, ge=2)

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.t_min < self.t_max:
            raise UserError(f"segment needs t_min < t_max, got {self.t_min} and {self.t_max}")


def _ts(c: SegmentConfig) -> np.ndarray:
    return np.unique(np.concatenate([np.linspace(c.t_min, c.t_max, c.steps), [0.0, 1.0]]))


def centre_of_minima(t: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    """Where ``v [T]`` is least on the increasing grid ``t [T]``.

    The centre (mean t) of its tied minima, and whether a minimum lies at an end of the grid (the true one may
    then lie beyond it).
    """
    tied = np.flatnonzero(v == np.nanmin(v))
    return float(np.mean(t[tied])), bool(tied[0] == 0 or tied[-1] == len(t) - 1)


def segment(run: str | os.PathLike, out: str | os.PathLike | None = None, config: SegmentConfig | None = None,
            engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Evaluate the SGD-SWA line; writes ``/segment`` into the results file.

    BN modes: ``recompute`` at every t; ``stored``: w_SWA's statistics at every t; ``interpolate``:
    ``t b_SGD + (1 - t) b_SWA``, the statistics following the weights.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _run(ctx: RunContext, results: ShardedResults, config: SegmentConfig, progress: bool) -> dict:
    t = _ts(config)
    points, length = segment_points(ctx.traj.solution("swa"), ctx.traj.solution("sgd"), torch.as_tensor(t))
    if length == 0:
        raise UserError("w_SGD and w_SWA coincide; the segment is a point")
    cfg = {**asdict(config), "engine": ctx.engine_dict()}
    arrays = {k: ((len(t),), "f8", np.nan) for k in VALUES}
    done = results.prepare("segment", cfg, arrays, {"t": t, "distance": t * length}, axes=("t",))
    evaluate_missing(ctx, results, "segment", points, done, progress, "segment")
    with results.read() as f:
        g = f["segment"]
        loss, loss_l2, err = g["train_loss"][:], g["train_loss_l2"][:], g["test_error"][:]
    minima = {k: centre_of_minima(t, v) for k, v in (("train_loss", loss), ("train_loss_l2", loss_l2),
                                                       ("test_error", err))}
    summary = {"t": t, "distance": t * length, "length": length, "train_loss": loss, "train_loss_l2": loss_l2,
               "test_error": err, **{f"t_min_{k}": m[0] for k, m in minima.items()},
               **{f"t_min_{k}_at_edge": m[1] for k, m in minima.items()}}
    results.write("segment", {**{k: v for k, v in summary.items() if k.startswith("t_min_")},
                              **{f"distance_min_{k}": m[0] * length for k, m in minima.items()}, "length": length},
                  {"minimum": "centre of the tied minima on the grid; at_edge: a minimum at an end of the range"})
    return summary


def _at(t_min: float, edge: bool) -> str:
    return f"t = {t_min:.3g}" + (" (at the end of the range: widen --t-min/--t-max)" if edge else "")


def describe(s: dict) -> str:
    """The segment's summary in the lines the command prints."""
    i0, i1 = int(np.argmin(np.abs(s["t"]))), int(np.argmin(np.abs(s["t"] - 1)))
    where = "; ".join(f"{what} minimal at {_at(s[f't_min_{k}'], s[f't_min_{k}_at_edge'])}"
                      for k, what in (("train_loss_l2", "L2-regularised train loss"), ("test_error", "test error")))
    return (f"segment: ||w_SGD - w_SWA|| = {s['length']:.4g}; SWA (t=0) train loss {s['train_loss'][i0]:.4f} "
            f"test error {s['test_error'][i0]:.4f}; SGD (t=1) train loss {s['train_loss'][i1]:.4f} test error "
            f"{s['test_error'][i1]:.4f}\n  {where}")


_H = 0.5
"""How far beyond each end of the segment (in units of ||w_SGD - w_SWA||) the rises are measured."""

FLAT = 0.1
"""The flat region's threshold, as a fraction of the loss's rise from its least value to the lower of its values at
the range's two ends (:func:`flat_region`)."""


def _edge(t: np.ndarray, loss: np.ndarray, thr: float, i: int, step: int) -> tuple[float, bool]:
    """From the index ``i`` inside the region, walk by ``step`` to the first grid point above ``thr``."""
    j = i
    while 0 <= j + step < len(t) and loss[j + step] <= thr:
        j += step
    if not 0 <= j + step < len(t):
        return float(t[j]), True
    k = j + step  # loss[k] > thr >= loss[j]: the crossing, linearly interpolated
    return float(t[j] + (thr - loss[j]) / (loss[k] - loss[j]) * (t[k] - t[j])), False


def flat_region(t: np.ndarray, loss: np.ndarray, fraction: float = FLAT) -> tuple[float, float, bool, bool]:
    """The flat region of ``loss [T]`` along the increasing grid ``t [T]``, as a sublevel set.

    ``{t : L(t) <= min L + eps}``, its connected part around the least value (the first, for ties), with
    ``eps = fraction * (min(L(t_first), L(t_last)) - min L)``: the region ends where the loss has risen a tenth (by
    default) of the way to the lower of the two ends of the range (the other end where the least value lies at one
    end). The lower end, not the higher, so that a loss exploding at one end does not widen the region.
    Scale-free (a constant added to L, or L scaled, leaves it unchanged), and mirrored with the grid when the
    pair's roles are swapped.

    Returns:
        ``(low, high, low_censored, high_censored)``: the region's ends in t, linearly interpolated between grid
        points, and whether each reaches the end of the range (then the true edge lies beyond it).
    """
    loss = np.where(np.isfinite(loss), loss, np.inf)
    i = int(np.argmin(loss))
    rises = [r for r in (loss[0] - loss[i], loss[-1] - loss[i]) if r > 0]  # an end where L is least does not count
    thr = loss[i] + fraction * (min(rises) if rises else 0.0)
    (low, lc), (high, hc) = _edge(t, loss, thr, i, -1), _edge(t, loss, thr, i, 1)
    return low, high, lc, hc


def _contrast(a: float, b: float) -> float:
    """``(a - b) / (|a| + |b|)`` in [-1, 1]: the sign of ``a - b``, bounded, whatever the scale (NaN for 0, 0)."""
    den = abs(a) + abs(b)
    return (a - b) / den if den > 0 else math.nan


def segment_statistics(t: np.ndarray, loss_l2: np.ndarray, err: np.ndarray, fraction: float = FLAT
                       ) -> dict[str, float]:
    """The claims' statistics of one segment, each antisymmetric under swapping SWA and SGD (``t -> 1 - t``).

    Args:
        t: The grid ``[T]``, increasing, with 0 (SWA) and 1 (SGD).
        loss_l2: L2-regularised train loss along it ``[T]``.
        err: Test error along it ``[T]``.
        fraction: The flat region's threshold (:func:`flat_region`).

    Returns:
        ``flat_low``, ``flat_high`` and ``flat_censored`` (1 where the region reaches an end of the range);
        ``centre``: ``(d_SWA - d_SGD) / (|d_SWA| + |d_SGD|)``, ``d`` each point's depth in the region (its distance
        to the nearer edge, ``min(t - low, high - t)``; negative outside, the distance to the region), positive when
        SWA lies deeper in the region than SGD;
        ``boundary``: ``(r_SGD - r_SWA) / (|r_SGD| + |r_SWA|)``, the rises half a segment beyond each point
        (``r_SGD = L(1.5) - L(1)``, ``r_SWA = L(-0.5) - L(0)``), positive when the loss rises more steeply beyond
        SGD (NaN where the grid does not reach them); ``shift``: ``t*_L - t*_err``, where the train loss and the test
        error are least (centres of tied minima), positive when the test error's minimiser lies on SWA's side.
    """
    low, high, lc, hc = flat_region(t, loss_l2, fraction)
    at = lambda x: float(np.interp(x, t, loss_l2))  # noqa: E731
    v = {"flat_low": low, "flat_high": high, "flat_censored": float(lc or hc),
         "centre": _contrast(min(0.0 - low, high - 0.0), min(1.0 - low, high - 1.0)), "boundary": math.nan,
         "shift": centre_of_minima(t, loss_l2)[0] - centre_of_minima(t, err)[0]}
    if t[0] <= -_H and t[-1] >= 1 + _H:
        v["boundary"] = _contrast(at(1 + _H) - at(1.0), at(-_H) - at(0.0))
    return v


def _values(f) -> dict[str, float]:
    """The segment's measurements for ``compare`` (:func:`segment_statistics`, where minima lie)."""
    if "segment/t_min_train_loss_l2" not in f:
        return {}  # results written before these quantities: rerun the segment
    s = f["segment"]
    v = {f"seg_t_min_{k}": float(s[f"t_min_{k}"][()]) for k in ("test_error", "train_loss_l2")}
    v.update({f"seg_t_min_{k}_at_edge": float(s[f"t_min_{k}_at_edge"][()]) for k in ("test_error", "train_loss_l2")})
    stats = segment_statistics(s["t"][:], s["train_loss_l2"][:], s["test_error"][:])
    v.update({f"seg_{k}": x for k, x in stats.items()})
    return v


def _metric(key: str, label: str) -> Metric:
    return Metric(key, label, lambda f: _values(f).get(key, math.nan))


T_MIN_ERROR = _metric("seg_t_min_test_error", "segment: t of minimal test error")
T_MIN_ERROR_AT_EDGE = _metric("seg_t_min_test_error_at_edge", "segment: test-error minimum at the range's end (1 = yes)")
T_MIN_LOSS = _metric("seg_t_min_train_loss_l2", "segment: t of minimal L2-reg. train loss")
T_MIN_LOSS_AT_EDGE = _metric("seg_t_min_train_loss_l2_at_edge",
                             "segment: L2-reg. train-loss minimum at the range's end (1 = yes)")
FLAT_LOW = _metric("seg_flat_low", "segment: flat region of the L2-reg. train loss, lower end (t)")
FLAT_HIGH = _metric("seg_flat_high", "segment: flat region, upper end (t)")
FLAT_CENSORED = _metric("seg_flat_censored", "segment: flat region reaches the range's end (1 = yes, censored)")
CENTRE = _metric("seg_centre", "segment: (d_SWA - d_SGD) / (|d_SWA| + |d_SGD|), depths in the flat region")
BOUNDARY = _metric("seg_boundary", "segment: (r_SGD - r_SWA) / (|r_SGD| + |r_SWA|), rises half a segment beyond each")
SHIFT = _metric("seg_shift", "segment: t of minimal L2-reg. train loss minus t of minimal test error")
METRICS = (T_MIN_ERROR, T_MIN_ERROR_AT_EDGE, T_MIN_LOSS, T_MIN_LOSS_AT_EDGE, FLAT_LOW, FLAT_HIGH, FLAT_CENSORED,
           CENTRE, BOUNDARY, SHIFT)
"""The segment's quantities, in compare's table order."""

_SWAP = ("antisymmetric under swapping the pair's roles (t -> 1 - t), and in units of the pair's own distance, so 0 in "
         "expectation for two exchangeable SGD solutions whatever their distance")
FINDING = Finding("segment", "SGD lies at the edge, SWA in the centre", "segment", (
    Claim("centre", "SWA lies deeper in the flat region of the L2-regularised train loss than SGD: "
                    "(d_SWA - d_SGD) / (|d_SWA| + |d_SGD|), d a point's depth in the region (distance to the nearer "
                    "edge, negative outside)",
          (CENTRE,), lambda c: c, test="signed-rank", null=_SWAP),
    Claim("boundary", "the L2-regularised train loss rises more steeply beyond SGD than beyond SWA: "
                      "(r_SGD - r_SWA) / (|r_SGD| + |r_SWA|), r the rise half a segment beyond each point",
          (BOUNDARY,), lambda b: b, test="signed-rank", null=_SWAP),
    Claim("shift", "the test-error minimiser lies on SWA's side of the train-loss minimiser: t*_L - t*_err, "
                   "segment lengths", (SHIFT,), lambda s: s, test="signed-rank", null=_SWAP)))
"""The paper's section 3.4 finding (Figure 5) judged along the segment: "w_SGD lies near the boundary of a wide flat
region of the train loss ... the loss is very steep near w_SGD"; SWA "a point centered in this region"; "the train
loss and test error plots are indeed substantially shifted"."""


def _report(res: dict) -> list[Section]:
    from figures import plots  # here: matplotlib and plotly load only when a report is drawn

    if "segment" not in res:
        return []
    return [Section("segment", "Line through SWA and SGD (paper Figure 5)",
                    "The paper finds the test error lowest near SWA and the train loss rising steeply just beyond "
                    "SGD, which sits at the edge of the flat region. Compare the slopes beyond each dashed line.", 5,
                    lambda: (plots.segment_figure(res["segment"]), plots.segment_plotly(res["segment"])))]


ANALYSIS = Analysis(
    name="segment", help="the line through SWA and SGD and beyond (paper Figure 5)", config=SegmentConfig,
    compute=_run, describe=describe, order=20, judged=True, paper=(("segment", SegmentConfig()),),
    unsupported_bn_modes=UNSUPPORTED_BN_MODES, metrics=METRICS, findings=(FINDING,), report=_report)
"""The segment as the toolkit sees it."""
