"""What one run alone shows: claims tested inside the run, kept apart from the verdicts over seeds.

A verdict over seeds (:mod:`analyses.findings`) needs several runs. One run still holds paired evidence for two of
the paper's findings, and this module judges it, labelled *within run*:

* **accuracy**: McNemar's exact test on SWA's and SGD's predictions of the same test samples (the
  ``predictions`` analysis): is the gain on this test set more than chance disagreement of two models?
* **width**: over the ray directions both solutions share, the log ratio of SWA's width to SGD's, direction by
  direction, with its signed-rank (Hodges-Lehmann) interval: is SWA wider along these directions?

Neither says that another training seed would give the same (that is what ``compare`` over runs judges); both are
reported under their own heading and never enter the verdicts over runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .findings import three_way
from .metrics import ACCURACY
from .rays import COMPARED, JUDGED_MARGINS, WIDTH
from .statistics import hodges_lehmann, mcnemar
from .widths import censored_widths

__all__ = ["WithinRun", "ALPHA", "within_run"]

ALPHA = 0.05
"""Level of the within-run tests (two-sided)."""


@dataclass(frozen=True)
class WithinRun:
    """One claim tested inside one run.

    Attributes:
        finding: The finding's title.
        claim: What is tested, in words; positive is the paper's direction.
        estimate: The effect (points of accuracy; a Hodges-Lehmann log ratio).
        evidence: The test and its outcome in words (p-value or interval).
        n: Samples (discordant test samples) or directions the test uses.
        word: holds, contradicted or inconclusive at :data:`ALPHA`.
    """

    finding: str
    claim: str
    estimate: float
    evidence: str
    n: int
    word: str


def _accuracy(f) -> WithinRun | None:
    if "predictions/swa_only" not in f:
        return None
    g = f["predictions"]
    a, b, n = int(g["swa_only"][()]), int(g["sgd_only"][()]), len(g["correct_swa"])
    p = mcnemar(a, b)
    est = 100 * (a - b) / n
    word = "inconclusive" if p >= ALPHA else "holds" if est > 0 else "contradicted"
    return WithinRun(ACCURACY.title, "SWA test accuracy minus SGD's on the same samples, points", est,
                     f"McNemar's exact test: only SWA right on {a}, only SGD on {b} of {n} samples, p = {p:.3g}",
                     a + b, word)


def _widths(f, group: str, margin: str, what: str) -> WithinRun | None:
    if f"{group}/swa/width_{margin}" not in f or f"{group}/sgd/width_{margin}" not in f:
        return None
    x = np.log(censored_widths(f[f"{group}/swa"], margin) / censored_widths(f[f"{group}/sgd"], margin))
    est, lo, hi = hodges_lehmann(x)
    where = (f"[{lo:+.3g}, {hi:+.3g}]" if not math.isnan(lo) else
             "no interval (" + ("fewer than 6 directions" if len(x) < 6 else "no spread") + ")")
    return WithinRun(WIDTH.title, f"log(SWA / SGD width), {what}, {COMPARED[group]} directions, direction by direction",
                     est,
                     f"95% signed-rank interval over {len(x)} shared directions {where}; SWA wider along "
                     f"{int(np.sum(x > 0))} of {len(x)}", len(x), three_way(lo, hi))


def within_run(f) -> list[WithinRun]:
    """The within-run tests a results file allows (``f``: h5py, read only); empty where none ran."""
    found = [_accuracy(f)] + [_widths(f, g, m, what) for g in COMPARED for m, what in JUDGED_MARGINS.items()]
    return [w for w in found if w is not None]
