"""Sizes under the memory budget: activation footprint, super-batches, chunks, out-of-memory detection.

The engine halves its chunk of points when a forward runs out of memory
(:func:`is_oom`) instead of failing; everything else here is arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .structure import batch_size, call_model, map_tensors

__all__ = ["activation_bytes", "batch_to", "superbatch_cap", "chunk_points", "is_oom", "place"]

_TEMPORARIES = 3  # activations of a forward, times this for temporaries
_ACTIVATION_SHARE = 0.6  # of the budget, for the activations of the points pushed at once
_POINT_SHARE = 0.2  # of the budget, for the materialised points of a chunk (4 copies each)


def activation_bytes(model: nn.Module, example: Any) -> int:
    """Bytes of all leaf-module outputs per sample for one point: the activation footprint.

    Args:
        model: Module to run once (eval mode, no grad).
        example: Inputs ``[n, ...]`` on the model's device and dtype (a tensor, or a tuple or dict of tensors).
    """
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            call_model(model, example)
    finally:
        for h in handles:
            h.remove()
    return max(1, total[0] // batch_size(example))


def superbatch_cap(budget: int, act_bytes: int, width: int, bn_batch_size: int) -> int:
    """Largest super-batch under the budget.

    A multiple of ``bn_batch_size``, at least one group, whose activations for ``width`` points at once fit the
    activation share of ``budget`` bytes.
    """
    s = int(budget * _ACTIVATION_SHARE // (_TEMPORARIES * act_bytes * width))
    return max(bn_batch_size, s // bn_batch_size * bn_batch_size)


def chunk_points(budget: int, point_bytes: int, wanted: int, n_points: int, act_bytes: int = 0,
                 bn_batch_size: int = 1, vmap: bool = False) -> int:
    """Points per chunk.

    ``wanted``, bounded by the budget share for points and, under vmap, by one BN group of activations per
    point; at least 1 and at most ``n_points``.
    """
    k = min(wanted, max(1, int(budget * _POINT_SHARE // (4 * point_bytes))))
    if vmap:
        k = min(k, max(1, int(budget * _ACTIVATION_SHARE // (_TEMPORARIES * act_bytes * bn_batch_size))))
    return max(1, min(k, n_points))


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is an out-of-memory error of the CUDA caching allocator or of the CPU allocator."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e) or "can't allocate memory" in str(e)


def place(x: torch.Tensor, dtype: torch.dtype, device: torch.device, budget: int) -> torch.Tensor:
    """Data for evaluation.

    If it takes under a quarter of the budget: on the device, floating point cast to ``dtype``. Otherwise it stays
    as it is, where it is (a memory-mapped tensor stays on disk, read a super-batch at a time: the engine streams
    it, and :func:`batch_to` casts each batch), pinned for asynchronous copies where it is in host memory and the
    device is a GPU.
    """
    if x.numel() * x.element_size() < budget // 4:
        return (x.to(dtype) if x.is_floating_point() else x).to(device)
    return x.pin_memory() if device.type == "cuda" and not _mapped(x) else x


def _mapped(x: torch.Tensor) -> bool:
    """Whether a tensor's storage is a file mapping (``torch.from_file``, a NumPy memmap): pinning would copy it."""
    try:
        return x.untyped_storage().filename is not None or not x.untyped_storage().resizable()
    except (AttributeError, RuntimeError):
        return False


def batch_to(x: Any, lo: int, hi: int, device: torch.device, dtype: torch.dtype) -> Any:
    """Samples ``lo:hi`` of inputs of any structure on ``device``, floating-point tensors in ``dtype``."""
    return map_tensors(lambda t: t[lo:hi].to(device, dtype if t.is_floating_point() else t.dtype, non_blocking=True), x)
