"""Read what the figures need from run and results files, through their readers.

No model or training code: the learning rate of every step is computed from the stored config by
:func:`swa.schedules.lr_trace`.
"""

from __future__ import annotations

import json
import os

import numpy as np

from analyses.results import open_results, read_groups
from figures.data import MetricNames, RunSummary
from landscape.objective import metric_names
from swa.runs import run_objective
from swa.schedules import lr_trace
from swa.schema import SOLUTION_SCALARS
from swa.trajectory import Trajectory

__all__ = ["read_run", "read_results"]


def read_run(path: str | os.PathLike) -> RunSummary:
    """Settings, per-snapshot metrics and solution metrics of a run file.

    Read through :class:`swa.trajectory.Trajectory`: read-only, SWMR, validated.
    """
    with Trajectory(path) as t:
        sols = {name: {k: t.solution_scalar(name, k) for k in SOLUTION_SCALARS}
                for name in ("sgd", "swa") if t.has_solution(name)}
        meta = {k: t.meta(k) for k in ("iteration", "epoch", "lr", "branch", "captured", "test_error", "train_loss")}
        trace = _trace(t.config, meta["iteration"], meta["epoch"]) if t.source == "trainer" else \
            _recorded(meta["iteration"], meta["lr"], meta["branch"])
        return RunSummary(str(path), t.config, t.model_spec, t.dataset_spec, **meta, solutions=sols, status=t.status,
                          lr_trace=trace, names=MetricNames(**metric_names(run_objective(t))))


def _recorded(iteration: np.ndarray, lr: np.ndarray, branch: np.ndarray) -> dict:
    """The lr as the snapshots of a recorded or imported run hold it (the schedule is the user's own)."""
    return {b: (iteration[branch == b].tolist(), lr[branch == b].tolist()) for b in ("sgd", "swa")}


def _trace(config: dict, iteration: np.ndarray, epoch: np.ndarray) -> dict:
    """The lr at every step; steps per epoch read off the snapshots (iteration / epoch)."""
    ok = epoch > 0
    if not ok.any():
        return {}
    return lr_trace(config, int(round(float(iteration[ok][-1] / epoch[ok][-1]))))


def read_results(path: str | os.PathLike) -> dict[str, dict]:
    """Every analysis group of a results file as nested dicts of numpy arrays and attributes.

    See :func:`analyses.results.read_groups`. Every group also carries the run objective's names (``_names``, a
    :class:`figures.data.MetricNames`) for the figures' labels.
    """
    res = read_groups(path)
    with open_results(path) as f:
        stored = f.attrs.get("objective")
    names = MetricNames(**json.loads(stored)) if stored else MetricNames()

    def mark(g: dict) -> None:
        g["_names"] = names
        for v in g.values():
            if isinstance(v, dict) and v is not g.get("_attrs"):
                mark(v)

    for g in res.values():
        mark(g)
    return res
