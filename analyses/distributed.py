"""Sharding an analysis over ``torchrun`` processes (torch.distributed; gloo on CPU, NCCL on GPUs).

Launched as ``torchrun --nproc-per-node N -m swa.cli analyze RUN ...`` (or with a c10d
rendezvous across machines), every rank evaluates the missing points ``todo[rank::world]``
on its own device and makes each finished chunk durable in the results file's journal
(:mod:`analyses.journal`). There is no per-point synchronisation: ranks meet only at
the start and end of an analysis, where rank 0 merges the journal into the one results
file. Chunks left behind by a killed run (of any world size) are merged before the
missing points are computed, so a restart, with the same or another number of ranks,
recomputes only what is missing and a dead rank loses at most its current chunk.
"""

from __future__ import annotations

from swa.distributed import barrier, init_from_env, rank, world

__all__ = ["init_from_env", "rank", "world", "barrier", "sharded_evaluate"]


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
