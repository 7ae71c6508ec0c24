"""The slow, obviously-correct reference path.

One point at a time: copy the point into a private copy of the model, recompute
BatchNorm with :func:`landscape.bn.recompute_bn` (i.e. ``update_bn``), then run
plain evaluation passes. Every fast path in :mod:`landscape.engine` is tested
against this.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .bn import BNWeighting, ModelCall, as_input_of, has_bn, recompute_bn
from .errors import UserError
from .layout import buffer_layout, flatten, param_layout, unflatten
from .objective import Classification, Objective
from .passes import accumulate
from .structure import batch_size as n_samples
from .structure import call_model, map_tensors, read_output, take

__all__ = ["Metrics", "evaluate_batches", "evaluate_model", "load_point", "reference_point"]


@dataclass(frozen=True)
class Metrics:
    """The objective's metrics on one split, averaged exactly over it.

    Attributes:
        values: Metric name to its value (``loss`` always; classification: ``accuracy`` in [0, 1] and ``error``).
        error_metric: The metric :attr:`error` returns.
    """

    values: dict[str, float]
    error_metric: str = "error"

    @property
    def loss(self) -> float:
        """The objective's loss."""
        return self.values["loss"]

    @property
    def acc(self) -> float:
        """The accuracy (NaN for an objective without one)."""
        return self.values.get("accuracy", math.nan)

    @property
    def error(self) -> float:
        """The objective's error (classification: ``1 - acc``)."""
        return self.values[self.error_metric]


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[tuple[Any, torch.Tensor]],
                     objective: Objective | None = None) -> Metrics:
    """The objective's metrics of ``model`` in eval mode over all batches (mode restored after).

    One batch at a time: the model's output read as the prediction, in float64, the objective's per-sample values
    summed and divided by the summed sample weights.

    Args:
        model: The network.
        batches: ``(inputs, targets)`` pairs; inputs a tensor, or a tuple or dict of tensors.
        objective: What is measured (default: classification).

    Raises:
        UserError: No samples.
    """
    objective = objective or Classification()
    was_training = model.training
    model.eval()
    sums: dict = {}
    weights: dict = {}
    for x, y in batches:
        pred = read_output(call_model(model, map_tensors(lambda t: as_input_of(model, t), x)))
        if not weights:
            objective.check(pred[None], y)
        accumulate(objective, pred.double()[None], y, sums, weights)
    model.train(was_training)
    if not weights or not weights.get("loss"):
        raise UserError("cannot evaluate on an empty split")
    means = objective.finish({k: v / weights[k] for k, v in sums.items()})
    return Metrics({k: float(v[0]) for k, v in means.items()}, objective.error)


def evaluate_model(model: nn.Module, x: Any, y: torch.Tensor, batch_size: int = 1000,
                   objective: Objective | None = None) -> Metrics:
    """:func:`evaluate_batches` over inputs ``x [N, ...]`` and targets ``y [N, ...]``.

    Inputs are a tensor, or a tuple or dict of tensors; the batch size does not change the result.
    """
    n = n_samples(x)
    return evaluate_batches(model, ((take(x, i, i + batch_size), y[i : i + batch_size]) for i in range(0, n, batch_size)),
                            objective)


def load_point(model: nn.Module, weights: torch.Tensor, buffers: torch.Tensor | None = None) -> nn.Module:
    """A deep copy of ``model`` holding the flat weights ``[P]`` (and buffers ``[Q]``)."""
    m = copy.deepcopy(model)
    params = unflatten(weights, param_layout(m))
    m.load_state_dict({**m.state_dict(), **params} | (unflatten(buffers, buffer_layout(m)) if buffers is not None else {}))
    return m


def reference_point(
    model: nn.Module,
    weights: torch.Tensor,
    splits: dict[str, tuple[Any, torch.Tensor]],
    bn_data: Any,
    batch_size: int = 128,
    weighting: BNWeighting | str = BNWeighting.BATCH,
    buffers: torch.Tensor | None = None,
    objective: Objective | None = None,
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
        objective: What is measured (default: classification).

    Returns:
        Metrics per split and the flat buffers ``[Q]`` used.
    """
    m = load_point(model, weights, buffers)
    if bn_data is not None and has_bn(m):
        n = n_samples(bn_data)
        recompute_bn(m, [ModelCall(take(bn_data, i, i + batch_size)) for i in range(0, n, batch_size)], weighting)
    out = {name: evaluate_model(m, x, y, objective=objective) for name, (x, y) in splits.items()}
    return out, flatten(list(m.buffers()), torch.float64)
