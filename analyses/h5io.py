"""Crash-safe changes to small HDF5 files: edit a copy, then atomically replace the original."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from landscape.files import durable_replace

__all__ = ["atomic_update"]


def atomic_update(path: Path, fn: Callable[[h5py.File], Any]) -> Any:
    """Apply ``fn(file)`` to a copy of ``path`` (a new file if absent) and replace ``path`` with it.

    A crash or a power loss at any moment leaves either the old or the new complete file
    (:func:`landscape.files.durable_replace`). Returns what ``fn`` returns.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.exists():
        shutil.copyfile(path, tmp)
    with h5py.File(tmp, "a") as f:
        out = fn(f)
    durable_replace(tmp, path)
    return out
