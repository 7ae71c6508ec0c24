"""Named layouts of flat weight vectors.

A network's parameters (or buffers) are stored everywhere in this toolkit as one
flat vector ``[P]``: the tensors of ``named_parameters()`` (or ``named_buffers()``)
flattened and concatenated in module order. A :class:`Layout` records the names,
shapes and dtypes so that a flat vector can be split back into named tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

__all__ = ["Layout", "param_layout", "buffer_layout", "flatten", "unflatten"]


@dataclass(frozen=True)
class Layout:
    """Names, shapes and dtypes of the tensors packed into one flat vector.

    Attributes:
        names: Tensor names, in packing order.
        shapes: Shape of each tensor.
        dtypes: ``str(dtype)`` of each tensor (e.g. ``"torch.float32"``); integer
            buffers such as ``num_batches_tracked`` are stored as floats in the flat
            vector and cast back on :func:`unflatten`.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def numels(self) -> tuple[int, ...]:
        """Number of entries of each tensor, in order."""
        return tuple(prod(s) for s in self.shapes)

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(self.numels)

    @property
    def slices(self) -> dict[str, slice]:
        """Where each tensor lies in the flat vector, by name, in packing order."""
        out, lo = {}, 0
        for name, n in zip(self.names, self.numels):
            out[name] = slice(lo, lo + n)
            lo += n
        return out

    def to_json(self) -> str:
        """The layout as JSON (names and shapes), as run files store it."""
        return json.dumps({"names": self.names, "shapes": self.shapes, "dtypes": self.dtypes})

    @classmethod
    def from_json(cls, text: str) -> Layout:
        """A layout from :meth:`to_json`'s text."""
        d = json.loads(text)
        return cls(tuple(d["names"]), tuple(tuple(s) for s in d["shapes"]), tuple(d["dtypes"]))


def _layout(named: list[tuple[str, torch.Tensor]]) -> Layout:
    return Layout(
        tuple(n for n, _ in named),
        tuple(tuple(t.shape) for _, t in named),
        tuple(str(t.dtype) for _, t in named),
    )


def param_layout(model: nn.Module) -> Layout:
    """Layout of ``model.named_parameters()``."""
    return _layout(list(model.named_parameters()))


def buffer_layout(model: nn.Module) -> Layout:
    """Layout of ``model.named_buffers()``."""
    return _layout(list(model.named_buffers()))


def flatten(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Concatenate tensors into one flat vector.

    Args:
        tensors: Tensors in layout order.
        dtype: dtype of the result.

    Returns:
        Flat vector ``[P]``.
    """
    if not tensors:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])


def unflatten(vec: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Split a flat vector ``[P]`` (or a batch ``[K, P]``) into named tensors.

    Floating-point tensors keep the dtype of ``vec`` (float64 evaluation of a float32
    model stays float64); integer and bool buffers (``num_batches_tracked``), which
    travel as floats in flat vectors, are cast back to their layout dtype.

    Args:
        vec: Flat vector ``[P]`` or batch of flat vectors ``[K, P]``.
        layout: Layout the vector was packed with.

    Returns:
        Dict from name to tensor of shape ``shape`` (or ``[K, *shape]``); views of ``vec``
        where the layout allows.
    """
    if vec.shape[-1] != layout.size:
        raise ValueError(f"flat vector has length {vec.shape[-1]}, layout expects {layout.size}")
    lead = tuple(vec.shape[:-1])
    out = {}
    for name, shape, dt, chunk in zip(
        layout.names, layout.shapes, layout.dtypes, torch.split(vec, layout.numels, dim=-1), strict=True
    ):
        t = chunk.reshape(lead + tuple(shape))
        if "int" in dt or "bool" in dt:
            t = t.to(getattr(torch, dt.removeprefix("torch.")))
        out[name] = t
    return out
