"""Reading a run file (:mod:`swa.schema`).

:class:`Trajectory`, read-only, validated on open, SWMR (a run still being written, or one whose writer was killed,
reads to its last committed snapshot).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.errors import UserError
from landscape.layout import Layout

from .schema import ERRORS, FORMAT, FORMAT_VERSION, SOLUTIONS, open_swmr_read, unpack_blob

__all__ = ["Trajectory", "NULL_ROLES"]

NULL_ROLES = {"swa": "sgd_null"}
"""The null control's view of a run (``Trajectory(run, NULL_ROLES)``): the second SGD solution of ``train --controls``
in SWA's role, so that every analysis compares two SGD solutions the way it compares SWA with SGD."""


class Trajectory:
    """Read-only view of a trajectory file, validated on open.

    Array accessors return only committed snapshots. Use as a context manager or
    call :meth:`close`.

    Raises:
        UserError: Missing file, not HDF5, another format or an unsupported version.
    """

    def __init__(self, path: str | os.PathLike, roles: Mapping[str, str] | None = None):
        """Open ``path``; ``roles`` maps a solution name to the solution that plays it (:data:`NULL_ROLES`)."""
        self.path = Path(path)
        self.roles = dict(roles or {})
        self._f = open_swmr_read(self.path)
        fmt = self._f.attrs.get("format")
        if fmt != FORMAT:
            self._f.close()
            raise UserError(f"{self.path} is not a swa-landscape trajectory file (format attribute: {fmt!r})")
        ver = int(self._f.attrs.get("format_version", -1))
        if ver != FORMAT_VERSION:
            self._f.close()
            raise UserError(f"{self.path} has trajectory format version {ver}; this toolkit reads version {FORMAT_VERSION}")
        self.n = int(self._f["snapshots/count"][()])

    def close(self) -> None:
        """Close the file."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attr_json(self, name: str) -> Any:
        """The root attribute ``name``, decoded from JSON."""
        return json.loads(self._f.attrs[name])

    @property
    def model_spec(self) -> dict:
        """``{"name": registry name, "kwargs": {...}}``."""
        return self.attr_json("model")

    @property
    def dataset_spec(self) -> dict:
        """How the run's data is built (the dataset attribute)."""
        return self.attr_json("dataset")

    @property
    def config(self) -> dict:
        """The run's training settings."""
        return self.attr_json("config")

    def train_config(self):
        """The run's :class:`~swa.config.TrainConfig` (its properties own the derived defaults: SWA start, length)."""
        from .config import TrainConfig

        return TrainConfig(**self.config)

    @property
    def source(self) -> str:
        """Who wrote the run: ``"trainer"``, ``"recorder"`` (a user's loop) or ``"import"`` (checkpoints)."""
        return str(self._f.attrs.get("source", "trainer"))

    @property
    def param_layout(self) -> Layout:
        """Names and shapes of the model's parameters."""
        return Layout.from_json(self._f.attrs["param_layout"])

    @property
    def buffer_layout(self) -> Layout:
        """Names and shapes of the model's buffers."""
        return Layout.from_json(self._f.attrs["buffer_layout"])

    @property
    def status(self) -> str:
        """The run's status (running, finished, failed, diverged)."""
        return self._f["state/status"][()].decode()

    @property
    def message(self) -> str:
        """The message stored with the status (why a run stopped)."""
        return self._f["state/message"][()].decode()

    def meta(self, name: str) -> np.ndarray:
        """Per-snapshot vector ``[N]`` (``branch`` decoded to str).

        ``train_error``/``test_error`` of a file written before they were stored: ``1 - accuracy``.
        """
        if name in ERRORS and f"snapshots/{name}" not in self._f:
            return 1.0 - self._f[f"snapshots/{ERRORS[name]}"][: self.n]
        a = self._f[f"snapshots/{name}"][: self.n]
        return a.astype(str) if name == "branch" else a

    def weights(self, idx: int | slice | list[int] | np.ndarray | None = None) -> torch.Tensor:
        """Snapshot weights as float32: ``[P]`` for an int, ``[K, P]`` otherwise."""
        return self._rows("weights", idx)

    def buffers(self, idx: int | slice | list[int] | np.ndarray | None = None) -> torch.Tensor:
        """Flat buffers of the snapshots ``idx`` (``[Q]`` for one index, ``[K, Q]`` otherwise; all of them for None)."""
        return self._rows("buffers", idx)

    def _rows(self, key: str, idx) -> torch.Tensor:
        d = self._f[f"snapshots/{key}"]
        if idx is None:
            idx = slice(0, self.n)
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if not -self.n <= i < self.n:
                raise UserError(f"snapshot index {i} out of range: {self.path} has {self.n} snapshots")
            return torch.from_numpy(d[i % self.n].astype(np.float32))
        if isinstance(idx, slice):  # only the rows asked for are read
            lo, hi, step = idx.indices(self.n)
            if step == 1:
                return torch.from_numpy(d[lo:max(lo, hi)].astype(np.float32))
            idx = np.arange(lo, hi, step)
        arr = np.asarray(idx, dtype=np.int64)
        bad = arr[(arr < 0) | (arr >= self.n)]
        if bad.size:
            raise UserError(f"snapshot index {int(bad[0])} out of range: {self.path} has {self.n} snapshots")
        if not arr.size or not d.shape[1]:  # h5py cannot select rows of a dataset without columns
            return torch.zeros(arr.size, d.shape[1])
        rows, inverse = np.unique(arr, return_inverse=True)  # h5py reads increasing unique indices
        return torch.from_numpy(d[rows][inverse].astype(np.float32))

    @property
    def view(self) -> str | None:
        """``"null"`` for the null control's view, None for the run itself."""
        return "null" if self.roles else None

    @property
    def results_path(self) -> Path:
        """The default results file of this view of the run (``RUN.landscape.h5``, ``RUN.null.landscape.h5``)."""
        from landscape.files import default_results_path

        return default_results_path(self.path, self.view)

    def has_solution(self, name: str) -> bool:
        """Whether the solution ``name`` (``sgd``, ``swa``, a control) has been written."""
        name = self.roles.get(name, name)
        return f"solutions/{name}" in self._f and bool(self._f[f"solutions/{name}/written"][()])

    def solution(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights [P], buffers [Q])`` of ``"sgd"``, ``"swa"`` or a control.

        Controls: ``"sgd_budget"``, ``"sgd_null"``; names are read through :attr:`roles`.

        Raises:
            UserError: Unknown name or not written (run incomplete).
        """
        if name not in SOLUTIONS:
            raise UserError(f"unknown solution {name!r}; use 'sgd', 'swa' or a snapshot index")
        if self.roles.get(name, name) != name and not self.has_solution(name):
            raise UserError(f"{self.path} has no {self.roles[name]} solution for the null control: train it with "
                            "--controls")
        if not self.has_solution(name):
            hint = {"import": f"; import it with --{name}" + (" or --snapshots" if name == "swa" else ""),
                    "recorder": f"; call Recorder.solution('{name}')" if name == "sgd" else
                    "; capture models with Recorder.capture"}.get(self.source, "")
            raise UserError(f"{self.path} has no {name} solution (run status: {self.status}){hint}")
        g = self._f[f"solutions/{self.roles.get(name, name)}"]
        return torch.from_numpy(g["weights"][:]), torch.from_numpy(g["buffers"][:])

    def solution_scalar(self, name: str, key: str) -> float:
        """A scalar stored with the solution ``name`` (e.g. ``test_acc``)."""
        g = self._f[f"solutions/{self.roles.get(name, name)}"]
        if key in ERRORS and key not in g:  # written before the errors were stored: classification
            return 1.0 - float(g[ERRORS[key]][()])
        return float(g[key][()])

    @property
    def has_checkpoint(self) -> bool:
        """Whether a resume checkpoint was committed (without reading it)."""
        return int(self._f["state/active"][()]) >= 0

    def checkpoint(self) -> dict | None:
        """The latest resume checkpoint, or None."""
        st = self._f["state"]
        slot = int(st["active"][()])
        if slot < 0:
            return None
        return unpack_blob(st[f"ckpt{slot}"][: int(st["ckpt_len"][slot])])

    def fork(self, slot: str = "fork") -> dict | None:
        """A training state kept beside the checkpoints (:data:`~swa.schema.STATES`), or None."""
        n = int(self._f[f"state/{slot}_len"][()]) if f"state/{slot}_len" in self._f else 0
        return unpack_blob(self._f[f"state/{slot}"][:n]) if n else None

    def content_hash(self) -> str:
        """SHA-256 over the solutions' weights and buffers: identifies the run's results."""
        h = hashlib.sha256()
        for name in ("sgd", "swa"):
            if self.has_solution(name):
                w, b = self.solution(name)
                h.update(name.encode())
                h.update(w.numpy().tobytes())
                h.update(b.numpy().tobytes())
        return h.hexdigest()

    def file_size(self) -> int:
        """Size of the run file in bytes."""
        return self.path.stat().st_size
