"""Sharding an analysis over ``torchrun`` processes (torch.distributed; gloo on CPU, NCCL on GPUs).

Launched as ``torchrun --nproc-per-node N -m swa.cli analyze RUN ...`` (or with a c10d
rendezvous across machines), every rank evaluates the missing points ``todo[rank::world]``
on its own device and appends each finished chunk to its own part file
(``RESULTS.rank{r}.part.h5``, replaced atomically). There is no per-point
synchronisation: ranks meet only at the start and end of an analysis, where rank 0
merges the part files into the one results file. Part files left behind by a killed
run (of any world size) are merged before the missing points are computed, so a
restart, with the same or another number of ranks, recomputes only what is missing
and a dead rank loses at most its current chunk.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from swa.distributed import barrier, init_from_env, rank, world

from .h5io import atomic_update

__all__ = ["init_from_env", "rank", "world", "barrier", "PartFile", "merge_parts", "sharded_evaluate"]


class PartFile:
    """One rank's evaluated points: per group, growing ``index`` and value vectors, tagged with the group config."""

    def __init__(self, results_path: Path, r: int):
        self.path = Path(results_path).with_name(f"{Path(results_path).name}.rank{r}.part.h5")

    def append(self, group: str, config: str, index: np.ndarray, values: dict[str, np.ndarray]) -> None:
        def add(f: h5py.File) -> None:
            g = f.require_group(group)
            if g.attrs.get("config") != config:
                for k in list(g):
                    del g[k]
                g.attrs["config"] = config
            for name, v in {"index": index, **values}.items():
                v = np.asarray(v)
                if name not in g:
                    g.create_dataset(name, data=v, maxshape=(None,), chunks=True)
                else:
                    d = g[name]
                    d.resize(d.shape[0] + v.shape[0], axis=0)
                    d[-v.shape[0]:] = v

        atomic_update(self.path, add)


def merge_parts(results, group: str) -> int:
    """Rank 0: fold every rank's part data for ``group`` into the results file; returns points merged.

    Part data recorded under another config of the group (a changed analysis) is discarded.
    """
    merged = 0
    with results.read() as f:
        config = f[group].attrs.get("config")
    for part in sorted(results.path.parent.glob(f"{results.path.name}.rank*.part.h5")):
        with h5py.File(part, "r") as f:
            g = f.get(group)
            data = None
            if g is not None and g.attrs.get("config") == config and "index" in g:
                data = {k: g[k][:] for k in g}
            others = [k for k in f if k != group]
        if data is not None and data["index"].size:
            idx = data.pop("index")
            results.write_points(group, idx, data)
            merged += idx.size
        if others:  # keep other groups' data, drop this group's
            atomic_update(part, lambda f: f.__delitem__(group) if group in f else None)
        else:
            part.unlink()
    return merged


def sharded_evaluate(engine, points, **kwargs):
    """``engine.evaluate`` with the points split ``[rank::world]`` over the ranks and the results gathered.

    For evaluations whose outputs (probabilities) go back into memory rather than into a results grid
    (the FGE analysis); one all-gather per call. A single process evaluates everything.
    """
    import torch
    import torch.distributed as dist

    from landscape.result import concat_results
    from landscape.points import PointSet

    w, r = world(), rank()
    if w == 1:
        return engine.evaluate(points, **kwargs)
    idx = torch.arange(len(points))[r::w]
    mine = PointSet.explicit(points.points[idx], None if points.buffers is None else points.buffers[idx])
    part = engine.evaluate(mine, **kwargs) if len(idx) else None
    parts = [None] * w
    dist.all_gather_object(parts, part)
    # rank j holds points j, j+w, ...: interleave back into the original order
    order = torch.cat([torch.arange(len(points))[j::w] for j in range(w)]).argsort()
    res = concat_results([p for p in parts if p is not None], tuple(kwargs.get("splits") or engine.splits), engine.b_layout.size)
    res.loss = {k: v[order] for k, v in res.loss.items()}
    res.acc = {k: v[order] for k, v in res.acc.items()}
    res.probs = {k: v[order] for k, v in res.probs.items()}
    res.buffers, res.l2 = res.buffers[order], res.l2[order]
    res.strategy = next(p.strategy for p in parts if p is not None)
    return res
