"""The line through w_SWA and w_SGD (paper section 3.4, Figure 5).

w(t) = t w_SGD + (1 - t) w_SWA = w_SWA + t (w_SGD - w_SWA); t = 0 is SWA, t = 1 is SGD,
and the signed distance from w_SWA toward w_SGD is t ||w_SGD - w_SWA|| (parameter-space L2).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.engine import EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import PointSet, affine_buffers

from .common import VALUES, RunContext, evaluate_missing
from .distributed import ShardedResults
from .registry import Analysis, Section, register

__all__ = ["SegmentConfig", "segment_points", "segment", "describe", "ANALYSIS"]

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

    t_min: float = bounded(-1.0, meaning="any t: below 0 lies beyond SWA")
    t_max: float = bounded(2.0, meaning="any t: above 1 lies beyond SGD")
    steps: int = bounded(41, ge=2)

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.t_min < self.t_max:
            raise UserError(f"segment needs t_min < t_max, got {self.t_min} and {self.t_max}")


def _ts(c: SegmentConfig) -> np.ndarray:
    return np.unique(np.concatenate([np.linspace(c.t_min, c.t_max, c.steps), [0.0, 1.0]]))


def segment_points(traj, t: np.ndarray) -> tuple[PointSet, float]:
    """The points ``w_SWA + t (w_SGD - w_SWA)`` for ``t [T]``, with buffers ``t b_SGD + (1 - t) b_SWA`` along for the
    BN modes, and ``||w_SGD - w_SWA||``."""
    (w_swa, b_swa), (w_sgd, b_sgd) = traj.solution("swa"), traj.solution("sgd")
    direction = (w_sgd.double() - w_swa.double())[None]
    b0, bb = affine_buffers(torch.tensor([[0.0], [1.0]]), torch.stack([b_swa, b_sgd]))  # t = 0: SWA, t = 1: SGD
    points = PointSet.affine(w_swa.double(), direction, torch.as_tensor(t, dtype=torch.float64)[:, None], b0, bb)
    return points, float(direction.norm())


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
    points, length = segment_points(ctx.traj, t)
    if length == 0:
        raise UserError("w_SGD and w_SWA coincide; the segment is a point")
    cfg = {**asdict(config), "engine": ctx.engine_dict()}
    arrays = {k: ((len(t),), "f8", np.nan) for k in VALUES}
    done = results.prepare("segment", cfg, arrays, {"t": t, "distance": t * length})
    evaluate_missing(ctx, results, "segment", points, done, progress, "segment")
    with results.read() as f:
        g = f["segment"]
        loss, err = g["train_loss"][:], g["test_error"][:]
    i_loss, i_err = int(np.nanargmin(loss)), int(np.nanargmin(err))
    summary = {"t": t, "distance": t * length, "length": length, "train_loss": loss, "test_error": err,
               "t_min_train_loss": float(t[i_loss]), "t_min_test_error": float(t[i_err])}
    results.write("segment", {"t_min_train_loss": t[i_loss], "t_min_test_error": t[i_err],
                              "distance_min_train_loss": t[i_loss] * length,
                              "distance_min_test_error": t[i_err] * length, "length": length})
    return summary


def describe(s: dict) -> str:
    i0, i1 = int(np.argmin(np.abs(s["t"]))), int(np.argmin(np.abs(s["t"] - 1)))
    return (f"segment: ||w_SGD - w_SWA|| = {s['length']:.4g}; SWA (t=0) train loss {s['train_loss'][i0]:.4f} "
            f"test error {s['test_error'][i0]:.4f}; SGD (t=1) train loss {s['train_loss'][i1]:.4f} test error "
            f"{s['test_error'][i1]:.4f}\n  train loss minimal at t = {s['t_min_train_loss']:.3g} "
            f"(distance {s['t_min_train_loss'] * s['length']:.4g}); test error minimal at t = "
            f"{s['t_min_test_error']:.3g} (distance {s['t_min_test_error'] * s['length']:.4g})")


def _metrics(f) -> dict[str, float]:
    """Where train loss and test error are minimal, and the slopes of the L2-regularised train loss (the paper's
    Figure 5 quantity) just beyond each endpoint: ``(L(1.5) - L(1)) / 0.5`` beyond SGD, ``(L(-0.5) - L(0)) / 0.5``
    beyond SWA (linear interpolation on the stored grid; only where the segment reaches that far)."""
    if "segment/t_min_test_error" not in f:
        return {}
    s = f["segment"]
    ts, loss = s["t"][:], s["train_loss_l2" if "train_loss_l2" in s else "train_loss"][:]
    v = {"seg_t_min_test_error": float(s["t_min_test_error"][()]),
         "seg_t_min_train_loss": float(s["t_min_train_loss"][()])}
    if ts[0] <= -0.5 and ts[-1] >= 1.5:
        v["seg_slope_beyond_sgd"] = float(np.interp(1.5, ts, loss) - np.interp(1.0, ts, loss)) / 0.5
        v["seg_slope_beyond_swa"] = float(np.interp(-0.5, ts, loss) - np.interp(0.0, ts, loss)) / 0.5
    return v


def _report(res: dict) -> list[Section]:
    from figures import plots

    if "segment" not in res:
        return []
    return [Section("segment", "Line through SWA and SGD (paper Figure 5)",
                    "The paper finds the test error lowest near SWA and the train loss rising steeply just beyond "
                    "SGD, which sits at the edge of the flat region. Compare the slopes beyond each dashed line.", 5,
                    lambda: (plots.segment_figure(res["segment"]), plots.segment_plotly(res["segment"])))]


ANALYSIS = register(Analysis(
    "segment", "the line through SWA and SGD and beyond (paper Figure 5)", SegmentConfig, _run, describe,
    UNSUPPORTED_BN_MODES, metrics=_metrics, report=_report,
    labels={"seg_t_min_test_error": "segment: t of minimal test error",
            "seg_t_min_train_loss": "segment: t of minimal train loss",
            "seg_slope_beyond_sgd": "segment: L2-reg. train-loss slope beyond SGD (t 1 -> 1.5)",
            "seg_slope_beyond_swa": "segment: L2-reg. train-loss slope beyond SWA (t 0 -> -0.5)"}))
"""The segment in the registry."""
