"""What an evaluation returns: :class:`EvalResult`, and the FLOP count used to rate it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["EvalResult", "concat_results", "flops_per_sample"]


@dataclass
class EvalResult:
    """Metrics of ``K`` points.

    Attributes:
        loss: Split name to mean cross-entropy ``[K]`` (float64; inf/NaN where it overflows).
        acc: Split name to accuracy ``[K]`` (fraction in [0, 1]).
        buffers: Buffers each point was evaluated with ``[K, Q]``.
        l2: ``0.5 * weight_decay * ||w||^2`` per point ``[K]`` (zeros if weight_decay is 0).
        probs: Split name to class probabilities ``[K, n, C]`` (float32), for the
            splits asked for without a sink.
        strategy: The strategy used for the last points.
    """

    loss: dict[str, torch.Tensor]
    acc: dict[str, torch.Tensor]
    buffers: torch.Tensor
    l2: torch.Tensor
    probs: dict[str, torch.Tensor] = field(default_factory=dict)
    strategy: str = ""

    def error(self, split: str) -> torch.Tensor:
        """The classification error ``[K]`` on ``split``, ``1 - acc``."""
        return 1.0 - self.acc[split]


def concat_results(parts: list[EvalResult], splits: tuple[str, ...], q: int) -> EvalResult:
    """Results of consecutive point ranges as one (``q``: buffer length, for an empty list)."""
    empty = torch.zeros(0, dtype=torch.float64)
    return EvalResult(
        loss={s: torch.cat([p.loss[s] for p in parts]) if parts else empty for s in splits},
        acc={s: torch.cat([p.acc[s] for p in parts]) if parts else empty for s in splits},
        buffers=torch.cat([p.buffers for p in parts]) if parts else torch.zeros(0, q),
        l2=torch.cat([p.l2 for p in parts]) if parts else empty,
        probs={s: torch.cat([p.probs[s] for p in parts], 0) for s in (parts[0].probs if parts else {})},
        strategy=parts[-1].strategy if parts else "",
    )


def flops_per_sample(model: nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs per sample counted by ``torch.utils.flop_counter`` (matmul/conv only)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(example)
    return fc.get_total_flops() / example.shape[0]
