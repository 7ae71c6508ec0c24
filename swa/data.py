"""Data sets: embedded MNIST-1D, CIFAR-10/100 from a local directory, and batching.

Every split is held as two tensors (inputs, targets) in evaluation form (normalised,
never augmented). Training batches are drawn by :func:`iterate_batches`, which
shuffles with an explicit ``torch.Generator`` (its state goes into the run file, so
a resumed run draws the same batches) and applies the train augmentation batch-wise.

A data factory's training dataset whose items change between reads (a random transform) is read anew every epoch
through a ``DataLoader`` shuffled by the same generator, so its transform is drawn again each time; evaluation
(metrics, BN recomputation, the analyses) uses the dataset's ``train_eval`` view where the factory returns one
(``{"train": ..., "test": ..., "train_eval": ...}``), else one reading of the dataset as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils._pytree import tree_leaves
from torch.utils.data import DataLoader, Dataset

from landscape.errors import UserError
from landscape.structure import batch_size as n_samples
from landscape.structure import map_tensors, take

from .datasets import CIFAR_FILES, cifar, mnist1d
from .sources import as_pair, as_splits, call_factory, is_import_path

__all__ = ["DataSpec", "Splits", "DATASETS", "TrainData", "builtin_data", "load_splits", "iterate_batches"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

DATASETS = ("mnist1d", "cifar10", "cifar100")

@dataclass(frozen=True)
class DataSpec:
    """Which data set, stored in the run file as JSON so the file alone reloads it.

    Attributes:
        name: ``"mnist1d"``, ``"cifar10"`` or ``"cifar100"``.
        data_dir: Directory with the CIFAR python-pickle files (unused for MNIST-1D).
        num_samples: MNIST-1D: total samples generated (80% train, 20% test).
        data_seed: MNIST-1D: seed of the generator (42 gives the standard set).
        kwargs: Keyword arguments of a data factory (``name`` = ``package.module:function`` returning
            ``(train, test)``: tensor pairs, datasets or DataLoaders).
        test_samples: MNIST-1D: a test set of this size with the same number of training samples as
            ``num_samples`` gives (80%), all drawn from one generation (None: 20% of ``num_samples``).
    """

    name: str = "mnist1d"
    data_dir: str | None = None
    num_samples: int = 5000
    data_seed: int = 42
    kwargs: dict = field(default_factory=dict)
    test_samples: int | None = None

    def to_dict(self) -> dict:
        """The data's description as plain JSON-able values, as run files store it."""
        return asdict(self)


