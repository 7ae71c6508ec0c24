"""The paper's findings measured over several runs (seeds or configurations), with verdicts.

Reads each run file and its results file (never modifies either) and collects, per run:

* test accuracy of w_SGD and w_SWA and their difference (points);
* ray widths from both solutions (mean over directions; a direction whose values never cross the
  margin within the ray counts with the ray's length, a lower bound), for the test-error and the
  train-loss margin, raw (``/rays``) and filter-normalised (``/rays_filter``) directions;
* along the segment (t = 0 SWA, t = 1 SGD): where train loss and test error are minimal, and the
  slopes of the L2-regularised train loss (the paper's Figure 5 quantity; plain cross-entropy for
  results written before it was stored) just beyond each endpoint, ``(L(1.5) - L(1)) / 0.5`` beyond SGD and
  ``(L(-0.5) - L(0)) / 0.5`` beyond SWA (linear interpolation on the stored grid);
* the four FGE numbers of the paper's section 3.5;
* what every other registered analysis that ran declares (the Hessian's top eigenvalue and trace, sharpness).

Each finding is judged with 95% t-intervals over the runs (:mod:`analyses.findings`). Where the runs were trained
with ``--controls``, the accuracy finding compares SWA with the better of SGD and the budget-matched SGD, and where
the null pair was analysed (``analyze RUN all --null``, ``RUN.null.landscape.h5``), every claim is also measured on
it and reported beside.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.errors import UserError
from landscape.files import default_results_path
from swa.trajectory import NULL_ROLES, Trajectory

from . import catalog
from .findings import Verdict, judge
from .metrics import ACC_DIFF, SGD_ACC, SGD_BUDGET_ACC, SWA_ACC
from .results import ResultsFile
from .within import WithinRun, within_run

__all__ = ["Comparison", "labels", "run_metrics", "compare"]

def labels() -> dict[str, str]:
    """Every quantity a comparison can hold, in table order (the run's, then each analysis'), with its label."""
    return {m.key: m.label for m in catalog.metrics()}


def run_metrics(run: str | os.PathLike, results: str | os.PathLike | None = None, roles: dict | None = None
                ) -> tuple[dict[str, float], dict, list[WithinRun]]:
    """One run's quantities (``NaN`` where an analysis has not run), settings that must agree, within-run tests.

    Args:
        run: Run file (read-only).
        results: Its results file (default ``RUN.landscape.h5``, ``RUN.null.landscape.h5`` for the null view); must
            belong to this run (view).
        roles: A view of the run (:data:`~swa.trajectory.NULL_ROLES`: the null pair), or None.

    Returns:
        ``(values, settings, within)``: values by key of :func:`labels`, read by each analysis'
        :attr:`~analyses.registry.Analysis.metrics`; settings maps what must agree across runs (e.g. a ray group)
        to the run's ``(settings..., parameter count)``; within, the run's within-run tests
        (:func:`analyses.within.within_run`).
    """
    v = dict.fromkeys(labels(), np.nan)
    settings: dict[str, tuple] = {}
    with Trajectory(run, roles) as t:
        for name, metric in (("sgd", SGD_ACC), ("swa", SWA_ACC), ("sgd_budget", SGD_BUDGET_ACC)):
            if t.has_solution(name):
                v[metric.key] = 100 * t.solution_scalar(name, "test_acc")
            elif name != "sgd_budget":
                raise UserError(f"{run} has no {t.roles.get(name, name).upper()} solution yet (training unfinished"
                                f"{'' if name == 'sgd' or not roles else ', or trained without --controls'})")
        v[ACC_DIFF.key] = v[SWA_ACC.key] - v[SGD_ACC.key]
        results = Path(results) if results else t.results_path
        if not results.exists():
            raise UserError(f"{run} has no results file {results}: run 'swa-landscape analyze {run} all' first "
                            "(or name it as RUN=RESULTS)")
        with ResultsFile(results, t).read() as f:
            for a in catalog.analyses():
                v.update(a.measure(f))
                for what, s in (a.comparable(f) if a.comparable else {}).items():
                    settings[what] = (*s, t.param_layout.size)
            within = within_run(f)
    return v, settings, within


@dataclass
class Comparison:
    """The quantities and verdicts of several runs.

    Attributes:
        runs: Run files ``[R]``.
        results: Their results files ``[R]``.
        values: Quantity key to per-run values ``[R]`` (NaN: not measured).
        verdicts: One per finding, in the order of :func:`analyses.catalog.findings`.
        notes: Warnings about comparability (e.g. rays with different direction seeds).
        null: The null pair's values (where every run has its null results), or None.
        within: The first run's within-run tests (:mod:`analyses.within`); the tables show them for one run only,
            apart from the verdicts over runs.
    """

    runs: list[str]
    results: list[str]
    values: dict[str, np.ndarray]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    null: dict[str, np.ndarray] | None = None
    within: list[WithinRun] = field(default_factory=list)

    def stat(self, key: str) -> tuple[float, float]:
        """Mean and standard deviation (ddof 1; 0 for one run) over the runs of a quantity."""
        x = self.values[key]
        return float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else 0.0

    def verdict(self, key: str) -> Verdict:
        """The verdict of the finding ``key``."""
        return next(v for v in self.verdicts if v.finding.key == key)

    @property
    def all_hold(self) -> bool:
        """Whether the paper's findings all hold (findings beside the paper are not part of it)."""
        return all(v.holds for v in self.verdicts if not v.finding.optional)

    @property
    def spread_head(self) -> str:
        """The heading of the summary column: ``mean ± std`` over runs, ``value`` for one run."""
        return "mean ± std" if len(self.runs) > 1 else "value"

    def rows(self) -> list[tuple[str, str, list[str]]]:
        """Measured quantities as ``(label, "mean ± std" or the value of one run, per-run values)``, in table order."""
        out = []
        for key, label in labels().items():
            x = self.values.get(key, np.full(len(self.runs), np.nan))
            if not np.isfinite(x).any():
                continue
            m, s = self.stat(key)
            out.append((label, f"{m:.4g} ± {s:.2g}" if len(x) > 1 else f"{m:.4g}", [f"{a:.4g}" for a in x]))
        return out

    def format_table(self) -> str:
        """The terminal table.

        Quantities with mean +- std and per-run values, then the verdicts with their intervals (and the null
        control's).
        """
        rows = self.rows()
        heads = [f"run {i + 1}" for i in range(len(self.runs))]
        w0 = max(len(r[0]) for r in rows) if rows else 10
        w1 = max([len(r[1]) for r in rows] + [len(self.spread_head)])
        many = len(self.runs) > 1
        lines = [f"{len(self.runs)} runs: " + ", ".join(f"run {i + 1} = {r}" for i, r in enumerate(self.runs)),
                 f"{'quantity':<{w0}}  {self.spread_head:>{w1}}  "
                 + ("  ".join(f"{h:>9}" for h in heads) if many else "")]
        lines += [f"{a:<{w0}}  {b:>{w1}}  " + ("  ".join(f"{c:>9}" for c in cs) if many else "") for a, b, cs in rows]
        lines.append(self.format_verdicts())
        lines += [f"note: {n}" for n in self.notes]
        if self.within and len(self.runs) == 1:
            lines.append(self.format_within())
        return "\n".join(lines)

    def format_within(self) -> str:
        """The first run's within-run tests, apart from the verdicts over runs."""
        lines = ["within this run (its test samples and its ray directions; not evidence over seeds, which needs "
                 "several runs):"]
        for w in self.within:
            lines.append(f"  {w.finding}: {w.word.upper()} within run: {w.claim}: {w.estimate:+.4g}; {w.evidence}")
        return "\n".join(lines)

    def format_verdicts(self) -> str:
        """The verdicts alone: per finding its word, and per claim its 95% interval over the runs.

        Where the null pair was analysed, also the null pair's and the paired difference.
        """
        null = (", on the null pair (a second SGD solution in SWA's place) and paired, SWA's minus the null's"
                if self.null is not None else "")
        lines = [f"findings over {len(self.runs)} run(s), each claim by its 95% interval over runs{null}:"]
        for v in self.verdicts:
            null_word = f"  [null control: {v.null_word}]" if v.null is not None else ""
            lines.append(f"  {v.finding.title}: {v.word.upper()}{null_word}")
            lines += [f"    {line}" for line in v.lines()]
        return "\n".join(lines)

    def format_markdown(self) -> str:
        """The table and verdicts as Markdown (docs/findings.md is this, generated)."""
        heads = " | ".join(f"run {i + 1}" for i in range(len(self.runs)))
        many = len(self.runs) > 1
        lines = [f"| quantity | {self.spread_head} |" + (f" {heads} |" if many else ""),
                 "|---|---|" + ("---|" * len(self.runs) if many else "")]
        lines += [f"| {a} | {b} |" + (" " + " | ".join(cs) + " |" if many else "") for a, b, cs in self.rows()]
        null = self.null is not None
        lines += ["", "| finding | verdict | claim | estimate | 95% interval | per run |"
                  + (" null pair | SWA minus null, paired |" if null else ""),
                  "|---|---|---|---|---|---|" + ("---|---|" if null else "")]
        for v in self.verdicts:
            for i, m in enumerate(v.claims):
                head = (f"{v.finding.title} | **{v.word}**" + (f" (null: {v.null_word})" if null else "")
                        if i == 0 else " | ")
                row = f"| {head} | {m.claim.text} | {m.estimate} | {m.interval} {m.word} | {m.per_run} |"
                if null:
                    n, p = v.null[i], v.paired[i]
                    row += f" {n.estimate} {n.interval} {n.word} | " + (
                        f"{p.estimate} {p.interval} {p.word} |" if p is not None else "not compared |")
                lines.append(row)
        if self.within and len(self.runs) == 1:
            lines += ["", "Within this run (not evidence over seeds):", "",
                      "| finding | claim | estimate | test | within-run verdict |", "|---|---|---|---|---|"]
            lines += [f"| {w.finding} | {w.claim} | {w.estimate:+.4g} | {w.evidence} | {w.word} |" for w in self.within]
        lines += [f"\nnote: {n}" for n in self.notes]
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per quantity (key, label, mean, std, per-run values), then one per claim.

        Its finding's verdict, the claim's estimate, interval and verdict, the per-run statistic (and the null
        pair's, prefixed ``null_``, and SWA's minus the null's, prefixed ``paired_``).
        """
        path = Path(path)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["quantity", "label", "mean", "std", *self.runs])
            for key, label in labels().items():
                if key in self.values and np.isfinite(self.values[key]).any():
                    w.writerow([key, label, *self.stat(key), *self.values[key]])
            w.writerow(["claim", "text", "finding verdict", "estimate", "low", "high", "claim verdict", *self.runs])
            for v in self.verdicts:
                for prefix, claims in (("", v.claims), ("null_", v.null or ()), ("paired_", v.paired or ())):
                    for m in (m for m in claims if m is not None):
                        w.writerow([f"{prefix}{v.finding.key}_{m.claim.key}", m.claim.text,
                                    v.null_word if prefix == "null_" else v.word, m.mean, m.low, m.high, m.word,
                                    *m.values])
        return path


def compare(runs: Sequence[str | os.PathLike | tuple[str | os.PathLike, str | os.PathLike]]) -> Comparison:
    """Collect and judge several runs.

    Args:
        runs: Run files (results next to them, ``RUN.landscape.h5``) or ``(run, results)`` pairs.

    Raises:
        UserError: No runs, a missing or unfinished run, or results of another run.
    """
    if not runs:
        raise UserError("compare needs at least one run")
    pairs = [r if isinstance(r, tuple) else (r, None) for r in runs]
    per, notes, seen, within = [], [], {}, []
    for run, res in pairs:
        v, settings, tests = run_metrics(run, res)
        per.append(v)
        within.append(tests)
        for g, setting in settings.items():
            seen.setdefault(g, set()).add(setting)
    for g, settings in seen.items():  # the same network (parameter count), other settings
        if len({s[-1] for s in settings}) == 1 and len(settings) > 1:
            if len({s[1:] for s in settings}) == 1:  # only the direction seeds differ: independent draws
                seeds = ", ".join(str(s[0]) for s in sorted(settings))
                notes.append(f"{g}: each run along directions of its own (seeds {seeds}); widths compare as draws, "
                             "not direction by direction")
            else:
                notes.append(f"{g}: runs used different settings (direction seeds or counts) {sorted(settings)}; "
                             "their numbers compare, but not along the same directions")
    values = _stack(per)
    nulls = [default_results_path(run, "null") for run, _ in pairs]
    null = None
    if all(p.exists() for p in nulls):
        null = _stack([run_metrics(run, res, NULL_ROLES)[0] for (run, _), res in zip(pairs, nulls)])
    elif any(p.exists() for p in nulls):
        notes.append(f"the null pair was analysed on {sum(p.exists() for p in nulls)} of {len(nulls)} runs; the null "
                     "control needs it on every run ('analyze RUN all --null')")
    results = [str(res or default_results_path(run)) for run, res in pairs]
    return Comparison([str(r) for r, _ in pairs], results, values, judge(catalog.findings(), values, null), notes, null,
                      within[0])


def _stack(per: list[dict[str, float]]) -> dict[str, np.ndarray]:
    return {k: np.array([p.get(k, np.nan) for p in per], dtype=float) for k in labels()}
