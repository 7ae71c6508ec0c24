"""The forwards of one chunk of points: the functional forward, the BN statistics pass, an evaluation pass.

Data is the outer loop (super-batches, read once per chunk), points the inner one:
either a plain per-point loop or ``torch.func.vmap`` over stacked weights. Every
function here is pure apart from the replica's :class:`~landscape.grouped_bn.BNContext` (and the
exact pass, which loads each point into the replica's unmodified copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch.func import functional_call, vmap

from .bn import BNWeighting, ModelCall, recompute_bn
from .errors import UserError
from .grouped_bn import Replica
from .layout import Layout, unflatten
from .memory import batch_to
from .objective import Objective
from .structure import batch_size, call_model, map_tensors, read_output, take

__all__ = ["Strategy", "BNPass", "forward", "recompute_buffers", "recompute_buffers_exact", "evaluate_split",
           "accumulate"]


class Strategy(str, Enum):
    """How a chunk of points is pushed through the network."""

    AUTO = "auto"
    """Pick by timing candidates on the evaluation's own first points (see :mod:`landscape.probe`)."""
    LOOP = "loop"
    """One point after another over device-resident data."""
    VMAP = "vmap"
    """``torch.func.vmap`` over stacked weights."""


@dataclass(frozen=True)
class BNPass:
    """The BN statistics pass of an engine: what ``update_bn`` is given, and where the statistics go.

    Attributes:
        data: Training inputs ``[N, ...]`` (a tensor, or a tuple or dict of tensors); full groups of ``batch_size``,
            then the remainder as one group.
        batch_size: Samples per BN batch (it defines the per-batch statistics).
        weighting: Per-batch (``update_bn``) or per-sample weighting.
        slices: BN layer name to the slices of its ``running_mean``/``running_var``/``num_batches_tracked`` in Q.
        layout: The buffer layout (names and shapes of Q).
        device: Where the forwards run.
    """

    data: Any
    batch_size: int
    weighting: BNWeighting
    slices: dict[str, dict[str, slice]]
    layout: Layout
    device: torch.device


def _call(rep: Replica, params: dict | None, buffers: dict | None, x: torch.Tensor, mode: str, groups: int):
    """One forward of the replica: functional (``params``/``buffers`` given) or on the loaded point (None)."""
    ctx = rep.ctx
    ctx.reset(mode, groups)
    try:
        with rep.mode if mode == "stats" else nullcontext():  # the mode groups BN statistics; eval: plain calls
            if params is None:  # the per-point loop: the compiled copy for evaluation passes where there is one
                out = call_model(rep.compiled if mode == "eval" and rep.compiled is not None else rep.model, x)
            else:
                args, kwargs = (((), dict(x)) if isinstance(x, Mapping) else
                                (tuple(x), {}) if isinstance(x, (tuple, list)) else ((x,), {}))
                out = functional_call(rep.model, (params, buffers), args, kwargs)
            out = read_output(out)  # a tensor, so that vmap can stack it
        stats = ctx.stats
    finally:  # ctx.names stays: the caller reads it after vmap
        ctx.mode, ctx.stats, ctx.stack, ctx.skip = "eval", None, [], None
    return out, stats


