"""What every analysis shares: an engine built from the run file, and resumable evaluation of a point set."""

from __future__ import annotations

import dataclasses
import json
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

from .distributed import barrier, rank, world
from .journal import Journal
from .results import ResultsFile, default_results_path

__all__ = ["RunContext", "open_run", "analysis", "evaluate_missing", "RESULT_DEFINING"]

RESULT_DEFINING = ("bn_mode", "bn_weighting", "bn_batch_size", "bn_batches", "dtype", "weight_decay")
"""Engine settings that change the numbers; chunking, strategy, workers and device only change the speed."""


@dataclass
class RunContext:
    """A run opened for analysis: its trajectory (read-only), model template and engine."""

    traj: Trajectory
    engine: Engine
    engine_config: EngineConfig

    def engine_dict(self, full: bool = False) -> dict:
        """Engine settings that define the results (part of an analysis' identity), or all of them."""
        d = dataclasses.asdict(self.engine_config)
        d = {k: (v.value if hasattr(v, "value") else v) for k, v in d.items()}
        return d if full else {k: d[k] for k in RESULT_DEFINING}


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
                     progress: bool, desc: str) -> int:
    """Evaluate the points not yet done and write them chunk by chunk; returns how many were computed.

    Stored per point: ``train_loss``, ``train_error``, ``test_loss``, ``test_error``
    (flat index order of the group's arrays).
    """
    todo = np.flatnonzero(~done)
    r, w = rank(), world()
    mine = todo[r::w]  # deterministic shard; all of it in a single process
    journal = Journal(results.path)
    with results.read() as f:
        config = f[group].attrs["config"]

    def on_chunk(lo: int, hi: int, part: EvalResult) -> None:  # durable at the cost of the chunk
        journal.append(group, config, mine[lo:hi], {
            "train_loss": part.loss["train"].numpy(), "train_error": (1 - part.acc["train"]).numpy(),
            "test_loss": part.loss["test"].numpy(), "test_error": (1 - part.acc["test"]).numpy()}, rank=r)

    if mine.size:
        ctx.engine.evaluate(_subset(points, mine), progress=progress and r == 0, desc=desc, on_chunk=on_chunk)
    barrier()  # the one meeting point: rank 0 merges every rank's chunks into the results file
    if r == 0:
        journal.merge(results, group)
    barrier()
    results.write(group, {}, {"engine_settings": json.dumps({**ctx.engine_dict(full=True), "ranks": w,
                                                             "strategy_used": ctx.engine.strategy.value
                                                             if ctx.engine.strategy else None})})
    return int(todo.size)


def _subset(points: PointSet, idx: np.ndarray) -> PointSet:
    i = torch.as_tensor(idx, dtype=torch.long)
    if points.points is not None:
        return PointSet.explicit(points.points[i], None if points.buffers is None else points.buffers[i])
    return dataclasses.replace(points, coords=points.coords[i])
