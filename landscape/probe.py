"""Choosing how to evaluate: candidate plans timed on the evaluation's own first points.

A :class:`Plan` says how a chunk of points goes through the network: the strategy
(per-point loop or ``vmap``), the samples per forward (super-batch), and the worker
threads. The candidates always include the *plain* plan, the simplest thing a user
would write: one point at a time over the whole split per forward (as far as the
memory budget allows), one worker with all intra-op threads.

:func:`run_probe` times each candidate on consecutive points of the actual point set,
at the sizes the evaluation uses, and keeps every result (nothing is evaluated twice,
except one point re-evaluated by the plain plan to check ``vmap`` against it). The
fastest plan wins only if it beats the plain plan by more than ``margin``; near ties go
to the plain plan. Choices are remembered in a :class:`ProbeCache`, a plain object
that can be inspected and cleared.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from .memory import is_oom
from .passes import Strategy

__all__ = ["Plan", "Trial", "ProbeReport", "ProbeKey", "ProbeCache", "run_probe", "choose_plan", "warn_vmap_failed"]


@dataclass(frozen=True)
class Plan:
    """How a chunk of points is evaluated.

    Attributes:
        strategy: ``LOOP`` or ``VMAP``.
        superbatch: Samples per forward (a multiple of the BN batch size, or a whole split).
        workers: Threads evaluating different points at once (1: the calling thread with all intra-op threads).
        width: Points per forward (1 for the loop; the vmap width).
        plain: Whether this is the plain plan.
    """

    strategy: Strategy
    superbatch: int
    workers: int = 1
    width: int = 1
    plain: bool = False

    @property
    def points_per_round(self) -> int:
        """Points one round of this plan evaluates (every worker busy once)."""
        return self.workers * self.width

    def __str__(self) -> str:
        kind = "plain" if self.plain else self.strategy.value
        w = f" x{self.width}" if self.strategy is Strategy.VMAP else ""
        return f"{kind}{w}, super-batch {self.superbatch}, {self.workers} worker{'s' if self.workers > 1 else ''}"


@dataclass
class Trial:
    """One candidate's timing: ``points`` evaluated in ``seconds`` after a warm-up round (NaN if not timed)."""

    plan: Plan
    points: int = 0
    seconds: float = math.nan
    note: str = ""

    @property
    def rate(self) -> float:
        """Points per second (NaN if not timed)."""
        return self.points / self.seconds if self.points and self.seconds > 0 else math.nan


@dataclass
class ProbeReport:
    """What the engine considered and chose, for :meth:`landscape.engine.Engine.explain`.

    Attributes:
        trials: Every candidate, timed or with the reason it was not.
        choice: The plan used for the rest of the evaluation.
        reason: Why that plan.
        cached: Whether the choice came from the cache (then ``trials`` are those of the probe that made it).
    """

    trials: list[Trial]
    choice: Plan
    reason: str
    cached: bool = False
    guard: str = ""
    """What the guard (:mod:`landscape.guard`) found for this engine, if it ran."""

    def __str__(self) -> str:
        lines = [f"{'candidate':<52} {'points':>6} {'seconds':>8} {'points/s':>9}  note"]
        for t in self.trials:
            mark = "*" if t.plan == self.choice else " "
            sec = f"{t.seconds:8.3f}" if not math.isnan(t.seconds) else f"{'-':>8}"
            rate = f"{t.rate:9.1f}" if not math.isnan(t.rate) else f"{'-':>9}"
            lines.append(f"{mark}{str(t.plan):<51} {t.points:>6} {sec} {rate}  {t.note}")
        lines.append(f"choice: {self.choice} ({self.reason}{'; from the cache' if self.cached else ''})")
        if self.guard:
            lines.append(self.guard)
        return "\n".join(lines)


class ProbeKey(NamedTuple):
    """What a probe's choice depends on: the same key, the same choice."""

    model: tuple
    """The network's class and parameter shapes."""
    device: str
    dtype: str
    request: tuple
    """What is evaluated: BN recomputed, BN batch size, BN samples, the splits with their sizes, the probability splits."""
    settings: tuple
    """What bounds the plans: superbatch, workers, memory budget, CPU cache bytes, intra-op threads."""
    paths: tuple[bool, bool] = (True, False)
    """Folding on, exact BN statistics on (the guard's choice for the model)."""

    @property
    def splits(self) -> tuple[tuple[str, int], ...]:
        """Evaluated splits and their sizes."""
        return self.request[3]


@dataclass
class ProbeCache:
    """Earlier probe reports by key (model structure, device, dtype, data sizes, settings).

    A plain object: read ``entries``, call :meth:`clear`. Each engine has its own unless it is given one;
    whoever runs several engines on the same model (the command line) passes them one to probe once.
    """

    entries: dict[ProbeKey, ProbeReport] = field(default_factory=dict)

    def get(self, key: ProbeKey) -> ProbeReport | None:
        """The report of an earlier probe with this key, or None."""
        return self.entries.get(key)

    def put(self, key: ProbeKey, report: ProbeReport) -> None:
        """Remember a probe's report for its key."""
        self.entries[key] = report

    def clear(self) -> None:
        """Forget every remembered choice."""
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


def warn_vmap_failed(e: BaseException) -> None:
    """The one warning when a model cannot run under ``torch.func.vmap`` (the loop is used instead)."""
    warnings.warn(f"the model cannot run under torch.func.vmap ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200] if str(e) else ''}); using the per-point loop", stacklevel=4)


