"""Data sets: embedded MNIST-1D, CIFAR-10/100 from a local directory, and batching.

Every split is held as two tensors (inputs, targets) in evaluation form (normalised,
never augmented). Training batches are drawn by :func:`iterate_batches`, which
shuffles with an explicit ``torch.Generator`` (its state goes into the run file, so
a resumed run draws the same batches) and applies the train augmentation batch-wise.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from landscape.errors import UserError

from .sources import as_splits, call_factory, is_import_path

__all__ = ["DataSpec", "Splits", "DATASETS", "TrainData", "builtin_data", "load_splits", "iterate_batches",
           "cifar_augment"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

DATASETS = ("mnist1d", "cifar10", "cifar100")

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


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
        return asdict(self)


@dataclass
class Splits:
    """Evaluation tensors of both splits plus the train-time augmentation.

    Attributes:
        train_x: Training inputs ``[N_train, ...]`` (normalised, not augmented).
        train_y: Training labels ``[N_train]`` (int64).
        test_x: Test inputs ``[N_test, ...]``.
        test_y: Test labels ``[N_test]``.
        num_classes: Number of classes.
        augment: Function ``(x [B, ...], generator) -> x`` applied to training
            batches only, or None.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "test"):
            raise UserError(f"unknown split {name!r}; use 'train' or 'test'")
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)


