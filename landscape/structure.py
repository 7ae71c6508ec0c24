"""Batches of any structure: how inputs reach a model and how its output is read.

Inputs are a tensor, or tuples, lists and dicts of tensors sharing their first (sample) dimension: a tensor is
called ``model(x)``, a tuple ``model(*x)``, a dict ``model(**x)`` (:func:`call_model`, :func:`call_functional`),
and the prediction is the output tensor, an object's or a dict's ``logits``, or the first entry of a tuple
(:func:`read_output`). The objectives (:mod:`landscape.objective`) and the engine use nothing else to touch a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._pytree import tree_map

from .errors import UserError

__all__ = ["map_tensors", "batch_size", "take", "call_model", "call_functional", "read_output"]


def map_tensors(fn, inputs: Any) -> Any:
    """``fn`` applied to every tensor of ``inputs`` (a tensor, or tuples, lists and dicts of them)."""
    return tree_map(lambda t: fn(t) if isinstance(t, torch.Tensor) else t, inputs)

def batch_size(inputs: Any) -> int:
    """The number of samples ``N`` of inputs whose every tensor has them as its first dimension.

    Raises:
        UserError: No tensor, or tensors with different first dimensions.
    """
    sizes = set()
    map_tensors(lambda t: sizes.add(t.shape[0] if t.dim() else -1), inputs)
    if len(sizes) != 1 or -1 in sizes:
        raise UserError(f"a batch's tensors must share their first (sample) dimension; got sizes {sorted(sizes)}")
    return sizes.pop()

def take(inputs: Any, lo: int, hi: int) -> Any:
    """Samples ``lo:hi`` of every tensor of ``inputs``."""
    return map_tensors(lambda t: t[lo:hi], inputs)

def call_functional(model: nn.Module, params: dict[str, torch.Tensor], inputs: Any) -> Any:
    """:func:`call_model` with the model's parameters and buffers replaced (``torch.func.functional_call``)."""
    if isinstance(inputs, Mapping):
        return functional_call(model, params, (), dict(inputs))
    return functional_call(model, params, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,))

def call_model(model: nn.Module, inputs: Any) -> Any:
    """The model's output on ``inputs``.

    ``model(x)`` for a tensor, ``model(*x)`` for a tuple or list, ``model(**x)`` for a dict.
    """
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)

def read_output(out: Any) -> torch.Tensor:
    """The prediction tensor in a model's output.

    The tensor itself, an object's or a dict's ``logits``, or the first entry of a tuple or list.

    Raises:
        UserError: An output none of these reads.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise UserError(f"cannot read the model's output of type {type(out).__name__}: return a tensor, a tuple whose "
                    "first entry is the prediction, or an object or dict with 'logits'")
