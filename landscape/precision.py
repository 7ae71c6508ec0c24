"""Opt-in speed-ups, each checked on the evaluation's own first points: lower precision and compiled passes.

With ``EngineConfig(autocast="bfloat16")`` (or ``"float16"`` on a GPU) the evaluation passes run under
``torch.autocast``: matrix products and convolutions in the lower precision, the predictions read back in float32
for the loss and metrics. The BN statistics pass is not autocast: statistics accumulate in float32. Before the first
evaluation the engine evaluates one point both ways; :class:`PrecisionReport` holds the deviations, and a deviation
above the stated tolerance is said in one notice (the numbers are still those of the lower precision, as asked).

With ``EngineConfig(compile="inductor")`` the per-point loop's evaluation pass goes through ``torch.compile``. It must
compute the same numbers: :func:`check_compiled` compares two points compiled and eagerly (the second shows that the
compiled pass reads each point's weights), and where they differ the engine stays eager (:class:`CompileReport`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import UserError

__all__ = ["PrecisionReport", "CompileReport", "autocast_dtype", "check_precision", "check_compiled"]


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a setting (None for ``off``).

    Raises:
        UserError: float16 on a CPU (PyTorch's CPU autocast is bfloat16).
    """
    if name == "off":
        return None
    if name == "float16" and device.type != "cuda":
        raise UserError("autocast float16 needs a GPU; on a CPU use bfloat16")
    return getattr(torch, name)


@dataclass
class PrecisionReport:
    """The lower precision against float32 on one point.

    Attributes:
        dtype: The autocast dtype.
        tolerance: The accepted deviation (relative for the loss, absolute for the error metric).
        loss_deviation: Largest relative deviation of the loss over the evaluated splits.
        error_deviation: Largest absolute deviation of the error metric.
        seconds: What the check cost (two evaluations of one point).
    """

    dtype: str
    tolerance: float
    loss_deviation: float
    error_deviation: float
    seconds: float

    @property
    def within(self) -> bool:
        """Whether both deviations are within the tolerance."""
        return self.loss_deviation <= self.tolerance and self.error_deviation <= self.tolerance

    def __str__(self) -> str:
        verdict = "within" if self.within else "above"
        return (f"autocast {self.dtype}: one point deviated from float32 by {self.loss_deviation:.1e} (loss, relative) "
                f"and {self.error_deviation:.1e} (error), {verdict} the tolerance {self.tolerance:g}; "
                f"{self.seconds:.2f} s")


def check_precision(evaluate: Callable[[torch.dtype | None], object], dtype: torch.dtype, tolerance: float
                    ) -> tuple[PrecisionReport, object]:
    """Evaluate one point in float32 and under autocast; report the deviations.

    Args:
        evaluate: ``evaluate(autocast dtype or None) -> result`` with ``loss`` and ``error(split)`` of one point.
        dtype: The autocast dtype.
        tolerance: See :class:`PrecisionReport`.

    Returns:
        The report and the autocast result (the evaluation's own for that point).

    Raises:
        UserError: The point is finite in float32 but not under autocast (the lower precision overflows here).
    """
    t0 = time.perf_counter()
    full, low = evaluate(None), evaluate(dtype)
    loss_dev, err_dev = 0.0, 0.0
    for split, ref in full.loss.items():
        a, b = float(low.loss[split][0]), float(ref[0])
        if math.isfinite(b) and not math.isfinite(a):
            raise UserError(f"autocast {str(dtype).removeprefix('torch.')} overflows on this network (the {split} loss "
                            "is not finite where float32 gives a number): evaluate in float32")
        loss_dev = max(loss_dev, abs(a - b) / max(abs(b), 1e-12))
        err_dev = max(err_dev, abs(float(low.error(split)[0]) - float(full.error(split)[0])))
    report = PrecisionReport(str(dtype).removeprefix("torch."), tolerance, loss_dev, err_dev, time.perf_counter() - t0)
    if not report.within:
        warnings.warn(str(report), stacklevel=4)
    return report, low


@dataclass
class CompileReport:
    """The compiled evaluation pass against eager on the evaluation's first points.

    Attributes:
        backend: The ``torch.compile`` backend.
        points: How many points were compared (two where there are: a second point shows that the compiled pass
            reads the weights loaded into the model, not the first point's frozen in).
        max_difference: Largest relative difference of the losses.
        tolerance: The accepted difference (rounding: 1e-4 in float32, 1e-9 in float64).
        used: Whether the compiled pass is used (False: it differed, the engine stays eager).
        seconds: What compiling and the check cost.
    """

    backend: str
    points: int
    max_difference: float
    tolerance: float
    used: bool
    seconds: float

    def __str__(self) -> str:
        what = "compiled pass used" if self.used else "it differs: eager kept"
        return (f"compile {self.backend}: {self.points} point(s) matched eager to {self.max_difference:.1e} "
                f"(tolerance {self.tolerance:g}); {what}; compiling and checking took {self.seconds:.1f} s")


def check_compiled(evaluate: Callable[[bool, int], object], points: int, backend: str, tolerance: float
                   ) -> CompileReport:
    """Evaluate the first (up to) two points compiled and eagerly, and compare their losses.

    Args:
        evaluate: ``evaluate(compiled, i) -> result`` with ``loss`` of point ``i`` (split to ``[1]``).
        points: Points of the evaluation.
        backend: The backend, for the report.
        tolerance: Accepted relative difference.
    """
    t0 = time.perf_counter()
    worst = 0.0
    for i in range(min(points, 2)):
        eager = evaluate(False, i)
        try:
            fast = evaluate(True, i)
        except Exception as e:  # noqa: BLE001 - a pass that cannot be compiled is one that is not used
            warnings.warn(f"compile {backend} failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); eager kept",
                          stacklevel=4)
            return CompileReport(backend, i, math.inf, tolerance, False, time.perf_counter() - t0)
        for split, ref in eager.loss.items():
            a, b = float(fast.loss[split][0]), float(ref[0])
            d = abs(a - b) / max(abs(b), 1e-12) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
            worst = max(worst, d)
    report = CompileReport(backend, min(points, 2), worst, tolerance, worst <= tolerance, time.perf_counter() - t0)
    if not report.used:
        warnings.warn(str(report), stacklevel=4)
    return report
