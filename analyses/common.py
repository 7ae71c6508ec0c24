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
from torch import nn

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.errors import UserError
from landscape.objective import metric_names
from landscape.points import PointSet
from landscape.probe import ProbeCache
from landscape.ranks import rank, world
from landscape.result import EvalResult
from swa.runs import build_run_model, run_objective, run_splits
from swa.trajectory import Trajectory

from .distributed import ShardedResults, shard_map
from .distributed import mine as shard
from .journal import Journal
from .results import ResultsFile, config_json

__all__ = ["VALUES", "RunContext", "default_engine_config", "open_run", "analysis", "evaluate_missing", "per_point",
           "RESULT_DEFINING"]

VALUES = ("train_loss", "train_error", "test_loss", "test_error", "train_loss_l2")
"""What :func:`evaluate_missing` stores per point."""

RESULT_DEFINING = ("bn_mode", "bn_weighting", "bn_batch_size", "bn_batches", "dtype", "weight_decay")
"""Engine settings that change the numbers; chunking, strategy, workers and device only change the speed."""


@dataclass
class RunContext:
    """A run opened for analysis: its trajectory (read-only), its evaluation data and the engine on them.

    Attributes:
        traj: The open run file.
        engine: The evaluation engine on the run's model and data.
        engine_config: Its settings (what is recorded is what is used).
        splits: ``"train"``/``"test"`` to ``(inputs, targets)`` as the engine evaluates them.
    """

    traj: Trajectory
    engine: Engine
    engine_config: EngineConfig
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def scored_test_targets(self, why: str, noun: str = "distributions") -> torch.Tensor:
        """The class of every scored test prediction ``[m]`` (a language model's scored tokens).

        For analyses that compare predicted distributions or labels (FGE, the predictions).

        Raises:
            UserError: The run's objective predicts no distributions: ``"{why}; the NAME objective's predictions are
                not {noun}"``.
        """
        objective = self.engine.objective
        if not getattr(objective, "distributions", False):
            raise UserError(f"{why}; the {getattr(objective, 'name', 'run')} objective's predictions are not {noun}")
        y = self.splits["test"][1]
        return objective.scored_targets(y) if hasattr(objective, "scored_targets") else y

    def engine_dict(self, full: bool = False) -> dict:
        """Engine settings that define the results (part of an analysis' identity), or all of them."""
        d = dataclasses.asdict(self.engine_config)
        d = {k: (v.value if hasattr(v, "value") else v) for k, v in d.items()}
        return d if full else {k: d[k] for k in RESULT_DEFINING}


def default_engine_config(t: Trajectory, **settings) -> EngineConfig:
    """Engine settings for a run: the BN batch size and weighting of its training, unless given in ``settings``."""
    cfg = t.config
    return EngineConfig(**{"bn_batch_size": cfg["batch_size"], "bn_weighting": cfg["bn_weighting"], **settings})


def open_run(t: Trajectory, engine_config: EngineConfig | None = None, model: nn.Module | None = None,
             data=None, cache: ProbeCache | None = None) -> RunContext:
    """Build the engine on an open run's model and data (default settings: :func:`default_engine_config`).

    Args:
        t: The open run.
        engine_config: Engine settings.
        model: The network, for a run the file cannot rebuild (checked against the stored layout).
        data: The data, for a run the file cannot rebuild (checked against the stored fingerprint): what
            :func:`swa.sources.as_splits` takes.
        cache: The engine's probe cache (default: its own), to share timed plans between engines.

    The engine's ``weight_decay`` is always the run's own: ``train_loss_l2`` is the run's training objective.
    """
    engine_config = dataclasses.replace(engine_config or default_engine_config(t), weight_decay=t.config["weight_decay"])
    splits = run_splits(t, data)
    engine = Engine(build_run_model(t, model), splits, config=engine_config, cache=cache, objective=run_objective(t))
    return RunContext(t, engine, engine_config, splits)


