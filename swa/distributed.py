"""The trainer under DDP: what ranks other than 0 write (nothing; :class:`RankWriter`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["RankWriter"]


class RankWriter:
    """The :class:`~swa.writer.RunWriter` of ranks other than 0 under DDP.

    Counts snapshots, keeps the saved states in memory, writes nothing.
    """

    def __init__(self, path: Path, count: int = 0, states: dict[str, dict] | None = None):
        self.path, self._count, self._states = Path(path), count, dict(states or {})

    @property
    def count(self) -> int:
        """Snapshots rank 0 has written (counted here alike)."""
        return self._count

    def append(self, weights: torch.Tensor, buffers: torch.Tensor, **meta: Any) -> int:
        """Count the snapshot rank 0 writes; returns its index."""
        self._count += 1
        return self._count - 1

    def save_fork(self, state: dict, slot: str = "fork") -> None:
        """Keep the state in memory (rank 0 writes it)."""
        self._states[slot] = state

    def fork(self, slot: str = "fork") -> dict:
        """A state kept with :meth:`save_fork`."""
        return self._states[slot]

    def save_checkpoint(self, state: dict) -> None:
        """Nothing: rank 0 writes the checkpoint."""

    def write_solution(self, name: str, weights: torch.Tensor, buffers: torch.Tensor, **scalars: float) -> None:
        """Nothing: rank 0 writes the solution."""

    def set_status(self, status: str, message: str = "") -> None:
        """Nothing: rank 0 writes the status."""

    def close(self) -> None:
        """Nothing to close."""
