"""The SWA trainer: conventional SGD to the budget B plus an SWA branch, logged to HDF5.

The run follows the paper (sections 3.1-3.2, appendix A.1):

* conventional run of B epochs with the decaying schedule
  (:func:`swa.schedules.conventional_lr`); its end is w_SGD;
* the SWA branch forks from the conventional run at the end of epoch
  ``swa_start`` (schedule unchanged up to there) and trains ``swa_epochs`` more
  epochs with a constant, cyclical or SWALR lr; captured models are averaged with
  ``torch.optim.swa_utils.AveragedModel`` and the average's BatchNorm statistics
  are recomputed with one pass over the (unaugmented) training data: w_SWA.

Both branches are written to one trajectory file (:mod:`swa.trajectory`). After
every epoch a checkpoint (model, optimizer, scheduler, average, RNG states) is
stored in the file, so ``resume`` continues a killed run and ends with the same
weights as an uninterrupted run (CPU, fixed seed, built-in data).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from torch import nn

from landscape.errors import UserError
from landscape.layout import buffer_layout, param_layout
from landscape.objective import metric_names, reports_accuracy
from landscape.ranks import barrier, init_from_env, on_rank0, rank
from landscape.reference import Metrics

from .build import build_run, load_init, run_file_attributes
from .config import TrainConfig
from .data import TrainData
from .distributed import RankWriter
from .divergence import TrainingDiverged
from .loop import TrainingLoop
from .runs import run_objective
from .schema import SOLUTIONS, STATES, Status
from .trajectory import Trajectory
from .writer import RunWriter, TrajectoryWriter

__all__ = ["TrainingDiverged", "train", "resume"]


def _print_summary(log: Callable[[str], None], path: Path) -> None:
    with Trajectory(path) as t:
        objective = run_objective(t)
        key, what = ("test_acc", "accuracy") if reports_accuracy(objective) else ("test_error",
                                                                                  metric_names(objective)["error"])
        acc = {n: t.solution_scalar(n, key) for n in SOLUTIONS if t.has_solution(n)}
        n_avg = int(t.solution_scalar("swa", "n_averaged"))
    log(f"SGD test {what}: {acc['sgd']:.4f}   SWA test {what}: {acc['swa']:.4f}   (SWA averaged {n_avg} models)")
    if len(acc) > 2:
        log("controls: " + "   ".join(f"{_CONTROLS[n]} test {what}: {a:.4f}" for n, a in acc.items() if n in _CONTROLS))
    log(f"run file: {path}")


_CONTROLS = {"sgd_budget": "budget-matched SGD", "sgd_null": "null SGD"}


def train(cfg: TrainConfig, out: str | Path, *, model: nn.Module | None = None, data: TrainData | None = None,
          overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train the conventional and the SWA branch and write the run file.

    Args:
        cfg: Settings.
        out: Run file to create.
        model: A user network; default builds ``cfg.model`` from the registry.
        data: User data (:meth:`TrainData.from_loaders`); default the built-in ``cfg.dataset``.
        overwrite: Replace an existing file.
        progress: Show progress bars.
        log: Receives the per-epoch table and the summary lines.

    Returns:
        Path of the run file.

    Raises:
        UserError: Bad settings, existing file, or divergence (file left consistent).
    """
    init_from_env()  # under torchrun: DistributedDataParallel, rank 0 writes the file
    model, spec, data, device = build_run(cfg, model, data)
    if cfg.init:
        load_init(model, cfg.init, device)
    writer = on_rank0(lambda: TrajectoryWriter.create(out, run_file_attributes(cfg, model, spec, data), param_layout(model).size,
                                                      buffer_layout(model).size, cfg.snapshot_dtype, overwrite))
    if rank() != 0:  # DDP: rank 0 writes the one file
        writer, log, progress = RankWriter(out), (lambda s: None), False
    run = TrainingLoop(cfg, model, data, writer, device, progress, log)
    run.snapshot("sgd", False, Metrics({"loss": math.nan, run.objective.error: math.nan}, run.objective.error),
                 run.evaluate(model, "test"))
    if cfg.init:
        run.write_solution("sgd", model)
    if cfg.swa_start_epoch == 0 and not cfg.init:
        writer.save_fork(run.state())
    if cfg.controls:  # the budget-matched control starts where the run started
        writer.save_fork(run.state(), "start")
    return _execute(run, writer)


def resume(path: str | Path, *, model: nn.Module | None = None, data: TrainData | None = None,
           progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Continue an interrupted run from its last complete epoch.

    Raises:
        UserError: Not a run file, nothing to resume, or the run is already complete.
    """
    init_from_env()
    with Trajectory(path) as t:
        status, cfg_dict, model_spec, started = t.status, t.config, t.model_spec, t.has_checkpoint
    if status == Status.COMPLETE:
        raise UserError(f"{path} is already complete; nothing to resume")
    cfg = TrainConfig(**cfg_dict)
    if model is None and model_spec.get("name") is None:
        raise UserError(f"{path} was trained with a user model; pass it to resume(model=...)")
    if not started:  # killed before its first checkpoint: the file holds the whole config, so start over
        log(f"{path} has no checkpoint yet (killed before the first epoch ended); starting the run over")
        barrier()  # every rank has read the file before rank 0 replaces it
        return train(cfg, path, model=model, data=data, overwrite=True, progress=progress, log=log)
    model, _, data, device = build_run(cfg, model, data)
    reopened = on_rank0(lambda: TrajectoryWriter.resume(path))  # every rank learns whether rank 0 could
    if rank() == 0:
        writer, ckpt = reopened
    else:
        with Trajectory(path) as t:
            ckpt, states = t.checkpoint(), {k: t.fork(k) for k in STATES}
        writer, log, progress = RankWriter(path, int(ckpt["n_snapshots"]), states), (lambda s: None), False
    run = TrainingLoop(cfg, model, data, writer, device, progress, log)
    run.load_state(ckpt)
    log(f"resuming {path} after {run.k} of {len(run.plan)} epochs ({writer.count} snapshots kept)")
    return _execute(run, writer)


def _execute(run: TrainingLoop, writer: RunWriter) -> Path:
    try:
        run.run()
    except TrainingDiverged as e:
        writer.set_status(Status.DIVERGED, str(e))
        raise
    except KeyboardInterrupt:
        writer.set_status(Status.INTERRUPTED, "interrupted by the user; continue with --resume")
        raise
    finally:
        writer.close()
    barrier()  # rank 0 has closed the file
    if rank() == 0:
        _print_summary(run.log, writer.path)
    return writer.path
