"""The paper's findings and their verdicts, judged with uncertainty over runs.

Each finding is one or more *claims*, each a statistic measured once per run and oriented so that a positive value
is the paper's direction (for widths and distances: the log of a ratio; for positions: a bounded contrast). A
claim's verdict comes from a 95% interval of its per-run values (:mod:`analyses.statistics`): Student's t, or the
signed-rank (Hodges-Lehmann) interval for statistics with heavy tails. **holds** when the interval lies above 0,
**contradicted** when it lies below, **inconclusive** otherwise (always with one run or values without spread). A
finding holds when every claim holds, is contradicted when one is, and is inconclusive otherwise.

With the null control (``train --controls``, ``analyze RUN all --null``) every claim is also measured on the null
pair: a second SGD solution in SWA's place. The comparison is paired: per run, the claim on the SWA pair minus the
claim on the null pair, judged by the claim's own test. A finding *discriminates* when every claim that has a null
counterpart (:attr:`~analyses.metrics.Claim.null`) has that paired difference above 0; one that holds but does not
discriminate is reported as *holds, not discriminating* and does not count as holding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import Claim, Finding
from .statistics import TESTS, interval, no_spread

__all__ = ["Measured", "Verdict", "three_way", "measure", "judge"]


def three_way(lo: float, hi: float) -> str:
    """``holds`` (the interval lies above 0), ``contradicted`` (below 0) or ``inconclusive`` (NaN included)."""
    return "holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"


@dataclass(frozen=True)
class Measured:
    """A claim (or a paired difference) measured over the runs.

    Attributes:
        claim: What is measured.
        values: The statistic per run ``[R]`` (NaN: not measured).
        mean: Its estimate over the runs: the mean (t) or the Hodges-Lehmann estimate (signed-rank).
        low: Lower end of the 95% interval (NaN where the runs give none).
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
    def why_no_interval(self) -> str | None:
        """Why the runs give no interval (one run, no spread, too few for the signed-rank test), or None."""
        if not self.measured or not math.isnan(self.low):
            return None
        if len(self.values) == 1:
            return "one run: no interval"
        if no_spread(self.values):
            return "no spread over the runs: no interval"
        return f"{len(self.values)} runs: the signed-rank interval needs 6"

    @property
    def interval(self) -> str:
        """The interval as ``[low, high]``, or why there is none."""
        if not self.measured:
            return "-"
        return self.why_no_interval or f"[{self.low:+.4g}, {self.high:+.4g}]"

    @property
    def estimate(self) -> str:
        """The estimate in words: ``mean +x`` or ``Hodges-Lehmann +x`` (``value +x`` for one run)."""
        if not self.measured:
            return "not measured"
        if len(self.values) == 1:
            return f"value {self.mean:+.4g}"
        return f"{'mean' if self.claim.test == 't' else 'Hodges-Lehmann'} {self.mean:+.4g}"

    @property
    def per_run(self) -> str:
        """The per-run values, ``-`` where not measured."""
        return " ".join(f"{x:+.3g}" if np.isfinite(x) else "-" for x in self.values)

    def describe(self, text: bool = True) -> str:
        """The estimate, interval and verdict in words (with the claim's text unless ``text`` is False)."""
        head = self.claim.text + ": " if text else ""
        if not self.measured:
            return f"{head}not measured (per run: {self.per_run})"
        where = self.why_no_interval or f"{TESTS[self.claim.test]} {self.interval}"
        return (f"{head}{self.estimate}, {where} -> {self.word} "
                f"(positive on {int(np.sum(self.values > 0))} of {len(self.values)} runs: {self.per_run})")


def measure(claim: Claim, x: np.ndarray) -> Measured:
    """``claim`` judged on its per-run values ``x [R]`` by its test."""
    ok = np.isfinite(x).all()
    mean, lo, hi = interval(x, claim.test) if ok else (math.nan,) * 3
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
        paired: Per claim, SWA's value minus the null pair's, run by run (None for a claim without a null
            counterpart); None without the null pair.
    """

    finding: Finding
    claims: tuple[Measured, ...]
    null: tuple[Measured, ...] | None = None
    paired: tuple[Measured | None, ...] | None = None

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
        """The claims whose paired difference against the null pair does not lie above 0."""
        return [m.claim.key for m in self.paired or () if m is not None and m.word != "holds"]

    @property
    def word(self) -> str:
        """The finding's verdict, marked not discriminating where SWA's effect does not exceed the null pair's."""
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
        """The verdict in words: per claim its interval and verdict, the null pair's and the paired difference."""
        out = []
        why = self.missing(len(self.claims[0].values))
        if why:
            out.append(why)
        for i, m in enumerate(self.claims):
            out.append(m.describe())
            if self.null is not None:
                out.append(f"  null pair: {self.null[i].describe(text=False)}")
                p = self.paired[i]
                out.append(f"  SWA minus null, paired: {p.describe(text=False)}" if p is not None else
                           "  SWA minus null, paired: not compared (no null counterpart)")
        if self.not_discriminating:
            out.append(f"not discriminating: {', '.join(self.not_discriminating)} not larger on SWA's pair than "
                       "with a second SGD solution in SWA's place")
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
        claims = tuple(measure(c, c.evaluate(v)) for c in f.claims)
        if f.optional and not any(np.isfinite(m.values).any() for m in claims):
            continue
        nulls = paired = None
        if null is not None:
            nulls = tuple(measure(c, c.evaluate(null)) for c in f.claims)
            paired = tuple(measure(m.claim, m.values - n.values) if m.claim.null else None
                           for m, n in zip(claims, nulls))
        out.append(Verdict(f, claims, nulls, paired))
    return out
