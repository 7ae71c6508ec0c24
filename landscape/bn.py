"""BatchNorm statistics recomputation for one model (the reference semantics).

Two weightings of the per-batch statistics are offered:

* ``"batch"`` (default): every batch counts equally. This *is*
  ``torch.optim.swa_utils.update_bn`` (momentum ``None``: cumulative average of
  the per-batch means and unbiased variances).
* ``"sample"``: every sample counts equally, as in the original SWA code, which
  sets each BN momentum to ``b / (n + b)`` before a batch of size ``b`` after
  ``n`` samples. Only a smaller last batch makes the two differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

__all__ = ["BNWeighting", "has_bn", "recompute_bn"]


class BNWeighting(str, Enum):
    """How per-batch statistics are weighted when BN buffers are recomputed."""

    BATCH = "batch"
    """Equal weight per batch, exactly ``torch.optim.swa_utils.update_bn``."""
    SAMPLE = "sample"
    """Equal weight per sample (original SWA code's momentum ``b / (n + b)``)."""


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable, weighting: BNWeighting | str = BNWeighting.BATCH,
                 device: torch.device | str | None = None) -> None:
    """Recompute the running statistics of every BatchNorm layer in place.

    Args:
        model: Model whose BN buffers are replaced; its train/eval mode and the BN
            momenta are restored afterwards.
        batches: Iterable of inputs or ``(inputs, targets)`` pairs.
        weighting: See :class:`BNWeighting`.
        device: Move inputs there first (as ``update_bn`` does).
    """
    weighting = BNWeighting(weighting)
    if weighting is BNWeighting.BATCH:
        update_bn(batches, model, device=device)
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
    was_training = model.training
    model.train()
    n = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if device is not None:
            x = x.to(device)
        b = x.shape[0]
        for m in bns:
            m.momentum = b / (n + b)
        model(x)
        n += b
    for m in bns:
        m.momentum = momenta[m]
    model.train(was_training)
