"""What every analysis shares: an engine built from the run file, and resumable evaluation of a point set."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from landscape.engine import Engine, EngineConfig, EvalResult
from landscape.points import PointSet
from swa.runs import build_run_model, load_dataset
from swa.trajectory import Trajectory

from .results import ResultsFile, default_results_path

__all__ = ["RunContext", "open_run", "analysis", "evaluate_missing"]


@dataclass
class RunContext:
    """A run opened for analysis: its trajectory (read-only), model template and engine."""

    traj: Trajectory
    engine: Engine
    engine_config: EngineConfig

    def engine_dict(self) -> dict:
        d = dataclasses.asdict(self.engine_config)
        return {k: (v.value if hasattr(v, "value") else v) for k, v in d.items()}


def open_run(run: str | os.PathLike, engine_config: EngineConfig | None = None) -> RunContext:
    """Open a run file and build the engine on its data.

    The BN recomputation defaults follow the run: batch size and weighting of its training config.
    """
    t = Trajectory(run)
    cfg = t.config
    if engine_config is None:
        engine_config = EngineConfig(bn_batch_size=cfg["batch_size"], bn_weighting=cfg["bn_weighting"])
    model = build_run_model(t)
    splits = {s: load_dataset(run, s) for s in ("train", "test")}
    return RunContext(t, Engine(model, splits, config=engine_config), engine_config)


@contextmanager
def analysis(run: str | os.PathLike, out: str | os.PathLike | None, engine_config: EngineConfig | None
             ) -> Iterator[tuple[RunContext, ResultsFile]]:
    """The run opened read-only with its engine, and the results file (default ``RUN.landscape.h5``)."""
    results = ResultsFile(out or default_results_path(run), run)
    ctx = open_run(run, engine_config)
    try:
        yield ctx, results
    finally:
        ctx.traj.close()


def evaluate_missing(ctx: RunContext, results: ResultsFile, group: str, points: PointSet, done: np.ndarray,
                     progress: bool, desc: str, probs: tuple[str, ...] = ()) -> int:
    """Evaluate the points not yet done and write them chunk by chunk; returns how many were computed.

    Stored per point: ``train_loss``, ``train_error``, ``test_loss``, ``test_error``
    (flat index order of the group's arrays).
    """
    todo = np.flatnonzero(~done)
    if todo.size == 0:
        return 0
    sub = _subset(points, todo)

    def on_chunk(lo: int, hi: int, part: EvalResult) -> None:
        results.write_points(group, todo[lo:hi], {
            "train_loss": part.loss["train"].numpy(), "train_error": (1 - part.acc["train"]).numpy(),
            "test_loss": part.loss["test"].numpy(), "test_error": (1 - part.acc["test"]).numpy(),
        })

    ctx.engine.evaluate(sub, probs=probs, progress=progress, desc=desc, on_chunk=on_chunk)
    return int(todo.size)


def _subset(points: PointSet, idx: np.ndarray) -> PointSet:
    i = torch.as_tensor(idx, dtype=torch.long)
    if points.points is not None:
        return PointSet.explicit(points.points[i], None if points.buffers is None else points.buffers[i])
    return dataclasses.replace(points, coords=points.coords[i])