def forward(rep: Replica, strategy: Strategy, params: dict, buffers: dict, x: Any, mode: str, groups: int
            ) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """One forward of ``k`` points on the same inputs.

    Args:
        rep: The replica to run.
        strategy: ``LOOP`` or ``VMAP``.
        params: Name to stacked parameters ``[k, ...]``.
        buffers: Name to stacked buffers ``[k, ...]``.
        x: Inputs ``[n, ...]``: a tensor, or a tuple or dict of tensors (:func:`landscape.structure.call_model`).
        mode: ``"eval"`` or ``"stats"`` (see :class:`~landscape.grouped_bn.BNContext`).
        groups: BN groups (consecutive batches of samples) in ``x`` in ``"stats"`` mode.

    Returns:
        Predictions ``[k, n, ...]`` (:func:`landscape.structure.read_output`) and, per intercepted BN call, ``(layer name, mean sums [k, C], variance sums [k, C])``.
    """
    dtype = next(iter(params.values())).dtype  # data placed in the engine's dtype, a point checked in another
    x = map_tensors(lambda t: t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t, x)
    if strategy is Strategy.VMAP:
        logits, stats = vmap(lambda p, b: _call(rep, p, b, x, mode, groups), in_dims=(0, 0))(params, buffers)
        names = list(rep.ctx.names)
    else:
        k = next(iter(params.values())).shape[0]
        outs, names = [], []
        for i in range(k):  # copy the point into the replica, then a plain forward (no functional_call overhead)
            rep.load({n: t[i] for n, t in (params | buffers).items()})
            outs.append(_call(rep, None, None, x, mode, groups))
            names = list(rep.ctx.names)
        logits = torch.stack([o[0] for o in outs])
        stats = [(torch.stack([o[1][j][0] for o in outs]), torch.stack([o[1][j][1] for o in outs]))
                 for j in range(len(outs[0][1]))]
    return logits, [(name, m, v) for name, (m, v) in zip(names, stats, strict=True)]


@torch.no_grad()
def recompute_buffers(rep: Replica, strategy: Strategy, params: dict, buffers_flat: torch.Tensor, bn: BNPass,
                      superbatch: int) -> torch.Tensor:
    """The BN statistics pass (``update_bn`` semantics) for ``k`` points, many BN batches per forward.

    A BN layer called several times per forward (a shared layer) averages over all its calls, as
    ``update_bn`` does; its ``num_batches_tracked`` counts the calls.

    Args:
        rep: The replica to run.
        strategy: ``LOOP`` or ``VMAP``.
        params: Name to stacked parameters ``[k, ...]``.
        buffers_flat: The points' buffers ``[k, Q]`` (non-BN entries are kept).
        bn: The BN pass (data, batch size, weighting, where the statistics go).
        superbatch: Samples per forward (a multiple of ``bn.batch_size``).

    Returns:
        Buffers ``[k, Q]`` with the recomputed running statistics.

    Raises:
        UserError: Per-sample weighting of a BN layer called several times per forward (no clean weighting).
        GroupingError: A BN layer whose rows do not split into the forward's BN batches.
    """
    b, n, weighting, device = bn.batch_size, batch_size(bn.data), bn.weighting, bn.device
    buffers = unflatten(buffers_flat, bn.layout)
    sums: dict[str, list] = {}
    n_full = n // b * b
    pieces = [(i, min(i + superbatch, n_full), b) for i in range(0, n_full, superbatch)]
    if n_full < n:
        pieces.append((n_full, n, n - n_full))
    for lo, hi, grp in pieces:
        xb = batch_to(bn.data, lo, hi, device, next(iter(params.values())).dtype)
        groups = (hi - lo) // grp
        _, stats = forward(rep, strategy, params, buffers, xb, "stats", groups)
        names = [name for name, _, _ in stats]
        if weighting is BNWeighting.SAMPLE and len(set(names)) < len(names):
            twice = next(x for x in names if names.count(x) > 1)
            raise UserError(f"BatchNorm layer {twice!r} is called several times per forward; per-sample BN weighting "
                            "has no single meaning then (use --bn-weighting batch)")
        w = grp if weighting is BNWeighting.SAMPLE else 1
        for name, m, v in stats:
            acc = sums.setdefault(name, [torch.zeros_like(m, dtype=torch.float64),
                                         torch.zeros_like(v, dtype=torch.float64), 0, 0])
            acc[0] += w * m.double()
            acc[1] += w * v.double()
            acc[2] += w * groups  # total weight
            acc[3] += groups  # calls of the layer, as update_bn counts them
    out = buffers_flat.clone()
    for name, (m, v, weight, calls) in sums.items():
        sl = bn.slices[name]
        out[:, sl["running_mean"]] = (m / weight).to(out.dtype)
        out[:, sl["running_var"]] = (v / weight).to(out.dtype)
        out[:, sl["num_batches_tracked"]] = calls
    return out