def run_probe(candidates: list[Plan], run: Callable[[Plan, int, int], Any], deliver: Callable[[int, int, Any], None],
              max_points: int, total_points: int, min_total_seconds: float = 0.0, min_seconds: float = 0.2,
              margin: float = 0.05, tol: float = 1e-4, start: int = 0,
              clock: Callable[[], float] = time.perf_counter) -> tuple[ProbeReport, int]:
    """Time the candidates on points ``start, start + 1, ...`` of the evaluation.

    Return the report and the first point not yet evaluated.

    Args:
        candidates: Plans to time; the first must be the plain plan.
        run: ``run(plan, lo, hi)`` evaluates points ``lo:hi`` with ``plan`` and returns a result with a
            ``loss`` attribute (split name to ``[hi - lo]``).
        deliver: ``deliver(lo, hi, result)`` hands a result over as the evaluation's own.
        max_points: Points the probe may use (it stops timing a candidate there).
        total_points: Points of the whole evaluation.
        min_total_seconds: If the plain plan would finish the whole evaluation in less than this, the
            other candidates are not timed (what they could save is less than what timing them costs).
        min_seconds: Each candidate is timed over whole rounds until this long (or ``max_points``).
        margin: A plan other than the plain one must be faster by more than this fraction.
        tol: Relative tolerance of the vmap-vs-plain check on losses.
        start: Points before this one were evaluated already.
        clock: Seconds, for the timing (tests pass a simulated clock).

    Returns:
        The report, and the first point that was not evaluated.
    """
    plain = candidates[0]
    trials = [Trial(p) for p in candidates]
    lo = start
    vmap_ok = True
    for trial in trials:
        plan = trial.plan
        per = plan.points_per_round
        if plan.strategy is Strategy.VMAP and not vmap_ok:
            trial.note = "skipped: vmap rejected above"
            continue
        if lo + 2 * per > max_points:
            trial.note = f"skipped: needs {2 * per} points, the probe may use {max_points - lo} more"
            continue
        try:
            warm = run(plan, lo, lo + per)
        except Exception as e:  # noqa: BLE001 - any failure under vmap means: use the loop
            if is_oom(e) and not plan.plain:  # a candidate too large for this device is no candidate
                trial.note = "out of memory"
                continue
            if plan.strategy is not Strategy.VMAP:
                raise
            vmap_ok = False
            trial.note = f"vmap failed: {type(e).__name__}"
            warn_vmap_failed(e)
            continue
        if plan.strategy is Strategy.VMAP:
            ref = run(plain, lo, lo + 1).loss
            if not all(torch.allclose(warm.loss[s][:1], ref[s], rtol=tol, atol=tol) for s in ref):
                vmap_ok = False
                trial.note = "vmap disagrees with the loop"
                warnings.warn("vmap and the per-point loop disagree for this model; using the loop", stacklevel=4)
                continue
        deliver(lo, lo + per, warm)
        lo += per
        t0 = clock()
        n = 0
        share = max(per, max_points // (4 * len(candidates)))  # bounds what losing candidates cost
        while n == 0 or (clock() - t0 < min_seconds and n + per <= share and lo + per <= max_points):
            deliver(lo, lo + per, run(plan, lo, lo + per))
            lo += per
            n += per
        trial.points, trial.seconds = n, clock() - t0
        if trial is trials[0] and total_points / trial.rate < min_total_seconds:
            for other in trials[1:]:
                other.note = f"skipped: the plain plan needs about {total_points / trial.rate:.2f} s in all"
            break
    timed = [t for t in trials if not math.isnan(t.rate)]
    base = trials[0].rate
    best = max(timed, key=lambda t: t.rate)
    if best.plan is plain or best.rate <= (1 + margin) * base:
        choice, reason = plain, f"no candidate beat the plain plan by more than {100 * margin:.0f}%"
    else:
        choice, reason = best.plan, f"{best.rate / base:.2f}x the plain plan's rate"
    return ProbeReport(trials, choice, reason), lo


def choose_plan(candidates: list[Plan], fixed: str | None, cache: ProbeCache, key: ProbeKey, total_points: int, run,
                deliver, start: int, min_total_seconds: float, tol: float, min_points: int = 32
                ) -> tuple[ProbeReport, int]:
    """The plan for an evaluation's points from ``start`` on.

    The strategy set in the config (``fixed``), the cached choice for ``key``, the plain plan for few points or one
    candidate, or a probe (:func:`run_probe`, remembered in ``cache`` when it timed more than one plan).

    Returns:
        The report (its ``choice`` is the plan) and the first point not yet evaluated.
    """
    if fixed is not None:
        return ProbeReport([], candidates[0], f"strategy {fixed!r} set in the config"), start
    cached = cache.get(key)
    if cached is not None:
        return ProbeReport(cached.trials, cached.choice, cached.reason, cached=True), start
    if total_points < min_points or len(candidates) == 1:
        why = (f"{total_points} points are too few to time candidates (probing starts at {min_points})"
               if len(candidates) > 1 else "the only candidate")
        return ProbeReport([], candidates[0], why), start
    report, start = run_probe(candidates, run, deliver, start=start, max_points=total_points // 2,
                              total_points=total_points, min_total_seconds=min_total_seconds, tol=tol)
    if sum(t.points > 0 for t in report.trials) > 1:
        cache.put(key, report)
    return report, start
