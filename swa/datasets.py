"""The built-in data sets.

MNIST-1D generated on the machine (kept between processes), CIFAR-10/100 from a local directory, and CIFAR's train
augmentation.
"""

from __future__ import annotations

import functools
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from landscape.errors import UserError

__all__ = ["CIFAR_FILES", "CIFAR_STATS", "cache_dir", "mnist1d", "generate_mnist1d", "cifar", "cifar_augment"]

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}



def cache_dir() -> Path | None:
    """Where generated data sets are kept between processes.

    ``$SWA_LANDSCAPE_CACHE``, else ``$XDG_CACHE_HOME/swa-landscape`` or ``~/.cache/swa-landscape``; None when
    ``SWA_LANDSCAPE_CACHE`` is ``off``.
    """
    env = os.environ.get("SWA_LANDSCAPE_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swa-landscape"


@functools.lru_cache(maxsize=4)
def mnist1d(num_samples: int, seed: int, test_samples: int | None = None) -> tuple[np.ndarray, ...]:
    """MNIST-1D as the generator makes it, kept in :func:`cache_dir`.

    Generation takes seconds; a cached copy is byte-identical, and the run file's data fingerprints would refuse
    one that is not.
    """
    from importlib.metadata import version

    key = f"mnist1d-{version('mnist1d')}-n{num_samples}-s{seed}-t{test_samples}.npz"
    where = cache_dir()
    if where is not None and (where / key).exists():
        try:
            with np.load(where / key) as z:
                return z["x"], z["y"], z["x_test"], z["y_test"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: generate it again
    arrays = generate_mnist1d(num_samples, seed, test_samples)
    if where is not None:
        try:  # written under a temporary name and renamed: concurrent processes never read half a file
            where.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=where, suffix=".npz", delete=False) as f:
                np.savez(f, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
            os.replace(f.name, where / key)
        except OSError:
            pass  # a read-only home: generate each time
    return arrays


def generate_mnist1d(num_samples: int, seed: int, test_samples: int | None) -> tuple[np.ndarray, ...]:
    """MNIST-1D from its generator (no download): train inputs, targets, test inputs, targets."""
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


def cifar(name: str, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                     Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """CIFAR-10/100 from the python-pickle files in ``data_dir``, normalised.

    Returns:
        Train inputs ``[N, 3, 32, 32]`` and targets ``[N]``, test inputs and targets, and the train augmentation.

    Raises:
        UserError: No directory, missing files, or files that are not CIFAR batches.
    """
    sub, train_files, test_files, label_key = CIFAR_FILES[name]
    expected = ", ".join(train_files + test_files)
    if data_dir is None:
        raise UserError(f"{name} needs --data-dir, a directory with the python-pickle files {expected}")
    root = Path(data_dir)
    if (root / sub).is_dir():
        root = root / sub
    missing = [f for f in train_files + test_files if not (root / f).is_file()]
    if missing:
        raise UserError(f"{name} directory {root} lacks {', '.join(missing)} (expected files: {expected})")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR_STATS[name])

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
    return tx, ty, vx, vy, functools.partial(cifar_augment, pad_value=pad)


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
