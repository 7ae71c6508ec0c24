"""What is measured at a point: the objective (how a batch reaches the model, the per-sample loss and metrics).

An :class:`Objective` owns everything task-specific, so that nothing else in the engine knows what a class, a label
or cross-entropy is:

* **the call** is :mod:`landscape.structure`'s: inputs of any structure become the model's call
  (:func:`~landscape.structure.call_model`), its output is read (:func:`~landscape.structure.read_output`);
* **per-sample values**: :meth:`Objective.per_sample` turns predictions ``[k, n, ...]`` of ``k`` points and targets
  ``[n, ...]`` into, per metric, values ``[k, n]`` and the weight of each sample ``[n]`` (None: 1 each). The engine
  sums both over every batch of a split (values in float64) and divides: a split's metric is exact whatever the
  batch sizes (a language model's token error is over tokens, not a mean of per-sequence means);
* **derived metrics**: :meth:`Objective.finish` adds what follows from the averages (classification error
  ``1 - accuracy``, perplexity ``exp(loss)``);
* **the error**: the metric named by :attr:`Objective.error` is what widths, segments, figures and ``compare``
  call the error, with its :attr:`Objective.labels`.

Built in: :class:`Classification` (the default), :class:`Regression`, :class:`LanguageModel`; any object with the
same methods serves (:func:`objective_from` builds one from a name or ``package.module:function``).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from .errors import UserError

__all__ = ["Objective", "Classification", "Regression", "LanguageModel", "OBJECTIVES", "objective_from", "metric_names",
           "reports_accuracy"]


class Objective:
    """The base of every objective (see the module docstring); subclasses implement :meth:`per_sample`.

    Attributes:
        name: Short name, stored in run files (``classification``, ``regression``, ``language-model``...).
        error: The metric that widths, segments, figures and ``compare`` call the error.
        labels: Each metric's label in figures and tables (``"error"`` -> ``"test error"`` where the split is added).
        distributions: Whether predictions are distributions over classes (what FGE's agreement needs).
        fractions: The metrics that are fractions in [0, 1] (figures show them in percent).
    """

    name: str = "objective"
    error: str = "loss"
    labels: dict[str, str] = {"loss": "loss"}
    distributions: bool = False
    fractions: tuple[str, ...] = ()

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[torch.Tensor, Any]]:
        """Per metric (``"loss"`` among them), values ``[k, n]`` and sample weights ``[n]`` (None: 1 each).

        A split's metric is the sum of the values over the sum of the weights: a weighted sample's value is its
        weighted total (a sequence's summed token loss, with its number of scored tokens as its weight).

        Args:
            pred: Predictions of ``k`` points ``[k, n, ...]``.
            target: Targets ``[n, ...]``.
        """
        raise NotImplementedError

    def finish(self, means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The split's averages ``[K]`` with the metrics derived from them added."""
        return means

    def summed_loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The loss of one model's predictions ``[n, ...]`` summed over samples (differentiable), and the weight.

        The per-sample values summed, and their weights summed (the number of samples, or of scored tokens): their
        ratio over a split is the mean loss, as the engine averages it (the Hessian's and sharpness' loss).
        """
        values, w = self.per_sample(pred[None], target)["loss"]  # a split's mean: sum of values / sum of weights
        return values[0].sum(), float(values.shape[1]) if w is None else w.sum()

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Refuse targets that do not fit the predictions (one line naming the shapes).

        Raises:
            UserError: A shape or dtype the objective cannot read.
        """

    def probabilities(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Predicted distributions ``[k, m, C]`` (float32) of the ``m`` scored predictions, for FGE's agreement.

        Raises:
            UserError: The objective's predictions are no distributions.
        """
        raise UserError(f"the {self.name} objective's predictions are not class distributions: FGE's agreement and "
                        "probability differences are defined for classification and language models")

    def scored_targets(self, target: torch.Tensor) -> torch.Tensor:
        """The class of each of the ``m`` predictions :meth:`probabilities` returns ``[m]`` (ensemble accuracy)."""
        return target

    def config(self) -> dict:
        """The objective as stored in a run file: ``{"name": ..., "kwargs": {...}}``."""
        return {"name": self.name, "kwargs": {}}


class Classification(Objective):
    """Cross-entropy over class indices: predictions ``[k, n, C]``, targets ``[n]`` (int).

    Metrics: ``loss`` (cross-entropy, ``logsumexp - logit of the target`` in the working dtype), ``accuracy``,
    and ``error`` = ``1 - accuracy``.
    """

    name = "classification"
    error = "error"
    labels = {"loss": "cross-entropy", "accuracy": "accuracy", "error": "error"}
    distributions = True
    fractions = ("accuracy", "error")

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:  # noqa: D102
        if target.dim() != 1 or target.is_floating_point() or pred.dim() != 3:
            raise UserError(f"classification needs class indices [N] (integers) and logits [N, C]; got targets "
                            f"{_shape(target)} and predictions {tuple(pred.shape[1:])}")

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[torch.Tensor, Any]]:  # noqa: D102
        k = pred.shape[0]
        picked = pred.gather(-1, target.expand(k, -1)[..., None])[..., 0]
        return {"loss": (torch.logsumexp(pred, -1) - picked, None),
                "accuracy": ((pred.argmax(-1) == target).double(), None)}

    def finish(self, means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # noqa: D102
        return {**means, "error": 1.0 - means["accuracy"]}

    def probabilities(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.softmax(pred.double(), -1).float()

    def summed_loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:  # noqa: D102
        return nn.functional.cross_entropy(pred, target, reduction="sum"), float(target.shape[0])  # as before


class Regression(Objective):
    """Mean squared error over any output shape: predictions ``[k, n, ...]``, targets ``[n, ...]`` of the same shape.

    Metrics: ``loss`` = ``mse`` (per sample, the mean over its output entries), the error.
    """

    name = "regression"
    error = "mse"
    labels = {"loss": "MSE", "mse": "MSE"}

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:  # noqa: D102
        if tuple(target.shape) != tuple(pred.shape[1:]) or not target.is_floating_point():
            raise UserError(f"regression needs floating-point targets shaped like the predictions; got targets "
                            f"{_shape(target)} and predictions {tuple(pred.shape[1:])}")

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[torch.Tensor, Any]]:  # noqa: D102
        se = (pred - target.to(pred.dtype)).square()
        mse = se.flatten(2).mean(-1) if se.dim() > 2 else se
        return {"loss": (mse, None), "mse": (mse, None)}


class LanguageModel(Objective):
    """Next-token cross-entropy: logits ``[k, n, L, V]``, token targets ``[n, L]`` (int), padding ``ignore_index``.

    The prediction at position ``i`` is scored against the target at ``i + 1`` (``shift=True``, the convention of
    targets equal to the inputs) or at ``i`` (``shift=False``). Averages are over tokens: a sequence weighs by its
    number of scored tokens.

    Metrics: ``loss`` (mean token cross-entropy), ``token_error`` (the error), ``perplexity`` = ``exp(loss)``.

    Args:
        ignore_index: Target value of padding (not scored).
        shift: Score position ``i`` against target ``i + 1``.
    """

    name = "language-model"
    error = "token_error"
    labels = {"loss": "token cross-entropy", "token_error": "token error", "perplexity": "perplexity"}
    distributions = True
    fractions = ("token_error",)

    def __init__(self, ignore_index: int = -100, shift: bool = True):
        self.ignore_index, self.shift = int(ignore_index), bool(shift)

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:  # noqa: D102
        if target.dim() != 2 or target.is_floating_point() or pred.dim() != 4 or pred.shape[1:3] != target.shape:
            raise UserError(f"language-model needs token targets [N, L] (integers) and logits [N, L, V]; got "
                            f"targets {_shape(target)} and predictions {tuple(pred.shape[1:])}")

    def _aligned(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (pred[:, :, :-1], target[:, 1:]) if self.shift else (pred, target)

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[torch.Tensor, Any]]:  # noqa: D102
        pred, target = self._aligned(pred, target)
        valid = target != self.ignore_index  # [n, L']
        safe = torch.where(valid, target, torch.zeros_like(target))
        k = pred.shape[0]
        picked = pred.gather(-1, safe.expand(k, -1, -1)[..., None])[..., 0]  # [k, n, L']
        ce = torch.where(valid, torch.logsumexp(pred, -1) - picked, torch.zeros_like(picked))
        wrong = ((pred.argmax(-1) != target) & valid).double()
        tokens = valid.sum(-1).double()
        return {"loss": (ce.sum(-1, dtype=torch.float64), tokens), "token_error": (wrong.sum(-1), tokens)}

    def finish(self, means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # noqa: D102
        return {**means, "perplexity": torch.exp(means["loss"])}

    def probabilities(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pred, target = self._aligned(pred, target)  # every scored position is one prediction [k, m, V]
        return torch.softmax(pred.double(), -1).float()[:, target != self.ignore_index]

    def scored_targets(self, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        target = target[:, 1:] if self.shift else target
        return target[target != self.ignore_index]

    def config(self) -> dict:  # noqa: D102
        return {"name": self.name, "kwargs": {"ignore_index": self.ignore_index, "shift": self.shift}}


def reports_accuracy(objective: Any) -> bool:
    """Whether an objective measures an accuracy (summaries then show it; otherwise its error)."""
    return "accuracy" in (getattr(objective, "labels", {}) or {})


def metric_names(objective: Any) -> dict:
    """How figures name an objective's loss and error: ``{"loss", "error", "percent"}`` (stored with the results).

    Any objective object serves: missing ``labels``, ``error`` or ``fractions`` fall back to the plain names.
    """
    labels, error = getattr(objective, "labels", {}) or {}, getattr(objective, "error", "loss")
    return {"loss": labels.get("loss", "loss"), "error": labels.get(error, error),
            "percent": error in getattr(objective, "fractions", ())}


OBJECTIVES = {"classification": Classification, "regression": Regression, "language-model": LanguageModel}
"""The built-in objectives by name."""


def objective_from(spec: str | Objective | None = None, kwargs: dict | None = None) -> Objective:
    """An objective from a built-in name, ``package.module:function`` (called with ``kwargs``) or an instance.

    Raises:
        UserError: An unknown name, an import path that cannot be imported, or a factory that does not return an
            objective (an object with ``per_sample``).
    """
    if spec is None:
        return Classification()
    if not isinstance(spec, str):
        obj = spec
    elif spec in OBJECTIVES:
        try:
            obj = OBJECTIVES[spec](**(kwargs or {}))
        except TypeError as e:
            raise UserError(f"objective {spec!r}: {e}") from None
    elif ":" in spec:
        mod, _, fn = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise UserError(f"objective {spec!r} cannot be imported: {type(e).__name__}: {e}") from None
        try:
            obj = factory(**(kwargs or {}))
        except Exception as e:  # noqa: BLE001 - the user's factory: its failure in one line
            raise UserError(f"objective {spec!r} failed: {type(e).__name__}: {e}") from None
    else:
        raise UserError(f"unknown objective {spec!r}; use {', '.join(OBJECTIVES)} or package.module:function")
    if not callable(getattr(obj, "per_sample", None)):
        raise UserError(f"objective {spec!r} gave a {type(obj).__name__}, not an objective (an object with "
                        "per_sample; see landscape.objective.Objective)")
    return obj


def _shape(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