@torch.no_grad()
def recompute_buffers_exact(rep: Replica, params: dict, buffers_flat: torch.Tensor, bn: BNPass) -> torch.Tensor:
    """The BN statistics pass point by point through the modules' own train-mode forwards.

    The reference semantics (:func:`landscape.bn.recompute_bn`): exact for any layer, one BN batch per forward.

    Args: as :func:`recompute_buffers`. Returns buffers ``[k, Q]``.
    """
    model = rep.exact_model
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    n = batch_size(bn.data)
    batches = [ModelCall(take(bn.data, i, i + bn.batch_size)) for i in range(0, n, bn.batch_size)]
    buffers = unflatten(buffers_flat, bn.layout)
    out = []
    for i in range(buffers_flat.shape[0]):
        for name, t in (params | buffers).items():
            tensors[name].copy_(t[i])
        recompute_bn(model, batches, bn.weighting, bn.device)
        out.append(torch.cat([t.detach().reshape(-1).to(buffers_flat.dtype) for t in model.buffers()]))
    return torch.stack(out)


def accumulate(objective: Objective, pred: torch.Tensor, target: torch.Tensor, sums: dict, weights: dict) -> None:
    """Add one batch's per-sample values (summed in float64) and sample weights to the running totals.

    Raises:
        UserError: The objective's values are not one per point and sample (a loss that reduced over samples).
    """
    k, n = pred.shape[0], pred.shape[1]
    for name, (values, w) in objective.per_sample(pred, target).items():
        if tuple(values.shape) != (k, n):
            raise UserError(f"objective {getattr(objective, 'name', type(objective).__name__)!r}: per_sample "
                            f"returned {name} of shape {tuple(values.shape)}, expected one value per point and sample "
                            f"[{k}, {n}] (a loss that reduces over samples cannot be averaged exactly over a split)")
        total = values.sum(-1, dtype=torch.float64)
        sums[name] = total if name not in sums else sums[name] + total
        weights[name] = weights.get(name, 0) + (n if w is None else w.to(torch.float64).sum())


@torch.no_grad()
def evaluate_split(rep: Replica, strategy: Strategy, params: dict, buffers: dict, x: Any, y: torch.Tensor, *,
                   superbatch: int, want_probs: bool, device: torch.device, objective: Objective,
                   autocast: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The objective's metrics ``[k]`` on one split of inputs ``x`` and targets ``y``.

    Float64, averaged exactly over the split; optionally the predicted distributions ``[k, n, C]`` too. Under
    ``autocast`` (a lower dtype) the forwards run in it and the predictions are read back in float32.
    """
    n = batch_size(x)
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor | int] = {}
    probs = []
    for lo in range(0, n, superbatch):
        xb = batch_to(x, lo, lo + superbatch, device, next(iter(params.values())).dtype)
        yb = y[lo : lo + superbatch].to(device, non_blocking=True)
        # no cache of cast weights: the loop copies each point into the same parameters within one region
        with (torch.autocast(device.type, dtype=autocast, cache_enabled=False) if autocast is not None
              else nullcontext()):
            pred, _ = forward(rep, strategy, params, buffers, xb, "eval", 1)  # [k, nb, ...]
        if autocast is not None:
            pred = pred.float()
        if lo == 0:
            objective.check(pred, yb)
        accumulate(objective, pred, yb, sums, weights)
        if want_probs:
            probs.append(objective.probabilities(pred, yb).cpu())
    means = objective.finish({name: total / weights[name] for name, total in sums.items()})
    return means, (torch.cat(probs, 1) if want_probs else None)
