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

__all__ = ["SegmentConfig", "centre_of_minima", "segment", "describe", "ANALYSIS"]

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
"""How far beyond each end of the segment (in units of ||w_SGD - w_SWA||) slopes and rises are measured."""


def _values(f) -> dict[str, float]:
    """The segment's measurements for ``compare``.

    On the L2-regularised train loss L (the paper's Figure 5 quantity), linearly interpolated on the stored grid:

    * the slopes just beyond each end: ``(L(1.5) - L(1)) / 0.5`` beyond SGD, ``(L(-0.5) - L(0)) / 0.5`` beyond SWA;
    * the rise on both sides of SWA: ``min(L(-0.5), L(0.5)) - L(0)`` (positive: SWA lies in a basin of the segment);
    * the train/test shift: test error (points) at the L minimiser minus the segment's least test error;
    * where L and test error are least (centre of tied minima) and whether at an end of the range.
    """
    if "segment/t_min_train_loss_l2" not in f:
        return {}  # results written before these quantities: rerun the segment
    s = f["segment"]
    ts, loss, err = s["t"][:], s["train_loss_l2"][:], s["test_error"][:]
    v = {f"seg_t_min_{k}": float(s[f"t_min_{k}"][()]) for k in ("test_error", "train_loss_l2")}
    v.update({f"seg_t_min_{k}_at_edge": float(s[f"t_min_{k}_at_edge"][()]) for k in ("test_error", "train_loss_l2")})
    v["seg_test_error_at_train_min"] = 100 * float(np.interp(v["seg_t_min_train_loss_l2"], ts, err) - np.nanmin(err))
    if ts[0] <= -_H and ts[-1] >= 1 + _H:
        at = lambda x: float(np.interp(x, ts, loss))  # noqa: E731
        v["seg_slope_beyond_sgd"] = (at(1 + _H) - at(1.0)) / _H
        v["seg_slope_beyond_swa"] = (at(-_H) - at(0.0)) / _H
        v["seg_rise_swa"] = min(at(-_H), at(_H)) - at(0.0)
    return v


def _metric(key: str, label: str) -> Metric:
    return Metric(key, label, lambda f: _values(f).get(key, math.nan))


T_MIN_ERROR = _metric("seg_t_min_test_error", "segment: t of minimal test error")
T_MIN_ERROR_AT_EDGE = _metric("seg_t_min_test_error_at_edge", "segment: test-error minimum at the range's end (1 = yes)")
T_MIN_LOSS = _metric("seg_t_min_train_loss_l2", "segment: t of minimal L2-reg. train loss")
T_MIN_LOSS_AT_EDGE = _metric("seg_t_min_train_loss_l2_at_edge",
                             "segment: L2-reg. train-loss minimum at the range's end (1 = yes)")
SLOPE_BEYOND_SGD = _metric("seg_slope_beyond_sgd", "segment: L2-reg. train-loss slope beyond SGD (t 1 -> 1.5)")
SLOPE_BEYOND_SWA = _metric("seg_slope_beyond_swa", "segment: L2-reg. train-loss slope beyond SWA (t 0 -> -0.5)")
RISE_SWA = _metric("seg_rise_swa", "segment: L2-reg. train-loss rise on both sides of SWA, min(L(-0.5), L(0.5)) - L(0)")
SHIFT = _metric("seg_test_error_at_train_min", "segment: test error at the train-loss minimum above the least (points)")
METRICS = (T_MIN_ERROR, T_MIN_ERROR_AT_EDGE, T_MIN_LOSS, T_MIN_LOSS_AT_EDGE, SLOPE_BEYOND_SGD, SLOPE_BEYOND_SWA,
           RISE_SWA, SHIFT)
"""The segment's quantities, in compare's table order."""

FINDING = Finding("segment", "SGD lies at the edge, SWA in the centre", "segment", (
    Claim("boundary", "L2-regularised train-loss slope beyond SGD (t 1 -> 1.5) minus beyond SWA (t 0 -> -0.5)",
          (SLOPE_BEYOND_SGD, SLOPE_BEYOND_SWA), lambda sgd, swa: sgd - swa),
    Claim("centre", "L2-regularised train loss rises on both sides of SWA: min(L(-0.5), L(0.5)) - L(0)",
          (RISE_SWA,), lambda rise: rise),
    Claim("shift", "test error at the train-loss minimiser minus the segment's least test error, points",
          (SHIFT,), lambda shift: shift)))
"""The paper's section 3.4 finding (Figure 5) judged along the segment."""


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
