"""The paper's findings and their verdicts: each judged from the per-run values ``compare`` collected.

The paper's four findings (sections 3.4-3.5, Figures 4-5) are judged by the criteria printed with them; the
flatness finding beside the paper by a 95% t-interval over runs with a three-way verdict (holds, contradicted,
inconclusive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["MIN_ACC_GAIN", "Finding", "FINDINGS", "FLATNESS", "Verdict", "t_interval", "three_way", "judge"]

MIN_ACC_GAIN = 0.5
"""Finding 1 needs SWA's test accuracy above SGD's by at least this many points on average."""


@dataclass(frozen=True)
class Finding:
    """One of the paper's findings and the criterion it is judged by."""

    key: str
    title: str
    criterion: str


FINDINGS = (
    Finding("accuracy", "SWA generalises better",
            f"SWA test accuracy above SGD's on every run, by >= {MIN_ACC_GAIN} points on average"),
    Finding("width", "SWA is wider",
            "ray width from SWA above that from SGD on every run, for the test-error and the train-loss margin, "
            "with raw and with filter-normalised directions"),
    Finding("segment", "SGD lies at the edge",
            "on every run, the test-error minimum of the segment lies closer to SWA than to SGD (t < 0.5), and the "
            "L2-regularised train loss rises more steeply beyond SGD (t 1 -> 1.5) than beyond SWA (t 0 -> -0.5)"),
    Finding("fge", "SWA approximates the FGE ensemble",
            "on every run, ||p_SWA - p_FGE|| is below the mean consecutive-proposal gap ||p_i - p_i+1||"),
)
"""The paper's findings (sections 3.4-3.5, Figures 4-5) in the order the verdicts are printed."""

FLATNESS = Finding(
    "sharpness", "SWA is flatter (adaptive sharpness)",
    "the 95% t-interval over runs of SGD's minus SWA's adaptive average-case sharpness at report_rho lies above 0 "
    "(holds) or below 0 (contradicted); otherwise inconclusive (also with one run)")
"""Beside the paper: judged with an interval over runs, and shown only where the sharpness analysis ran."""


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x [R]`` and its two-sided t-interval (NaN bounds for fewer than two values)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float(np.mean(x)), math.nan, math.nan
    lo, hi = stats.t.interval(level, len(x) - 1, loc=float(np.mean(x)), scale=float(stats.sem(x)))
    return float(np.mean(x)), float(lo), float(hi)


def three_way(lo: float, hi: float) -> str:
    """``holds`` (the interval lies above 0), ``contradicted`` (below 0) or ``inconclusive``."""
    return "holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"

_RAYS = (("rays", "raw"), ("rays_filter", "filter-normalised"))


@dataclass(frozen=True)
class Verdict:
    """A finding judged over the runs.

    Attributes:
        finding: What is judged.
        per_run: Per run: True (holds), False (does not) or None (not measured: an analysis is missing).
        holds: Overall: every run holds (and, for accuracy, the mean gain is large enough).
        margin: The numbers behind the verdict, in words.
        interval: For a finding judged with uncertainty, ``(mean, low, high)`` of its statistic over the runs.
    """

    finding: Finding
    per_run: tuple[bool | None, ...]
    holds: bool
    margin: str
    interval: tuple[float, float, float] | None = None

    @property
    def word(self) -> str:
        if any(r is None for r in self.per_run):
            return "not measured"
        if self.interval is not None:
            return three_way(*self.interval[1:])
        return "holds" if self.holds else "does not hold"


def _per_run(ok: np.ndarray, measured: np.ndarray) -> tuple[bool | None, ...]:
    return tuple(bool(o) if m else None for o, m in zip(ok, measured))


_NEEDS = {"accuracy": "the run's solutions", "width": "rays, with and without --filter-normalize",
          "segment": "segment", "fge": "fge (a cyclic run's proposals)", "sharpness": "sharpness"}
"""What each finding needs, for the reason of a "not measured" verdict."""


def _unmeasured(per: tuple[bool | None, ...], key: str) -> str | None:
    """The reason a finding is not measured (which runs lack which analysis), or None when it is."""
    missing = [str(i + 1) for i, p in enumerate(per) if p is None]
    if not missing:
        return None
    return f"not measured on run {', '.join(missing)}: run the {_NEEDS[key]} analysis there"


def judge(v: dict[str, np.ndarray]) -> list[Verdict]:
    """The four verdicts from the per-run values ``v[key] [R]``."""
    out = []

    def add(finding: Finding, per: tuple[bool | None, ...], holds: bool, margin) -> None:
        """The verdict; the margins (a callable, evaluated only when every run is measured) or why not measured."""
        why = _unmeasured(per, finding.key)
        out.append(Verdict(finding, per, holds and why is None, why or margin()))

    diff = v["acc_diff"]
    per = _per_run(diff > 0, np.isfinite(diff))
    add(FINDINGS[0], per, all(per) and float(np.mean(diff)) >= MIN_ACC_GAIN,
        lambda: f"mean {np.mean(diff):+.2f} points, smallest {np.min(diff):+.2f}")
    # width: SWA/SGD ratios of the eight widths; every one above 1 on every run
    ratios = np.stack([v[f"{g}_swa_width_{m}"] / v[f"{g}_sgd_width_{m}"] for g, _ in _RAYS for m in ("error", "loss")])
    measured = np.isfinite(ratios).all(0)
    per = _per_run((ratios > 1).all(0), measured)
    names = [f"{kind} {m}" for _, kind in _RAYS for m in ("test error", "train loss")]

    def width_margin() -> str:
        worst = int(np.argmin(ratios.min(1)))
        means = ", ".join(f"{n} {np.mean(r):.3f}" for n, r in zip(names, ratios))
        return f"smallest width ratio SWA/SGD {ratios.min():.3f} ({names[worst]}); mean ratios {means}"

    add(FINDINGS[1], per, all(per), width_margin)
    t_err, up_sgd, up_swa = v["seg_t_min_test_error"], v["seg_slope_beyond_sgd"], v["seg_slope_beyond_swa"]
    per = _per_run((t_err < 0.5) & (up_sgd > up_swa), np.isfinite(t_err) & np.isfinite(up_sgd) & np.isfinite(up_swa))
    add(FINDINGS[2], per, all(per),
        lambda: f"largest t of minimal test error {np.max(t_err):.3g}; slope beyond SGD minus beyond SWA: "
                f"smallest {np.min(up_sgd - up_swa):+.3g} (mean {np.mean(up_sgd):.3g} vs {np.mean(up_swa):.3g})")
    gap, cons = v["fge_prob_diff_swa_ensemble"], v["fge_prob_diff_consecutive"]
    per = _per_run(gap < cons, np.isfinite(gap) & np.isfinite(cons))
    add(FINDINGS[3], per, all(per), lambda: f"largest ratio gap/consecutive {np.max(gap / cons):.3f}")
    d = v["sharpness_sgd_adaptive"] - v["sharpness_swa_adaptive"]
    if np.isfinite(d).any():  # beside the paper: only where the sharpness analysis ran
        per = _per_run(d > 0, np.isfinite(d))
        why = _unmeasured(per, FLATNESS.key)
        iv = t_interval(d) if why is None else None
        out.append(Verdict(FLATNESS, per, iv is not None and three_way(*iv[1:]) == "holds",
                           why or f"SGD - SWA: mean {iv[0]:+.4g}, 95% t-interval [{iv[1]:+.4g}, {iv[2]:+.4g}] over "
                                  f"{len(d)} run(s)", iv))
    return out
