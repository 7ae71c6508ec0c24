"""Writing a run file (:mod:`swa.schema`): built complete under a temporary name, then appended to in SWMR mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import h5py
import numpy as np
import torch

from landscape.errors import UserError
from landscape.files import durable_replace, fsync_path, output_path

from .schema import META, META_DTYPES, SOLUTION_SCALARS, STATES, Status, create_structure, pack_blob, unpack_blob
from .trajectory import Trajectory

__all__ = ["RunWriter", "TrajectoryWriter"]


@runtime_checkable
class RunWriter(Protocol):
    """What the training loop writes through.

    The run file's writer on rank 0 (:class:`TrajectoryWriter`), a stand-in that writes nothing on the other
    ranks (:class:`swa.distributed.RankWriter`).
    """

    path: Path

    @property
    def count(self) -> int:
        """Snapshots written so far."""

    def append(self, weights: torch.Tensor, buffers: torch.Tensor, **meta: Any) -> int:
        """Record one snapshot ``([P], [Q])`` with its metadata; returns its index."""

    def save_checkpoint(self, state: dict) -> None:
        """Make the training state durable (resume starts here)."""

    def save_fork(self, state: dict, slot: str = "fork") -> None:
        """Keep a state the run returns to (the SWA branch's fork, a control's start)."""

    def fork(self, slot: str = "fork") -> dict:
        """A state kept with :meth:`save_fork`."""

    def write_solution(self, name: str, weights: torch.Tensor, buffers: torch.Tensor, **scalars: float) -> None:
        """Record a solution (``sgd``, ``swa``, a control) with its scalars."""

    def set_status(self, status: str, message: str = "") -> None:
        """Record the run's status (running, finished, diverged...)."""

    def close(self) -> None:
        """Flush and close."""


class TrajectoryWriter:
    """Append-only writer of a trajectory file (one training process).

    Use :meth:`create` for a new run and :meth:`resume` to continue one.
    """

    def __init__(self, path: Path, built: Path | None = None):
        self.path = Path(path)
        self._f = h5py.File(built or self.path, "a", libver="latest")
        self._f.swmr_mode = True
        if built is not None:  # the file appears at its path only once it is in SWMR mode: a kill at any moment
            durable_replace(built, self.path)  # leaves either no file or one that SWMR readers open
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
            create_structure(f, attrs, p, q, weight_dtype)
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
        tmp = _rebuilt(path, int(ckpt["n_snapshots"]))
        w = cls(path, built=tmp)
        w.save_checkpoint(ckpt)
        w.set_status(Status.RUNNING)
        return w, ckpt

    @classmethod
    def reopen(cls, path: str | os.PathLike, snapshots: int, solutions: set[str]) -> TrajectoryWriter:
        """Reopen a run file for appending after its first ``snapshots`` snapshots (a recording resumed).

        Later snapshots and the solutions not in ``solutions`` are dropped: the recording writes them again.
        The file is rebuilt under a temporary name and replaces the old one atomically.

        Raises:
            UserError: Not a trajectory file, or it holds fewer than ``snapshots`` snapshots.
        """
        path = Path(path)
        w = cls(path, built=_rebuilt(path, snapshots, solutions))
        w.set_status(Status.RUNNING)
        return w

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
        unknown = set(meta) - set(META)
        if unknown:
            raise ValueError(f"unknown snapshot fields {sorted(unknown)}")
        i = self._n
        rows = {"weights": weights.detach().cpu().numpy(), "buffers": buffers.detach().cpu().numpy()}
        for k in META:
            rows[k] = meta.get(k, np.nan if META_DTYPES[k] == "f8" else None)
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
        fsync_path(self.path)  # each checkpoint reaches the disk: the state a resume starts from

    def save_fork(self, state: dict, slot: str = "fork") -> None:
        """Store a training state in ``slot`` (:data:`~swa.schema.STATES`).

        The state at the SWA start (``fork``) or the initial one (``start``).
        """
        st = self._f["state"]
        blob = pack_blob(state)
        st[slot].resize(blob.size, axis=0)
        st[slot][:] = blob
        self._f.flush()
        st[f"{slot}_len"][()] = blob.size
        self._f.flush()

    def fork(self, slot: str = "fork") -> dict:
        """The state stored by :meth:`save_fork` in ``slot``."""
        st = self._f["state"]
        n = int(st[f"{slot}_len"][()])
        if not n:
            raise UserError(f"{self.path} lacks the {'SWA fork' if slot == 'fork' else 'initial'} state")
        return unpack_blob(st[slot][:n])

    def write_solution(self, name: str, weights: torch.Tensor, buffers: torch.Tensor, **scalars: float) -> None:
        """Write ``/solutions/{name}`` (one of :data:`~swa.schema.SOLUTIONS`) with its metrics."""
        g = self._f[f"solutions/{name}"]
        g["weights"][:] = weights.detach().cpu().float().numpy()
        g["buffers"][:] = buffers.detach().cpu().float().numpy()
        for k, v in scalars.items():
            if k not in SOLUTION_SCALARS:
                raise ValueError(f"unknown solution field {k!r}")
            g[k][()] = v
        self._f.flush()
        g["written"][()] = True
        self._f.flush()

    def set_status(self, status: str, message: str = "") -> None:
        """Record the run's status and the message why."""
        st = self._f["state"]
        st["status"][()] = status.encode()
        st["message"][()] = message.encode()[:512]
        self._f.flush()

    def close(self) -> None:
        """Flush and close the file."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rebuilt(path: Path, n: int, solutions: set[str] | None = None) -> Path:
    """The run file at ``path`` rebuilt beside it under a temporary name, which is returned.

    It keeps the first ``n`` snapshots, the training states and the solutions in ``solutions`` (None: all).
    """
    with Trajectory(path) as old:
        if old.n < n:
            raise UserError(f"{path} holds {old.n} snapshots, fewer than the {n} the resumed recording expects")
        f0 = old._f
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with h5py.File(tmp, "w", libver="latest") as f:
            attrs = {k: v for k, v in f0.attrs.items() if k not in ("format", "format_version")}
            p, q = f0["snapshots/weights"].shape[1], f0["snapshots/buffers"].shape[1]
            create_structure(f, attrs, p, q, str(f0["snapshots/weights"].dtype))
            for k in ("weights", "buffers", *META):
                d = f[f"snapshots/{k}"]
                d.resize(n, axis=0)
                if n:
                    d[:n] = f0[f"snapshots/{k}"][:n] if f"snapshots/{k}" in f0 else old.meta(k)[:n]
            f["snapshots/count"][()] = n
            for name in f0["solutions"]:
                if solutions is None or name in solutions:
                    for k in f[f"solutions/{name}"]:
                        f[f"solutions/{name}/{k}"][()] = (f0[f"solutions/{name}/{k}"][()] if k in f0[f"solutions/{name}"]
                                                          else old.solution_scalar(name, k))
            for k in STATES:
                n_k = int(f0[f"state/{k}_len"][()]) if f"state/{k}_len" in f0 else 0
                if n_k:
                    f[f"state/{k}"].resize(n_k, axis=0)
                    f[f"state/{k}"][:] = f0[f"state/{k}"][:n_k]
                    f[f"state/{k}_len"][()] = n_k
    return tmp
