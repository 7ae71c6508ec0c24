"""What an analysis measures and what the paper claims of it: :class:`Metric`, :class:`Claim`, :class:`Finding`.

A metric is one number per run, read from the run's results file by the analysis that declares it (or from the
run file itself: :data:`RUN_METRICS`). A claim is a statistic of metrics, oriented so that a positive value is the
paper's direction; a finding is the claims it is judged by. Claims hold their metrics as objects, so a claim
cannot name a quantity no analysis measures: the registry checks every claim's metrics when an analysis
registers (:func:`analyses.registry.check_analysis`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .statistics import TESTS

__all__ = ["Metric", "Claim", "Finding", "RUN_METRICS", "SGD_ACC", "SWA_ACC", "ACC_DIFF", "SGD_BUDGET_ACC",
           "ACCURACY", "missing"]


def missing(_f: Any) -> float:
    """The reader of a metric that is not in a results file (NaN: not measured)."""
    return math.nan


@dataclass(frozen=True)
class Metric:
    """One quantity per run, as ``compare`` tabulates it.

    Attributes:
        key: Short name (CSV column, per-run values' key).
        label: The quantity in words, with its unit (``compare``'s table).
        read: ``read(results file [h5py.File]) -> float``; NaN where the analysis has not run.
    """

    key: str
    label: str
    read: Callable[[Any], float] = missing


SGD_ACC = Metric("sgd_acc", "SGD test accuracy (%)")
SWA_ACC = Metric("swa_acc", "SWA test accuracy (%)")
ACC_DIFF = Metric("acc_diff", "SWA - SGD accuracy (points)")
SGD_BUDGET_ACC = Metric("sgd_budget_acc", "budget-matched SGD test accuracy (%, control)")
RUN_METRICS = (SGD_ACC, SWA_ACC, ACC_DIFF, SGD_BUDGET_ACC)
"""The quantities of the run file itself (``compare`` reads them from the solutions, not from a results file)."""


@dataclass(frozen=True)
class Claim:
    """One measured statement: a per-run statistic of metrics whose sign is the claim.

    Attributes:
        key: Short name (CSV rows).
        text: The statistic in words; positive is the paper's direction.
        metrics: The metrics it is computed from.
        stat: ``stat(*values)``: the metrics' per-run values ``[R]`` (in the order of ``metrics``) to the statistic
            ``[R]`` (NaN: not measured on that run).
        test: How its interval over runs is taken (:data:`analyses.statistics.TESTS`): ``"t"``, or
            ``"signed-rank"`` (the Hodges-Lehmann interval) for a statistic whose values can have a heavy tail.
        null: Why the statistic on the null pair (a second SGD solution in SWA's place) is what SWA's must exceed,
            for example "antisymmetric under swapping the pair's roles, so 0 in expectation for two exchangeable SGD
            solutions"; the finding then discriminates only where SWA's value minus the null pair's, run by run,
            lies above 0. None: the claim has no counterpart on the null pair and is not compared.
    """

    key: str
    text: str
    metrics: tuple[Metric, ...]
    stat: Callable[..., np.ndarray]
    test: str = "t"
    null: str | None = None

    def evaluate(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """The statistic ``[R]`` from per-run values by metric key (a metric absent counts as not measured)."""
        runs = len(next(iter(values.values()))) if values else 0
        args = [np.asarray(values.get(m.key, np.full(runs, np.nan)), dtype=np.float64) for m in self.metrics]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.stat(*args), dtype=np.float64)


@dataclass(frozen=True)
class Finding:
    """A finding of the paper (or beside it) and the claims it is judged by.

    Attributes:
        key: Short name.
        title: The finding in words.
        needs: What must have run for it to be measured.
        claims: Its claims; each must hold.
        optional: Shown only where measured on some run (findings beside the paper); the paper's findings are
            always shown, as "not measured" where their analysis did not run.
    """

    key: str
    title: str
    needs: str
    claims: tuple[Claim, ...]
    optional: bool = False

    @property
    def criterion(self) -> str:
        """The rule the finding is judged by, in words."""
        return "each interval over runs above 0: " + "; ".join(
            f"{c.text} ({TESTS[c.test]})" for c in self.claims)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """Every metric its claims use, once, in order."""
        return tuple(dict.fromkeys(m for c in self.claims for m in c.metrics))


ACCURACY = Finding("accuracy", "SWA generalises better", "the run's solutions", (
    Claim("gain", "SWA test accuracy minus the better SGD's (the budget-matched control's too where trained), points",
          (SWA_ACC, SGD_ACC, SGD_BUDGET_ACC), lambda swa, sgd, budget: swa - np.fmax(sgd, budget),
          null="SWA's gain minus the null SGD's is SWA's accuracy minus the null SGD's on the same test set: positive "
               "when SWA beats a second SGD solution of the same run, not only the first"),))
"""The run's own finding (its solutions' accuracies); every other finding belongs to an analysis."""
