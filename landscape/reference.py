"""The slow, obviously-correct reference path.

One point at a time: copy the point into a private copy of the model, recompute
BatchNorm with :func:`landscape.bn.recompute_bn` (i.e. ``update_bn``), then run
plain evaluation passes. Every fast path in :mod:`landscape.engine` is tested
against this.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bn import BNWeighting, as_input_of, has_bn, recompute_bn
from .errors import UserError
from .layout import buffer_layout, flatten, param_layout, unflatten

__all__ = ["Metrics", "evaluate_batches", "evaluate_model", "load_point", "reference_point"]


@dataclass(frozen=True)
class Metrics:
    """Mean cross-entropy loss and accuracy (fraction in [0, 1]) on one split."""

    loss: float
    acc: float

    @property
    def error(self) -> float:
        """The classification error, ``1 - acc``."""
        return 1.0 - self.acc


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Metrics:
    """Mean cross-entropy and accuracy of ``model`` in eval mode over all batches (mode restored after).

    Raises:
        UserError: No samples.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches:
        out = model(as_input_of(model, x))
        loss_sum += F.cross_entropy(out.double(), y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += y.shape[0]
    model.train(was_training)
    if n == 0:
        raise UserError("cannot evaluate on an empty split")
    return Metrics(loss_sum / n, correct / n)


def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> Metrics:
    """:func:`evaluate_batches` over tensors ``x [N, ...]``, ``y [N]`` (batch size does not change the result)."""
    return evaluate_batches(model, ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)))


def load_point(model: nn.Module, weights: torch.Tensor, buffers: torch.Tensor | None = None) -> nn.Module:
    """A deep copy of ``model`` holding the flat weights ``[P]`` (and buffers ``[Q]``)."""
    m = copy.deepcopy(model)
    params = unflatten(weights, param_layout(m))
    m.load_state_dict({**m.state_dict(), **params} | (unflatten(buffers, buffer_layout(m)) if buffers is not None else {}))
    return m


def reference_point(
    model: nn.Module,
    weights: torch.Tensor,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    bn_data: torch.Tensor | None,
    batch_size: int = 128,
    weighting: BNWeighting | str = BNWeighting.BATCH,
    buffers: torch.Tensor | None = None,
) -> tuple[dict[str, Metrics], torch.Tensor]:
    """Metrics at one weight point, the slow way.

    Args:
        model: Template network (not modified).
        weights: Flat parameters ``[P]``.
        splits: Split name to ``(inputs, targets)``.
        bn_data: Training inputs for BN recomputation; None keeps ``buffers``.
        batch_size: Batch size of the BN pass (it defines the per-batch statistics).
        weighting: BN weighting.
        buffers: Flat buffers ``[Q]`` to load first (used as is when ``bn_data`` is None).

    Returns:
        Metrics per split and the flat buffers ``[Q]`` used.
    """
    m = load_point(model, weights, buffers)
    if bn_data is not None and has_bn(m):
        recompute_bn(m, [bn_data[i : i + batch_size] for i in range(0, bn_data.shape[0], batch_size)], weighting)
    out = {name: evaluate_model(m, x, y) for name, (x, y) in splits.items()}
    return out, flatten(list(m.buffers()), torch.float64)
