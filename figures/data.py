"""The small summaries the drawing functions take besides results groups (arrays and settings, nothing to read)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MetricNames", "RunSummary", "names_of"]


@dataclass(frozen=True)
class MetricNames:
    """How the figures name a run objective's loss and error (classification by default).

    Attributes:
        loss: The loss (``"cross-entropy"``, ``"MSE"``, ``"token cross-entropy"``).
        error: The error metric (``"error"``, ``"MSE"``, ``"token error"``).
        percent: Whether the error is a fraction shown in percent.
    """

    loss: str = "cross-entropy"
    error: str = "error"
    percent: bool = True

    @property
    def scale(self) -> float:
        """What the error is multiplied by when drawn (100 for a percentage)."""
        return 100.0 if self.percent else 1.0

    def error_label(self, split: str = "test", extra: str = "") -> str:
        """The error's axis label, e.g. ``"test error (%)"``, ``"test MSE"``, ``"test error (%, log)"``."""
        unit = ", ".join(u for u in ("%" if self.percent else "", extra) if u)
        return f"{split} {self.error}" + (f" ({unit})" if unit else "")


def names_of(g: dict) -> MetricNames:
    """The names a results group carries (``_names``, set when the results are read), else classification's."""
    return g.get("_names") or MetricNames()


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
    test_error: np.ndarray
    train_loss: np.ndarray
    solutions: dict[str, dict[str, float]]
    status: str
    lr_trace: dict[str, tuple[list[int], list[float]]]
    """The lr of every step of both branches, computed from the config (:func:`swa.schedules.lr_trace`); for a run
    recorded from a user's loop or imported, the lr each snapshot recorded."""
    names: MetricNames = MetricNames()
    """How the run's objective names its loss and error."""
