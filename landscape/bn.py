"""BatchNorm statistics recomputation for one model (the reference semantics).

Two weightings of the per-batch statistics are offered:

* ``"batch"`` (default): every batch counts equally. This *is*
  ``torch.optim.swa_utils.update_bn`` (momentum ``None``: cumulative average of
  the per-batch means and unbiased variances).
* ``"sample"``: every sample counts equally, as in the original SWA code, which
  sets each BN momentum to ``b / (n + b)`` before a batch of size ``b`` after
  ``n`` samples. Only a smaller last batch makes the two differ.

During the pass only the BatchNorm layers are in train mode; every other module
(dropout, stochastic depth, ...) stays in eval mode, so the statistics are a
deterministic function of the weights and the data. (``update_bn`` alone would put the
whole model in train mode and draw dropout masks into the statistics.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from .structure import batch_size, call_model, map_tensors

__all__ = ["BNWeighting", "ModelCall", "bn_modules", "has_bn", "as_input_of", "recompute_bn"]


class BNWeighting(str, Enum):
    """How per-batch statistics are weighted when BN buffers are recomputed."""

    BATCH = "batch"
    """Equal weight per batch, exactly ``torch.optim.swa_utils.update_bn``."""
    SAMPLE = "sample"
    """Equal weight per sample (original SWA code's momentum ``b / (n + b)``)."""


def bn_modules(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm layer (any subclass of ``_BatchNorm``) with its name, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_bn(model: nn.Module) -> bool:
    """Whether the model has a BatchNorm layer (any subclass of ``_BatchNorm``)."""
    return bool(bn_modules(model))


class ModelCall:
    """Inputs of any structure (a tensor, a tuple or a dict of tensors) as one batch that ``update_bn`` passes on.

    ``update_bn`` takes the first entry of a tuple batch and calls ``.to(device)`` on what it passes to the model;
    wrapping the inputs keeps them whole (pytorch issue #49082: dict batches).
    """

    def __init__(self, inputs: Any):
        self.inputs = inputs

    @property
    def size(self) -> int:
        """The number of samples."""
        return batch_size(self.inputs)

    def to(self, device: torch.device | str) -> ModelCall:
        """The same inputs on ``device``."""
        return ModelCall(map_tensors(lambda t: t.to(device), self.inputs))

    def __call__(self, model: nn.Module) -> Any:
        """The model's output on these inputs (floating-point ones in the model's dtype)."""
        return call_model(model, map_tensors(lambda t: as_input_of(model, t), self.inputs))


def as_input_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Floating-point inputs in the dtype of the model's parameters; anything else as it is.

    A float64 copy of a float32 model checks a point on the same data.
    """
    p = next(model.parameters(), None)
    return x.to(p.dtype) if p is not None and x.is_floating_point() and x.dtype != p.dtype else x


class _OnlyBNTrains(nn.Module):
    """``model`` seen through a wrapper whose ``train()`` switches its BN layers only (everything else: eval)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> _OnlyBNTrains:
        self.model.eval()
        for _, m in bn_modules(self.model):
            m.training = mode  # the layer alone: a fused layer's own dropout child stays in eval mode
        return self

    def forward(self, x: torch.Tensor | ModelCall) -> Any:
        return x(self.model) if isinstance(x, ModelCall) else self.model(as_input_of(self.model, x))


def _whole(batch: Any) -> torch.Tensor | ModelCall:
    """A batch's inputs (the first of an ``(inputs, targets)`` pair) as ``update_bn`` can pass them on."""
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return x if isinstance(x, (torch.Tensor, ModelCall)) else ModelCall(x)


@contextmanager
def _modes_restored(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable, weighting: BNWeighting | str = BNWeighting.BATCH,
                 device: torch.device | str | None = None) -> None:
    """Recompute the running statistics of every BatchNorm layer in place.

    Args:
        model: Model whose BN buffers are replaced; the mode of every module and the BN
            momenta are restored afterwards.
        batches: Iterable of inputs or ``(inputs, targets)`` pairs; inputs a tensor, a :class:`ModelCall`, or a
            dict or tuple of tensors (called as ``model(**x)``, ``model(*x)``).
        weighting: See :class:`BNWeighting`.
        device: Move inputs there first (as ``update_bn`` does).
    """
    weighting = BNWeighting(weighting)
    batches = (_whole(b) for b in batches)
    with _modes_restored(model):
        if weighting is BNWeighting.BATCH:
            update_bn(batches, _OnlyBNTrains(model), device=device)
            return
        bns = [m for _, m in bn_modules(model)]
        if not bns:
            return
        momenta = {m: m.momentum for m in bns}
        for m in bns:
            m.reset_running_stats()
        _OnlyBNTrains(model).train()
        n = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if device is not None:
                x = x.to(device)
            b = x.size if isinstance(x, ModelCall) else x.shape[0]
            for m in bns:
                m.momentum = b / (n + b)
            x(model) if isinstance(x, ModelCall) else model(as_input_of(model, x))
            n += b
        for m in bns:
            m.momentum = momenta[m]