def cache_dir() -> Path | None:
    """Where generated data sets are kept between processes: ``$SWA_LANDSCAPE_CACHE``, else
    ``$XDG_CACHE_HOME/swa-landscape`` or ``~/.cache/swa-landscape``; None when ``SWA_LANDSCAPE_CACHE`` is ``off``."""
    env = os.environ.get("SWA_LANDSCAPE_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swa-landscape"


@functools.lru_cache(maxsize=4)
def _mnist1d(num_samples: int, seed: int, test_samples: int | None = None) -> tuple[np.ndarray, ...]:
    """MNIST-1D as the generator makes it, kept in :func:`cache_dir` (generation takes seconds; a cached copy is
    byte-identical, and the run file's data fingerprints would refuse one that is not)."""
    from importlib.metadata import version

    key = f"mnist1d-{version('mnist1d')}-n{num_samples}-s{seed}-t{test_samples}.npz"
    where = cache_dir()
    if where is not None and (where / key).exists():
        try:
            with np.load(where / key) as z:
                return z["x"], z["y"], z["x_test"], z["y_test"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: generate it again
    arrays = _generate_mnist1d(num_samples, seed, test_samples)
    if where is not None:
        try:  # written under a temporary name and renamed: concurrent processes never read half a file
            where.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=where, suffix=".npz", delete=False) as f:
                np.savez(f, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
            os.replace(f.name, where / key)
        except OSError:
            pass  # a read-only home: generate each time
    return arrays


def _generate_mnist1d(num_samples: int, seed: int, test_samples: int | None) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    if test_samples is not None:  # the same training-set size, a larger (or smaller) test set
        n_train = int(num_samples * args.train_split)
        total = -(-(n_train + test_samples) // 10) * 10  # the generator draws equally many of each of 10 classes
        args.num_samples, args.train_split = total, (n_train + 0.5) / total
    d = make_dataset(args)  # generated locally, no download
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read CIFAR file {path}: {e}") from None


def _cifar(name: str, data_dir: str | None) -> Splits:
    sub, train_files, test_files, label_key = _CIFAR_FILES[name]
    expected = ", ".join(train_files + test_files)
    if data_dir is None:
        raise UserError(f"{name} needs --data-dir, a directory with the python-pickle files {expected}")
    root = Path(data_dir)
    if (root / sub).is_dir():
        root = root / sub
    missing = [f for f in train_files + test_files if not (root / f).is_file()]
    if missing:
        raise UserError(f"{name} directory {root} lacks {', '.join(missing)} (expected files: {expected})")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in _CIFAR_STATS[name])

    def read(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for f in files:
            d = _load_pickle(root / f)
            if b"data" not in d or label_key not in d:
                raise UserError(f"{root / f} is not a {name} batch: needs keys 'data' and {label_key.decode()!r}")
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[label_key], dtype=np.int64))
        x = torch.from_numpy(np.concatenate(xs)).float().div_(255)
        return (x - mean) / std, torch.from_numpy(np.concatenate(ys))

    tx, ty = read(train_files)
    vx, vy = read(test_files)
    pad = (-mean / std).view(3)
    return Splits(tx, ty, vx, vy, 10 if name == "cifar10" else 100, functools.partial(cifar_augment, pad_value=pad))


def cifar_augment(x: torch.Tensor, generator: torch.Generator, pad_value: torch.Tensor | None = None) -> torch.Tensor:
    """Standard CIFAR train augmentation: random 32x32 crop of the 4-pixel padded image and horizontal flip.

    Args:
        x: Normalised images ``[B, C, H, W]``.
        generator: Source of randomness (CPU generator).
        pad_value: Per-channel value of a black pixel after normalisation ``[C]``.

    Returns:
        Augmented images ``[B, C, H, W]``.
    """
    b, c, h, w = x.shape
    p = 4
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    if pad_value is not None:
        border = torch.ones(1, 1, h + 2 * p, w + 2 * p, dtype=torch.bool, device=x.device)
        border[..., p : p + h, p : p + w] = False
        padded = torch.where(border, pad_value.to(x).view(1, c, 1, 1), padded)
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def load_splits(spec: DataSpec) -> Splits:
    """Load both splits of a data set in evaluation form.

    Raises:
        UserError: Unknown name, a missing/malformed CIFAR directory, or a data factory that fails.
    """
    if is_import_path(spec.name):
        s = as_splits(call_factory(spec.name, spec.kwargs, "data factory"), f"data factory {spec.name!r}")
        (tx, ty), (vx, vy) = s["train"], s["test"]
        return Splits(tx, ty, vx, vy, int(max(ty.max(), vy.max())) + 1)
    if spec.name == "mnist1d":
        if spec.num_samples < 10:
            raise UserError(f"mnist1d num_samples must be at least 10, got {spec.num_samples}")
        if spec.test_samples is not None and spec.test_samples < 10:
            raise UserError(f"mnist1d test_samples must be at least 10, got {spec.test_samples}")
        x, y, xt, yt = _mnist1d(spec.num_samples, spec.data_seed, spec.test_samples)
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
        g = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()  # noqa: E731
        return Splits(f(x), g(y), f(xt), g(yt), 10)
    if spec.name in _CIFAR_FILES:
        return _cifar(spec.name, spec.data_dir)
    raise UserError(f"unknown dataset {spec.name!r}; choose one of {', '.join(DATASETS)}")


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield mini-batches; shuffled (and augmented) when a generator is given.

    Args:
        x: Inputs ``[N, ...]``.
        y: Targets ``[N]``.
        batch_size: Batch size; the last batch may be smaller.
        generator: Shuffle with this generator; None keeps the order.
        augment: Train augmentation, only applied when ``generator`` is given.
    """
    n = x.shape[0]
    order = torch.randperm(n, generator=generator).to(x.device) if generator is not None else None
    for i in range(0, n, batch_size):
        if order is None:
            yield x[i : i + batch_size], y[i : i + batch_size]
            continue
        idx = order[i : i + batch_size]
        xb = x[idx]
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
        """Wrap user ``DataLoader``s (resume is exact only if they are seeded and deterministic)."""
        ev = {"train": train_eval_loader or train_loader, "test": test_loader}
        return cls(lambda g: train_loader, lambda s: ev[s], len(train_loader), {"name": description})


def builtin_data(spec: DataSpec, batch_size: int, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
                 ) -> TrainData:
    """A built-in data set held on ``device`` as tensors.

    With ``world`` > 1 (DDP) every rank trains on its slice of each global batch of ``batch_size``
    samples (same shuffling on all ranks), so the optimisation sees the same global batches.
    """
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} must be divisible by the number of ranks {world}")
    s = load_splits(spec)
    tx, ty, vx, vy = (t.to(device) for t in (s.train_x, s.train_y, s.test_x, s.test_y))
    ev = {"train": (tx, ty), "test": (vx, vy)}

    def train_batches(g: torch.Generator) -> Batches:
        for xb, yb in iterate_batches(tx, ty, batch_size, g, s.augment):
            lo = rank * xb.shape[0] // world
            hi = (rank + 1) * xb.shape[0] // world
            yield xb[lo:hi], yb[lo:hi]  # the whole batch when world == 1

    return TrainData(
        train=train_batches,
        eval_batches=lambda split: iterate_batches(*ev[split], batch_size),
        num_batches=math.ceil(tx.shape[0] / batch_size),
        spec={**spec.to_dict(), "num_classes": s.num_classes},
    )
