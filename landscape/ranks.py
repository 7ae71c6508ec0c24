"""The process group, for the trainer and the analyses alike (launch with ``torchrun``).

Who am I, how many are we, and agreeing across ranks. With one process every helper is a no-op (rank 0 of 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")

__all__ = ["init_from_env", "rank", "world", "barrier", "all_finite", "all_within", "on_rank0"]


def init_from_env() -> None:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1 (no-op otherwise).

    NCCL with one GPU per rank (LOCAL_RANK) when CUDA is available, gloo on CPUs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    """How many ranks there are (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if world() > 1:
        dist.barrier()


def all_finite(value: torch.Tensor) -> bool:
    """True if ``value`` is finite on every rank (one all-reduce when distributed)."""
    ok = torch.tensor([float(torch.isfinite(value).all())], device=value.device)
    if world() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def all_within(value: torch.Tensor, limit: float) -> bool:
    """True if ``value`` is finite and at most ``limit`` on every rank (one all-reduce when distributed)."""
    ok = torch.tensor([float(bool(torch.isfinite(value).all()) and bool((value <= limit).all()))], device=value.device)
    if world() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def on_rank0(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only, and let every rank agree on its success before going on.

    A :class:`~landscape.errors.UserError` raised by ``fn`` on rank 0 is raised on every
    rank with rank 0's message (one broadcast), so no rank waits for a collective that
    rank 0 will never join. Returns ``fn()`` on rank 0, None elsewhere.
    """
    result, message = None, None
    if rank() == 0:
        try:
            result = fn()
        except UserError as e:
            message = str(e)
    if world() > 1:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if message is not None:
        raise UserError(message)
    return result
