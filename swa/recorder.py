"""Record a run from your own training loop (or from checkpoints you already have) into a run file.

The file is the same crash-safe trajectory file the trainer writes (:mod:`swa.trajectory`), so every
analysis, ``figures`` and ``compare`` read it. The loop stays yours; the recorder only looks at the model::

    with Recorder("mine.h5", net, data=(train_set, test_set), weight_decay=5e-4, bn_batch_size=128) as rec:
        for epoch in range(budget):
            ...                                  # your SGD epoch
            rec.snapshot(lr=lr, train_loss=loss)  # the conventional trajectory
        rec.solution("sgd")                      # w_SGD: the model as it is now
        for epoch in range(swa_epochs):
            ...                                  # your SWA epoch
            rec.capture(lr=lr)                   # averaged into w_SWA (equal weights, AveragedModel) and stored
    # leaving the block: w_SWA gets its BN statistics recomputed and is written; the run is complete

A killed recording leaves every committed snapshot readable (status ``running``); an exception inside the
block marks the run ``interrupted`` with its message.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from landscape.bn import BNWeighting, recompute_bn
from landscape.errors import UserError
from landscape.layout import buffer_layout, flatten, param_layout
from landscape.objective import objective_from
from landscape.reference import evaluate_model
from landscape.structure import batch_size, map_tensors, take

from .checkpoints import checkpoint_files, load_into
from .config import TrainConfig
from .schema import Status, run_attributes
from .sources import as_splits, fingerprint
from .writer import TrajectoryWriter

__all__ = ["Recorder", "import_run"]


class Recorder:
    """Writes a run file from any training loop.

    Args:
        path: Run file to create.
        model: The network being trained (read, never changed).
        data: Its data in evaluation form, as :func:`swa.sources.as_splits` takes it: ``(train, test)`` tensor
            pairs, datasets or DataLoaders. The fingerprint is stored, so analyses refuse other data.
        weight_decay: The L2 coefficient of the training objective (the analyses' ``train_loss_l2``).
        bn_batch_size: Batch size of BN recomputation (use the training batch size).
        bn_weighting: ``"batch"`` (``update_bn``) or ``"sample"``.
        model_spec: How to rebuild the network without Python: ``{"name": "package.module:function",
            "kwargs": {...}}``; default: the class name only (analyses then need ``model=``).
        data_spec: Likewise for the data (``{"name": "package.module:function", "kwargs": {...}}``).
        source: ``"recorder"`` (a training loop) or ``"import"`` (checkpoints); stored with the run.
        overwrite: Replace an existing file.
        objective: What the run trains and the analyses measure: ``"classification"``, ``"regression"``,
            ``"language-model"`` or ``package.module:function`` (stored in the run with ``objective_kwargs``).
        objective_kwargs: Keyword arguments of the objective.
        resume: A :meth:`state` saved with your training checkpoint: the recording continues the run file from
            there (snapshots and solutions written after it are dropped, the running average is restored).
    """

    def __init__(self, path: str | os.PathLike, model: nn.Module, data: Any, *, weight_decay: float = 0.0,
                 bn_batch_size: int = 128, bn_weighting: str = "batch", model_spec: dict | None = None,
                 data_spec: dict | None = None, source: str = "recorder", overwrite: bool = False,
                 resume: dict | None = None, objective: str = "classification",
                 objective_kwargs: dict | None = None):
        self.model, self.path = model, Path(path)
        self.splits = as_splits(data)
        self.config = TrainConfig(model=(model_spec or {}).get("name") or "custom", dataset=(data_spec or {}).get(
            "name") or "custom", batch_size=bn_batch_size, weight_decay=weight_decay, bn_weighting=bn_weighting,
            epochs=1, swa_start=0, swa_epochs=1, device="cpu", objective=objective,
            objective_kwargs=dict(objective_kwargs or {}))
        self.objective = objective_from(objective, objective_kwargs)
        x, y = self.splits["train"]
        evaluate_model(model, take(x, 0, 8), y[:8], objective=self.objective)  # the objective reads this data
        spec = model_spec or {"name": None, "class": f"{type(model).__module__}.{type(model).__qualname__}", "kwargs": {}}
        attrs = run_attributes(self.config.to_dict(), model, {"kwargs": {}, **spec},
                               {"name": "custom", **(data_spec or {})},
                               {s: fingerprint(*xy) for s, xy in self.splits.items()}, source)
        self.average: AveragedModel | None = None
        self.steps = 0
        self.written: set[str] = set()
        if resume is None:
            self.writer = TrajectoryWriter.create(path, attrs, param_layout(model).size, buffer_layout(model).size,
                                                  overwrite=overwrite)
            return
        self.writer = TrajectoryWriter.reopen(path, int(resume["snapshots"]), set(resume["written"]))
        self.steps, self.written = int(resume["steps"]), set(resume["written"])
        if resume["average"] is not None:
            self.average = AveragedModel(self.model)
            self.average.load_state_dict(resume["average"])

    def state(self) -> dict:
        """What a resumed recording needs (``Recorder(..., resume=state)``): save it with your training checkpoint.

        Returns:
            ``{"snapshots", "steps", "written", "average"}``: counts, the solutions written, and the running average's
            ``state_dict`` (None before the first capture).
        """
        return {"snapshots": self.writer.count, "steps": self.steps, "written": sorted(self.written),
                "average": None if self.average is None else self.average.state_dict()}

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(value)

    def close(self, error: BaseException | None = None) -> None:
        """End the recording: :meth:`finish` it, or mark it interrupted by ``error``; the file is closed either way."""
        try:
            if error is None:
                self.finish()
            else:
                self.writer.set_status(Status.INTERRUPTED, f"{type(error).__name__}: {error}"[:500])
        finally:
            self.writer.close()

    def _metrics(self, model: nn.Module) -> dict[str, float]:
        out = {}
        for split, (x, y) in self.splits.items():
            m = evaluate_model(model, map_tensors(lambda t: t.to(_device(model)), x), y.to(_device(model)),
                               objective=self.objective)
            out.update({f"{split}_loss": m.loss, f"{split}_acc": m.acc, f"{split}_error": m.error})
        return out

    def snapshot(self, *, captured: bool = False, branch: str | None = None, lr: float = math.nan,
                 epoch: float | None = None, iteration: int | None = None, evaluate: bool = False,
                 **metrics: float) -> int:
        """Store the model's weights and buffers now as the next snapshot.

        Args:
            captured: Also average it into w_SWA (see :meth:`capture`).
            branch: ``"sgd"`` (the conventional run) or ``"swa"``; default ``"swa"`` once w_SGD is written or for
                a captured model, else ``"sgd"``.
            lr: The learning rate of the last step (for the schedule figure).
            epoch: Training progress in epochs (default: the count of snapshots so far).
            iteration: Training progress in steps (default: the count of snapshots so far).
            evaluate: Also evaluate train and test loss/accuracy here (one pass over the data).
            **metrics: ``train_loss``, ``train_acc``, ``train_error``, ``test_loss``, ``test_acc``, ``test_error`` as
                your loop measured them (the error is the objective's: MSE for regression).

        Returns:
            The snapshot's index.
        """
        known = ("train_loss", "train_acc", "train_error", "test_loss", "test_acc", "test_error")
        unknown = set(metrics) - set(known)
        if unknown:
            raise UserError(f"unknown snapshot metrics {sorted(unknown)}; use {', '.join(known)}")
        for split in ("train", "test"):  # classification's error follows from an accuracy given alone
            if f"{split}_acc" in metrics and f"{split}_error" not in metrics and self.objective.error == "error":
                metrics[f"{split}_error"] = 1.0 - metrics[f"{split}_acc"]
        if captured:
            if self.average is None:
                self.average = AveragedModel(self.model)
            self.average.update_parameters(self.model)
        self.steps += 1
        branch = branch or ("swa" if captured or "sgd" in self.written else "sgd")
        if branch not in ("sgd", "swa"):
            raise UserError(f"branch must be 'sgd' or 'swa', got {branch!r}")
        if evaluate:
            metrics = {**self._metrics(self.model), **metrics}
        return self.writer.append(flatten(list(self.model.parameters())), flatten(list(self.model.buffers())),
                                  epoch=self.steps if epoch is None else epoch,
                                  iteration=self.steps if iteration is None else iteration, lr=lr, branch=branch,
                                  captured=captured, **metrics)

    def capture(self, **meta: Any) -> int:
        """Average the model now into w_SWA and store it as a captured snapshot.

        Equal weights (``torch.optim.swa_utils.AveragedModel``); the snapshot is an FGE proposal for a cyclical
        schedule. Takes :meth:`snapshot`'s arguments.
        """
        return self.snapshot(captured=True, **meta)

    def solution(self, name: str, model: nn.Module | None = None, **extra: float) -> None:
        """Write ``model`` (default: the model now) as w_SGD (``"sgd"``) or w_SWA (``"swa"``), evaluated on the data."""
        model = self.model if model is None else model
        was = model.training
        self.writer.write_solution(name, flatten(list(model.parameters())), flatten(list(model.buffers())),
                                   **self._metrics(model), **extra)
        model.train(was)
        self.written.add(name)

    def finish(self) -> None:
        """Write w_SWA from the captured models unless it was written, and mark the run complete.

        BN statistics are recomputed over the training data.
        """
        if "swa" not in self.written and self.average is not None:
            swa = self.average.module
            x = map_tensors(lambda t: t.to(_device(swa)), self.splits["train"][0])
            b = self.config.batch_size
            recompute_bn(swa, [take(x, i, i + b) for i in range(0, batch_size(x), b)],
                         BNWeighting(self.config.bn_weighting))
            self.solution("swa", swa, n_averaged=float(self.average.n_averaged.item()))
        self.writer.set_status(Status.COMPLETE)


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def import_run(out: str | os.PathLike, *, model: str, data: str, model_kwargs: dict | None = None,
               data_kwargs: dict | None = None, sgd: str | None = None, swa: str | None = None,
               snapshots: str | None = None, sgd_snapshots: str | None = None, weight_decay: float = 0.0,
               bn_batch_size: int = 128, overwrite: bool = False, objective: str = "classification",
               objective_kwargs: dict | None = None) -> Path:
    """Build a run file from state_dicts a user already has (``swa-landscape import``).

    Args:
        out: Run file to create.
        model: ``package.module:function`` (or a registry name) building the network.
        data: ``package.module:function`` returning ``(train, test)``.
        model_kwargs: Keyword arguments of ``model``.
        data_kwargs: Keyword arguments of ``data``.
        sgd: State dict of w_SGD.
        swa: State dict of w_SWA (default: the average of ``snapshots``, BN recomputed).
        snapshots: Glob of the SWA branch's checkpoints (averaged, and the FGE proposals), in natural order.
        sgd_snapshots: Glob of the conventional run's checkpoints.
        weight_decay: As for :class:`Recorder`.
        bn_batch_size: As for :class:`Recorder`.
        overwrite: Replace an existing file.
        objective: As for :class:`Recorder`.
        objective_kwargs: As for :class:`Recorder`.

    Every checkpoint is checked against the network before the file is created: bad input writes nothing.
    """
    from .models import build_model
    from .sources import call_factory

    net = build_model(model, **(model_kwargs or {}))
    data_obj = call_factory(data, data_kwargs or {}, "data factory") if ":" in data else None
    if data_obj is None:
        raise UserError(f"--dataset {data!r} is not an import path of the form package.module:function")
    sgd_files, swa_files = checkpoint_files(sgd_snapshots), checkpoint_files(snapshots)
    singles = [Path(p) for p in (sgd, swa) if p]
    if not (sgd_files or swa_files or singles):
        raise UserError("nothing to import: pass --sgd, --swa, --snapshots or --sgd-snapshots")
    for f in (*sgd_files, *swa_files, *singles):
        load_into(net, f, notice=True)  # all checked before anything is written
    with Recorder(out, net, data_obj, weight_decay=weight_decay, bn_batch_size=bn_batch_size,
                  model_spec={"name": model, "kwargs": model_kwargs or {}},
                  data_spec={"name": data, "kwargs": data_kwargs or {}}, source="import", overwrite=overwrite,
                  objective=objective, objective_kwargs=objective_kwargs) as rec:
        for f in sgd_files:
            load_into(net, f)
            rec.snapshot(branch="sgd", evaluate=True)
        if sgd:
            load_into(net, Path(sgd))
            rec.solution("sgd")
        for f in swa_files:
            load_into(net, f)
            rec.capture(evaluate=True)
        if swa:
            load_into(net, Path(swa))
            rec.solution("swa")
    return Path(out)
