"""Learning-rate schedules of the SWA paper, as pure functions of the iteration.

Conventions: ``iteration`` counts processed mini-batches; the lr returned for
iteration ``i`` (1-based within its phase) is the lr of the i-th SGD step.
"""

from __future__ import annotations

__all__ = ["conventional_lr", "cyclic_lr", "is_cycle_end", "cycle_steps", "scheduled_lr", "captured_after_step",
           "captured_after_epoch", "lr_trace"]


def conventional_lr(epoch: float, budget: float, lr: float, final_ratio: float = 0.01) -> float:
    """The paper's decaying schedule for conventional training with budget B.

    ``lr`` for the first half of the budget, then a linear decay to
    ``final_ratio * lr`` reached at 90% of the budget, constant afterwards
    (paper, appendix A.1).

    Args:
        epoch: Training progress in epochs (fractional within an epoch).
        budget: Budget B in epochs.
        lr: Initial learning rate alpha_1.
        final_ratio: Ratio of final to initial lr (0.01 in the paper).
    """
    t = epoch / budget
    if t <= 0.5:
        factor = 1.0
    elif t <= 0.9:
        factor = 1.0 - (1.0 - final_ratio) * (t - 0.5) / 0.4
    else:
        factor = final_ratio
    return lr * factor


def cyclic_lr(i: int, cycle: int, lr_max: float, lr_min: float) -> float:
    """The paper's discontinuous cyclical schedule (section 3.1).

    alpha(i) = (1 - t(i)) alpha_1 + t(i) alpha_2 with t(i) = (mod(i - 1, c) + 1) / c:
    within each cycle of ``c`` iterations the lr falls linearly and reaches
    alpha_2 at the cycle's last iteration, then jumps back up.

    Args:
        i: Iteration within the SWA phase, starting at 1.
        cycle: Cycle length c in iterations.
        lr_max: alpha_1.
        lr_min: alpha_2.
    """
    t = ((i - 1) % cycle + 1) / cycle
    return (1.0 - t) * lr_max + t * lr_min


def is_cycle_end(i: int, cycle: int) -> bool:
    """True after the last step of a cycle (mod(i, c) = 0): where models are captured."""
    return i % cycle == 0


def cycle_steps(cfg, steps_per_epoch: int) -> int:
    """Steps per cycle of the cyclical schedule: ``swa_cycle`` epochs, at least one step."""
    return max(1, round(cfg.swa_cycle * steps_per_epoch))


def scheduled_lr(cfg, branch: str, i: int, steps_per_epoch: int) -> float | None:
    """The learning rate of step ``i`` of a run with settings ``cfg`` (a :class:`~swa.config.TrainConfig`).

    Args:
        cfg: The run's settings.
        branch: ``"sgd"`` (the conventional schedule), ``"swa"``, or a control: ``"sgd_null"`` (the conventional
            schedule again) or ``"sgd_budget"`` (the conventional schedule over the SWA branch's last epoch).
        i: Global 1-based step; the SWA branch continues the count from its fork at epoch ``swa_start``.
        steps_per_epoch: Steps per epoch.

    Returns:
        The lr, or None for ``swalr`` (``torch.optim.swa_utils.SWALR`` sets it per epoch).
    """
    if branch in ("sgd", "sgd_null"):
        return conventional_lr((i - 1) / steps_per_epoch, cfg.epochs, cfg.lr)
    if branch == "sgd_budget":
        return conventional_lr((i - 1) / steps_per_epoch, cfg.swa_start_epoch + cfg.swa_length, cfg.lr)
    k = i - cfg.swa_start_epoch * steps_per_epoch  # 1-based step within the SWA branch
    if cfg.swa_schedule == "cyclic":
        return cyclic_lr(k, cycle_steps(cfg, steps_per_epoch), cfg.swa_lr, cfg.swa_lr_min)
    if cfg.swa_schedule == "constant":
        return cfg.swa_lr
    return None


def captured_after_step(cfg, branch: str, i: int, steps_per_epoch: int) -> bool:
    """Whether the model is captured (averaged; an FGE proposal) after step ``i``.

    Captured at the end of every cycle of the cyclical schedule.
    """
    k = i - cfg.swa_start_epoch * steps_per_epoch
    return branch == "swa" and cfg.swa_schedule == "cyclic" and is_cycle_end(k, cycle_steps(cfg, steps_per_epoch))


def captured_after_epoch(cfg, branch: str, epoch: int) -> bool:
    """Whether the model is captured at the end of (0-based) ``epoch``.

    Every ``swa_cycle`` whole epochs of the SWA branch for the constant and SWALR schedules.
    """
    return branch == "swa" and cfg.swa_schedule != "cyclic" and (epoch - cfg.swa_start_epoch + 1) % int(cfg.swa_cycle) == 0


def lr_trace(config: dict, batches_per_epoch: int) -> dict[str, tuple[list[int], list[float]]]:
    """The learning rate of every SGD step of a run, from its stored config alone (for the schedule figure).

    Args:
        config: The run's :class:`~swa.config.TrainConfig` as a dict (the run file's ``config``).
        batches_per_epoch: Steps per epoch.

    Returns:
        ``{"sgd": (iterations, lrs), "swa": (iterations, lrs)}``: global 1-based iteration numbers (the SWA
        branch continues the count from its fork) and the lr of that step (:func:`scheduled_lr`).
    """
    from .config import TrainConfig

    nb = batches_per_epoch
    cfg = TrainConfig(**config)  # owns the derived defaults
    start, length = cfg.swa_start_epoch, cfg.swa_length
    sgd_it = list(range(1, (0 if cfg.init else cfg.epochs) * nb + 1))
    sgd_lr = [scheduled_lr(cfg, "sgd", i, nb) for i in sgd_it]
    swa_it = list(range(start * nb + 1, (start + length) * nb + 1))
    if cfg.swa_schedule != "swalr":
        swa_lr = [scheduled_lr(cfg, "swa", i, nb) for i in swa_it]
    else:  # torch's SWALR, created at the fork on the lr the conventional schedule last set, stepped per epoch
        import torch
        from torch.optim.swa_utils import SWALR

        last = sgd_lr[start * nb - 1] if start > 0 else cfg.lr
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=last)
        sched = SWALR(opt, cfg.swa_lr, cfg.swa_anneal_epochs, cfg.swa_anneal_strategy)
        swa_lr = []
        for _ in range(length):
            swa_lr += [opt.param_groups[0]["lr"]] * nb
            opt.step()
            sched.step()
    return {"sgd": (sgd_it, sgd_lr), "swa": (swa_it, swa_lr)}
