"""The plans an engine can evaluate with, and their sizes under the memory budget.

A :class:`~landscape.probe.Plan` says how points go through the network: one at a time (the loop) or
``VMAP_WIDTH`` at once (``torch.func.vmap``), how many samples per forward (the superbatch) and on how many worker
threads. The plain plan (one point at a time, whole split per forward within the budget, one worker) is always the
first candidate; :mod:`landscape.probe` times the others on the evaluation's own first points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import EngineConfig
from .memory import chunk_points, superbatch_cap
from .passes import Strategy
from .probe import Plan

__all__ = ["Planner", "VMAP_WIDTH", "LOOP_CHUNK", "MIN_PROBE_POINTS"]

VMAP_WIDTH = 8  # points per vmap call
LOOP_CHUNK = 16  # points per chunk of the loop (the unit of on_chunk and of out-of-memory halving)
MIN_PROBE_POINTS = 32  # fewer points than this: the plain plan, unprobed


@dataclass(frozen=True)
class Planner:
    """Candidate plans and chunk sizes for one engine.

    Attributes:
        config: The engine's settings.
        device: Where it evaluates.
        memory_budget: Bytes for activations and points.
        act_bytes: Activation bytes per sample of one forward (measured).
        point_bytes: Bytes of one point (parameters and buffers in the evaluation dtype).
        split_sizes: Samples per split.
        bn_size: Samples of the BN recomputation pass (None: none).
    """

    config: EngineConfig
    device: torch.device
    memory_budget: int
    act_bytes: int
    point_bytes: int
    split_sizes: dict[str, int]
    bn_size: int | None

    def plain(self, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool) -> Plan:
        """The plain plan: one point at a time, whole split per forward (within the budget), one worker."""
        return Plan(Strategy.LOOP, self.superbatch(splits, probs, recompute, 1, False), self.config.workers or 1,
                    plain=True)

    def superbatch(self, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool, width: int,
                    cache_sized: bool) -> int:
        """Samples per forward for a plan of ``width`` points per forward (cache-sized for the CPU candidates)."""
        cfg, b = self.config, self.config.bn_batch_size
        if cfg.superbatch is not None:
            return max(b, cfg.superbatch // b * b)
        sizes = [self.split_sizes[s] for s in dict.fromkeys((*splits, *probs))]
        if recompute:
            sizes.append(self.bn_size)
        s = min(-(-max(sizes) // b) * b, superbatch_cap(self.memory_budget, self.act_bytes, width, b))
        if cache_sized:
            s = min(s, max(b, cfg.cpu_cache_bytes // (self.act_bytes * width) // b * b))
        return s

    def candidates(self, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool) -> list[Plan]:
        """The plain plan first, then the other plans worth timing on this device."""
        plain = self.plain(splits, probs, recompute)
        if self.config.strategy is Strategy.LOOP:
            return [plain]
        cpu = self.device.type == "cpu"
        vmap = [Plan(Strategy.VMAP, self.superbatch(splits, probs, recompute, VMAP_WIDTH, cpu), w, VMAP_WIDTH)
                for w in self.worker_choices()]
        if self.config.strategy is Strategy.VMAP:
            return vmap[-1:]
        loops = [Plan(Strategy.LOOP, self.superbatch(splits, probs, recompute, 1, cache), w)
                 for w in self.worker_choices() for cache in (False, True) if cpu or not cache]
        same_as_plain = Plan(Strategy.LOOP, plain.superbatch, plain.workers)
        return list(dict.fromkeys([plain] + [p for p in loops if p != same_as_plain] + vmap))

    def worker_choices(self) -> list[int]:
        """The worker counts worth timing on this device (1 on a GPU; 1 and one per core on a CPU)."""
        if self.config.workers is not None:
            return [self.config.workers]
        cores = torch.get_num_threads()
        return [1, cores] if self.device.type == "cpu" and cores > 1 else [1]

    def chunk(self, plan: Plan, n_points: int) -> int:
        """Points per chunk of ``plan`` for an evaluation of ``n_points`` (the config's, else under the budget)."""
        if self.config.chunk_size is not None:
            return self.config.chunk_size
        vmap = plan.strategy is Strategy.VMAP
        wanted = plan.points_per_round if vmap else max(LOOP_CHUNK, plan.workers)
        return chunk_points(self.memory_budget, self.point_bytes, wanted, n_points, self.act_bytes,
                            self.config.bn_batch_size, vmap)
