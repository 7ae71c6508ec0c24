"""Training configuration: one frozen dataclass, loadable from TOML.

Every field is a TOML key and a ``swa-landscape train`` flag (underscores become
dashes); flags override the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from landscape.bn import BNWeighting
from landscape.errors import UserError, bounded, check_bounds, coerce_enums
from landscape.objective import OBJECTIVES

__all__ = ["SWASchedule", "Averaging", "TrainConfig", "load_toml"]


class SWASchedule(str, Enum):
    """Learning rate of the SWA branch."""

    CONSTANT = "constant"
    """``swa_lr`` throughout; capture every ``swa_cycle`` epochs."""
    CYCLIC = "cyclic"
    """Linear fall from ``swa_lr`` to ``swa_lr_min`` within each cycle of ``swa_cycle`` epochs, then a jump back;
    capture at the end of each cycle (these are the FGE proposals)."""
    SWALR = "swalr"
    """``torch.optim.swa_utils.SWALR``: anneal to ``swa_lr`` over ``swa_anneal_epochs``; capture every ``swa_cycle`` epochs."""


class Averaging(str, Enum):
    """How captured models are averaged."""

    EQUAL = "equal"
    """Equal weights (SWA)."""
    EMA = "ema"
    """Exponential moving average with ``ema_decay`` (``get_ema_multi_avg_fn``)."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (stored as JSON in the run file).

    Epoch counts are integers; the SWA branch forks from the conventional run at the
    end of epoch ``swa_start``. Each attribute below is also a ``train`` flag; its
    first line is the flag's help.

    Attributes:
        model: Registry name of the network (mlp, mlp_bn, convnet, convnet_bn, vgg16, vgg16_bn, preresnet, wrn28_10), or package.module:function, any importable constructor returning an nn.Module.
        model_kwargs: Constructor arguments of the model as JSON, e.g. '{"width": 64}'.
        dataset: Data set: mnist1d (generated offline), cifar10, cifar100, or package.module:function returning (train, test) datasets, DataLoaders or (inputs, targets) tensor pairs.
        dataset_kwargs: Keyword arguments of a data factory as JSON.
        objective: What is trained and measured: classification (cross-entropy over class indices), regression (mean squared error), language-model (next-token cross-entropy), or package.module:function returning an objective (see landscape.objective).
        objective_kwargs: Keyword arguments of the objective as JSON, e.g. '{"ignore_index": 0}'.
        data_dir: Directory of the CIFAR pickle files (cifar10/cifar100 only).
        num_samples: MNIST-1D: samples generated in all (80% train, 20% test).
        data_seed: MNIST-1D: seed of the data generator (42: the standard set).
        test_samples: MNIST-1D: test-set size, keeping num_samples' 80% for training (default: the other 20%).
        epochs: Budget B of the conventional run, in epochs.
        batch_size: Training batch size (also the BN recomputation batch).
        optimizer: sgd or adam.
        lr: Initial learning rate alpha_1 of the conventional schedule.
        momentum: SGD momentum.
        weight_decay: L2 weight decay (the optimizer's).
        swa_start: Epoch at which the SWA branch forks (default round(0.75 B)).
        swa_epochs: Length of the SWA branch in epochs (default max(1, round(0.25 B))).
        swa_schedule: Learning rate of the SWA branch: cyclic, constant or swalr.
        swa_lr: Constant lr, cycle top alpha_1, or SWALR target.
        swa_lr_min: Cycle bottom alpha_2 (cyclic only).
        swa_cycle: Cycle length in epochs (cyclic), or capture period in whole epochs (constant, swalr).
        swa_anneal_epochs: SWALR: epochs of the anneal to swa_lr.
        swa_anneal_strategy: SWALR: anneal shape, cos or linear.
        average: How captured models are averaged: equal (SWA) or ema.
        ema_decay: Decay of the exponential moving average (average = ema).
        include_start: Also average the starting weights, as Algorithm 1 of the paper literally does.
        bn_weighting: BN statistics of the average: batch (update_bn) or sample (the original SWA code).
        snapshot_every: Snapshot every k iterations; 0 = at the end of every epoch (captures are always stored).
        snapshot_dtype: Storage dtype of snapshot weights: float32 or float16.
        seed: Seed of initialisation, shuffling and augmentation.
        device: auto (CUDA when available), cpu, cuda or cuda:N.
        init: Pre-trained state_dict: run only the SWA branch from it (it serves as w_SGD).
        divergence_factor: Stop as diverged when a batch loss exceeds this times max(1, the first batch's loss).
        controls: Also train the controls compare uses: SGD with the budget of the SWA branch's end (the conventional schedule from the same initialisation) and a null SGD (the conventional run continued from the fork with another data order).
    """

    model: str = "convnet_bn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist1d"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    objective: str = "classification"
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    num_samples: int = bounded(5000, ge=10)
    data_seed: int = bounded(42, meaning="any integer seeds the MNIST-1D generator")
    test_samples: int | None = bounded(None, ge=10)
    epochs: int = bounded(40, ge=0)
    """Budget B of the conventional run."""
    batch_size: int = bounded(128, ge=1)
    optimizer: str = "sgd"
    lr: float = bounded(0.05, gt=0)
    """alpha_1 of the conventional schedule."""
    momentum: float = bounded(0.9, ge=0, lt=1)
    weight_decay: float = bounded(5e-4, ge=0)
    swa_start: int | None = bounded(None, ge=0)
    """Epoch at which the SWA branch forks; default round(0.75 B)."""
    swa_epochs: int | None = bounded(None, ge=1)
    """Length of the SWA branch in epochs; default max(1, round(0.25 B))."""
    swa_schedule: SWASchedule = SWASchedule.CYCLIC
    swa_lr: float = bounded(0.05, gt=0)
    """Constant lr, cycle top alpha_1, or SWALR target."""
    swa_lr_min: float = bounded(0.005, gt=0)
    """Cycle bottom alpha_2 (cyclic only)."""
    swa_cycle: float = bounded(1.0, gt=0)
    """Cycle length in epochs (cyclic), or capture period in whole epochs (constant, swalr)."""
    swa_anneal_epochs: int = bounded(2, ge=1)
    swa_anneal_strategy: str = "cos"
    average: Averaging = Averaging.EQUAL
    ema_decay: float = bounded(0.9, gt=0, lt=1)
    include_start: bool = False
    """Also average the starting weights, as Algorithm 1 of the paper literally does."""
    bn_weighting: BNWeighting = BNWeighting.BATCH
    snapshot_every: int = bounded(0, ge=0)
    """Snapshot every k iterations; 0 = at the end of every epoch. Captured models are always stored."""
    snapshot_dtype: str = "float32"
    seed: int = bounded(0, meaning="any integer seeds initialisation, shuffling and augmentation")
    device: str = "auto"
    init: str | None = None
    """Pre-trained state_dict: run only the SWA branch from it (it serves as w_SGD)."""
    divergence_factor: float = bounded(100.0, gt=1)
    """The run stops as diverged when a batch's loss exceeds this times max(1, the first batch's loss)."""
    controls: bool = False
    """Also train the budget-matched and the null SGD controls (``compare`` uses them)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, str(f.type), getattr(self, f.name))
        coerce_enums(self, {"swa_schedule": SWASchedule, "average": Averaging, "bn_weighting": BNWeighting})
        check_bounds(self)
        self.validate()

    @property
    def swa_start_epoch(self) -> int:
        """The epoch at which the SWA branch forks from the conventional run."""
        return 0 if self.init else (round(0.75 * self.epochs) if self.swa_start is None else self.swa_start)

    @property
    def swa_length(self) -> int:
        """Epochs of the SWA branch."""
        return max(1, round(0.25 * self.epochs)) if self.swa_epochs is None else self.swa_epochs

    def validate(self) -> None:
        """Raise :class:`UserError` with one clear sentence for a bad combination of settings.

        Each field's own range is declared with it and checked by :func:`~landscape.errors.check_bounds`.
        """
        checks = [
            (self.epochs >= 1 or self.init, f"epochs must be at least 1, got {self.epochs}"),
            (self.swa_lr_min <= self.swa_lr, f"swa_lr_min must be in (0, swa_lr], got {self.swa_lr_min}"),
            (0 <= self.swa_start_epoch <= self.epochs or self.init,
             f"swa_start {self.swa_start_epoch} lies outside the budget of {self.epochs} epochs"),
            (self.optimizer in ("sgd", "adam"), f"optimizer must be sgd or adam, got {self.optimizer!r}"),
            (self.swa_anneal_strategy in ("cos", "linear"), "swa_anneal_strategy must be cos or linear"),
            (not (self.controls and self.init), "controls need the conventional run; they cannot start from --init"),
            (not self.controls or self.init or self.swa_start_epoch < self.epochs,
             "controls need swa_start below the budget: the null SGD continues the conventional run from the fork"),
            (self.objective in OBJECTIVES or ":" in self.objective,
             f"unknown objective {self.objective!r}; use {', '.join(OBJECTIVES)} or package.module:function"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        if self.swa_schedule is not SWASchedule.CYCLIC and self.swa_cycle != int(self.swa_cycle):
            raise UserError(f"swa_cycle must be a whole number of epochs for the {self.swa_schedule.value} schedule")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (enums as their strings), as run files store them."""
        d = dataclasses.asdict(self)
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like any config)."""
        return dataclasses.replace(self, **changes)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def _check_type(name: str, annotation: str, value: Any) -> None:
    """Raise :class:`UserError` if ``value`` does not have the field's annotated type (TOML files are typed)."""
    if value is None and "None" in annotation:
        return
    base = annotation.split("[")[0].split("|")[0].strip()
    if isinstance(value, Enum):
        return
    allowed = _TYPES.get(base, (str,))  # enum-typed fields take their string value
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        kinds = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                 "dict": "a table (JSON object)"}
        raise UserError(f"{name} must be {kinds.get(base, 'a string')}, got {value!r}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config into a dict of TrainConfig fields (a ``[train]`` table or top level).

    Raises:
        UserError: Missing file, bad TOML or unknown keys.
    """
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except OSError as e:
        raise UserError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config {path} is not valid TOML: {e}") from None
    d = d.get("train", d)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"config {path}: unknown keys {', '.join(unknown)}")
    return d
