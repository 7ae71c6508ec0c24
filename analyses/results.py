"""The results file of the analyses (HDF5), separate from the run file.

Schema (documented in ``docs/file-format.md``): root attributes ``format`` =
``"swa-landscape/results"``, ``format_version``, ``run`` (path of the run file),
``run_hash`` (:meth:`swa.trajectory.Trajectory.content_hash`), ``toolkit_version``;
one group per analysis (``/rays``, ``/segment``, ``/plane``, ``/fge``) whose
``config`` attribute (JSON) records the analysis and engine settings.

Every change is made on a copy that replaces the file atomically (``os.replace``),
so a crash at any moment leaves the previous complete file. The run file is only
ever opened read-only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape.errors import UserError
from landscape.files import default_results_path, open_hdf5, output_path, toolkit_version
from swa.trajectory import Trajectory

from .h5io import atomic_update
from .journal import Journal

__all__ = ["FORMAT", "FORMAT_VERSION", "default_results_path", "open_results", "read_groups", "config_json",
           "ResultsFile", "stored_eigenvectors"]

FORMAT = "swa-landscape/results"
FORMAT_VERSION = 1


@contextmanager
def open_results(path: str | os.PathLike) -> Iterator[h5py.File]:
    """A results file opened read-only, its format and version checked."""
    f = open_hdf5(path)
    try:
        if f.attrs.get("format") != FORMAT:
            raise UserError(f"{path} is not a swa-landscape results file")
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise UserError(f"{path} has results format version {f.attrs.get('format_version')}; this toolkit reads "
                            f"version {FORMAT_VERSION}")
        yield f
    finally:
        f.close()


def read_groups(path: str | os.PathLike) -> dict[str, dict]:
    """Every group of a results file as nested dicts of numpy arrays, each with its attributes under ``_attrs``."""

    def group(g: h5py.Group) -> dict:
        out = {k: (group(v) if isinstance(v, h5py.Group) else v[()]) for k, v in g.items()}
        out["_attrs"] = dict(g.attrs)
        return out

    with open_results(path) as f:
        return {k: group(v) for k, v in f.items()}


def config_json(config: dict) -> str:
    """A group's ``config`` attribute: the settings as canonical JSON (what resume compares)."""
    return json.dumps(config, sort_keys=True)


