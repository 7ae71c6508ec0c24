"""Settings of the evaluation engine: :class:`EngineConfig` and :class:`BNMode`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

import torch

from .bn import BNWeighting
from .errors import UserError, bounded, check_bounds, coerce_enums
from .passes import Strategy

__all__ = ["BNMode", "EngineConfig", "resolve_device", "default_memory_budget"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU) or an explicit device that exists on this machine.

    Raises:
        UserError: An unknown device name, or a CUDA device on a machine without (that many) GPUs.
    """
    if name == "auto":
        return torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev


def default_memory_budget(device: torch.device) -> int:
    """Bytes for the engine when none are given: 2 GiB on a CPU, 70% of the free memory of a GPU."""
    if device.type == "cuda":
        return int(0.7 * torch.cuda.mem_get_info(device)[0])
    return 2 << 30


class BNMode(str, Enum):
    """Which BatchNorm statistics each point is evaluated with (one meaning for every point set).

    A point set is either explicit points, each carrying its own buffers (snapshots, FGE
    proposals, solutions), or an affine family ``origin + coords @ basis`` (rays, segment,
    plane) carrying the buffers of its origin and, where the family has more than one
    anchor, a ``buffer_basis`` through the anchors' buffers.
    """

    RECOMPUTE = "recompute"
    """Recomputed from the training data at every point (exact; ``update_bn`` semantics)."""
    STORED = "stored"
    """The statistics stored with the trajectory: explicit points their own, a family those of its origin."""
    INTERPOLATE = "interpolate"
    """Statistics follow the weights: a family interpolates its anchors' statistics with the same
    coordinates (``buffer_origin + coords @ buffer_basis``); explicit points use their own. A family
    with a single anchor (a ray) cannot interpolate."""


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the evaluation engine.

    Attributes:
        bn_mode: BN statistics at each point (:class:`BNMode`): recomputed from the training data (exact), the
            stored ones (a snapshot's own; a ray's, segment's or plane's origin's), or interpolated between the
            anchors' like the weights (not for rays).
        bn_weighting: Per-batch (``update_bn``) or per-sample weighting of BN statistics.
        bn_batch_size: Batch size of the BN recomputation pass; it defines the
            per-batch statistics (use the run's training batch size).
        bn_batches: Recompute from the first n batches only (None: all).
        strategy: How points go through the network (:class:`Strategy`): ``auto`` times candidate plans on the
            evaluation's first points (:mod:`landscape.probe`), ``loop`` one point after another, ``vmap`` many at
            once.
        chunk_size: Points per chunk (None: chosen under the memory budget).
        memory_budget: Bytes the engine may use for activations and points, e.g. ``2GiB`` on the command line
            (None: 2 GiB on a CPU, 70% of the device's free memory on a GPU, read when the engine is built).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: Evaluation precision: ``float32`` or ``float64``.
        weight_decay: If positive, also report ``loss + 0.5 * weight_decay * ||w||^2``.
        superbatch: Samples per forward (rounded down to a multiple of ``bn_batch_size``)
            for every plan. None: the whole split for the loop (as far as the memory
            budget allows), about ``cpu_cache_bytes`` of activations for other CPU candidates.
        cpu_cache_bytes: Activation footprint of the cache-sized CPU candidates.
        tune_allocator: On CPU, call :func:`~landscape.workers.tune_cpu_allocator`, a process-wide glibc
            setting (off: a library changes nothing process-wide unless asked; the command line sets it once).
        probe_min_seconds: ``auto`` times other plans only if the plain plan would need at least this
            long for the whole evaluation (timing them costs more than they could save on short ones).
        workers: Threads evaluating different points at once, each with its own model copy
            and ``torch.get_num_threads() // workers`` intra-op threads. None: 1 (the plain
            plan), with one per core among the CPU candidates of ``auto``.
        tf32: On a GPU, allow TF32 matrix products and convolutions during evaluations (faster, about 1e-3
            relative error); off by default, so float32 means float32 (PyTorch allows TF32 convolutions by default).
        autocast: Lower precision for the evaluation passes (``torch.autocast``): ``bfloat16`` (CPU or GPU) or
            ``float16`` (GPU); BN statistics are still accumulated in the engine's dtype (float32). Before the first
            evaluation one point is evaluated both ways and the deviation reported (a notice above
            ``autocast_tolerance``). ``off``: the engine's dtype throughout.
        autocast_tolerance: Largest relative deviation of the loss, and absolute deviation of the error metric,
            from float32 that the autocast check accepts without a notice.
        compile: Compile the per-point loop's evaluation pass with ``torch.compile`` and this backend (``inductor``:
            generated kernels; ``aot_eager``: traced, no code generation); ``off``: eager. Before the first
            evaluation two points are evaluated compiled and eagerly; where they differ the engine stays eager
            and says so. vmap plans and the BN statistics pass run eagerly.
        guard: Before the first evaluation of a network with BatchNorm, evaluate one point through the
            fast path and the reference path and fall back to exact paths where they differ
            (:mod:`landscape.guard`); costs one reference evaluation of one point per engine (``--no-guard``
            skips it).
    """

    bn_mode: BNMode = BNMode.RECOMPUTE
    bn_weighting: BNWeighting = BNWeighting.BATCH
    bn_batch_size: int = bounded(128, ge=1)
    bn_batches: int | None = bounded(None, ge=1)
    strategy: Strategy = Strategy.AUTO
    chunk_size: int | None = bounded(None, ge=1)
    memory_budget: int | None = bounded(None, gt=0, unit="bytes")
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    weight_decay: float = bounded(0.0, ge=0)
    superbatch: int | None = bounded(None, ge=1)
    cpu_cache_bytes: int = bounded(8 << 20, gt=0, unit="bytes")
    tune_allocator: bool = False
    workers: int | None = bounded(None, ge=1)
    probe_min_seconds: float = bounded(3.0, ge=0)
    tf32: bool = False
    autocast: Literal["off", "bfloat16", "float16"] = "off"
    autocast_tolerance: float = bounded(0.01, gt=0)
    compile: str = "off"
    guard: bool = True

    def __post_init__(self) -> None:
        coerce_enums(self, {"bn_mode": BNMode, "bn_weighting": BNWeighting, "strategy": Strategy})
        check_bounds(self)
        if self.dtype not in ("float32", "float64"):
            raise UserError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.autocast not in ("off", "bfloat16", "float16"):
            raise UserError(f"autocast must be off, bfloat16 or float16, got {self.autocast!r}")
        if self.autocast != "off" and self.dtype != "float32":
            raise UserError(f"autocast {self.autocast} lowers float32 evaluations; dtype is {self.dtype}")
