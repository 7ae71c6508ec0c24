"""Batched evaluation of a network at many weight points, with exact per-point BatchNorm.

The parts, each in its own module:

* :mod:`landscape.grouped_bn`: the engine's private model copy, whose BN layers (any kind) compute
  grouped train-mode statistics in one forward (exactly ``update_bn``) by intercepting
  ``F.batch_norm``, and whose plain conv -> BN pairs are folded where provably exact.
* :mod:`landscape.guard`: before the first evaluation one point is compared with the reference
  path; the guard decides which paths the engine takes for this model (or refuses), the engine applies that.
* :mod:`landscape.passes`: the forwards of a chunk of points (per-point loop or ``vmap``),
  the BN statistics pass and the evaluation pass.
* :mod:`landscape.plans`: the candidate plans and their sizes; the plain plan (one point at a time,
  whole split per forward, one worker) is always one of them.
* :mod:`landscape.probe`: the candidates timed on the evaluation's own first points.
* :mod:`landscape.memory`: sizes under the memory budget, out-of-memory detection.
* :mod:`landscape.workers`: CPU worker threads and the process-wide allocator setting (which an engine
  changes only when asked: ``EngineConfig(tune_allocator=True)``).

This module ties them together: :class:`Engine` evaluates a :class:`~landscape.points.PointSet`
chunk by chunk (halving the chunk on out-of-memory errors, falling back from ``vmap`` to the loop where a model
cannot run under it: :meth:`Engine._run_chunks`, the one retry policy) and never touches the user's model.
Dropout is off throughout; evaluation data is never shuffled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .chunk import ChunkRequest, EvalSetup, bn_slices, check_points, evaluate_chunk, place_data, reference
from .config import BNMode, EngineConfig, default_memory_budget, resolve_device
from .errors import UserError
from .grouped_bn import Replica, engine_copy
from .guard import GuardCase, GuardReport, Paths, run_guard, tolerance
from .layout import Layout, buffer_layout, param_layout
from .memory import activation_bytes, batch_to, is_oom
from .objective import Classification, Objective
from .passes import Strategy
from .plans import MIN_PROBE_POINTS, Planner
from .points import PointSet
from .precision import CompileReport, PrecisionReport, autocast_dtype, check_compiled, check_precision
from .probe import Plan, ProbeCache, ProbeKey, ProbeReport, choose_plan, warn_vmap_failed
from .result import EvalResult, concat_results
from .structure import batch_size
from .workers import WorkerPools, split_range, tf32_allowed, tune_cpu_allocator

__all__ = ["Engine"]


class Engine:
    """Evaluates a model at point sets on fixed data splits.

    Args:
        model: Template network (any ``nn.Module``; not modified).
        splits: Split name to ``(inputs, targets)``, evaluation form: inputs ``[N, ...]`` a tensor, or a tuple or
            dict of tensors (the model's positional or keyword arguments); targets ``[N, ...]``.
        bn_data: Inputs of the BN recomputation pass (default: ``splits["train"][0]``).
        config: Engine settings.
        cache: Where probe choices are remembered (default: the engine's own; pass one to share them).
        objective: What is measured (:mod:`landscape.objective`; default: classification).

    Example:
        >>> eng = Engine(model, {"train": (x, y), "test": (xt, yt)})  # doctest: +SKIP
        >>> res = eng.evaluate(PointSet.affine(w0, basis, coords))  # doctest: +SKIP
        >>> res.loss["train"], res.error("test")  # doctest: +SKIP
        >>> print(eng.explain())  # candidates, their times, the choice  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 bn_data: Any = None, config: EngineConfig | None = None,
                 cache: ProbeCache | None = None, objective: Objective | None = None):
        self.config = cfg = config or EngineConfig()
        self.objective = objective or Classification()
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
        self._autocast = autocast_dtype(cfg.autocast, self.device)
        self._paths = Paths(fold=self._autocast is None)  # under autocast a folded layer would round differently
        self._guard: GuardReport | None = None
        self._precision: PrecisionReport | None = None
        self._compiled: CompileReport | None = None
        self._replicas: dict[tuple[bool, torch.dtype], list[Replica]] = {}
        first = self._replica(0, self._paths, self.dtype)
        self.model, self.bn_names = first.model, first.bn_names
        self.splits, self.bn_data = place_data(splits, bn_data, cfg, bool(self.bn_names), self.dtype, self.device,
                                               self.memory_budget)
        first = next(iter(self.splits.values()))[0]
        example = batch_to(first, 0, max(2, cfg.bn_batch_size), self.device, self.dtype)
        self.act_bytes = activation_bytes(self.model, example)
        self.planner = Planner(cfg, self.device, self.memory_budget, self.act_bytes,
                               (self.p_layout.size + self.b_layout.size) * self.dtype.itemsize,
                               {k: batch_size(x) for k, (x, _) in self.splits.items()},
                               None if self.bn_data is None else batch_size(self.bn_data))
        self._setup = EvalSetup(cfg, self.device, model, self.p_layout, self.b_layout, self.template_buffers,
                                self.splits, self.bn_data, bn_slices(self.b_layout, self.bn_names), self.objective)
        self._report: ProbeReport | None = None

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
    def precision_report(self) -> PrecisionReport | None:
        """The autocast check's deviations from float32 (None before the first evaluation or without autocast)."""
        return self._precision

    @property
    def compile_report(self) -> CompileReport | None:
        """The compiled pass against eager (None before the first evaluation or without ``compile``)."""
        return self._compiled

    @property
    def guard_report(self) -> GuardReport | None:
        """What the guard found (None before the first evaluation, for a network without BN, or when turned off)."""
        return self._guard

    def check_points(self, points: PointSet) -> None:
        """Raise :class:`UserError` if the point set does not fit the model or the BN mode."""
        check_points(self._setup, points)

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
                req = ChunkRequest(points, lo, hi, plan, splits, probs, self._paths, self.dtype, self._autocast)
                return self._parallel_chunk(pools, req)

            first = self._guard_first(points, splits, probs, recompute, deliver)
            first = self._precision_first(points, splits, probs, recompute, deliver, first)
            self._compile_first(points, splits, recompute)
            plan, lo = self._choose(K, splits, probs, recompute, run, deliver, first)
            self._run_chunks(plan, lo, K, run, deliver, (splits, probs, recompute))
        bar.close()
        return concat_results(parts, splits, self.b_layout.size, self.objective.error)

    # --- the steps of an evaluation ------------------------------------------------------------
    def _guard_first(self, points: PointSet, splits, probs, recompute: bool, deliver) -> int:
        """Before the first evaluation of a network with BN: let the guard decide the paths, and apply them.

        Returns the first point still to evaluate (1 when the guard's checked point 0 is delivered as the
        evaluation's own).
        """
        if self._guard is not None or not self.config.guard or not self.bn_names or not len(points):
            return 0
        plain = self.planner.plain(splits, (), recompute)
        case = GuardCase(
            len(points), lambda i, dtype: reference(self._setup, points, i, splits, recompute, dtype),
            lambda i, paths, dtype: evaluate_chunk(
                self._setup, self._replica(0, paths, dtype), ChunkRequest(points, i, i + 1, plain, splits, (), paths,
                                                                           dtype)),
            self._setup.bn_slices, self.dtype, recompute)
        self._guard, checked, at = run_guard(case)
        if self._guard is None:
            return 0
        self._paths = Paths(fold=self._guard.paths.fold and self._autocast is None, exact_bn=self._guard.paths.exact_bn)
        self.model = self._replica(0, self._paths, self.dtype).model
        if at == 0 and not probs and self._autocast is None:  # the guard's point is the evaluation's own
            deliver(0, 1, checked)
            return 1
        return 0

    def _precision_first(self, points: PointSet, splits, probs, recompute: bool, deliver, first: int) -> int:
        """Under autocast, before the first evaluation: point ``first`` in float32 and in the lower precision."""
        if self._autocast is None or self._precision is not None or first >= len(points):
            return first
        plain = self.planner.plain(splits, (), recompute)
        rep = self._replica(0, self._paths, self.dtype)
        self._precision, low = check_precision(
            lambda low: evaluate_chunk(self._setup, rep, ChunkRequest(points, first, first + 1, plain, splits, (),
                                                                      self._paths, self.dtype, low)),
            self._autocast, self.config.autocast_tolerance)
        if probs:
            return first
        deliver(first, first + 1, low)
        return first + 1

    def _compile_first(self, points: PointSet, splits, recompute: bool) -> None:
        """With ``compile``, before the first evaluation: compile replica 0's evaluation pass, check it on two points."""
        if self.config.compile == "off" or self._compiled is not None or not len(points):
            return
        plain, rep = self.planner.plain(splits, (), recompute), self._replica(0, self._paths, self.dtype)
        compiled = rep.compiled = torch.compile(rep.model, backend=self.config.compile)

        def evaluate(use: bool, i: int) -> EvalResult:
            rep.compiled = compiled if use else None
            try:
                return evaluate_chunk(self._setup, rep, ChunkRequest(points, i, i + 1, plain, splits, (), self._paths,
                                                                     self.dtype, self._autocast))
            finally:
                rep.compiled = compiled

        self._compiled = check_compiled(evaluate, len(points), self.config.compile, tolerance(self.dtype))
        if not self._compiled.used:
            rep.compiled = None

    def _choose(self, K: int, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool, run, deliver,
                first: int = 0) -> tuple[Plan, int]:
        """The plan for the points from ``first`` on, and the first point the probe left to evaluate."""
        cands = self.planner.candidates(splits, probs, recompute)
        fixed = None if self.config.strategy is Strategy.AUTO else self.config.strategy.value
        self._report, first = choose_plan(cands, fixed, self.cache, self._probe_key(splits, probs, recompute), K,
                                          run, deliver, first, self.config.probe_min_seconds,
                                          1e-4 if self.dtype == torch.float32 else 1e-10, MIN_PROBE_POINTS)
        self._report.guard = "\n".join(str(r) for r in (self._guard, self._precision, self._compiled) if r is not None)
        return self._report.choice, first

    def _probe_key(self, splits: tuple[str, ...], probs: tuple[str, ...], recompute: bool) -> ProbeKey:
        cfg = self.config
        request = (recompute, cfg.bn_batch_size, None if self.bn_data is None else batch_size(self.bn_data),
                   tuple((s, batch_size(self.splits[s][0])) for s in splits), tuple(probs))
        settings = (cfg.superbatch, cfg.workers, self.memory_budget, cfg.cpu_cache_bytes, torch.get_num_threads(),
                    cfg.autocast)
        return ProbeKey((type(self._template).__qualname__, self.p_layout.shapes), str(self.device), cfg.dtype,
                        request, settings, (self._paths.fold, self._paths.exact_bn))

    def _run_chunks(self, plan: Plan, lo: int, K: int, run, deliver, request: tuple) -> None:
        """Points ``lo:K`` chunk by chunk: the one retry policy (halve on out-of-memory; vmap failing: the loop)."""
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
                warn_vmap_failed(e)
                plan = self.planner.plain(*request)
                self._report = ProbeReport([], plan, f"vmap failed ({type(e).__name__}); fell back to the per-point loop")
                k = max(self.planner.chunk(plan, K), min(plan.workers, K))
                continue
            deliver(lo, hi, part)
            lo = hi

    # --- one chunk -----------------------------------------------------------------------------
    def _replica(self, i: int, paths: Paths, dtype: torch.dtype) -> Replica:
        """Worker ``i``'s private model copy for ``paths`` in ``dtype`` (made on first use)."""
        reps = self._replicas.setdefault((paths.fold, dtype), [])
        while len(reps) <= i:
            reps.append(engine_copy(self._template, dtype, self.device, fold=paths.fold))
            if len(reps) > 1 and self._compiled is not None and self._compiled.used and reps[0].compiled is not None:
                reps[-1].compiled = torch.compile(reps[-1].model, backend=self.config.compile)
        return reps[i]

    def _parallel_chunk(self, pools: WorkerPools, req: ChunkRequest) -> EvalResult:
        """The request's points split over up to ``plan.workers`` replicas (each on its own thread)."""
        workers = req.plan.workers
        if workers == 1:
            return evaluate_chunk(self._setup, self._replica(0, req.paths, req.dtype), req)
        ranges = split_range(req.lo, req.hi, workers)
        futures = [pools.get(workers).submit(evaluate_chunk, self._setup, self._replica(i, req.paths, req.dtype),
                                             ChunkRequest(req.points, a, b, req.plan, req.splits, req.probs,
                                                          req.paths, req.dtype))
                   for i, (a, b) in enumerate(ranges)]
        return concat_results([f.result() for f in futures], req.splits, self.b_layout.size, self.objective.error)
