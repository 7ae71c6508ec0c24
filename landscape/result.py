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
        metrics: Split name to the objective's metrics, each ``[K]`` (float64; inf/NaN where it overflows), averaged
            exactly over the split (:mod:`landscape.objective`): ``loss`` always, the others as the objective names
            them (classification: ``accuracy`` and ``error``).
        buffers: Buffers each point was evaluated with ``[K, Q]``.
        l2: ``0.5 * weight_decay * ||w||^2`` per point ``[K]`` (zeros if weight_decay is 0).
        probs: Split name to predicted distributions ``[K, n, C]`` (float32), for the splits asked for without a
            sink.
        strategy: The strategy used for the last points.
        error_metric: The metric :meth:`error` returns (the objective's ``error``).
    """

    metrics: dict[str, dict[str, torch.Tensor]]
    buffers: torch.Tensor
    l2: torch.Tensor
    probs: dict[str, torch.Tensor] = field(default_factory=dict)
    strategy: str = ""
    error_metric: str = "error"

    @property
    def loss(self) -> dict[str, torch.Tensor]:
        """Split name to the objective's loss ``[K]``."""
        return {s: m["loss"] for s, m in self.metrics.items()}

    @property
    def acc(self) -> dict[str, torch.Tensor]:
        """Split name to the accuracy ``[K]`` (fraction in [0, 1]; classification only)."""
        return {s: m["accuracy"] for s, m in self.metrics.items()}

    def error(self, split: str) -> torch.Tensor:
        """The objective's error ``[K]`` on ``split`` (classification: ``1 - accuracy``)."""
        return self.metrics[split][self.error_metric]

    def reordered(self, order: torch.Tensor) -> EvalResult:
        """The same results with the points in the order ``order [K]``."""
        return EvalResult({s: {k: v[order] for k, v in m.items()} for s, m in self.metrics.items()},
                          self.buffers[order], self.l2[order], {k: v[order] for k, v in self.probs.items()},
                          self.strategy, self.error_metric)


def concat_results(parts: list[EvalResult], splits: tuple[str, ...], q: int, error_metric: str = "error") -> EvalResult:
    """Results of consecutive point ranges as one (``q``: buffer length, for an empty list)."""
    empty = torch.zeros(0, dtype=torch.float64)
    names = {s: list(parts[0].metrics[s]) if parts else ["loss"] for s in splits}
    return EvalResult(
        metrics={s: {k: torch.cat([p.metrics[s][k] for p in parts]) if parts else empty for k in names[s]}
                 for s in splits},
        buffers=torch.cat([p.buffers for p in parts]) if parts else torch.zeros(0, q),
        l2=torch.cat([p.l2 for p in parts]) if parts else empty,
        probs={s: torch.cat([p.probs[s] for p in parts], 0) for s in (parts[0].probs if parts else {})},
        strategy=parts[-1].strategy if parts else "",
        error_metric=parts[0].error_metric if parts else error_metric,
    )


def flops_per_sample(model: nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs per sample counted by ``torch.utils.flop_counter`` (matmul/conv only)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(example)
    return fc.get_total_flops() / example.shape[0]
