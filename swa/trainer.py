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

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from landscape.bn import recompute_bn
from landscape.config import resolve_device
from landscape.errors import UserError
from landscape.layout import buffer_layout, flatten, param_layout
from landscape.reference import Metrics, evaluate_batches

from .config import Averaging, SWASchedule, TrainConfig
from .data import DataSpec, iterate_batches, load_splits
from .distributed import all_finite, all_within, barrier, init_from_env, on_rank0, rank, world
from .models import build_model
from .schedules import conventional_lr, cyclic_lr, is_cycle_end
from .sources import as_splits, fingerprint, is_import_path
from .trajectory import Status, Trajectory, TrajectoryWriter, run_attributes

__all__ = ["TrainData", "TrainingDiverged", "train", "resume", "builtin_data"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite, or exceeded ``divergence_factor`` times its starting value."""


@dataclass
class TrainData:
    """Where batches come from.

    Attributes:
        train: ``generator -> batches`` of one training epoch (shuffled, augmented).
        eval_batches: ``split -> batches`` in evaluation form (fixed order, no
            augmentation); ``"train"`` is also the BN recomputation pass.
        num_batches: Training batches per epoch.
        spec: JSON-able description stored in the run file (``{"name": "custom"}``
            for user loaders).
    """

    train: Callable[[torch.Generator], Batches]
    eval_batches: Callable[[str], Batches]
    num_batches: int
    spec: dict

    @classmethod
    def from_loaders(cls, train_loader: Iterable, test_loader: Iterable, train_eval_loader: Iterable | None = None,
                     description: str = "custom") -> TrainData:
        """Wrap user ``DataLoader``s (resume is exact only if they are seeded and deterministic)."""
        ev = {"train": train_eval_loader or train_loader, "test": test_loader}
        return cls(lambda g: train_loader, lambda s: ev[s], len(train_loader), {"name": description})


def builtin_data(spec: DataSpec, batch_size: int, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
                 ) -> TrainData:
    """A built-in data set held on ``device`` as tensors.

    With ``world`` > 1 (DDP) every rank trains on its slice of each global batch of ``batch_size``
    samples (same shuffling on all ranks), so the optimisation sees the same global batches.
    """
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} must be divisible by the number of ranks {world}")
    s = load_splits(spec)
    tx, ty, vx, vy = (t.to(device) for t in (s.train_x, s.train_y, s.test_x, s.test_y))
    ev = {"train": (tx, ty), "test": (vx, vy)}

    def train_batches(g: torch.Generator) -> Batches:
        for xb, yb in iterate_batches(tx, ty, batch_size, g, s.augment):
            lo = rank * xb.shape[0] // world
            hi = (rank + 1) * xb.shape[0] // world
            yield xb[lo:hi], yb[lo:hi]  # the whole batch when world == 1

    return TrainData(
        train=train_batches,
        eval_batches=lambda split: iterate_batches(*ev[split], batch_size),
        num_batches=math.ceil(tx.shape[0] / batch_size),
        spec={**spec.to_dict(), "num_classes": s.num_classes},
    )


class _Run:
    """State of one training run; methods are the phases of the plan."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: TrainData, writer: TrajectoryWriter,
                 device: torch.device, progress: bool, log: Callable[[str], None]):
        self.cfg, self.model, self.data, self.w, self.device = cfg, model, data, writer, device
        self.progress, self.log = progress, log
        self.nb = data.num_batches
        self.net = model
        if world() > 1:  # gradients averaged over ranks; parameters stay identical on every rank
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt = self._optimizer()
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.avg: AveragedModel | None = None
        self.sched: SWALR | None = None
        self.iteration = 0
        self.start_loss: float | None = None  # the first batch's loss; divergence is judged against it
        self.k = 0  # plan epochs done
        self.cycle_iters = max(1, round(cfg.swa_cycle * self.nb))
        start, length = cfg.swa_start_epoch, cfg.swa_length
        sgd = [] if cfg.init else [("sgd", e) for e in range(cfg.epochs)]
        self.plan = sgd + [("swa", e) for e in range(start, start + length)]

    # --- state ---------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _new_average(self) -> None:
        multi = get_ema_multi_avg_fn(self.cfg.ema_decay) if self.cfg.average is Averaging.EMA else None
        self.avg = AveragedModel(self.model, multi_avg_fn=multi)
        if self.cfg.swa_schedule is SWASchedule.SWALR:
            self.sched = SWALR(self.opt, self.cfg.swa_lr, self.cfg.swa_anneal_epochs, self.cfg.swa_anneal_strategy)

    def state(self) -> dict:
        return {
            "plan_index": self.k, "iteration": self.iteration, "n_snapshots": self.w.count,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "avg": self.avg.state_dict() if self.avg is not None else None,
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "rng_torch": torch.get_rng_state(), "rng_data": self.gen.get_state(), "start_loss": self.start_loss,
        }

    def load_state(self, s: dict) -> None:
        self.k, self.iteration = int(s["plan_index"]), int(s["iteration"])
        self.start_loss = s.get("start_loss")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        torch.set_rng_state(s["rng_torch"])
        self.gen.set_state(s["rng_data"])
        self.avg, self.sched = None, None
        if s["avg"] is not None:
            self._new_average()
            self.avg.load_state_dict(s["avg"])
        if s["scheduler"] is not None:
            self.sched.load_state_dict(s["scheduler"])

    # --- recording -----------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> Metrics:
        return evaluate_batches(model, self._to_device(self.data.eval_batches(split)))

    def _to_device(self, batches: Batches) -> Batches:
        return ((x.to(self.device), y.to(self.device)) for x, y in batches)

    def snapshot(self, branch: str, captured: bool, train: tuple[float, float], test: Metrics | None) -> None:
        self.w.append(
            flatten(list(self.model.parameters())), flatten(list(self.model.buffers())),
            epoch=self.iteration / self.nb, iteration=self.iteration, lr=self.opt.param_groups[0]["lr"],
            branch=branch, captured=captured, train_loss=train[0], train_acc=train[1],
            test_loss=test.loss if test else math.nan, test_acc=test.acc if test else math.nan,
        )

    def capture(self) -> None:
        self.avg.update_parameters(self.model)

    def write_solution(self, name: str, model: nn.Module, **extra: float) -> tuple[Metrics, Metrics]:
        tr, te = self.evaluate(model, "train"), self.evaluate(model, "test")
        self.w.write_solution(
            name, flatten(list(model.parameters())), flatten(list(model.buffers())),
            train_loss=tr.loss, train_acc=tr.acc, test_loss=te.loss, test_acc=te.acc, **extra,
        )
        return tr, te

    # --- training ------------------------------------------------------------------------------
    def lr_at(self, branch: str, epoch: int, j: int) -> float:
        c = self.cfg
        if branch == "sgd":
            return conventional_lr(epoch + j / self.nb, c.epochs, c.lr)
        if c.swa_schedule is SWASchedule.CYCLIC:
            return cyclic_lr(self._swa_iter(epoch, j), self.cycle_iters, c.swa_lr, c.swa_lr_min)
        if c.swa_schedule is SWASchedule.CONSTANT:
            return c.swa_lr
        return self.opt.param_groups[0]["lr"]  # SWALR sets it per epoch

    def _swa_iter(self, epoch: int, j: int) -> int:
        """1-based iteration within the SWA branch of batch j of ``epoch``."""
        return (epoch - self.cfg.swa_start_epoch) * self.nb + j + 1

    def run_epoch(self, branch: str, epoch: int) -> tuple[float, float, Metrics, bool]:
        c = self.cfg
        self.model.train()
        loss_sum = correct = seen = 0
        last_snap = -1
        any_capture = False
        for j, (xb, yb) in enumerate(self._to_device(self.data.train(self.gen))):
            lr = self.lr_at(branch, epoch, j)
            for g in self.opt.param_groups:
                g["lr"] = lr
            out = self.net(xb)
            loss = F.cross_entropy(out, yb)
            self._check_divergence(loss.detach(), branch, epoch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.iteration += 1
            loss_sum += loss.item() * yb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
            seen += yb.shape[0]
            captured = branch == "swa" and c.swa_schedule is SWASchedule.CYCLIC and is_cycle_end(
                self._swa_iter(epoch, j), self.cycle_iters)
            if captured:
                self.capture()
                any_capture = True
            if captured or (c.snapshot_every and self.iteration % c.snapshot_every == 0):
                test = self.evaluate(self.model, "test") if captured else None
                self.snapshot(branch, captured, (loss_sum / seen, correct / seen), test)
                last_snap = self.iteration
        if self.sched is not None:
            self.sched.step()
        captured = branch == "swa" and c.swa_schedule is not SWASchedule.CYCLIC and (
            (epoch - c.swa_start_epoch + 1) % int(c.swa_cycle) == 0)
        if captured:
            self.capture()
            any_capture = True
        test = self.evaluate(self.model, "test")
        if last_snap != self.iteration and (captured or not c.snapshot_every):
            self.snapshot(branch, captured, (loss_sum / seen, correct / seen), test)
        return loss_sum / seen, correct / seen, test, any_capture

    def _check_divergence(self, loss: torch.Tensor, branch: str, epoch: int) -> None:
        """Stop when the batch loss is not finite or exceeds ``divergence_factor x max(1, first batch's loss)``
        (on any rank): a run whose loss grows a hundredfold is diverging, NaN or not."""
        if self.start_loss is None and all_finite(loss):
            self.start_loss = float(loss)
        limit = self.cfg.divergence_factor * max(1.0, self.start_loss or 1.0)
        if not all_within(loss, limit):
            where = f"iteration {self.iteration + 1} ({branch} epoch {epoch + 1})"
            v = float(loss)
            why = f"became {v}" if not math.isfinite(v) else \
                f"reached {v:.3g}, over {self.cfg.divergence_factor:g} x max(1, first batch loss {self.start_loss:.3g})"
            raise TrainingDiverged(f"training diverged at {where}: the loss {why}; lower the learning rate")

    def start_swa_branch(self) -> None:
        """Switch from the end of the conventional run (w_SGD) to the fork."""
        c = self.cfg
        if not c.init:
            self.write_solution("sgd", self.model)
            k = self.k
            self.load_state({**self.w.fork(), "avg": None, "scheduler": None})
            self.k = k  # the plan goes on; only the weights, optimizer, RNG and iteration come from the fork
        self._new_average()
        if c.include_start:
            self.capture()

    def finish(self) -> dict:
        c = self.cfg
        swa = self.avg.module
        recompute_bn(swa, self._to_device(self.data.eval_batches("train")), c.bn_weighting)
        n_avg = int(self.avg.n_averaged.item())
        swa_tr, swa_te = self.write_solution("swa", swa, n_averaged=float(n_avg))
        return {"swa_train": swa_tr, "swa_test": swa_te, "n_averaged": n_avg}

    def run(self) -> dict:
        c = self.cfg
        fmt = "{:>5} {:>6} {:>9} {:>10} {:>9} {:>10} {:>9} {:>5}"
        self.log(fmt.format("phase", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "avg"))
        bar = tqdm(total=len(self.plan), initial=self.k, desc="train", disable=None if self.progress else True,
                   leave=False)  # None: on a terminal only
        while self.k < len(self.plan):
            branch, epoch = self.plan[self.k]
            if branch == "swa" and self.avg is None:
                self.start_swa_branch()
            lr_shown = self.lr_at(branch, epoch, 0)
            loss, acc, test, _ = self.run_epoch(branch, epoch)
            self.k += 1
            if branch == "sgd" and self.k == c.swa_start_epoch:
                self.w.save_fork(self.state())
            self.w.save_checkpoint(self.state())
            n_avg = int(self.avg.n_averaged.item()) if self.avg is not None else 0
            self.log(fmt.format(branch, epoch + 1, f"{lr_shown:.4g}", f"{loss:.4f}", f"{acc:.4f}",
                                f"{test.loss:.4f}", f"{test.acc:.4f}", n_avg))
            bar.update(1)
        bar.close()
        if self.avg is None:  # SWA branch of zero epochs cannot happen (validated); keep the invariant explicit
            raise UserError("the SWA branch did not run")
        out = self.finish()
        self.w.save_checkpoint(self.state())
        self.w.set_status(Status.COMPLETE)
        return out


class _RankWriter:
    """Stand-in for the writer on ranks other than 0 under DDP: counts snapshots, keeps the fork in memory."""

    def __init__(self, path: Path, count: int = 0, fork: dict | None = None):
        self.path, self.count, self._fork = Path(path), count, fork

    def append(self, *_a, **_k) -> int:
        self.count += 1
        return self.count - 1

    def save_fork(self, state: dict) -> None:
        self._fork = state

    def fork(self) -> dict:
        return self._fork

    def save_checkpoint(self, *_a) -> None: ...

    def write_solution(self, *_a, **_k) -> None: ...

    def set_status(self, *_a) -> None: ...

    def close(self) -> None: ...


def _attrs(cfg: TrainConfig, model: nn.Module, model_spec: dict, data: TrainData) -> dict[str, str]:
    splits = as_splits(data)  # the data in evaluation form: its fingerprint lets analyses refuse other data
    return run_attributes(cfg.to_dict(), model, model_spec, data.spec,
                          {s: fingerprint(*xy) for s, xy in splits.items()})


def _setup(cfg: TrainConfig, model: nn.Module | None, data: TrainData | None
           ) -> tuple[nn.Module, dict, TrainData, torch.device]:
    cfg.validate()
    device = resolve_device(cfg.device)
    if data is None:
        data = builtin_data(DataSpec(cfg.dataset, cfg.data_dir, cfg.num_samples, kwargs=cfg.dataset_kwargs),
                            cfg.batch_size, device, rank(), world())
    torch.manual_seed(cfg.seed)
    if model is None:
        kwargs = dict(cfg.model_kwargs)
        if "num_classes" in data.spec and not is_import_path(cfg.model):  # a factory's signature is its own
            kwargs.setdefault("num_classes", data.spec["num_classes"])
        try:
            model = build_model(cfg.model, **kwargs)
        except UserError:
            raise
        except (TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"model {cfg.model!r} rejects model_kwargs {json.dumps(kwargs)}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        spec = {"name": cfg.model, "kwargs": kwargs}
    else:
        spec = {"name": None, "class": f"{type(model).__module__}.{type(model).__qualname__}", "kwargs": {}}
    return model.to(device), spec, data, device


def _print_summary(log: Callable[[str], None], path: Path, out: dict) -> None:
    with Trajectory(path) as t:
        sgd = t.solution_scalar("sgd", "test_acc")
    log(f"SGD test accuracy: {sgd:.4f}   SWA test accuracy: {out['swa_test'].acc:.4f}   "
        f"(SWA averaged {out['n_averaged']} models)")
    log(f"run file: {path}")


def _load_init(model: nn.Module, path: str, device: torch.device) -> None:
    """Load a pre-trained state_dict into ``model`` or raise one clear :class:`UserError`."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"--init {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds for a file of another format
        raise UserError(f"--init {path} is not a PyTorch state_dict file ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"--init {path} holds a {type(state).__name__}, not a state_dict of tensors")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"--init {path} does not fit the model: {str(e).splitlines()[0]}") from None


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
    model, spec, data, device = _setup(cfg, model, data)
    if cfg.init:
        _load_init(model, cfg.init, device)
    writer = on_rank0(lambda: TrajectoryWriter.create(out, _attrs(cfg, model, spec, data), param_layout(model).size,
                                                      buffer_layout(model).size, cfg.snapshot_dtype, overwrite))
    if rank() != 0:  # DDP: rank 0 writes the one file
        writer, log, progress = _RankWriter(out), (lambda s: None), False
    run = _Run(cfg, model, data, writer, device, progress, log)
    run.snapshot("sgd", False, (math.nan, math.nan), run.evaluate(model, "test"))
    if cfg.init:
        run.write_solution("sgd", model)
    if cfg.swa_start_epoch == 0 and not cfg.init:
        writer.save_fork(run.state())
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
    model, _, data, device = _setup(cfg, model, data)
    reopened = on_rank0(lambda: TrajectoryWriter.resume(path))  # every rank learns whether rank 0 could
    if rank() == 0:
        writer, ckpt = reopened
    else:
        with Trajectory(path) as t:
            ckpt, fork = t.checkpoint(), t.fork()
        writer, log, progress = _RankWriter(path, int(ckpt["n_snapshots"]), fork), (lambda s: None), False
    run = _Run(cfg, model, data, writer, device, progress, log)
    run.load_state(ckpt)
    log(f"resuming {path} after {run.k} of {len(run.plan)} epochs ({writer.count} snapshots kept)")
    return _execute(run, writer)


def _execute(run: _Run, writer: TrajectoryWriter) -> Path:
    try:
        out = run.run()
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
        _print_summary(run.log, writer.path, out)
    return writer.path
