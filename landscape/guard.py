"""The guard against silently wrong numbers: one point through the fast path and through the reference path.

The engine's fast paths rest on assumptions about a network (its BN layers normalise through
``F.batch_norm``; a layer's rows follow its samples in order; a folded conv/linear feeds only its
BN). A network that breaks one would give plausible but wrong numbers. So before its first
evaluation the engine evaluates one point both ways (:func:`landscape.reference.reference_point`
is the slow, obviously-correct path) and compares the recomputed BN statistics layer by layer and
the losses.

A difference is either rounding or a different function. The two paths sum in different orders, so in float32
they differ by rounding that grows with a layer's depth and with how small its statistics are (depthwise
convolutions with squeeze-excitation reach 1e-4). So where the float32 paths differ, the guard evaluates the same
point both ways in float64: rounding shrinks there by nine orders of magnitude, a different function does not.
Only a difference that survives float64 is one: then the guard decides on an exact path for this model (per-point BN
statistics through the modules' own train-mode forwards; no folding) and checks again; where even that differs it
refuses.

The guard only decides: it is handed the two ways to evaluate a point (:class:`GuardCase`) and returns the
:class:`Paths` to use in its :class:`GuardReport`; the engine applies them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import UserError
from .grouped_bn import GroupingError
from .reference import Metrics

__all__ = ["Paths", "GuardCase", "GuardReport", "tolerance", "discrepancy", "run_guard"]


@dataclass(frozen=True)
class Paths:
    """Which paths the engine takes for a model.

    Attributes:
        fold: Fold plain conv/linear -> BN pairs in eval mode (:func:`landscape.grouped_bn.fold_bn`).
        exact_bn: Recompute BN statistics point by point through the modules' own train-mode forwards instead of
            grouped statistics in one forward.
    """

    fold: bool = True
    exact_bn: bool = False

    def __str__(self) -> str:
        return ", ".join(["exact BN statistics"] * self.exact_bn + ["no folding"] * (not self.fold)) or "fast path"


@dataclass(frozen=True)
class GuardCase:
    """What the guard checks, as the engine hands it over.

    Attributes:
        points: How many points the evaluation has (the guard checks one of 0, K/2, K-1).
        reference: ``reference(i, dtype)``: point ``i`` by the reference path, its metrics per split and buffers ``[Q]``.
        fast: ``fast(i, paths, dtype)``: point ``i`` by the engine's plain plan with ``paths``, a result with
            ``loss`` (split to ``[1]``) and ``buffers`` ``[1, Q]``.
        bn_slices: BN layer name to the slices of its statistics in Q, in module order.
        dtype: The evaluation's dtype.
        recompute: Whether BN statistics are recomputed (else only the evaluation pass can differ).
    """

    points: int
    reference: Callable[[int, torch.dtype], tuple[dict[str, Metrics], torch.Tensor]]
    fast: Callable[[int, Paths, torch.dtype], object]
    bn_slices: dict[str, dict[str, slice]]
    dtype: torch.dtype
    recompute: bool


@dataclass
class GuardReport:
    """What the guard found and decided for one engine.

    Attributes:
        tolerance: Largest accepted relative difference (see :func:`tolerance`).
        max_difference: Largest relative difference of the path finally used (BN statistics per layer,
            scaled by the layer's largest value; losses).
        culprit: Where the fast path computed a different function (a BN layer name, or ``"the evaluation pass"``),
            or None.
        paths: The paths the engine is to use for this model.
        seconds: Time the guard took, the fast path's evaluation of the checked point included.
        reference_seconds: Of that, the reference evaluation: what the guard adds to an evaluation whose fast path
            passed (the checked point is kept as the evaluation's own).
        first_difference: The fast path's difference where it failed (NaN when it passed).
        rounding: The float32 difference that vanished in float64 (NaN when there was none to explain).
    """

    tolerance: float
    max_difference: float
    culprit: str | None
    paths: Paths
    seconds: float
    reference_seconds: float = math.nan
    first_difference: float = math.nan
    rounding: float = math.nan

    @property
    def action(self) -> str:
        """The paths in words: ``"fast path"``, ``"exact BN statistics"``, ``"exact BN statistics, no folding"``."""
        return str(self.paths)

    def __str__(self) -> str:
        if self.culprit is None:
            why = (f"; its float32 difference {self.rounding:.1e} vanished in float64 (rounding)"
                   if not math.isnan(self.rounding) else "")
            return (f"guard: one point matched the reference path to {self.max_difference:.1e} (tolerance "
                    f"{self.tolerance:.0e}){why}; the reference took {self.reference_seconds:.2f} s; fast path kept")
        return (f"guard: the fast path differed from the reference path by {self.first_difference:.2e} at "
                f"{self.culprit}; using {self.action} for this model (then matched to {self.max_difference:.1e}; "
                f"{self.seconds:.2f} s)")


def tolerance(dtype: torch.dtype) -> float:
    """Accepted relative difference between the fast and the reference path in ``dtype``.

    Float32 differences above it are checked again in float64, where this is 1e-9.
    """
    return 1e-9 if dtype == torch.float64 else 1e-4


def discrepancy(losses: dict[str, torch.Tensor], buffers: torch.Tensor, ref: dict[str, Metrics],
                ref_buffers: torch.Tensor, bn_slices: dict[str, dict[str, slice]]) -> list[tuple[float, str]]:
    """Relative differences of one point's results from the reference, each with where it arose.

    A BN layer's statistics are compared channel by channel on the scale of the values they summarise: the mean's
    difference relative to the channel's root mean square ``sqrt(var + mean^2)``, the variance's relative to
    ``var + mean^2``. (A mean that is zero in exact arithmetic, as after a bias-free convolution of normalised
    inputs, is rounding noise on both paths; relative to itself it would differ by 100%.)

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
        mean, var = r[sl["running_mean"]], r[sl["running_var"]]
        d = 0.0
        if mean.numel():
            square = (var.clamp(min=0) + mean.square()).clamp(min=1e-24)
            d_mean = ((b[sl["running_mean"]] - mean).abs() / square.sqrt()).max()
            d_var = ((b[sl["running_var"]] - var).abs() / square).max()
            d = float(torch.maximum(d_mean, d_var))
        out.append((d if math.isfinite(d) else math.inf, f"BatchNorm layer {name!r}"))
    d = 0.0
    for split, metrics in ref.items():
        loss = float(losses[split][0])
        diff = abs(loss - metrics.loss) / max(abs(metrics.loss), 1e-12)
        d = max(d, diff if math.isfinite(diff) else math.inf)
    out.append((d, "the evaluation pass"))
    return out


def _compare(case: GuardCase, i: int, paths: Paths, dtype: torch.dtype, ref) -> tuple[list[tuple[float, str]], object]:
    """The differences of point ``i`` by ``paths`` from its reference ``ref``, and the fast result."""
    try:
        res = case.fast(i, paths, dtype)
    except GroupingError as e:
        return [(math.inf, str(e).split(":")[0])], None
    return discrepancy(res.loss, res.buffers, *ref, case.bn_slices), res


def run_guard(case: GuardCase) -> tuple[GuardReport | None, object, int | None]:
    """Check one point of the evaluation and decide the paths for the model.

    The point checked is the first of points 0, K/2 and K-1 whose reference losses are finite (a point where the
    network's output is not finite, e.g. extrapolated BN statistics with a negative variance, tells nothing).

    Returns:
        The report (its ``paths`` are the decision), the checked point's result by those paths in the evaluation's
        dtype, and its index; or ``(None, None, None)`` when no candidate is finite (nothing was checked; the next
        evaluation tries again).

    Raises:
        UserError: Even the exact paths differ from the reference (the network is refused).
    """
    t0 = time.perf_counter()
    tol = tolerance(case.dtype)
    k = case.points
    for i in dict.fromkeys((0, k // 2, k - 1)):
        t_ref = time.perf_counter()
        ref = case.reference(i, case.dtype)
        t_ref = time.perf_counter() - t_ref
        if all(math.isfinite(m.loss) for m in ref[0].values()):
            break
    else:
        return None, None, None
    paths, first, culprit, rounding = Paths(), math.nan, None, math.nan
    for _ in range(3):  # the fast path, then at most two switches
        diffs, res = _compare(case, i, paths, case.dtype, ref)
        worst = max(d for d, _ in diffs)
        if worst > tol and case.dtype != torch.float64 and res is not None:  # rounding, or a different function?
            diffs64, _ = _compare(case, i, paths, torch.float64, case.reference(i, torch.float64))
            if max(d for d, _ in diffs64) <= tolerance(torch.float64):
                rounding, diffs = worst, diffs64
                worst = max(d for d, _ in diffs)
        if worst <= tol or not math.isnan(rounding):
            report = GuardReport(tol, worst, culprit, paths, time.perf_counter() - t0, t_ref, first, rounding)
            if culprit is not None:
                warnings.warn(f"{culprit} differs from the reference path on the fast path by {first:.2g}; "
                              f"using {paths} for this model", stacklevel=4)
            return report, res, i
        where = next(wh for d, wh in diffs if d > tol)  # BN layers in module order, then the evaluation pass
        if culprit is None:
            first, culprit = worst, where
        if not paths.exact_bn and case.recompute and where != "the evaluation pass":
            paths = Paths(fold=paths.fold, exact_bn=True)
        elif paths.fold:
            paths = Paths(fold=False, exact_bn=paths.exact_bn)
        else:
            break
    raise UserError(f"this network cannot be evaluated exactly: even the exact paths differ from the reference "
                    f"path by {worst:.2g} at {where} (turn the guard off with guard=False / --no-guard to "
                    "evaluate it anyway)")
