"""torch.distributed helpers shared by training and the analyses (launch with ``torchrun``)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "rank", "world", "barrier", "all_finite"]


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
