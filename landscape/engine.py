"""Batched evaluation of a network at many weight points, with exact per-point BatchNorm.

The parts, each in its own module:

* :mod:`landscape.grouped_bn`: the engine's private model copy, whose BN layers (any kind) compute
  grouped train-mode statistics in one forward (exactly ``update_bn``) by intercepting
  ``F.batch_norm``, and whose plain conv -> BN pairs are folded where provably exact.
* :mod:`landscape.guard`: before the first evaluation one point is compared with the reference
  path; where they differ the engine uses exact paths for this model (or refuses).
* :mod:`landscape.passes`: the forwards of a chunk of points (per-point loop or ``vmap``),
  the BN statistics pass and the evaluation pass.
* :mod:`landscape.plans`: the candidate plans and their sizes; the plain plan (one point at a time,
  whole split per forward, one worker) is always one of them.
* :mod:`landscape.probe`: the candidates timed on the evaluation's own first points.
* :mod:`landscape.memory`: sizes under the memory budget, out-of-memory detection.
* :mod:`landscape.workers`: CPU worker threads and the process-wide allocator setting (which an engine
  changes only when asked: ``EngineConfig(tune_allocator=True)``).

This module ties them together: :class:`Engine` evaluates a :class:`~landscape.points.PointSet`
chunk by chunk (halving the chunk on out-of-memory errors) and never touches the user's model.
Dropout is off throughout; evaluation data is never shuffled.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .config import BNMode, EngineConfig, default_memory_budget, resolve_device
from .errors import UserError
from .grouped_bn import Replica, engine_copy
from .guard import GuardReport, run_guard
from .layout import Layout, buffer_layout, param_layout, unflatten
from .memory import activation_bytes, is_oom
from .passes import Strategy, evaluate_split, recompute_buffers, recompute_buffers_exact
from .points import PointSet
from .plans import MIN_PROBE_POINTS, Planner
from .probe import Plan, ProbeCache, ProbeKey, ProbeReport, run_probe, warn_vmap_failed
from .result import EvalResult, concat_results, flops_per_sample
from .workers import WorkerPools, split_range, tf32_allowed, tune_cpu_allocator

__all__ = ["BNMode", "Strategy", "EngineConfig", "EvalResult", "Engine", "flops_per_sample", "tune_cpu_allocator",
           "concat_results", "MIN_PROBE_POINTS"]



class Engine:
    """Evaluates a model at point sets on fixed data splits.

    Args:
        model: Template network (any ``nn.Module``; not modified).
        splits: Split name to ``(inputs [N, ...], targets [N])``, evaluation form.
        bn_data: Inputs of the BN recomputation pass (default: ``splits["train"][0]``).
        config: Engine settings.
        cache: Where probe choices are remembered (default: the engine's own; pass one to share them).

    Example:
        >>> eng = Engine(model, {"train": (x, y), "test": (xt, yt)})  # doctest: +SKIP
        >>> res = eng.evaluate(PointSet.affine(w0, basis, coords))  # doctest: +SKIP
        >>> res.loss["train"], res.error("test")  # doctest: +SKIP
        >>> print(eng.explain())  # candidates, their times, the choice  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 bn_data: torch.Tensor | None = None, config: EngineConfig | None = None,
                 cache: ProbeCache | None = None):
        self.config = cfg = config or EngineConfig()
        self.device = resolve_device(cfg.device)
        self.memory_budget = cfg.memory_budget or default_memory_budget(self.device)
        if self.device.type == "cpu" and cfg.tune_allocator:
            tune_cpu_allocator()
        self.dtype = getattr(torch, cfg.dtype)
        self.cache = ProbeCache() if cache is None else cache
        self.p_layout: Layout = param_layout(model)
        self.b_layout: Layout = buffer_layout(model)
        self.template_buffers = torch.cat([b.detach().reshape(-1).to(self.dtype) for b in model.buffers()]) \
            if self.b_layout.size else torch.zeros(0, dtype=self.dtype)
        self._template = model
        self._fold, self._exact_bn = True, False  # the guard may turn folding off and exact BN statistics on
        self._guard: GuardReport | None = None
        self._replicas: list[Replica] = [engine_copy(model, self.dtype, self.device)]
        self.model, self.bn_names = self._replicas[0].model, self._replicas[0].bn_names
        for name, (x, y) in splits.items():
            if x.shape[0] == 0:
                raise UserError(f"split {name!r} is empty")
            if y.shape[0] != x.shape[0]:
                raise UserError(f"split {name!r} has {x.shape[0]} inputs but {y.shape[0]} targets")
        if bn_data is None and "train" in splits:
            bn_data = splits["train"][0]
        if bn_data is not None and bn_data.shape[0] == 0:
            bn_data = None
        if self.bn_names and cfg.bn_mode is BNMode.RECOMPUTE and bn_data is None:
            raise UserError("BN recomputation needs training data (an empty or missing 'train' split)")
        if bn_data is not None and cfg.bn_batches is not None:
            bn_data = bn_data[: cfg.bn_batches * cfg.bn_batch_size]
        self.splits = {k: (self._place(x), y.to(self.device)) for k, (x, y) in splits.items()}
        self.bn_data = self._place(bn_data) if bn_data is not None else None
        example = self._place(next(iter(self.splits.values()))[0][: max(2, cfg.bn_batch_size)]).to(self.device)
        self.act_bytes = activation_bytes(self.model, example)
        self.planner = Planner(cfg, self.device, self.memory_budget, self.act_bytes,
                               (self.p_layout.size + self.b_layout.size) * self.dtype.itemsize,
                               {k: x.shape[0] for k, (x, _) in self.splits.items()},
                               None if self.bn_data is None else self.bn_data.shape[0])
        offs = np.cumsum((0,) + self.b_layout.numels)
        where = {n: slice(int(offs[i]), int(offs[i + 1])) for i, n in enumerate(self.b_layout.names)}
        self._bn_slices = {bn: {k: where[f"{bn}.{k}"] for k in ("running_mean", "running_var", "num_batches_tracked")}
                           for bn in self.bn_names}
        self._report: ProbeReport | None = None

    def _place(self, x: torch.Tensor) -> torch.Tensor:
        """On the device if it takes under a quarter of the budget; else on the host, pinned for asynchronous copies."""
        x = x.to(self.dtype) if x.is_floating_point() else x
        if x.numel() * x.element_size() < self.memory_budget // 4:
            return x.to(self.device)
        return x.pin_memory() if self.device.type == "cuda" else x

    # --- public --------------------------------------------------------------------------------
    @property
    def template(self) -> nn.Module:
        """The network the engine was built on (not modified; copy it before changing it)."""
        return self._template

    @property
    def strategy(self) -> Strategy | None:
        """The strategy of the last evaluation's plan (None before the first)."""
        return None if self._report is None else self._report.choice.strategy

    def explain(self) -> ProbeReport | None:
        """How the last evaluation was run: the candidates, their times and the choice (``print`` it)."""
        return self._report

    @property
    def guard_report(self) -> GuardReport | None:
        """What the guard found (None before the first evaluation, for a network without BN, or when turned off)."""
        return self._guard

    def check_points(self, points: PointSet) -> None:
        """Raise :class:`UserError` if the point set does not fit the model or the BN mode."""
        bn_mode = self.config.bn_mode
        if points.dim != self.p_layout.size:
            raise UserError(f"point vectors have length {points.dim}, but the model has {self.p_layout.size} parameters")
        if points.has_buffers and points.buffer_dim != self.b_layout.size:
            raise UserError(f"point buffers have length {points.buffer_dim}, but the model has {self.b_layout.size} buffer entries")
        if self.bn_names and bn_mode is not BNMode.RECOMPUTE and not points.has_buffers:
            raise UserError(f"bn_mode {bn_mode.value!r} needs buffers carried by the points")
        if bn_mode is BNMode.RECOMPUTE and self.bn_names and self.bn_data is None:
            raise UserError("BN recomputation needs training data (an empty or missing 'train' split)")
        if self.bn_names and bn_mode is BNMode.INTERPOLATE and points.buffers is None and points.buffer_basis is None:
            raise UserError("bn_mode 'interpolate' needs a family through several anchors (buffer_basis) or "
                            "explicit per-point buffers")

    def evaluate(self, points: PointSet, splits: tuple[str, ...] | None = None, probs: tuple[str, ...] = (),
                 prob_sink: Callable[[str, int, torch.Tensor], None] | None = None,
                 progress: bool = False, desc: str = "points",
                 on_chunk: Callable[[int, int, EvalResult], None] | None = None) -> EvalResult:
        """Metrics at every point.

        Args:
            points: ``K`` points.
            splits: Which splits to evaluate (default: all).
            probs: Splits whose class probabilities are wanted.
            prob_sink: ``(split, first_point, probs [k, n, C])`` per chunk; without it
                the probabilities are returned in the result.
            progress: Show a progress bar.
            desc: Progress bar label.
            on_chunk: Called as ``(start, stop, chunk_result)`` after each chunk, in order
                (e.g. to write results incrementally).

        Returns:
            :class:`EvalResult` over all ``K`` points.
        """
        self.check_points(points)
        splits = tuple(self.splits) if splits is None else splits
        for s in (*splits, *probs):
            if s not in self.splits:
                raise UserError(f"unknown split {s!r}; the engine has {', '.join(self.splits)}")
        K = len(points)
        recompute = bool(self.bn_names) and self.config.bn_mode is BNMode.RECOMPUTE
        parts: list[EvalResult] = []
        bar = tqdm(total=K, desc=desc, disable=None if progress else True, leave=False)  # None: on a terminal only

        def deliver(lo: int, hi: int, part: EvalResult) -> None:
            if prob_sink is not None:
                for split, pr in part.probs.items():
                    prob_sink(split, lo, pr)
                part.probs = {}
            if on_chunk is not None:
                on_chunk(lo, hi, part)
            parts.append(part)
            bar.update(hi - lo)

        with WorkerPools() as pools, tf32_allowed(self.device, self.config.tf32):
            def run(plan: Plan, lo: int, hi: int) -> EvalResult:
                return self._parallel_chunk(pools, plan.workers, points, lo, hi, plan, splits, probs)

            first = 0
            if self._guard is None and self.config.guard and self.bn_names and K:
                self._guard, checked, at = run_guard(self, points, splits, recompute)
                if at == 0 and not probs:  # the guard's point, evaluated by the path now in use, is the evaluation's own
                    deliver(0, 1, checked)
                    first = 1
            plan, lo = self._choose(K, splits, probs, recompute, run, deliver, first)
            if self._guard is not None:
                self._report.guard = str(self._guard)
            k = max(self.planner.chunk(plan, K), min(plan.workers, K))
            while lo < K:
                hi = min(lo + k, K)
                try:
                    part = run(plan, lo, hi)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                    if is_oom(e) and k > 1:
                        k = max(1, k // 2)
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    if plan.strategy is not Strategy.VMAP or is_oom(e):
                        raise
                    plan = self._vmap_failed(e, splits, probs, recompute)
                    k = max(self.planner.chunk(plan, K), min(plan.workers, K))
                    continue
                deliver(lo, hi, part)
                lo = hi
        bar.close()
        return concat_results(parts, splits, self.b_layout.size)

    def _choose(self, K: int, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool, run, deliver,
                first: int = 0) -> tuple[Plan, int]:
        """The plan for the points from ``first`` on, and the first point the probe left to evaluate."""
        cands = self.planner.candidates(splits, probs, recompute)
        if self.config.strategy is not Strategy.AUTO:
            self._report = ProbeReport([], cands[0], f"strategy {self.config.strategy.value!r} set in the config")
            return cands[0], first
        cfg = self.config
        key = ProbeKey(type(self._template).__qualname__, self.p_layout.shapes, str(self.device), cfg.dtype, recompute,
                       cfg.bn_batch_size, None if self.bn_data is None else self.bn_data.shape[0],
                       tuple((s, self.splits[s][0].shape[0]) for s in splits), tuple(probs), cfg.superbatch,
                       cfg.workers, self.memory_budget, cfg.cpu_cache_bytes, torch.get_num_threads(),
                       (self._fold, self._exact_bn))
        cached = self.cache.get(key)
        if cached is not None:
            self._report = ProbeReport(cached.trials, cached.choice, cached.reason, cached=True)
            return cached.choice, first
        if K < MIN_PROBE_POINTS or len(cands) == 1:
            why = f"{K} points are too few to time candidates (probing starts at {MIN_PROBE_POINTS})" \
                if len(cands) > 1 else "the only candidate"
            self._report = ProbeReport([], cands[0], why)
            return cands[0], first
        report, done = run_probe(cands, run, deliver, start=first, max_points=K // 2, total_points=K,
                                 min_total_seconds=cfg.probe_min_seconds,
                                 tol=1e-4 if self.dtype == torch.float32 else 1e-10)
        if sum(t.points > 0 for t in report.trials) > 1:  # a choice between timed plans holds for this key
            self.cache.put(key, report)
        self._report = report
        return report.choice, done

    def _vmap_failed(self, e: Exception, splits, probs, recompute: bool) -> Plan:
        warn_vmap_failed(e)
        plain = self.planner.plain(splits, probs, recompute)
        self._report = ProbeReport([], plain, f"vmap failed ({type(e).__name__}); fell back to the per-point loop")
        return plain

    # --- one chunk -----------------------------------------------------------------------------
    def _replica(self, i: int) -> Replica:
        while len(self._replicas) <= i:
            self._replicas.append(engine_copy(self._template, self.dtype, self.device, fold=self._fold))
        return self._replicas[i]

    def _parallel_chunk(self, pools: WorkerPools, workers: int, points: PointSet, lo: int, hi: int, plan: Plan,
                        splits: tuple[str, ...], probs: tuple[str, ...]) -> EvalResult:
        """Points ``lo:hi`` split over up to ``workers`` replicas (each on its own thread)."""
        ranges = split_range(lo, hi, workers)
        if workers == 1:
            return self._evaluate_chunk(self._replicas[0], points, lo, hi, plan, splits, probs)
        reps = [self._replica(i) for i in range(len(ranges))]
        futures = [pools.get(workers).submit(self._evaluate_chunk, rep, points, a, b, plan, splits, probs)
                   for rep, (a, b) in zip(reps, ranges)]
        return concat_results([f.result() for f in futures], splits, self.b_layout.size)

    def _evaluate_chunk(self, rep: Replica, points: PointSet, lo: int, hi: int, plan: Plan,
                        splits: tuple[str, ...], probs: tuple[str, ...]) -> EvalResult:
        cfg = self.config
        w = points.chunk(lo, hi, self.device, self.dtype)
        params = unflatten(w, self.p_layout)
        bflat = points.buffer_chunk(lo, hi, self.device, self.dtype, interpolate=cfg.bn_mode is not BNMode.STORED)
        if bflat is None:
            bflat = self.template_buffers.to(self.device).expand(hi - lo, -1)
        bflat = bflat.contiguous()
        if self.bn_names and cfg.bn_mode is BNMode.RECOMPUTE and self._exact_bn:
            if rep.exact_model is None:
                rep.exact_model = copy.deepcopy(self._template).to(device=self.device, dtype=self.dtype)
            bflat = recompute_buffers_exact(rep, params, bflat, self.bn_data, cfg.bn_batch_size, cfg.bn_weighting,
                                            self.b_layout, self.device)
        elif self.bn_names and cfg.bn_mode is BNMode.RECOMPUTE:
            bflat = recompute_buffers(rep, plan.strategy, params, bflat, self.bn_data, cfg.bn_batch_size,
                                      cfg.bn_weighting, plan.superbatch, self._bn_slices, self.b_layout, self.device)
        buffers = unflatten(bflat, self.b_layout)
        loss, acc, pr = {}, {}, {}
        for s in dict.fromkeys((*splits, *probs)):
            x, y = self.splits[s]
            l_, a_, p_ = evaluate_split(rep, plan.strategy, params, buffers, x, y, plan.superbatch, s in probs,
                                        self.device)
            if s in splits:
                loss[s], acc[s] = l_.cpu(), a_.cpu()
            if p_ is not None:
                pr[s] = p_
        l2 = 0.5 * cfg.weight_decay * w.double().pow(2).sum(1).cpu()
        return EvalResult(loss, acc, bflat.cpu(), l2, pr, plan.strategy.value)
