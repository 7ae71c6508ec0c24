"""torch.distributed helpers shared by training and the analyses (launch with ``torchrun``)."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from landscape.errors import UserError

T = TypeVar("T")

__all__ = ["init_from_env", "rank", "world", "barrier", "all_finite", "all_within", "on_rank0", "RankWriter"]


def init_from_env() -> None:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1 (no-op otherwise).

    NCCL with one GPU per rank (LOCAL_RANK) when CUDA is available, gloo on CPUs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
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


class RankWriter:
    """Stand-in for the writer on ranks other than 0 under DDP: counts snapshots, keeps the saved states in memory."""

    def __init__(self, path: Path, count: int = 0, states: dict[str, dict] | None = None):
        self.path, self.count, self._states = Path(path), count, dict(states or {})

    def append(self, *_a, **_k) -> int:
        self.count += 1
        return self.count - 1

    def save_fork(self, state: dict, slot: str = "fork") -> None:
        self._states[slot] = state

    def fork(self, slot: str = "fork") -> dict:
        return self._states[slot]

    def save_checkpoint(self, *_a) -> None: ...

    def write_solution(self, *_a, **_k) -> None: ...

    def set_status(self, *_a) -> None: ...

    def close(self) -> None: ...
