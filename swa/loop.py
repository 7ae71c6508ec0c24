"""The training loop of one run.

The conventional branch to the budget, then the SWA branch with its captures, then (``controls``) the null SGD
branch from the fork and the budget-matched SGD run from the start.

:class:`TrainingLoop` holds a run's state (model, optimizer, average, scheduler, RNG, position in the plan) as
one checkpointable dict, and runs its epochs: the lr of every step and the capture rule come from
:mod:`swa.schedules`, every snapshot and solution goes to the writer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from landscape.bn import recompute_bn
from landscape.layout import flatten
from landscape.objective import Classification, objective_from, reports_accuracy
from landscape.ranks import world
from landscape.reference import Metrics, evaluate_batches
from landscape.structure import call_model, map_tensors, read_output

from .config import Averaging, SWASchedule, TrainConfig
from .data import Batches, TrainData
from .divergence import check_divergence
from .schedules import captured_after_epoch, captured_after_step, scheduled_lr
from .schema import Status
from .writer import RunWriter

__all__ = ["TrainingLoop"]


class TrainingLoop:
    """State of one training run; methods are the phases of the plan."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: TrainData, writer: RunWriter,
                 device: torch.device, progress: bool, log: Callable[[str], None]):
        self.cfg, self.model, self.data, self.w, self.device = cfg, model, data, writer, device
        self.objective = objective_from(cfg.objective, cfg.objective_kwargs)
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
        start, length = cfg.swa_start_epoch, cfg.swa_length
        sgd = [] if cfg.init else [("sgd", e) for e in range(cfg.epochs)]
        self.plan = sgd + [("swa", e) for e in range(start, start + length)]
        if cfg.controls:  # not recorded as snapshots: only their solutions are written
            self.plan += [("sgd_null", e) for e in range(start, cfg.epochs)]
            self.plan += [("sgd_budget", e) for e in range(start + length)]

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
        """The loop's state for a checkpoint (position, optimizer, averaging, random generators)."""
        return {
            "plan_index": self.k, "iteration": self.iteration, "n_snapshots": self.w.count,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "avg": self.avg.state_dict() if self.avg is not None else None,
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "rng_torch": torch.get_rng_state(), "rng_data": self.gen.get_state(), "start_loss": self.start_loss,
        }

    def load_state(self, s: dict) -> None:
        """Continue from a :meth:`state` (resume)."""
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
        """The objective's metrics of ``model`` on ``split`` (eval mode, the trainer's evaluation data)."""
        return evaluate_batches(model, self._to_device(self.data.eval_batches(split)), self.objective)

    def _to_device(self, batches: Batches) -> Batches:
        return ((map_tensors(lambda t: t.to(self.device), x), y.to(self.device)) for x, y in batches)

    def snapshot(self, branch: str, captured: bool, train: Metrics, test: Metrics | None) -> None:
        """Record the current weights and buffers as a snapshot of ``branch`` with its metrics."""
        self.w.append(
            flatten(list(self.model.parameters())), flatten(list(self.model.buffers())),
            epoch=self.iteration / self.nb, iteration=self.iteration, lr=self.opt.param_groups[0]["lr"],
            branch=branch, captured=captured, train_loss=train.loss, train_acc=train.acc, train_error=train.error,
            test_loss=test.loss if test else math.nan, test_acc=test.acc if test else math.nan,
            test_error=test.error if test else math.nan,
        )

    def capture(self) -> None:
        """Add the current weights to the SWA average."""
        self.avg.update_parameters(self.model)

    def write_solution(self, name: str, model: nn.Module, **extra: float) -> tuple[Metrics, Metrics]:
        """Record ``model`` as the solution ``name`` (BN recomputed where the rule says) with its metrics."""
        tr, te = self.evaluate(model, "train"), self.evaluate(model, "test")
        self.w.write_solution(
            name, flatten(list(model.parameters())), flatten(list(model.buffers())),
            train_loss=tr.loss, train_acc=tr.acc, test_loss=te.loss, test_acc=te.acc, train_error=tr.error,
            test_error=te.error, **extra,
        )
        return tr, te

    # --- training ------------------------------------------------------------------------------
    def lr_at(self, branch: str, epoch: int, j: int) -> float:
        """The lr of batch ``j`` of ``epoch`` (:func:`swa.schedules.scheduled_lr`; SWALR's own otherwise)."""
        lr = scheduled_lr(self.cfg, branch, epoch * self.nb + j + 1, self.nb)
        return self.opt.param_groups[0]["lr"] if lr is None else lr

    def batch_loss(self, xb, yb, running: dict[str, list[float]]) -> torch.Tensor:
        """The objective's mean loss over one training batch (differentiable), its metrics added to ``running``.

        Classification keeps ``F.cross_entropy`` (the trainer's numbers from before objectives, bit for bit); any
        other objective's batch loss is its values' sum over its weights' sum, as the engine averages a split.
        """
        def add(k: str, total: float, weight: float) -> None:
            sums = running.setdefault(k, [0.0, 0.0])
            sums[0] += total
            sums[1] += weight

        out = read_output(call_model(self.net, xb))
        if isinstance(self.objective, Classification):
            loss = F.cross_entropy(out, yb)
            n = yb.shape[0]
            add("loss", loss.item() * n, n)
            add("accuracy", (out.argmax(1) == yb).sum().item(), n)
            return loss
        for k, (v, w) in self.objective.per_sample(out[None], yb).items():  # a mean: sum of values / of weights
            total, weight = v[0].sum(), (float(v.shape[1]) if w is None else w.sum())
            add(k, float(total.detach()), float(weight))
            if k == "loss":
                loss = total / weight
        return loss

    def running_metrics(self, running: dict[str, list[float]]) -> Metrics:
        """The epoch's running training metrics so far (as :class:`Metrics`)."""
        means = {k: torch.tensor(s / n, dtype=torch.float64) for k, (s, n) in running.items()}
        return Metrics({k: float(v) for k, v in self.objective.finish(means).items()}, self.objective.error)

    def run_epoch(self, branch: str, epoch: int) -> tuple[Metrics, Metrics, bool]:
        """Train one epoch of ``branch``; returns the running train metrics, the test metrics and whether captured."""
        c = self.cfg
        self.model.train()
        running: dict[str, list[float]] = {}
        last_snap = -1
        any_capture = False
        recorded = branch in ("sgd", "swa")  # the controls' epochs leave no snapshots
        for j, (xb, yb) in enumerate(self._to_device(self.data.train(self.gen))):
            lr = self.lr_at(branch, epoch, j)
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss = self.batch_loss(xb, yb, running)
            self._check_divergence(loss.detach(), branch, epoch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.iteration += 1
            captured = captured_after_step(c, branch, epoch * self.nb + j + 1, self.nb)
            if captured:
                self.capture()
                any_capture = True
            if not recorded:  # a control: trained, not recorded
                continue
            if captured or (c.snapshot_every and self.iteration % c.snapshot_every == 0):
                test = self.evaluate(self.model, "test") if captured else None
                self.snapshot(branch, captured, self.running_metrics(running), test)
                last_snap = self.iteration
        if self.sched is not None:
            self.sched.step()
        captured = captured_after_epoch(c, branch, epoch)
        if captured:
            self.capture()
            any_capture = True
        test = self.evaluate(self.model, "test")
        if recorded and last_snap != self.iteration and (captured or not c.snapshot_every):
            self.snapshot(branch, captured, self.running_metrics(running), test)
        return self.running_metrics(running), test, any_capture

    def _check_divergence(self, loss: torch.Tensor, branch: str, epoch: int) -> None:
        self.start_loss = check_divergence(loss, self.start_loss, self.cfg.divergence_factor,
                                           f"iteration {self.iteration + 1} ({branch} epoch {epoch + 1})")

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

    def finish(self) -> None:
        """Write w_SWA: the average with its BN statistics recomputed."""
        c = self.cfg
        swa = self.avg.module
        recompute_bn(swa, self._to_device(self.data.eval_batches("train")), c.bn_weighting)
        self.write_solution("swa", swa, n_averaged=float(self.avg.n_averaged.item()))

    def enter(self, branch: str) -> None:
        """Start ``branch`` (at its first epoch, also on a resume there).

        Write what the previous branch ended with and load the state the new one starts from.
        """
        k = self.k
        if branch == "swa":
            self.start_swa_branch()
        elif branch == "sgd_null":  # after the SWA branch: from the fork, with another data order
            self.finish()
            self.load_state({**self.w.fork(), "avg": None, "scheduler": None})
            seed = int(np.random.SeedSequence([self.cfg.seed, 1]).generate_state(1)[0])
            self.gen.manual_seed(seed)
            torch.manual_seed(seed)
        elif branch == "sgd_budget":  # after the null branch: from the initial state, the run's own data order
            self.write_solution("sgd_null", self.model)
            self.load_state({**self.w.fork("start"), "avg": None, "scheduler": None})
        self.k = k  # the plan goes on; weights, optimizer, RNG and iteration come from the state loaded

    def end(self, branch: str) -> None:
        """Write the solution of the plan's last branch."""
        if branch == "swa":
            self.finish()
        else:
            self.write_solution(branch, self.model)

    def run(self) -> None:
        """Run the plan from where the state stands to the end, checkpointing after every epoch."""
        c = self.cfg
        fmt = "{:>10} {:>6} {:>9} {:>10} {:>9} {:>10} {:>9} {:>5}"
        shown = "acc" if reports_accuracy(self.objective) else self.objective.error
        self.log(fmt.format("phase", "epoch", "lr", "train_loss", f"train_{shown}"[:9], "test_loss",
                            f"test_{shown}"[:9], "avg"))
        bar = tqdm(total=len(self.plan), initial=self.k, desc="train", disable=None if self.progress else True,
                   leave=False)  # None: on a terminal only
        while self.k < len(self.plan):
            branch, epoch = self.plan[self.k]
            if self.k > 0 and self.plan[self.k - 1][0] != branch or self.k == 0 and branch == "swa":
                self.enter(branch)
            lr_shown = self.lr_at(branch, epoch, 0)
            train, test, _ = self.run_epoch(branch, epoch)
            self.k += 1
            if branch == "sgd" and self.k == c.swa_start_epoch:
                self.w.save_fork(self.state())
            self.w.save_checkpoint(self.state())
            n_avg = int(self.avg.n_averaged.item()) if self.avg is not None else 0
            value = (lambda m: m.acc) if shown == "acc" else (lambda m: m.error)
            self.log(fmt.format(branch, epoch + 1, f"{lr_shown:.4g}", f"{train.loss:.4f}", f"{value(train):.4f}",
                                f"{test.loss:.4f}", f"{value(test):.4f}", n_avg))
            bar.update(1)
        bar.close()
        self.end(self.plan[-1][0])
        self.w.save_checkpoint(self.state())
        self.w.set_status(Status.COMPLETE)
