"""The paper's findings and their verdicts, judged with uncertainty over runs.

Each finding is one or more *claims*, each a statistic measured once per run and oriented so that a positive value
is the paper's direction (for widths and distances: the log of a ratio). A claim's verdict comes from the 95%
t-interval of its per-run values (Student's t, ``n - 1`` degrees of freedom): **holds** when the interval lies
above 0, **contradicted** when it lies below, **inconclusive** otherwise (always with one run). A finding holds
when every claim holds, is contradicted when one is, and is inconclusive otherwise.

With the null control (``train --controls``, ``analyze RUN all --null``) every claim is also measured on the null
pair: a second SGD solution in SWA's place. A claim that holds on the null does not tell SWA from another SGD
solution; its finding is reported as *not discriminating* and does not count as holding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import Claim, Finding

__all__ = ["Measured", "Verdict", "t_interval", "three_way", "judge"]

LEVEL = 0.95
"""Confidence level of every interval."""


def t_interval(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of ``x [R]`` and its two-sided Student-t interval.

    NaN bounds for fewer than two values; the mean itself for values without spread.
    """
    from scipy import stats  # here: scipy.stats' import costs every command's start-up half a second

    x = np.asarray(x, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, math.nan, math.nan
    sem = float(stats.sem(x))
    if sem == 0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(x) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def three_way(lo: float, hi: float) -> str:
    """``holds`` (the interval lies above 0), ``contradicted`` (below 0) or ``inconclusive`` (NaN included)."""
    return "holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"


@dataclass(frozen=True)
class Measured:
    """A claim measured over the runs.

    Attributes:
        claim: What is measured.
        values: The statistic per run ``[R]`` (NaN: not measured).
        mean: Its mean over the runs.
        low: Lower end of the 95% t-interval (NaN with one run).
        high: Upper end.
    """

    claim: Claim
    values: np.ndarray
    mean: float
    low: float
    high: float

    @property
    def measured(self) -> bool:
        """Whether the statistic was measured on every run."""
        return bool(np.isfinite(self.values).all())

    @property
    def word(self) -> str:
        """The claim's verdict: holds, contradicted, inconclusive or not measured."""
        return three_way(self.low, self.high) if self.measured else "not measured"

    @property
    def interval(self) -> str:
        """The 95% t-interval as ``[low, high]``."""
        return f"[{self.low:+.4g}, {self.high:+.4g}]"

    def describe(self, text: bool = True) -> str:
        """The mean, interval and verdict in words (with the claim's text unless ``text`` is False)."""
        per = " ".join(f"{x:+.3g}" for x in self.values)
        interval = ("no interval from one run" if math.isnan(self.low) and len(self.values) == 1 else
                    f"95% t-interval {self.interval}")
        return (f"{self.claim.text + ': ' if text else ''}mean {self.mean:+.4g}, {interval} -> {self.word} "
                f"(positive on {int(np.sum(self.values > 0))} of {len(self.values)} runs: {per})")


def _measure(claim: Claim, v: dict[str, np.ndarray]) -> Measured:
    x = claim.evaluate(v)
    ok = np.isfinite(x).all()
    mean, lo, hi = t_interval(x) if ok else (math.nan,) * 3
    return Measured(claim, x, mean, lo, hi)


def _combine(words: list[str]) -> str:
    if "not measured" in words:
        return "not measured"
    if "contradicted" in words:
        return "contradicted"
    return "holds" if all(w == "holds" for w in words) else "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """A finding judged over the runs.

    Attributes:
        finding: What is judged.
        claims: Each claim measured on the runs.
        null: The same claims on the null pair (``train --controls``), or None without it.
    """

    finding: Finding
    claims: tuple[Measured, ...]
    null: tuple[Measured, ...] | None = None

    @property
    def measured_word(self) -> str:
        """The verdict from the claims alone: holds, contradicted, inconclusive or not measured."""
        return _combine([m.word for m in self.claims])

    @property
    def null_word(self) -> str | None:
        """The verdict on the null pair (None without it)."""
        return None if self.null is None else _combine([m.word for m in self.null])

    @property
    def not_discriminating(self) -> list[str]:
        """The claims that hold on the null pair too."""
        return [m.claim.key for m in self.null or () if m.word == "holds"]

    @property
    def word(self) -> str:
        """The finding's verdict, marked not discriminating where a claim holds on the null pair too."""
        w = self.measured_word
        return "holds, not discriminating" if w == "holds" and self.not_discriminating else w

    @property
    def holds(self) -> bool:
        """Whether the finding holds (and discriminates)."""
        return self.word == "holds"

    def missing(self, runs: int) -> str | None:
        """Which runs lack the analysis the finding needs, or None."""
        bad = sorted({i + 1 for m in self.claims for i in np.flatnonzero(~np.isfinite(m.values)) if i < runs})
        return f"not measured on run {', '.join(map(str, bad))}: run {self.finding.needs} there" if bad else None

    def lines(self) -> list[str]:
        """The verdict in words: per claim its interval and verdict, and the null control's beside it."""
        out = []
        why = self.missing(len(self.claims[0].values))
        if why:
            out.append(why)
        for i, m in enumerate(self.claims):
            out.append(m.describe())
            if self.null is not None:
                out.append(f"  null control: {self.null[i].describe(text=False)}")
        if self.not_discriminating:
            out.append(f"not discriminating: {', '.join(self.not_discriminating)} also holds with a second SGD "
                       "solution in SWA's place")
        return out


def judge(findings: Sequence[Finding], v: dict[str, np.ndarray], null: dict[str, np.ndarray] | None = None
          ) -> list[Verdict]:
    """The verdicts of ``findings`` from per-run values (an optional finding only where measured on some run).

    Args:
        findings: What to judge, in order (:func:`analyses.catalog.findings`).
        v: Metric key to per-run values ``[R]`` (NaN: not measured), as :func:`analyses.compare.run_metrics` reads.
        null: The same quantities of the null pair (the second SGD solution in SWA's role), or None.
    """
    out = []
    for f in findings:
        claims = tuple(_measure(c, v) for c in f.claims)
        if f.optional and not any(np.isfinite(m.values).any() for m in claims):
            continue
        nulls = tuple(_measure(c, null) for c in f.claims) if null is not None else None
        out.append(Verdict(f, claims, nulls))
    return out