@contextmanager
def analysis(run: str | os.PathLike | Trajectory, out: str | os.PathLike | None, engine_config: EngineConfig | None,
             model: nn.Module | None = None, data=None, cache: ProbeCache | None = None
             ) -> Iterator[tuple[RunContext, ShardedResults]]:
    """The run (opened read-only here unless already open) with its engine, and the results file.

    Args:
        run: Run file, or an open :class:`Trajectory` (then it stays open: a command opens the run once).
        out: Results file (default ``RUN.landscape.h5``).
        engine_config: Engine settings (default: :func:`default_engine_config`).
        model: The network, for a run the file cannot rebuild (see :func:`open_run`).
        data: The data, for a run the file cannot rebuild (see :func:`open_run`).
        cache: The engine's probe cache (see :func:`open_run`).
    """
    t = run if isinstance(run, Trajectory) else Trajectory(run)
    try:
        ctx = open_run(t, engine_config, model, data, cache)  # refused model or data: nothing written
        results = ShardedResults(ResultsFile(out or t.results_path, t, metric_names(ctx.engine.objective)))
        yield ctx, results
    finally:
        if t is not run:
            t.close()


def evaluate_missing(ctx: RunContext, results: ShardedResults, group: str, points: PointSet, done: np.ndarray,
                     progress: bool, desc: str) -> int:
    """Evaluate the points not yet done and write them chunk by chunk; returns how many were computed.

    Stored per point (flat index order of the group's arrays): ``train_loss``, ``train_error``, ``test_loss``,
    ``test_error`` and ``train_loss_l2``, the train loss plus ``0.5 * weight_decay * ||w||^2`` (the paper's
    regularised training objective; :func:`open_run` sets the engine's ``weight_decay`` to the run's).
    """
    todo = np.flatnonzero(~done)
    r, w = rank(), world()
    mine = todo[shard(todo.size)]  # deterministic; all of it in a single process
    journal = Journal(results.path)
    with results.read() as f:
        config = f[group].attrs["config"]

    def on_chunk(lo: int, hi: int, part: EvalResult) -> None:  # durable at the cost of the chunk
        journal.append(group, config, mine[lo:hi], {
            "train_loss": part.loss["train"].numpy(), "train_error": part.error("train").numpy(),
            "test_loss": part.loss["test"].numpy(), "test_error": part.error("test").numpy(),
            "train_loss_l2": (part.loss["train"] + part.l2).numpy()}, rank=r)

    if mine.size:
        ctx.engine.evaluate(points.subset(mine), progress=progress and r == 0, desc=desc, on_chunk=on_chunk)
    results.merge(journal, group)  # the one meeting point of the ranks
    report = ctx.engine.explain()
    results.write(group, {}, {"engine_settings": json.dumps({**ctx.engine_dict(full=True), "ranks": w,
                                                             "plan_used": str(report.choice) if report else None})})
    return int(todo.size)


def per_point(ctx: RunContext, results: ShardedResults, group: str, config, compute, attrs: dict,
              progress: bool, axes: dict[str, tuple[str, ...]] | None = None) -> dict:
    """An analysis computed point by point (``config.points``), each point its own group ``GROUP/<point>``.

    Points already stored with these settings are read back (resume); the others are shared out over the ranks
    and each written whole when done.

    Args:
        ctx: The open run and its engine.
        results: The results file.
        group: The analysis' results group.
        config: Its config (a dataclass with ``points``); with the engine's settings it identifies a result.
        compute: ``compute(point name) -> dict`` of values.
        attrs: Attributes stored with every point (besides ``config`` and ``point``).
        progress: Announce each point as it starts.
        axes: The values' coordinates, as :meth:`analyses.results.ResultsFile.write` takes them.
    """
    cfg = {**dataclasses.asdict(config), "engine": ctx.engine_dict()}
    cfg.pop("points")
    summary = {name: got for name in config.points if (got := results.stored(f"{group}/{name}", cfg)) is not None}
    todo = [n for n in config.points if n not in summary]

    def announced(name: str) -> dict:
        if progress:
            print(f"{group} at {name} (rank {rank()})" if world() > 1 else f"{group} at {name}", flush=True)
        return compute(name)

    for name, vals in zip(todo, shard_map(announced, todo)):  # points shared out over the ranks
        results.write(f"{group}/{name}", vals, {"config": config_json(cfg), "point": name, **attrs}, axes)
        summary[name] = vals
    return {n: summary[n] for n in config.points}
