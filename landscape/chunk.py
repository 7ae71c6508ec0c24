"""One chunk of points through one replica.

The request (:class:`ChunkRequest`), what every chunk of an engine is evaluated against (:class:`EvalSetup`), the
work (:func:`evaluate_chunk`) and the reference path for one point (:func:`reference`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import BNMode, EngineConfig
from .errors import UserError
from .grouped_bn import Replica
from .guard import Paths
from .layout import Layout, unflatten
from .memory import place
from .objective import Objective
from .passes import BNPass, evaluate_split, recompute_buffers, recompute_buffers_exact
from .points import PointSet
from .probe import Plan
from .reference import Metrics, reference_point
from .result import EvalResult
from .structure import batch_size, map_tensors, take

__all__ = ["ChunkRequest", "EvalSetup", "bn_slices", "place_data", "check_points", "evaluate_chunk", "reference"]


@dataclass(frozen=True)
class ChunkRequest:
    """Points ``lo:hi`` of a point set, to be evaluated one way.

    Attributes:
        points: The point set.
        lo: First point.
        hi: One past the last point.
        plan: How (strategy, samples per forward, workers).
        splits: Splits whose loss and metrics are wanted.
        probs: Splits whose class probabilities are wanted.
        paths: The paths for the model (the guard's decision).
        dtype: Evaluation precision (the guard's float64 check differs from the engine's).
        autocast: The lower precision of the evaluation passes (``torch.autocast``), or None.
    """

    points: PointSet
    lo: int
    hi: int
    plan: Plan
    splits: tuple[str, ...]
    probs: tuple[str, ...]
    paths: Paths
    dtype: torch.dtype
    autocast: torch.dtype | None = None


@dataclass(frozen=True)
class EvalSetup:
    """What every chunk of one engine is evaluated against (fixed when the engine is built).

    Attributes:
        config: The engine's settings.
        device: Where it evaluates.
        template: The user's network (never modified).
        p_layout: Names and shapes of its parameters.
        b_layout: Names and shapes of its buffers.
        template_buffers: Its buffers ``[Q]``, for points that carry none.
        splits: Split name to ``(inputs, targets)`` as placed for evaluation (inputs: a tensor, or a tuple or dict
            of tensors).
        bn_data: Inputs of the BN recomputation pass, or None.
        bn_slices: BN layer name to the slices of its statistics in Q, in module order.
        objective: How a batch reaches the model, the per-sample loss and the metrics.
    """

    config: EngineConfig
    device: torch.device
    template: nn.Module
    p_layout: Layout
    b_layout: Layout
    template_buffers: torch.Tensor
    splits: dict[str, tuple[Any, torch.Tensor]]
    bn_data: Any
    bn_slices: dict[str, dict[str, slice]]
    objective: Objective


def bn_slices(layout: Layout, bn_names: list[str]) -> dict[str, dict[str, slice]]:
    """Where each BN layer's statistics lie in the flat buffers ``[Q]`` of ``layout``.

    BN layer name (module order) to the slices of its ``running_mean``, ``running_var`` and ``num_batches_tracked``.
    """
    where = layout.slices
    return {bn: {k: where[f"{bn}.{k}"] for k in ("running_mean", "running_var", "num_batches_tracked")}
            for bn in bn_names}


def place_data(splits: dict[str, tuple[Any, torch.Tensor]], bn_data: Any, config: EngineConfig, has_bn: bool,
               dtype: torch.dtype, device: torch.device, budget: int) -> tuple[dict, Any]:
    """The splits and the BN pass's inputs, checked and placed (:func:`landscape.memory.place`).

    Args:
        splits: Split name to ``(inputs, targets)``.
        bn_data: Inputs of the BN pass (None: the train split's).
        config: The engine's settings (BN mode and batches).
        has_bn: Whether the network has BN layers.
        dtype: The evaluation dtype (floating-point data is cast to it).
        device: Where the data goes if it takes under a quarter of ``budget``.
        budget: The engine's memory budget in bytes.

    Raises:
        UserError: An empty split, inputs and targets of different lengths, or BN recomputation without data.
    """
    for name, (x, y) in splits.items():
        n = batch_size(x)
        if n == 0:
            raise UserError(f"split {name!r} is empty")
        if y.shape[0] != n:
            raise UserError(f"split {name!r} has {n} inputs but {y.shape[0]} targets")
    if bn_data is None and "train" in splits:
        bn_data = splits["train"][0]
    if bn_data is not None and batch_size(bn_data) == 0:
        bn_data = None
    if has_bn and config.bn_mode is BNMode.RECOMPUTE and bn_data is None:
        raise UserError("BN recomputation needs training data (an empty or missing 'train' split)")
    if bn_data is not None and config.bn_batches is not None:
        bn_data = take(bn_data, 0, config.bn_batches * config.bn_batch_size)

    def put(x: Any) -> Any:
        return map_tensors(lambda t: place(t, dtype, device, budget), x)

    return {k: (put(x), y.to(device)) for k, (x, y) in splits.items()}, None if bn_data is None else put(bn_data)


def check_points(setup: EvalSetup, points: PointSet) -> None:
    """Raise :class:`UserError` if the point set does not fit the model or the BN mode."""
    bn_mode, bn_names = setup.config.bn_mode, bool(setup.bn_slices)
    if points.dim != setup.p_layout.size:
        raise UserError(f"point vectors have length {points.dim}, but the model has {setup.p_layout.size} parameters")
    if points.has_buffers and points.buffer_dim != setup.b_layout.size:
        raise UserError(f"point buffers have length {points.buffer_dim}, but the model has {setup.b_layout.size} buffer entries")
    if bn_names and bn_mode is not BNMode.RECOMPUTE and not points.has_buffers:
        raise UserError(f"bn_mode {bn_mode.value!r} needs buffers carried by the points")
    if bn_mode is BNMode.RECOMPUTE and bn_names and setup.bn_data is None:
        raise UserError("BN recomputation needs training data (an empty or missing 'train' split)")
    if bn_names and bn_mode is BNMode.INTERPOLATE and points.buffers is None and points.buffer_basis is None:
        raise UserError("bn_mode 'interpolate' needs a family through several anchors (buffer_basis) or "
                        "explicit per-point buffers")


def evaluate_chunk(setup: EvalSetup, rep: Replica, req: ChunkRequest) -> EvalResult:
    """The request's points through the replica ``rep``: BN statistics as the mode says, then the splits.

    Returns:
        :class:`~landscape.result.EvalResult` of the ``hi - lo`` points.
    """
    cfg, lo, hi = setup.config, req.lo, req.hi
    w = req.points.chunk(lo, hi, setup.device, req.dtype)
    params = unflatten(w, setup.p_layout)
    bflat = req.points.buffer_chunk(lo, hi, setup.device, req.dtype, interpolate=cfg.bn_mode is not BNMode.STORED)
    if bflat is None:
        bflat = setup.template_buffers.to(setup.device, req.dtype).expand(hi - lo, -1)
    bflat = bflat.contiguous()
    if setup.bn_slices and cfg.bn_mode is BNMode.RECOMPUTE:
        bn = BNPass(setup.bn_data, cfg.bn_batch_size, cfg.bn_weighting, setup.bn_slices, setup.b_layout, setup.device)
        if req.paths.exact_bn:
            if rep.exact_model is None:
                rep.exact_model = copy.deepcopy(setup.template).to(device=setup.device, dtype=req.dtype)
            bflat = recompute_buffers_exact(rep, params, bflat, bn)
        else:
            bflat = recompute_buffers(rep, req.plan.strategy, params, bflat, bn, req.plan.superbatch)
    buffers = unflatten(bflat, setup.b_layout)
    metrics, pr = {}, {}
    for s in dict.fromkeys((*req.splits, *req.probs)):
        x, y = setup.splits[s]
        m_, p_ = evaluate_split(rep, req.plan.strategy, params, buffers, x, y, superbatch=req.plan.superbatch,
                                want_probs=s in req.probs, device=setup.device, objective=setup.objective,
                                autocast=req.autocast)
        if s in req.splits:
            metrics[s] = {k: v.cpu() for k, v in m_.items()}
        if p_ is not None:
            pr[s] = p_
    l2 = 0.5 * cfg.weight_decay * w.double().pow(2).sum(1).cpu()
    return EvalResult(metrics, bflat.cpu(), l2, pr, req.plan.strategy.value, setup.objective.error)


def reference(setup: EvalSetup, points: PointSet, i: int, splits: tuple[str, ...], recompute: bool,
              dtype: torch.dtype) -> tuple[dict[str, Metrics], torch.Tensor]:
    """Point ``i`` by the reference path (:func:`landscape.reference.reference_point`) in ``dtype``.

    Its metrics per split and its buffers ``[Q]``.
    """
    w = points.chunk(i, i + 1, setup.device, dtype)[0]
    b = points.buffer_chunk(i, i + 1, setup.device, dtype, interpolate=setup.config.bn_mode is not BNMode.STORED)
    model = copy.deepcopy(setup.template).to(device=setup.device, dtype=dtype)
    return reference_point(model, w, {s: setup.splits[s] for s in splits}, setup.bn_data if recompute else None,
                           setup.config.bn_batch_size, setup.config.bn_weighting, buffers=None if b is None else b[0],
                           objective=setup.objective)
