"""The trajectory file: one self-describing HDF5 file per training run.

This module is the only place that knows the schema (documented in
``docs/file-format.md``). Crash safety rests on three rules:

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
(non-SWMR) opens refuse; :class:`Trajectory` therefore always opens SWMR
read-only, and ``--resume`` rebuilds a fresh file from the committed rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape.errors import UserError
from landscape.files import open_hdf5, output_path
from landscape.layout import Layout

__all__ = ["FORMAT", "FORMAT_VERSION", "Status", "TrajectoryWriter", "Trajectory", "pack_blob", "unpack_blob",
           "run_attributes"]

FORMAT = "swa-landscape/trajectory"
FORMAT_VERSION = 1

_META = ("epoch", "iteration", "lr", "branch", "captured", "train_loss", "train_acc", "test_loss", "test_acc")
_META_DTYPES = {
    "epoch": "f8", "iteration": "i8", "lr": "f8", "branch": "S3", "captured": "?",
    "train_loss": "f8", "train_acc": "f8", "test_loss": "f8", "test_acc": "f8",
}
_SOLUTION_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "n_averaged")


class Status:
    """Values of ``/state/status``."""

    RUNNING = "running"
    COMPLETE = "complete"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"


def pack_blob(obj: Any) -> np.ndarray:
    """Serialise a dict of tensors/ints with ``torch.save`` into a uint8 array."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def unpack_blob(arr: np.ndarray) -> Any:
    return torch.load(io.BytesIO(arr.tobytes()), weights_only=True)


def _create_structure(f: h5py.File, attrs: dict[str, str], p: int, q: int, weight_dtype: str) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    for k, v in attrs.items():
        f.attrs[k] = v
    s = f.create_group("snapshots")
    # one row per chunk: appends and single-snapshot reads touch one chunk; a zero-width row needs auto-chunking
    s.create_dataset("weights", (0, p), maxshape=(None, p), chunks=(1, p) if p else True, dtype=weight_dtype)
    s.create_dataset("buffers", (0, q), maxshape=(None, q), chunks=(1, q) if q else True, dtype="f4")
    for k in _META:
        s.create_dataset(k, (0,), maxshape=(None,), chunks=(256,), dtype=_META_DTYPES[k])
    s.create_dataset("count", (), dtype="i8", data=0)
    for name in ("sgd", "swa"):
        g = f.create_group(f"solutions/{name}")
        g.create_dataset("weights", (p,), dtype="f4", fillvalue=np.nan)
        g.create_dataset("buffers", (q,), dtype="f4", fillvalue=np.nan)
        for k in _SOLUTION_SCALARS:
            g.create_dataset(k, (), dtype="f8", data=np.nan)
        g.create_dataset("written", (), dtype="?", data=False)
    st = f.create_group("state")
    for k in ("ckpt0", "ckpt1", "fork"):
        st.create_dataset(k, (0,), maxshape=(None,), chunks=(1 << 16,), dtype="u1")
    st.create_dataset("ckpt_len", (2,), dtype="i8", data=[0, 0])
    st.create_dataset("fork_len", (), dtype="i8", data=0)
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


def _open_swmr_read(path: Path) -> h5py.File:
    return open_hdf5(path, swmr=True)