class ResultsFile:
    """Results of the analyses of one run.

    Knows nothing of ranks: under ``torchrun`` :class:`analyses.distributed.ShardedResults`
    decides who writes.

    Args:
        path: Results file (created on first write).
        run: The open run file the results belong to; an existing results file of
            another run (different content hash) is refused.
        names: How the run's objective names its loss and error (:func:`landscape.objective.metric_names`),
            stored as the root attribute ``objective`` for the figures.
    """

    def __init__(self, path: str | os.PathLike, run: Trajectory, names: dict | None = None):
        self.path, self.run = output_path(path, "results file"), Path(run.path)
        self.names = names
        if self.path.resolve() == self.run.resolve():
            raise UserError("the results file must not be the run file (analyses never modify the training log)")
        self.run_hash = run.content_hash()
        if self.path.exists():
            with self.read() as f:
                other, other_run = f.attrs.get("run_hash"), f.attrs.get("run", "?")
            if other != self.run_hash:
                raise UserError(f"{self.path} holds results of another run ({other_run}); "
                                "pass --out to write elsewhere")

    def read(self):
        """Open read-only (validated)."""
        return open_results(self.path)

    def update(self, fn: Callable[[h5py.File], Any]) -> Any:
        """Apply ``fn(file)`` to a copy and atomically replace the results file with it."""

        def stamped(f: h5py.File) -> Any:
            if "format" not in f.attrs:
                f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "run": str(self.run.resolve()),
                                "run_hash": self.run_hash, "toolkit_version": toolkit_version()})
            if self.names is not None:
                f.attrs["objective"] = json.dumps(self.names)
            return fn(f)

        return atomic_update(self.path, stamped)

    def prepare(self, group: str, config: dict, arrays: dict[str, tuple[tuple[int, ...], str, Any]],
                scalars: dict[str, Any] | None = None, axes: tuple[str, ...] = ()) -> np.ndarray:
        """Create ``group`` for ``config`` or reuse it if the config matches (resume).

        Args:
            group: Group name.
            config: Settings (JSON-able); a different config restarts the group.
            arrays: name -> (shape, dtype, fill) of the datasets the analysis fills in.
            scalars: Datasets written once at creation (e.g. ``t``, ``x``, ``y``).
            axes: The scalars that are the coordinates of the arrays' dimensions, in order: stored as HDF5 dimension
                scales, so that xarray, HDFView or ParaView show labelled axes.

        Returns:
            The ``done`` mask (bool, flat over the points) as stored.
        """
        self._prepare(group, config_json(config), arrays, scalars, axes)
        Journal(self.path).merge(self, group)  # chunks a killed run made durable
        with self.read() as f:
            return f[group]["done"][:]

    def stored(self, group: str, config: dict) -> dict | None:
        """A finished group's datasets if it was computed with ``config`` (resume of whole-group analyses).

        None when it is absent, has other settings or has
        points still to do.
        """
        if not self.path.exists():
            return None
        with self.read() as f:
            g = f.get(group)
            if g is None or g.attrs.get("config") != config_json(config) or ("done" in g and not g["done"][:].all()):
                return None
            return {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}

    def _prepare(self, group: str, cfg: str, arrays: dict, scalars: dict | None, axes: tuple[str, ...] = ()
                 ) -> np.ndarray:
        def fn(f: h5py.File) -> np.ndarray:
            if group in f and f[group].attrs.get("config") == cfg and "done" in f[group]:
                return f[group]["done"][:]
            if group in f:
                del f[group]
            g = f.create_group(group)
            g.attrs["config"] = cfg
            n = None
            for name, (shape, dtype, fill) in arrays.items():
                g.create_dataset(name, shape, dtype=dtype, fillvalue=fill)
                n = int(np.prod(shape[:2])) if n is None else n
            for name, value in (scalars or {}).items():
                g.create_dataset(name, data=value)
            _attach(g, {name: axes for name in arrays})
            g.create_dataset("done", (n or 0,), dtype="?", fillvalue=False)
            return g["done"][:]

        return self.update(fn)

    def write_points(self, group: str, flat_index: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Store per-point values at flat indices of the group's arrays and mark them done."""

        def fn(f: h5py.File) -> None:
            g = f[group]
            for name, v in values.items():
                d = g[name]
                flat = d[...].reshape(-1, *d.shape[2:]) if d.ndim > 2 else d[...].reshape(-1)
                flat[flat_index] = v
                d[...] = flat.reshape(d.shape)
            done = g["done"][:]
            done[flat_index] = True
            g["done"][:] = done

        self.update(fn)

    def write(self, group: str, values: dict[str, Any], attrs: dict[str, Any] | None = None,
              axes: dict[str, tuple[str, ...]] | None = None) -> None:
        """(Re)write datasets and attributes of a group.

        Args:
            group: The group.
            values: Name to array or scalar.
            attrs: The group's attributes to set.
            axes: Dataset name to the names of the datasets that are the coordinates of its leading dimensions,
                stored as HDF5 dimension scales (``{"adaptive_mean": ("rhos",)}``).
        """

        def fn(f: h5py.File) -> None:
            g = f.require_group(group)
            for name, v in values.items():
                if name in g:
                    del g[name]
                g.create_dataset(name, data=v)
            for k, v in (attrs or {}).items():
                g.attrs[k] = v
            _attach(g, {k: a for k, a in (axes or {}).items() if k in values})

        self.update(fn)


def _attach(g: h5py.Group, axes: dict[str, tuple[str, ...]]) -> None:
    """Make each named coordinate a dimension scale and attach it to the dimensions of the datasets it labels."""
    for name, coords in axes.items():
        for i, axis in enumerate(coords):
            if not g[axis].is_scale:
                g[axis].make_scale(axis)
            g[name].dims[i].attach_scale(g[axis])
            g[name].dims[i].label = axis


def stored_eigenvectors(results: ResultsFile, name: str) -> torch.Tensor:
    """The unit eigenvectors ``[k, P]`` (float64) that ``analyze hessian`` stored at point ``name``.

    Args:
        results: The results file (or anything with its ``path`` and ``read()``).
        name: The point (``swa``, ``sgd``, ...).

    Raises:
        UserError: The results file holds none there.
    """
    key = f"hessian/{name}/eigenvectors"
    with (results.read() if results.path.exists() else nullcontext()) as f:
        if f is None or key not in f:
            raise UserError(f"directions along Hessian eigenvectors need the eigenvectors at {name.upper()}: run "
                            f"'swa-landscape analyze RUN hessian' first (into {results.path})")
        d = torch.from_numpy(f[key][:]).double()
    return d / d.norm(dim=1, keepdim=True)
