"""The small summaries the drawing functions take besides results groups (arrays and settings, nothing to read)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RunSummary"]


@dataclass
class RunSummary:
    """Per-snapshot vectors ``[N]`` and settings of a run file."""

    path: str
    config: dict
    model: dict
    dataset: dict
    iteration: np.ndarray
    epoch: np.ndarray
    lr: np.ndarray
    branch: np.ndarray
    captured: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    solutions: dict[str, dict[str, float]]
    status: str
    lr_trace: dict[str, tuple[list[int], list[float]]]
    """The lr of every step of both branches, computed from the config (:func:`swa.schedules.lr_trace`); for a run
    recorded from a user's loop or imported, the lr each snapshot recorded."""
