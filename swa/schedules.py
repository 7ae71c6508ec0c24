"""Learning-rate schedules of the SWA paper, as pure functions of the iteration.

Conventions: ``iteration`` counts processed mini-batches; the lr returned for
iteration ``i`` (1-based within its phase) is the lr of the i-th SGD step.
"""

from __future__ import annotations

__all__ = ["conventional_lr", "cyclic_lr", "is_cycle_end"]


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
