"""Sharding an analysis over ``torchrun`` processes (torch.distributed; gloo on CPU, NCCL on GPUs).

Launched as ``torchrun --nproc-per-node N -m swa_landscape analyze RUN ...`` (or with a c10d
rendezvous across machines), every rank evaluates the missing points ``todo[rank::world]``
on its own device and makes each finished chunk durable in the results file's journal
(:mod:`analyses.journal`). There is no per-point synchronisation: ranks meet only at
the start and end of an analysis, where rank 0 merges the journal into the one results
file. Chunks left behind by a killed run (of any world size) are merged before the
missing points are computed, so a restart, with the same or another number of ranks,
recomputes only what is missing and a dead rank loses at most its current chunk.
"""

from __future__ import annotations

from landscape.ranks import barrier, rank, world

__all__ = ["mine", "gather", "shard_map", "ShardedResults",
           "sharded_evaluate"]


def mine(n: int):
    """This rank's share of ``n`` work items: indices ``[rank::world]`` (all of them in a single process)."""
    import numpy as np

    return np.arange(n)[rank()::world()]


def gather(part) -> list:
    """Every rank's ``part`` (any picklable object), in rank order; ``[part]`` in a single process."""
    if world() == 1:
        return [part]
    import torch.distributed as dist

    parts: list = [None] * world()
    dist.all_gather_object(parts, part)
    return parts


def shard_map(fn, items: list) -> list:
    """``[fn(x) for x in items]`` with the items shared out by :func:`mine` and the results gathered in order."""
    idx = mine(len(items))
    parts = gather([(int(i), fn(items[i])) for i in idx])
    out = dict(kv for part in parts for kv in part)
    return [out[i] for i in range(len(items))]


class ShardedResults:
    """A results file shared by the ranks: rank 0 alone writes, the others wait where they must, every rank reads.

    All the rank logic of the results file lives here; with one process it passes every call through.

    Args:
        results: The :class:`~analyses.results.ResultsFile`.
    """

    def __init__(self, results):
        self.file, self.path = results, results.path

    def read(self):
        """Open the results file for reading (every rank)."""
        return self.file.read()

    def prepare(self, group: str, config: dict, arrays: dict, scalars: dict | None = None, axes: tuple[str, ...] = ()):
        """Rank 0 creates the group (merging the journal); then every rank reads the ``done`` mask."""
        if rank() == 0:
            self.file.prepare(group, config, arrays, scalars, axes)
        barrier()
        with self.file.read() as f:
            return f[group]["done"][:]

    def stored(self, group: str, config: dict):
        """A finished group's datasets if computed with ``config``, else None (see :meth:`ResultsFile.stored`)."""
        return self.file.stored(group, config)

    def write(self, group: str, values: dict, attrs: dict | None = None, axes: dict | None = None) -> None:
        """Write values and attributes into ``group`` (rank 0 writes; the others do nothing)."""
        if rank() == 0:
            self.file.write(group, values, attrs, axes)

    def write_points(self, group: str, flat_index, values: dict) -> None:
        """Write the values of points ``flat_index`` into ``group`` (rank 0 writes)."""
        if rank() == 0:
            self.file.write_points(group, flat_index, values)

    def merge(self, journal, group: str) -> None:
        """Every rank's chunks of ``group`` into the file: the meeting point at the end of an analysis."""
        barrier()
        if rank() == 0:
            journal.merge(self.file, group)
        barrier()


def sharded_evaluate(engine, points, splits: tuple[str, ...], **kwargs):
    """``engine.evaluate`` with the points split ``[rank::world]`` over the ranks and the results gathered.

    For evaluations whose outputs (probabilities) go back into memory rather than into a results grid
    (the FGE analysis); one all-gather per call. A single process evaluates everything.
    """
    import torch

    from landscape.result import concat_results

    if world() == 1:
        return engine.evaluate(points, splits=splits, **kwargs)
    idx = mine(len(points))
    got = [p for p in gather(engine.evaluate(points.subset(torch.as_tensor(idx)), splits=splits, **kwargs)
                             if len(idx) else None) if p is not None]
    # rank j holds points j, j+w, ...: interleave back into the original order
    order = torch.cat([torch.arange(len(points))[j::world()] for j in range(world())]).argsort()
    return concat_results(got, splits, got[0].buffers.shape[1]).reordered(order)
