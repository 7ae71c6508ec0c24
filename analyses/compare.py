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

Each finding gets a verdict per run and overall (:mod:`analyses.findings`).
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
from swa.trajectory import Trajectory

from .findings import FINDINGS, Verdict, judge
from .registry import REGISTRY
from .results import ResultsFile

__all__ = ["Comparison", "labels", "run_metrics", "compare"]

_RUN_LABELS = {"sgd_acc": "SGD test accuracy (%)", "swa_acc": "SWA test accuracy (%)",
               "acc_diff": "SWA - SGD accuracy (points)"}
"""The quantities of the run file itself; each analysis declares its own (:attr:`Analysis.labels`)."""


def labels() -> dict[str, str]:
    """Every quantity a comparison can hold, in table order (the run's, then each registered analysis'), with its
    label."""
    return {**_RUN_LABELS, **{k: v for a in REGISTRY.values() for k, v in a.labels.items()}}


def run_metrics(run: str | os.PathLike, results: str | os.PathLike | None = None) -> tuple[dict[str, float], dict]:
    """The quantities of one run (``NaN`` where an analysis has not been run) and the settings that must agree.

    Args:
        run: Run file (read-only).
        results: Its results file (default ``RUN.landscape.h5``); must belong to this run.

    Returns:
        ``(values, settings)``: values by key of :func:`labels`, read by each registered analysis'
        :attr:`~analyses.registry.Analysis.metrics`; settings maps what must agree across runs (e.g. a ray group)
        to the run's ``(settings..., parameter count)``.
    """
    v = dict.fromkeys(labels(), np.nan)
    settings: dict[str, tuple] = {}
    with Trajectory(run) as t:
        for name in ("sgd", "swa"):
            if not t.has_solution(name):
                raise UserError(f"{run} has no {name.upper()} solution yet (training unfinished)")
            v[f"{name}_acc"] = 100 * t.solution_scalar(name, "test_acc")
        v["acc_diff"] = v["swa_acc"] - v["sgd_acc"]
        results = Path(results) if results else default_results_path(t.path)
        if not results.exists():
            raise UserError(f"{run} has no results file {results}: run 'swa-landscape analyze {run} all' first "
                            "(or name it as RUN=RESULTS)")
        with ResultsFile(results, t).read() as f:
            for a in REGISTRY.values():
                v.update(a.metrics(f) if a.metrics else {})
                for what, s in (a.comparable(f) if a.comparable else {}).items():
                    settings[what] = (*s, t.param_layout.size)
    return v, settings


@dataclass
class Comparison:
    """The quantities and verdicts of several runs.

    Attributes:
        runs: Run files ``[R]``.
        results: Their results files ``[R]``.
        values: Quantity key to per-run values ``[R]`` (NaN: not measured).
        verdicts: One per finding, in the order of :data:`FINDINGS`.
        notes: Warnings about comparability (e.g. rays with different direction seeds).
    """

    runs: list[str]
    results: list[str]
    values: dict[str, np.ndarray]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)

    def stat(self, key: str) -> tuple[float, float]:
        """Mean and standard deviation (ddof 1; 0 for one run) over the runs of a quantity."""
        x = self.values[key]
        return float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else 0.0

    def verdict(self, key: str) -> Verdict:
        return next(v for v in self.verdicts if v.finding.key == key)

    @property
    def all_hold(self) -> bool:
        """Whether the paper's findings all hold (findings beside the paper are not part of it)."""
        return all(v.holds for v in self.verdicts if v.finding in FINDINGS)

    def rows(self) -> list[tuple[str, str, list[str]]]:
        """Measured quantities as ``(label, "mean +- std", per-run values)``, in table order."""
        out = []
        for key, label in labels().items():
            x = self.values.get(key, np.full(len(self.runs), np.nan))
            if not np.isfinite(x).any():
                continue
            m, s = self.stat(key)
            out.append((label, f"{m:.4g} ± {s:.2g}", [f"{a:.4g}" for a in x]))
        return out

    def format_table(self) -> str:
        """The terminal table: quantities with mean +- std and per-run values, then the verdicts."""
        rows = self.rows()
        heads = [f"run {i + 1}" for i in range(len(self.runs))]
        w0 = max(len(r[0]) for r in rows) if rows else 10
        w1 = max([len(r[1]) for r in rows] + [len("mean ± std")])
        lines = [f"{len(self.runs)} runs: " + ", ".join(f"run {i + 1} = {r}" for i, r in enumerate(self.runs)),
                 f"{'quantity':<{w0}}  {'mean ± std':>{w1}}  " + "  ".join(f"{h:>9}" for h in heads)]
        lines += [f"{a:<{w0}}  {b:>{w1}}  " + "  ".join(f"{c:>9}" for c in cs) for a, b, cs in rows]
        lines.append("findings (criterion; verdict per run; margins):")
        for v in self.verdicts:
            per = " ".join({True: "yes", False: "no", None: "-"}[p] for p in v.per_run)
            lines.append(f"  {v.finding.title}: {v.word.upper()}  [{per}]\n    criterion: {v.finding.criterion}\n"
                         f"    {v.margin}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def format_markdown(self) -> str:
        """The table and verdicts as Markdown (docs/findings.md is this, generated)."""
        heads = " | ".join(f"run {i + 1}" for i in range(len(self.runs)))
        lines = [f"| quantity | mean ± std | {heads} |", "|---|---|" + "---|" * len(self.runs)]
        lines += [f"| {a} | {b} | " + " | ".join(cs) + " |" for a, b, cs in self.rows()]
        lines += ["", "| finding | verdict | per run | criterion | margins |", "|---|---|---|---|---|"]
        for v in self.verdicts:
            per = " ".join({True: "yes", False: "no", None: "–"}[p] for p in v.per_run)
            lines.append(f"| {v.finding.title} | **{v.word}** | {per} | {v.finding.criterion} | {v.margin} |")
        lines += [f"\nnote: {n}" for n in self.notes]
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per quantity (key, label, mean, std, per-run values), then one per finding's verdict."""
        path = Path(path)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["quantity", "label", "mean", "std", *self.runs])
            for key, label in labels().items():
                if key in self.values and np.isfinite(self.values[key]).any():
                    w.writerow([key, label, *self.stat(key), *self.values[key]])
            for v in self.verdicts:
                w.writerow([f"finding_{v.finding.key}", v.finding.criterion, v.word, v.margin,
                            *({True: "holds", False: "does not hold", None: "not measured"}[p] for p in v.per_run)])
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
    per, notes, seen = [], [], {}
    for run, res in pairs:
        v, settings = run_metrics(run, res)
        per.append(v)
        for g, setting in settings.items():
            seen.setdefault(g, set()).add(setting)
    for g, settings in seen.items():  # the same network (parameter count), other settings
        if len({s[-1] for s in settings}) == 1 and len(settings) > 1:
            notes.append(f"{g}: runs used different settings (direction seeds or counts) {sorted(settings)}; their "
                         "numbers compare, but not along the same directions")
    values = {k: np.array([p.get(k, np.nan) for p in per], dtype=float) for k in labels()}
    results = [str(res or default_results_path(run)) for run, res in pairs]
    return Comparison([str(r) for r, _ in pairs], results, values, judge(values), notes)
