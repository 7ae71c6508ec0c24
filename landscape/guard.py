"""The guard against silently wrong numbers: one point through the fast path and through the reference path.

The engine's fast paths rest on assumptions about a network (its BN layers normalise through
``F.batch_norm``; a layer's rows follow its samples in order; a folded conv/linear feeds only its
BN). A network that breaks one would give plausible but wrong numbers. So before its first
evaluation the engine evaluates one point both ways (:func:`landscape.reference.reference_point`
is the slow, obviously-correct path) and compares the recomputed BN statistics layer by layer and
the losses. Where they differ the engine switches to an exact path for this model (per-point BN
statistics through the modules' own train-mode forwards; no folding) and checks again; where even
that differs it refuses. :class:`GuardReport` says what was compared, found and done, and what it cost.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass

import torch

from .config import BNMode
from .errors import UserError
from .grouped_bn import GroupingError, engine_copy
from .reference import Metrics, reference_point

__all__ = ["GuardReport", "tolerance", "discrepancy", "run_guard"]


@dataclass
class GuardReport:
    """What the guard found for one engine.

    Attributes:
        tolerance: Largest accepted relative difference (see :func:`tolerance`).
        max_difference: Largest relative difference of the path finally used (BN statistics per layer,
            scaled by the layer's largest value; losses).
        culprit: Where the fast path differed (a BN layer name, or ``"the evaluation pass"``), or None.
        action: ``"fast path"``, ``"exact BN statistics"``, ``"exact BN statistics, no folding"``.
        seconds: Time the guard took, the fast path's evaluation of the checked point included.
        reference_seconds: Of that, the reference evaluation: what the guard adds to an evaluation whose fast path
            passed (the checked point is kept as the evaluation's own).
        first_difference: The fast path's difference where it failed (NaN when it passed).
    """

    tolerance: float
    max_difference: float
    culprit: str | None
    action: str
    seconds: float
    reference_seconds: float = math.nan
    first_difference: float = math.nan

    def __str__(self) -> str:
        if self.culprit is None:
            return (f"guard: one point matched the reference path to {self.max_difference:.1e} (tolerance "
                    f"{self.tolerance:.0e}); the reference took {self.reference_seconds:.2f} s; fast path kept")
        return (f"guard: the fast path differed from the reference path by {self.first_difference:.2e} at "
                f"{self.culprit}; using {self.action} for this model (then matched to {self.max_difference:.1e}; "
                f"{self.seconds:.2f} s)")


def tolerance(dtype: torch.dtype) -> float:
    """Accepted relative difference between the fast and the reference path: rounding, not a different function."""
    return 1e-9 if dtype == torch.float64 else 1e-4


def discrepancy(losses: dict[str, torch.Tensor], buffers: torch.Tensor, ref: dict[str, Metrics],
                ref_buffers: torch.Tensor, bn_slices: dict[str, dict[str, slice]]) -> list[tuple[float, str]]:
    """Relative differences of one point's results from the reference, each with where it arose.

    Args:
        losses: Split name to the fast path's loss ``[1]``.
        buffers: The fast path's buffers ``[1, Q]``.
        ref: The reference metrics per split.
        ref_buffers: The reference buffers ``[Q]``.
        bn_slices: BN layer name to the slices of its statistics in Q, in module order.

    Returns:
        ``(difference, where)`` for every BN layer's statistics, then for the evaluation pass (the losses);
        NaN or inf counts as an infinite difference.
    """
    out = []
    b, r = buffers[0].double().cpu(), ref_buffers.double().cpu()
    for name, sl in bn_slices.items():
        d = 0.0
        for key in ("running_mean", "running_var"):
            a, e = b[sl[key]], r[sl[key]]
            scale = float(e.abs().max()) if e.numel() else 0.0
            diff = float((a - e).abs().max()) / max(scale, 1e-12) if e.numel() else 0.0
            d = max(d, diff if math.isfinite(diff) else math.inf)
        out.append((d, f"BatchNorm layer {name!r}"))
    d = 0.0
    for split, metrics in ref.items():
        loss = float(losses[split][0])
        diff = abs(loss - metrics.loss) / max(abs(metrics.loss), 1e-12)
        d = max(d, diff if math.isfinite(diff) else math.inf)
    out.append((d, "the evaluation pass"))
    return out


def _reference(engine, points, i: int, splits: tuple[str, ...], recompute: bool) -> tuple[dict, torch.Tensor]:
    """Point ``i`` of ``points`` by the reference path: its metrics per split and its buffers."""
    w = points.chunk(i, i + 1, engine.device, engine.dtype)[0]
    b = points.buffer_chunk(i, i + 1, engine.device, engine.dtype, interpolate=engine.config.bn_mode is not BNMode.STORED)
    reference = copy.deepcopy(engine._template).to(device=engine.device, dtype=engine.dtype)
    return reference_point(reference, w, {s: engine.splits[s] for s in splits}, engine.bn_data if recompute else None,
                           engine.config.bn_batch_size, engine.config.bn_weighting, buffers=None if b is None else b[0])


def run_guard(engine, points, splits: tuple[str, ...], recompute: bool
              ) -> tuple[GuardReport | None, object, int | None]:
    """One point of ``points`` through the engine's fast path and the reference path; switch the engine to exact
    paths (its ``_exact_bn`` and ``_fold`` switches, its replicas) where they differ.

    The point checked is the first of points 0, K/2 and K-1 whose reference losses are finite (a point where the
    network's output is not finite, e.g. extrapolated BN statistics with a negative variance, tells nothing).

    Returns:
        The report, the checked point's result by the path finally used (the plain plan's), and its index; or
        ``(None, None, None)`` when no candidate is finite (nothing was checked; the next evaluation tries again).

    Raises:
        UserError: Even the exact paths differ from the reference (the network is refused).
    """
    t0 = time.perf_counter()
    tol = tolerance(engine.dtype)
    k = len(points)
    for i in dict.fromkeys((0, k // 2, k - 1)):
        t_ref = time.perf_counter()
        ref, ref_buf = _reference(engine, points, i, splits, recompute)
        t_ref = time.perf_counter() - t_ref
        if all(math.isfinite(m.loss) for m in ref.values()):
            break
    else:
        return None, None, None
    plain = engine.planner.plain(splits, (), recompute)
    first, culprit = math.nan, None
    for _ in range(3):  # the fast path, then at most two switches
        action = ", ".join(["exact BN statistics"] * engine._exact_bn + ["no folding"] * (not engine._fold)) \
            or "fast path"
        try:
            res = engine._evaluate_chunk(engine._replicas[0], points, i, i + 1, plain, splits, ())
            diffs = discrepancy(res.loss, res.buffers, ref, ref_buf, engine._bn_slices)
        except GroupingError as e:
            diffs = [(math.inf, str(e).split(":")[0])]
        worst = max(d for d, _ in diffs)
        if worst <= tol:
            report = GuardReport(tol, worst, culprit, action, time.perf_counter() - t0, t_ref, first)
            if culprit is not None:
                warnings.warn(f"{culprit} differs from the reference path on the fast path by {first:.2g}; "
                              f"using {action} for this model", stacklevel=4)
            return report, res, i
        where = next(wh for d, wh in diffs if d > tol)  # BN layers in module order, then the evaluation pass
        if culprit is None:
            first, culprit = worst, where
        if not engine._exact_bn and recompute and where != "the evaluation pass":
            engine._exact_bn = True
        elif engine._fold:
            engine._fold = False
            engine._replicas = [engine_copy(engine._template, engine.dtype, engine.device, fold=False)]
            engine.model = engine._replicas[0].model
        else:
            break
    raise UserError(f"this network cannot be evaluated exactly: even the exact paths differ from the reference "
                    f"path by {worst:.2g} at {where} (turn the guard off with guard=False / --no-guard to "
                    "evaluate it anyway)")