class TrajectoryWriter:
    """Append-only writer of a trajectory file (one training process).

    Use :meth:`create` for a new run and :meth:`resume` to continue one.
    """

    def __init__(self, path: Path, built: Path | None = None):
        self.path = Path(path)
        self._f = h5py.File(built or self.path, "a", libver="latest")
        self._f.swmr_mode = True
        if built is not None:  # the file appears at its path only once it is in SWMR mode: a kill at any moment
            os.replace(built, self.path)  # leaves either no file or one that SWMR readers open
        self._s = self._f["snapshots"]
        self._n = int(self._s["count"][()])

    @classmethod
    def create(cls, path: str | os.PathLike, attrs: dict[str, str], p: int, q: int,
               weight_dtype: str = "float32", overwrite: bool = False) -> TrajectoryWriter:
        """Create a new run file atomically and open it for appending.

        Args:
            path: Destination.
            attrs: Root attributes (JSON strings: model, dataset, config, layouts...).
            p: Number of parameters P.
            q: Number of buffer entries Q.
            weight_dtype: ``"float32"`` or ``"float16"`` for the snapshot weights.
            overwrite: Replace an existing file.

        Raises:
            UserError: The file exists and ``overwrite`` is False.
        """
        path = output_path(path, "run file")
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists; pass --overwrite to replace it or --resume to continue it")
        if weight_dtype not in ("float32", "float16"):
            raise UserError(f"snapshot dtype must be float32 or float16, got {weight_dtype!r}")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with h5py.File(tmp, "w", libver="latest") as f:
            _create_structure(f, attrs, p, q, weight_dtype)
        return cls(path, built=tmp)

    @classmethod
    def resume(cls, path: str | os.PathLike) -> tuple[TrajectoryWriter, dict]:
        """Rebuild a run file from its last checkpoint and reopen it for appending.

        Snapshots written after the checkpoint are dropped (they are recomputed).

        Returns:
            The writer and the checkpoint dict (see the trainer).

        Raises:
            UserError: Not a trajectory file, or no checkpoint in it.
        """
        path = Path(path)
        with Trajectory(path) as old:
            ckpt = old.checkpoint()
            if ckpt is None:
                raise UserError(f"{path} has no checkpoint to resume from (killed before the first epoch ended?)")
            n = int(ckpt["n_snapshots"])
            f0 = old._f
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with h5py.File(tmp, "w", libver="latest") as f:
                attrs = {k: v for k, v in f0.attrs.items() if k not in ("format", "format_version")}
                p, q = f0["snapshots/weights"].shape[1], f0["snapshots/buffers"].shape[1]
                _create_structure(f, attrs, p, q, str(f0["snapshots/weights"].dtype))
                for k in ("weights", "buffers", *_META):
                    d = f[f"snapshots/{k}"]
                    d.resize(n, axis=0)
                    if n:
                        d[:n] = f0[f"snapshots/{k}"][:n]
                f["snapshots/count"][()] = n
                for name in ("sgd", "swa"):
                    for k, v in f0[f"solutions/{name}"].items():
                        f[f"solutions/{name}/{k}"][()] = v[()]
                fork_len = int(f0["state/fork_len"][()])
                if fork_len:
                    f["state/fork"].resize(fork_len, axis=0)
                    f["state/fork"][:] = f0["state/fork"][:fork_len]
                    f["state/fork_len"][()] = fork_len
        w = cls(path, built=tmp)
        w.save_checkpoint(ckpt)
        w.set_status(Status.RUNNING)
        return w, ckpt

    @property
    def count(self) -> int:
        """Number of committed snapshots."""
        return self._n

    def append(self, weights: torch.Tensor, buffers: torch.Tensor, **meta: Any) -> int:
        """Append one snapshot and commit it.

        Args:
            weights: Flat parameters ``[P]``.
            buffers: Flat buffers ``[Q]``.
            **meta: Per-snapshot values named as in the schema (missing metrics are NaN).

        Returns:
            Index of the new snapshot.
        """
        unknown = set(meta) - set(_META)
        if unknown:
            raise ValueError(f"unknown snapshot fields {sorted(unknown)}")
        i = self._n
        rows = {"weights": weights.detach().cpu().numpy(), "buffers": buffers.detach().cpu().numpy()}
        for k in _META:
            rows[k] = meta.get(k, np.nan if _META_DTYPES[k] == "f8" else None)
        rows["branch"] = str(rows["branch"]).encode()
        for k, v in rows.items():
            d = self._s[k]
            d.resize(i + 1, axis=0)
            if v is not None:
                d[i] = v
            d.flush()
        self._n = i + 1
        self._s["count"][()] = self._n
        self._s["count"].flush()
        return i

    def save_checkpoint(self, state: dict) -> None:
        """Write the resume state into the inactive slot, then point at it."""
        st = self._f["state"]
        blob = pack_blob(state)
        slot = 1 - int(st["active"][()]) if int(st["active"][()]) >= 0 else 0
        d = st[f"ckpt{slot}"]
        if d.shape[0] < blob.size:
            d.resize(blob.size, axis=0)
        d[: blob.size] = blob
        lens = st["ckpt_len"][:]
        lens[slot] = blob.size
        st["ckpt_len"][:] = lens
        self._f.flush()
        st["active"][()] = slot
        self._f.flush()

    def save_fork(self, state: dict) -> None:
        """Store the state at the SWA start; the SWA branch starts from it."""
        st = self._f["state"]
        blob = pack_blob(state)
        st["fork"].resize(blob.size, axis=0)
        st["fork"][:] = blob
        self._f.flush()
        st["fork_len"][()] = blob.size
        self._f.flush()

    def fork(self) -> dict:
        """The state stored by :meth:`save_fork`."""
        st = self._f["state"]
        n = int(st["fork_len"][()])
        if not n:
            raise UserError(f"{self.path} lacks the SWA fork state")
        return unpack_blob(st["fork"][:n])

    def write_solution(self, name: str, weights: torch.Tensor, buffers: torch.Tensor, **scalars: float) -> None:
        """Write ``/solutions/{name}`` (``"sgd"`` or ``"swa"``) with its metrics."""
        g = self._f[f"solutions/{name}"]
        g["weights"][:] = weights.detach().cpu().float().numpy()
        g["buffers"][:] = buffers.detach().cpu().float().numpy()
        for k, v in scalars.items():
            if k not in _SOLUTION_SCALARS:
                raise ValueError(f"unknown solution field {k!r}")
            g[k][()] = v
        self._f.flush()
        g["written"][()] = True
        self._f.flush()

    def set_status(self, status: str, message: str = "") -> None:
        st = self._f["state"]
        st["status"][()] = status.encode()
        st["message"][()] = message.encode()[:512]
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Trajectory:
    """Read-only view of a trajectory file, validated on open.

    Array accessors return only committed snapshots. Use as a context manager or
    call :meth:`close`.

    Raises:
        UserError: Missing file, not HDF5, another format or an unsupported version.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = _open_swmr_read(self.path)
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
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attr_json(self, name: str) -> Any:
        return json.loads(self._f.attrs[name])

    @property
    def model_spec(self) -> dict:
        """``{"name": registry name, "kwargs": {...}}``."""
        return self.attr_json("model")

    @property
    def dataset_spec(self) -> dict:
        return self.attr_json("dataset")

    @property
    def config(self) -> dict:
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
        return Layout.from_json(self._f.attrs["param_layout"])

    @property
    def buffer_layout(self) -> Layout:
        return Layout.from_json(self._f.attrs["buffer_layout"])

    @property
    def status(self) -> str:
        return self._f["state/status"][()].decode()

    @property
    def message(self) -> str:
        return self._f["state/message"][()].decode()

    def meta(self, name: str) -> np.ndarray:
        """Per-snapshot vector ``[N]`` (``branch`` decoded to str)."""
        a = self._f[f"snapshots/{name}"][: self.n]
        return a.astype(str) if name == "branch" else a

    def weights(self, idx: int | slice | list[int] | np.ndarray | None = None) -> torch.Tensor:
        """Snapshot weights as float32: ``[P]`` for an int, ``[K, P]`` otherwise."""
        return self._rows("weights", idx)

    def buffers(self, idx: int | slice | list[int] | np.ndarray | None = None) -> torch.Tensor:
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

    def has_solution(self, name: str) -> bool:
        return f"solutions/{name}" in self._f and bool(self._f[f"solutions/{name}/written"][()])

    def solution(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights [P], buffers [Q])`` of ``"sgd"`` or ``"swa"``.

        Raises:
            UserError: Unknown name or not written (run incomplete).
        """
        if name not in ("sgd", "swa"):
            raise UserError(f"unknown solution {name!r}; use 'sgd', 'swa' or a snapshot index")
        if not self.has_solution(name):
            hint = {"import": f"; import it with --{name}" + (" or --snapshots" if name == "swa" else ""),
                    "recorder": f"; call Recorder.solution('{name}')" if name == "sgd" else
                    "; capture models with Recorder.capture"}.get(self.source, "")
            raise UserError(f"{self.path} has no {name} solution (run status: {self.status}){hint}")
        g = self._f[f"solutions/{name}"]
        return torch.from_numpy(g["weights"][:]), torch.from_numpy(g["buffers"][:])

    def solution_scalar(self, name: str, key: str) -> float:
        return float(self._f[f"solutions/{name}/{key}"][()])

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

    def fork(self) -> dict | None:
        n = int(self._f["state/fork_len"][()])
        return unpack_blob(self._f["state/fork"][:n]) if n else None

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
        return self.path.stat().st_size
