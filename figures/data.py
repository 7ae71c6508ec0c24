"""Read what the figures need from run and results files with h5py alone (no model or training code; the
learning rate of every step is computed from the stored config by :func:`swa.schedules.lr_trace`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import h5py
import numpy as np

from landscape.errors import UserError
from landscape.files import open_hdf5
from swa.schedules import lr_trace

__all__ = ["RunSummary", "read_run", "read_results"]


@dataclass
class RunSummary:
    """Per-snapshot vectors ``[N]`` and settings of a run file."""

    path: str
    config: dict
    model: dict
    dataset: dict
    iteration: np.ndarray
    epoch: np.ndarray
    lr: np.ndarray
    branch: np.ndarray
    captured: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    solutions: dict[str, dict[str, float]]
    status: str
    lr_trace: dict[str, tuple[list[int], list[float]]]
    """The lr of every step of both branches, computed from the config (:func:`swa.schedules.lr_trace`); for a run
    recorded from a user's loop or imported, the lr each snapshot recorded."""


_FORMAT_VERSION = 1  # of both file kinds this module reads


def _check_format(f: h5py.File, path, fmt: str, what: str) -> None:
    """The same checks the writers' readers make: the format and its version."""
    if f.attrs.get("format") != fmt:
        raise UserError(f"{path} is not a swa-landscape {what} file")
    if int(f.attrs.get("format_version", -1)) != _FORMAT_VERSION:
        raise UserError(f"{path} has {what} format version {f.attrs.get('format_version')}; this toolkit reads "
                        f"version {_FORMAT_VERSION}")


def read_run(path: str | os.PathLike) -> RunSummary:
    """Settings, per-snapshot metrics and solution metrics of a run file (opened read-only, SWMR)."""
    with open_hdf5(path, swmr=True) as f:
        _check_format(f, path, "swa-landscape/trajectory", "run")
        n = int(f["snapshots/count"][()])
        s = f["snapshots"]
        sols = {}
        for name in ("sgd", "swa"):
            g = f[f"solutions/{name}"]
            if bool(g["written"][()]):
                sols[name] = {k: float(g[k][()]) for k in ("train_loss", "train_acc", "test_loss", "test_acc", "n_averaged")}
        return RunSummary(
            str(path), json.loads(f.attrs["config"]), json.loads(f.attrs["model"]), json.loads(f.attrs["dataset"]),
            s["iteration"][:n], s["epoch"][:n], s["lr"][:n], s["branch"][:n].astype(str), s["captured"][:n],
            s["test_acc"][:n], s["train_loss"][:n], sols, f["state/status"][()].decode(),
            _trace(json.loads(f.attrs["config"]), s["iteration"][:n], s["epoch"][:n])
            if f.attrs.get("source", "trainer") == "trainer" else _recorded(s["iteration"][:n], s["lr"][:n],
                                                                              s["branch"][:n].astype(str)),
        )


def _recorded(iteration: np.ndarray, lr: np.ndarray, branch: np.ndarray) -> dict:
    """The lr as the snapshots of a recorded or imported run hold it (the schedule is the user's own)."""
    return {b: (iteration[branch == b].tolist(), lr[branch == b].tolist()) for b in ("sgd", "swa")}


def _trace(config: dict, iteration: np.ndarray, epoch: np.ndarray) -> dict:
    """The lr at every step; steps per epoch read off the snapshots (iteration / epoch)."""
    ok = epoch > 0
    if not ok.any():
        return {}
    return lr_trace(config, int(round(float(iteration[ok][-1] / epoch[ok][-1]))))


def read_results(path: str | os.PathLike) -> dict[str, dict]:
    """Every analysis group of a results file as nested dicts of numpy arrays and attributes."""

    def group(g: h5py.Group) -> dict:
        out = {k: (group(v) if isinstance(v, h5py.Group) else v[()]) for k, v in g.items()}
        out["_attrs"] = dict(g.attrs)
        return out

    with open_hdf5(path) as f:
        _check_format(f, path, "swa-landscape/results", "results")
        return {k: group(v) for k, v in f.items()}
