"""When training has diverged: a batch loss that is not finite, or grew a hundredfold (``divergence_factor``)."""

from __future__ import annotations

import math

import torch

from landscape.errors import UserError
from landscape.ranks import all_finite, all_within

__all__ = ["TrainingDiverged", "check_divergence"]


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite, or exceeded ``divergence_factor`` times its starting value."""


def check_divergence(loss: torch.Tensor, start_loss: float | None, factor: float, where: str) -> float | None:
    """Stop when the batch loss is not finite or exceeds ``factor x max(1, first batch's loss)`` (on any rank).

    Args:
        loss: This batch's loss (a scalar tensor).
        start_loss: The first finite batch loss of the run (None before there was one).
        factor: The run's ``divergence_factor``.
        where: The step, in words, for the message.

    Returns:
        The start loss (this batch's, if it is the first finite one).

    Raises:
        TrainingDiverged: With the step, the loss and the rule.
    """
    if start_loss is None and all_finite(loss):
        start_loss = float(loss)
    if not all_within(loss, factor * max(1.0, start_loss or 1.0)):
        v = float(loss)
        why = f"became {v}" if not math.isfinite(v) else \
            f"reached {v:.3g}, over {factor:g} x max(1, first batch loss {start_loss:.3g})"
        raise TrainingDiverged(f"training diverged at {where}: the loss {why}; lower the learning rate")
    return start_loss
