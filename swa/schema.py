"""The trajectory file's schema: one self-describing HDF5 file per training run.

This module and its two users, :mod:`swa.writer` (writes) and :mod:`swa.trajectory` (reads), are the only
places that know the layout (documented in ``docs/file-format.md``). Crash safety rests on three rules:

1. The file is built complete under a temporary name, opened for writing in SWMR
   mode and only then renamed into place, so the final path is either absent or a
   valid file that SWMR readers open (a file killed after a plain open for writing,
   before SWMR mode was on, keeps a flag that every later open refuses).
2. While training, the file is open in HDF5 single-writer/multiple-reader (SWMR)
   mode: HDF5 orders its metadata writes so that the file can be opened at any
   moment, also after ``kill -9``. Rows are appended first and made visible by
   incrementing ``/snapshots/count`` afterwards; readers read ``count`` rows only.
3. The resume checkpoint lives in two alternating slots; the pointer to the
   valid slot is written last, so a crash while writing one slot leaves the other.

A file whose writer crashed keeps HDF5's "open for writing" flag, which plain
(non-SWMR) opens refuse; readers therefore always open SWMR read-only, and
``--resume`` rebuilds a fresh file from the committed rows.
"""

from __future__ import annotations

import io
import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape.files import open_hdf5

__all__ = ["FORMAT", "FORMAT_VERSION", "ERRORS", "META", "META_DTYPES", "SOLUTION_SCALARS", "SOLUTIONS", "STATES", "Status", "pack_blob",
           "unpack_blob", "create_structure", "run_attributes", "open_swmr_read"]

FORMAT = "swa-landscape/trajectory"
FORMAT_VERSION = 1

META = ("epoch", "iteration", "lr", "branch", "captured", "train_loss", "train_acc", "test_loss", "test_acc",
        "train_error", "test_error")
META_DTYPES = {
    "epoch": "f8", "iteration": "i8", "lr": "f8", "branch": "S3", "captured": "?",
    "train_loss": "f8", "train_acc": "f8", "test_loss": "f8", "test_acc": "f8", "train_error": "f8", "test_error": "f8",
}
SOLUTION_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "train_error", "test_error", "n_averaged")
ERRORS = {"train_error": "train_acc", "test_error": "test_acc"}
"""The run objective's error (its named metric: classification error, MSE, token error) per split, and the accuracy
it is read from in files written before the errors were stored (classification: error = 1 - accuracy)."""


class Status(StrEnum):
    """Values of ``/state/status``."""

    RUNNING = "running"
    COMPLETE = "complete"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"


STATES = ("fork", "start")
"""Training states kept beside the checkpoints: the SWA fork (the SWA branch and the null control start from it) and
the initial state (the budget-matched control starts from it)."""

SOLUTIONS = ("sgd", "swa", "sgd_budget", "sgd_null")
"""The solutions a run file has room for: w_SGD, w_SWA and the controls of ``train --controls`` (a budget-matched
SGD run and a second SGD branch from the fork with another data order)."""


def pack_blob(obj: Any) -> np.ndarray:
    """Serialise a dict of tensors/ints with ``torch.save`` into a uint8 array."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def unpack_blob(arr: np.ndarray) -> Any:
    """The Python object stored by :func:`pack_blob`."""
    return torch.load(io.BytesIO(arr.tobytes()), weights_only=True)


def create_structure(f: h5py.File, attrs: dict[str, str], p: int, q: int, weight_dtype: str) -> None:
    """Every group and dataset of an empty run file: ``p`` parameters, ``q`` buffer entries per snapshot."""
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    for k, v in attrs.items():
        f.attrs[k] = v
    s = f.create_group("snapshots")
    # one row per chunk: appends and single-snapshot reads touch one chunk; a zero-width row needs auto-chunking
    s.create_dataset("weights", (0, p), maxshape=(None, p), chunks=(1, p) if p else True, dtype=weight_dtype)
    s.create_dataset("buffers", (0, q), maxshape=(None, q), chunks=(1, q) if q else True, dtype="f4")
    for k in META:
        s.create_dataset(k, (0,), maxshape=(None,), chunks=(256,), dtype=META_DTYPES[k])
    s.create_dataset("count", (), dtype="i8", data=0)
    for name in SOLUTIONS:
        g = f.create_group(f"solutions/{name}")
        g.create_dataset("weights", (p,), dtype="f4", fillvalue=np.nan)
        g.create_dataset("buffers", (q,), dtype="f4", fillvalue=np.nan)
        for k in SOLUTION_SCALARS:
            g.create_dataset(k, (), dtype="f8", data=np.nan)
        g.create_dataset("written", (), dtype="?", data=False)
    st = f.create_group("state")
    for k in ("ckpt0", "ckpt1", *STATES):
        st.create_dataset(k, (0,), maxshape=(None,), chunks=(1 << 16,), dtype="u1")
    st.create_dataset("ckpt_len", (2,), dtype="i8", data=[0, 0])
    for k in STATES:
        st.create_dataset(f"{k}_len", (), dtype="i8", data=0)
    st.create_dataset("active", (), dtype="i8", data=-1)
    st.create_dataset("status", (), dtype="S16", data=Status.RUNNING.encode())
    st.create_dataset("message", (), dtype="S512", data=b"")


def run_attributes(config: dict, model: torch.nn.Module, model_spec: dict, data_spec: dict,
                   fingerprints: dict, source: str = "trainer") -> dict[str, str]:
    """The root attributes of a new run file (the schema of ``docs/file-format.md``), for every writer of runs.

    Args:
        config: The :class:`~swa.config.TrainConfig` as a dict.
        model: The network (its parameter and buffer layouts are stored).
        model_spec: How to rebuild the network (``{"name", "kwargs"}``, or ``{"name": None, "class"}``).
        data_spec: The data set (``{"name", ...}``).
        fingerprints: Split name to :func:`swa.sources.fingerprint`.
        source: ``"trainer"``, ``"recorder"`` or ``"import"``.
    """
    from landscape.files import toolkit_version
    from landscape.layout import buffer_layout, param_layout

    return {
        "model": json.dumps(model_spec), "dataset": json.dumps({**data_spec, "fingerprint": fingerprints}),
        "config": json.dumps(config), "source": source,
        "param_layout": param_layout(model).to_json(), "buffer_layout": buffer_layout(model).to_json(),
        "toolkit_version": toolkit_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def open_swmr_read(path: Path) -> h5py.File:
    """Open read-only in SWMR mode: a file whose writer crashed keeps a flag plain opens refuse."""
    return open_hdf5(path, swmr=True)