@dataclass
class Splits:
    """Evaluation tensors of both splits plus the train-time augmentation.

    Attributes:
        train_x: Training inputs ``[N_train, ...]`` (normalised, not augmented), or a tuple or dict of them.
        train_y: Training targets ``[N_train, ...]`` (class indices as int64).
        test_x: Test inputs ``[N_test, ...]``.
        test_y: Test labels ``[N_test]``.
        num_classes: Number of classes (0: targets that are not class indices).
        train_dataset: A data factory's training dataset whose items change between reads (a random transform):
            training batches are drawn from it every epoch, evaluation uses the tensors (see :func:`load_splits`).
        augment: Function ``(x [B, ...], generator) -> x`` applied to training
            batches only, or None.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    train_dataset: Dataset | None = None
    """A factory's training dataset with a random transform: training reads it anew every epoch."""

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` of ``train`` or ``test`` in evaluation form."""
        if name not in ("train", "test"):
            raise UserError(f"unknown split {name!r}; use 'train' or 'test'")
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)


def load_splits(spec: DataSpec) -> Splits:
    """Load both splits of a data set in evaluation form.

    Raises:
        UserError: Unknown name, a missing/malformed CIFAR directory, or a data factory that fails.
    """
    if is_import_path(spec.name):
        made = call_factory(spec.name, spec.kwargs, "data factory")
        train = made.get("train") if isinstance(made, dict) else made[0] if isinstance(made, (tuple, list)) else None
        if isinstance(made, dict) and "train_eval" in made:  # the transform-free view, for evaluation
            made = {"train": made["train_eval"], "test": made["test"]}
        s = as_splits(made, f"data factory {spec.name!r}")
        (tx, ty), (vx, vy) = s["train"], s["test"]
        classes = ty.dim() == 1 and not ty.is_floating_point()
        return Splits(tx, ty, vx, vy, int(max(ty.max(), vy.max())) + 1 if classes else 0,
                      train_dataset=train if _draws_anew(train) else None)
    if spec.name == "mnist1d":
        if spec.num_samples < 10:
            raise UserError(f"mnist1d num_samples must be at least 10, got {spec.num_samples}")
        if spec.test_samples is not None and spec.test_samples < 10:
            raise UserError(f"mnist1d test_samples must be at least 10, got {spec.test_samples}")
        x, y, xt, yt = mnist1d(spec.num_samples, spec.data_seed, spec.test_samples)
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
        g = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()  # noqa: E731
        return Splits(f(x), g(y), f(xt), g(yt), 10)
    if spec.name in CIFAR_FILES:
        tx, ty, vx, vy, augment = cifar(spec.name, spec.data_dir)
        return Splits(tx, ty, vx, vy, 10 if spec.name == "cifar10" else 100, augment)
    raise UserError(f"unknown dataset {spec.name!r}; choose one of {', '.join(DATASETS)}")


def _draws_anew(ds: object) -> bool:
    """Whether a map-style dataset's first item differs between two reads (a random transform).

    The global random state is left as it was.
    """
    if not isinstance(ds, Dataset) or not hasattr(ds, "__len__") or len(ds) == 0:
        return False
    state = torch.get_rng_state()
    try:
        a, b = ds[0], ds[0]
    finally:
        torch.set_rng_state(state)
    return any(not torch.equal(torch.as_tensor(u), torch.as_tensor(v)) for u, v in zip(tree_leaves(a), tree_leaves(b)))


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield mini-batches; shuffled (and augmented) when a generator is given.

    Args:
        x: Inputs ``[N, ...]`` (or a tuple or dict of them).
        y: Targets ``[N, ...]``.
        batch_size: Batch size; the last batch may be smaller.
        generator: Shuffle with this generator; None keeps the order.
        augment: Train augmentation, only applied when ``generator`` is given.
    """
    n = n_samples(x)
    order = torch.randperm(n, generator=generator).to(y.device) if generator is not None else None
    for i in range(0, n, batch_size):
        if order is None:
            yield take(x, i, i + batch_size), y[i : i + batch_size]
            continue
        idx = order[i : i + batch_size]
        xb = map_tensors(lambda t, idx=idx: t[idx], x)
        if augment is not None:
            xb = augment(xb, generator)
        yield xb, y[idx]


@dataclass
class TrainData:
    """Where batches come from.

    Attributes:
        train: ``generator -> batches`` of one training epoch (shuffled, augmented).
        eval_batches: ``split -> batches`` in evaluation form (fixed order, no
            augmentation); ``"train"`` is also the BN recomputation pass.
        num_batches: Training batches per epoch.
        spec: JSON-able description stored in the run file (``{"name": "custom"}``
            for user loaders).
    """

    train: Callable[[torch.Generator], Batches]
    eval_batches: Callable[[str], Batches]
    num_batches: int
    spec: dict

    @classmethod
    def from_loaders(cls, train_loader: Iterable, test_loader: Iterable, train_eval_loader: Iterable | None = None,
                     description: str = "custom") -> TrainData:
        """Wrap user ``DataLoader``s (resume is exact only if they are seeded and deterministic).

        Batches are ``(inputs, targets)`` pairs (inputs a tensor, a tuple or a dict of tensors) or dicts holding their
        targets under ``labels`` (:data:`swa.sources.TARGET_KEYS`); a loader's random transforms are drawn anew in
        every epoch, as the loader draws them.
        """
        ev = {"train": train_eval_loader or train_loader, "test": test_loader}

        def pairs(loader: Iterable) -> Batches:
            return (as_pair(b, description) for b in loader)

        return cls(lambda g: pairs(train_loader), lambda s: pairs(ev[s]), len(train_loader), {"name": description})


def builtin_data(spec: DataSpec, batch_size: int, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
                 ) -> TrainData:
    """A built-in data set held on ``device`` as tensors.

    With ``world`` > 1 (DDP) every rank trains on its slice of each global batch of ``batch_size``
    samples (same shuffling on all ranks), so the optimisation sees the same global batches.
    """
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} must be divisible by the number of ranks {world}")
    s = load_splits(spec)
    tx, ty, vx, vy = (map_tensors(lambda t: t.to(device), t) for t in (s.train_x, s.train_y, s.test_x, s.test_y))
    ev = {"train": (tx, ty), "test": (vx, vy)}

    def epoch(g: torch.Generator) -> Batches:
        if s.train_dataset is None:
            return iterate_batches(tx, ty, batch_size, g, s.augment)
        loader = DataLoader(s.train_dataset, batch_size=batch_size, shuffle=True, generator=g)  # transforms drawn anew
        return (as_pair(b) for b in loader)  # the training loop moves each batch to its device

    def train_batches(g: torch.Generator) -> Batches:
        for xb, yb in epoch(g):
            lo = rank * yb.shape[0] // world
            hi = (rank + 1) * yb.shape[0] // world
            yield take(xb, lo, hi), yb[lo:hi]  # the whole batch when world == 1

    return TrainData(
        train=train_batches,
        eval_batches=lambda split: iterate_batches(*ev[split], batch_size),
        num_batches=math.ceil(ty.shape[0] / batch_size),
        spec={**spec.to_dict(), "num_classes": s.num_classes},
    )
