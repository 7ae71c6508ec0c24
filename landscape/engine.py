"""Batched evaluation of a network at many weight points, with exact per-point BatchNorm.

How it works (and why it is exact):

* The engine evaluates a private copy of the model functionally
  (``torch.func.functional_call``) on parameters it owns; the user's model is
  never touched. In that copy every BatchNorm layer is replaced by
  :class:`_EngineBN`, which keeps the parameter and buffer names.
* BatchNorm recomputation (``update_bn`` semantics) runs the training data through
  the network in train mode in groups of ``bn_batch_size`` samples. In train mode a
  batch is normalised with its own statistics only, so all groups can go through
  one large forward pass: ``_EngineBN`` reshapes its input to
  ``[groups, bn_batch_size, ...]``, normalises each group with that group's mean and
  biased variance and returns the per-group means and unbiased variances. The
  recomputed running statistics are their average over groups (``"batch"``
  weighting, exactly ``update_bn``) or over samples (``"sample"``). Nothing is
  updated in place, which sidesteps the vmap + BatchNorm pitfalls (``momentum=None``
  calling ``.item()``, lost updates to non-contiguous stacked buffers).
* Evaluation passes then use the recomputed (or stored, or interpolated) buffers
  in eval mode. Dropout is off throughout; evaluation data is never shuffled.
* Loops: data outside (super-batches of many BN groups, read once), points inside
  (a chunk of points, either a plain per-point loop or ``torch.func.vmap`` over
  stacked weights). The strategy is picked by a short timing probe per model and
  device, and vmap falls back to the loop (one warning) if it fails or disagrees.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .bn import BNWeighting
from .errors import UserError, coerce_enums
from .layout import Layout, buffer_layout, param_layout, unflatten
from .points import PointSet

__all__ = ["BNMode", "Strategy", "EngineConfig", "EvalResult", "Engine", "flops_per_sample", "tune_cpu_allocator"]


class BNMode(str, Enum):
    """Which BatchNorm statistics each point is evaluated with."""

    RECOMPUTE = "recompute"
    """Recompute from the training data at every point (default, exact)."""
    STORED = "stored"
    """Use the buffers carried by the point set (e.g. a snapshot's own buffers)."""
    INTERPOLATE = "interpolate"
    """Use buffers interpolated with the same coordinates as the weights."""


class Strategy(str, Enum):
    """How a chunk of points is pushed through the network."""

    AUTO = "auto"
    """Pick by a timing probe (cached per model class, device and dtype)."""
    LOOP = "loop"
    """One point after another over device-resident data."""
    VMAP = "vmap"
    """``torch.func.vmap`` over stacked weights."""


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the evaluation engine.

    Attributes:
        bn_mode: See :class:`BNMode`.
        bn_weighting: Per-batch (``update_bn``) or per-sample weighting of BN statistics.
        bn_batch_size: Batch size of the BN recomputation pass; it defines the
            per-batch statistics (use the run's training batch size).
        bn_batches: Recompute from the first n batches only (None: all).
        strategy: See :class:`Strategy`.
        chunk_size: Points per chunk (None: chosen under the memory budget).
        memory_budget: Bytes the engine may use for activations and points.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        dtype: ``"float32"`` or ``"float64"``.
        weight_decay: If positive, also report ``loss + 0.5 * weight_decay * ||w||^2``.
        superbatch: Samples per data super-batch (rounded to a multiple of
            ``bn_batch_size``). None: on CPU about ``cpu_cache_bytes`` of activations
            per point (cache-resident elementwise work is several times faster), on a
            GPU as many as the memory budget allows.
        cpu_cache_bytes: Activation footprint targeted by the automatic CPU super-batch.
        tune_allocator: On CPU, call :func:`tune_cpu_allocator` (process-wide glibc setting).
        workers: Threads evaluating different points at once, each with its own model
            copy and ``torch.get_num_threads() // workers`` intra-op threads. None: one per
            core on CPU (faster than intra-op parallelism for small networks), 1 on a GPU.
    """

    bn_mode: BNMode = BNMode.RECOMPUTE
    bn_weighting: BNWeighting = BNWeighting.BATCH
    bn_batch_size: int = 128
    bn_batches: int | None = None
    strategy: Strategy = Strategy.AUTO
    chunk_size: int | None = None
    memory_budget: int = 2 << 30
    device: str = "auto"
    dtype: str = "float32"
    weight_decay: float = 0.0
    superbatch: int | None = None
    cpu_cache_bytes: int = 8 << 20
    tune_allocator: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        coerce_enums(self, {"bn_mode": BNMode, "bn_weighting": BNWeighting, "strategy": Strategy})
        if self.dtype not in ("float32", "float64"):
            raise UserError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.bn_batch_size < 1 or (self.bn_batches is not None and self.bn_batches < 1):
            raise UserError("bn_batch_size and bn_batches must be at least 1")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise UserError(f"chunk_size must be at least 1, got {self.chunk_size}")


@dataclass
class EvalResult:
    """Metrics of ``K`` points.

    Attributes:
        loss: Split name to mean cross-entropy ``[K]`` (float64; inf/NaN where it overflows).
        acc: Split name to accuracy ``[K]`` (fraction in [0, 1]).
        buffers: Buffers each point was evaluated with ``[K, Q]``.
        l2: ``0.5 * weight_decay * ||w||^2`` per point ``[K]`` (zeros if weight_decay is 0).
        probs: Split name to class probabilities ``[K, n, C]`` (float32), for the
            splits asked for without a sink.
        strategy: The strategy used.
    """

    loss: dict[str, torch.Tensor]
    acc: dict[str, torch.Tensor]
    buffers: torch.Tensor
    l2: torch.Tensor
    probs: dict[str, torch.Tensor] = field(default_factory=dict)
    strategy: str = ""

    def error(self, split: str) -> torch.Tensor:
        return 1.0 - self.acc[split]


def _concat(parts: list[EvalResult], splits: tuple[str, ...], q: int) -> EvalResult:
    """Results of consecutive point ranges as one."""
    probs = {s: torch.cat([p.probs[s] for p in parts], 0) for s in (parts[0].probs if parts else {})}
    return EvalResult(
        loss={s: torch.cat([p.loss[s] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64) for s in splits},
        acc={s: torch.cat([p.acc[s] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64) for s in splits},
        buffers=torch.cat([p.buffers for p in parts]) if parts else torch.zeros(0, q),
        l2=torch.cat([p.l2 for p in parts]) if parts else torch.zeros(0, dtype=torch.float64),
        probs=probs,
        strategy=parts[0].strategy if parts else "",
    )


class _Ctx:
    """Mode shared by the engine's BN layers during one forward."""

    def __init__(self) -> None:
        self.mode = "eval"
        self.group = 1
        self.stats: list | None = None
        self.names: list[str] = []  # BN layers in call order (kept outside vmap: not tensors)


class _EngineBN(nn.Module):
    """Drop-in for a BatchNorm layer: grouped batch statistics or fixed running statistics."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, ctx: _Ctx, name: str):
        super().__init__()
        if not bn.track_running_stats:
            raise UserError(f"BatchNorm layer {name!r} does not track running statistics; the engine needs them")
        self.eps, self.ctx, self.name, self.affine = bn.eps, ctx, name, bn.affine
        if bn.affine:
            self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.ctx.mode == "stats":
            return self._grouped_train_norm(x, c)
        if self.folded:  # the preceding conv/linear already applied this normalisation
            return x
        scale, shift = self.eval_affine()
        shape = (1, c) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.reshape(shape), x, scale.reshape(shape))

    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BN as ``x * scale + shift`` ``([C], [C])``."""
        scale = torch.rsqrt(self.running_var + self.eps)
        shift = -self.running_mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return scale, shift

    def _grouped_train_norm(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """Train-mode BN of each group of ``ctx.group`` samples with that group's own statistics.

        Records the sums over groups of the per-group means and unbiased variances.
        Sums over the batch dimension first and uses the centred two-pass variance:
        several times faster on CPU than ``var_mean`` over non-contiguous dimensions.
        """
        b = self.ctx.group
        g = x.shape[0] // b
        xg = x.reshape(g, b, *x.shape[1:])  # [g, b, C, *S]
        n = xg.numel() // (g * c)  # samples per statistic: b * prod(S)
        s1 = xg.sum(1)
        mean = (s1 if x.dim() == 2 else s1.flatten(2).sum(-1)) / n  # [g, C]
        shape = (g, 1, c) + (1,) * (x.dim() - 2)
        centred = xg - mean.reshape(shape)
        s2 = centred.square().sum(1)
        var = (s2 if x.dim() == 2 else s2.flatten(2).sum(-1)) / n  # biased, [g, C]
        scale = torch.rsqrt(var + self.eps)
        shift = torch.zeros_like(scale)
        if self.affine:
            scale, shift = scale * self.weight, shift + self.bias
        y = torch.addcmul(shift.reshape(shape), centred, scale.reshape(shape)).reshape(x.shape)
        self.ctx.names.append(self.name)
        self.ctx.stats.append((mean.sum(0), (var * (n / max(n - 1, 1))).sum(0)))
        return y


_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _fold_into(layer: nn.Module, bn: _EngineBN, ctx: _Ctx) -> None:
    """In eval mode, apply ``bn`` through ``layer``'s weights (conv or linear followed by BN).

    The BN layer then passes its input through: one elementwise pass fewer per BN.
    ``layer`` keeps its parameter names (only its instance ``forward`` changes); the BN
    tensors are read at call time, so ``functional_call`` substitutions are honoured.
    """
    plain = layer.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if ctx.mode != "eval":
            return plain(x)
        scale, shift = bn.eval_affine()
        w = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.dim() - 1))
        b = shift if layer.bias is None else layer.bias * scale + shift
        return F.linear(x, w, b) if isinstance(layer, nn.Linear) else layer._conv_forward(x, w, b)

    layer.forward = forward
    bn.folded = True


def _engine_copy(model: nn.Module, dtype: torch.dtype, device: torch.device) -> tuple[nn.Module, _Ctx, list[str]]:
    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    ctx = _Ctx()
    names = []
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            parent_name, _, attr = name.rpartition(".")
            parent = m.get_submodule(parent_name) if parent_name else m
            setattr(parent, attr, _EngineBN(mod, ctx, name))
            names.append(name)
    for seq in m.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq.children())
            for a, b in zip(kids, kids[1:]):
                if (isinstance(a, _FOLDABLE) and isinstance(b, _EngineBN) and not b.folded
                        and a.weight.shape[0] == b.running_mean.shape[0]):
                    _fold_into(a, b, ctx)
    return m, ctx, names


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of unmapping large blocks.

    By default every activation above 128 KiB is a fresh ``mmap`` whose pages fault
    in on first touch; on a 2-core CPU that doubled the time of an evaluation pass
    of the MNIST-1D conv net (measured, see README). This is what the usual advice
    of preloading jemalloc/tcmalloc for PyTorch on CPU achieves. Process-wide; freed
    memory stays with the process. Returns True if glibc accepted the settings.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    # one arena: worker threads otherwise get their own arenas, which trim and fault pages again
    ok = [libc.mallopt(m_mmap_threshold, 1 << 30), libc.mallopt(m_trim_threshold, 2 << 30), libc.mallopt(m_arena_max, 1)]
    return all(ok)


def flops_per_sample(model: nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs per sample counted by ``torch.utils.flop_counter`` (matmul/conv only)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(example)
    return fc.get_total_flops() / example.shape[0]


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e) or "can't allocate memory" in str(e)


_STRATEGY_CACHE: dict[tuple, tuple[Strategy, int]] = {}
_PROBE_POINTS = 8  # points per vmap call, in the probe and in evaluation


class Engine:
    """Evaluates a model at point sets on fixed data splits.

    Args:
        model: Template network (any ``nn.Module``; not modified).
        splits: Split name to ``(inputs [N, ...], targets [N])``, evaluation form.
        bn_data: Inputs of the BN recomputation pass (default: ``splits["train"][0]``).
        config: Engine settings.

    Example:
        >>> eng = Engine(model, {"train": (x, y), "test": (xt, yt)})  # doctest: +SKIP
        >>> res = eng.evaluate(PointSet.affine(w0, basis, coords))  # doctest: +SKIP
        >>> res.loss["train"], res.error("test")  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 bn_data: torch.Tensor | None = None, config: EngineConfig | None = None):
        self.config = cfg = config or EngineConfig()
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if cfg.device == "auto" else cfg.device))
        if self.device.type == "cpu" and cfg.tune_allocator:
            tune_cpu_allocator()
        self.dtype = getattr(torch, cfg.dtype)
        self.p_layout: Layout = param_layout(model)
        self.b_layout: Layout = buffer_layout(model)
        self.template_buffers = torch.cat([b.detach().reshape(-1).to(self.dtype) for b in model.buffers()]) \
            if self.b_layout.size else torch.zeros(0, dtype=self.dtype)
        self._template = model
        self.model, self._ctx, self.bn_names = _engine_copy(model, self.dtype, self.device)
        self._replicas: list[tuple[nn.Module, _Ctx]] = [(self.model, self._ctx)]
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
        example = next(iter(self.splits.values()))[0][: max(2, cfg.bn_batch_size)].to(self.device, self.dtype)
        self.act_bytes = self._activation_bytes(example)
        self.strategy: Strategy | None = None if cfg.strategy is Strategy.AUTO else cfg.strategy
        self._superbatch: int | None = None  # set by the probe when AUTO
        self._buffer_slices = self._bn_buffer_slices()

    # --- setup helpers -------------------------------------------------------------------------
    def _place(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype) if x.is_floating_point() else x
        fits = x.numel() * x.element_size() < self.config.memory_budget // 4
        return x.to(self.device) if fits else x

    def _activation_bytes(self, example: torch.Tensor) -> int:
        """Bytes of all module outputs per sample (one point): the activation footprint."""
        total = [0]

        def hook(_m, _i, out):
            if isinstance(out, torch.Tensor):
                total[0] += out.numel() * out.element_size()

        handles = [m.register_forward_hook(hook) for m in self.model.modules() if not list(m.children())]
        try:
            with torch.no_grad():
                self._ctx.mode = "eval"
                self.model(example)
        finally:
            for h in handles:
                h.remove()
        return max(1, total[0] // example.shape[0])

    def _bn_buffer_slices(self) -> dict[str, dict[str, slice]]:
        offs = np.cumsum((0,) + self.b_layout.numels)
        where = {n: slice(int(offs[i]), int(offs[i + 1])) for i, n in enumerate(self.b_layout.names)}
        return {bn: {k: where[f"{bn}.{k}"] for k in ("running_mean", "running_var", "num_batches_tracked")}
                for bn in self.bn_names}

    # --- sizes ---------------------------------------------------------------------------------
    def _sizes(self, k: int, strategy: Strategy) -> int:
        """Samples per super-batch for a chunk of k points (a multiple of bn_batch_size)."""
        cfg = self.config
        b = cfg.bn_batch_size
        if cfg.superbatch is not None:
            return max(b, cfg.superbatch // b * b)
        if self._superbatch is not None:
            return self._superbatch
        width = k if strategy is Strategy.VMAP else 1
        # activations of the forward (a factor 3 for temporaries) for all points pushed at once
        per_sample = 3 * self.act_bytes * width
        s = int(cfg.memory_budget * 0.6 // per_sample)
        if self.device.type == "cpu":
            s = min(s, cfg.cpu_cache_bytes // (self.act_bytes * width))
        return max(b, s // b * b)

    def _chunk_size(self, n_points: int, strategy: Strategy) -> int:
        if self.config.chunk_size is not None:
            return self.config.chunk_size
        point_bytes = (self.p_layout.size + self.b_layout.size) * self.dtype.itemsize * 4
        # vmap: each worker pushes as many points at once as the probe timed (_PROBE_POINTS)
        k = _PROBE_POINTS * self._workers() if strategy is Strategy.VMAP else 16
        k = min(k, max(1, int(self.config.memory_budget * 0.2 // point_bytes)))
        if strategy is Strategy.VMAP:  # keep at least one BN group of activations per point within budget
            k = min(k, max(1, int(self.config.memory_budget * 0.6 // (3 * self.act_bytes * self.config.bn_batch_size))))
        return max(1, min(k, n_points))

    # --- the functional forward ----------------------------------------------------------------
    def _f(self, rep: tuple[nn.Module, _Ctx], params: dict, buffers: dict, x: torch.Tensor, mode: str, group: int):
        model, ctx = rep
        ctx.mode, ctx.group, ctx.stats, ctx.names = mode, group, [], []
        try:
            out = functional_call(model, (params, buffers), (x,))
            stats = ctx.stats
        finally:
            ctx.mode, ctx.stats = "eval", None
        return out, stats

    def _forward(self, rep: tuple[nn.Module, _Ctx], strategy: Strategy, params: dict, buffers: dict, x: torch.Tensor,
                 mode: str, group: int):
        """Run a chunk: params/buffers are ``[k, ...]``; returns logits ``[k, n, C]`` and stats."""
        if strategy is Strategy.VMAP:
            logits, stats = vmap(lambda p, b: self._f(rep, p, b, x, mode, group), in_dims=(0, 0))(params, buffers)
        else:
            k = next(iter(params.values())).shape[0]
            outs = [self._f(rep, {n: t[i] for n, t in params.items()}, {n: t[i] for n, t in buffers.items()}, x, mode, group)
                    for i in range(k)]
            logits = torch.stack([o[0] for o in outs])
            stats = [(torch.stack([o[1][j][0] for o in outs]), torch.stack([o[1][j][1] for o in outs]))
                     for j in range(len(outs[0][1]))]
        return logits, [(name, m, v) for name, (m, v) in zip(rep[1].names, stats, strict=True)]

    # --- passes --------------------------------------------------------------------------------
    @torch.no_grad()
    def _recompute(self, rep: tuple[nn.Module, _Ctx], strategy: Strategy, params: dict, buffers_flat: torch.Tensor
                   ) -> torch.Tensor:
        """BN pass: returns buffers ``[k, Q]`` with recomputed running statistics."""
        cfg, x = self.config, self.bn_data
        k, b, n = buffers_flat.shape[0], cfg.bn_batch_size, self.bn_data.shape[0]
        s = self._sizes(k, strategy)
        buffers = unflatten(buffers_flat, self.b_layout)
        sums: dict[str, list[torch.Tensor]] = {}
        n_full = n // b * b
        pieces = [(i, min(i + s, n_full), b) for i in range(0, n_full, s)]
        if n_full < n:
            pieces.append((n_full, n, n - n_full))
        groups = samples = 0
        for lo, hi, grp in pieces:
            xb = x[lo:hi].to(self.device, non_blocking=True)
            _, stats = self._forward(rep, strategy, params, buffers, xb, "stats", grp)
            seen = set()
            for name, m, v in stats:
                if name in seen:
                    raise UserError(f"BatchNorm layer {name!r} is called twice in one forward; not supported")
                seen.add(name)
                w = grp if cfg.bn_weighting is BNWeighting.SAMPLE else 1
                acc = sums.setdefault(name, [torch.zeros_like(m, dtype=torch.float64), torch.zeros_like(v, dtype=torch.float64)])
                acc[0] += w * m.double()
                acc[1] += w * v.double()
            groups += (hi - lo) // grp
            samples += hi - lo
        denom = samples if cfg.bn_weighting is BNWeighting.SAMPLE else groups
        out = buffers_flat.clone()
        for name, (m, v) in sums.items():
            sl = self._buffer_slices[name]
            out[:, sl["running_mean"]] = (m / denom).to(out.dtype)
            out[:, sl["running_var"]] = (v / denom).to(out.dtype)
            out[:, sl["num_batches_tracked"]] = groups
        return out

    @torch.no_grad()
    def _eval_split(self, rep: tuple[nn.Module, _Ctx], strategy: Strategy, params: dict, buffers: dict, split: str,
                    k: int, want_probs: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x, y = self.splits[split]
        n = x.shape[0]
        s = self._sizes(k, strategy)
        loss = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.float64, device=self.device)
        probs = []
        for lo in range(0, n, s):
            xb, yb = x[lo : lo + s].to(self.device), y[lo : lo + s].to(self.device)
            logits, _ = self._forward(rep, strategy, params, buffers, xb, "eval", 1)  # [k, nb, C]
            c = logits.shape[-1]
            ce = F.cross_entropy(logits.reshape(-1, c).double(), yb.repeat(k), reduction="none").reshape(k, -1)
            loss += ce.sum(1)
            correct += (logits.argmax(-1) == yb).double().sum(1)
            if want_probs:
                probs.append(torch.softmax(logits.double(), -1).float().cpu())
        return loss / n, correct / n, (torch.cat(probs, 1) if want_probs else None)

    # --- strategy choice -----------------------------------------------------------------------
    def _probe(self, points: PointSet) -> tuple[Strategy, int]:
        """Pick strategy and super-batch size by timing forwards on real data (cached per model/device/dtype).

        Candidates: the per-point loop with super-batches of 2-16 BN groups, and vmap over
        a chunk of points with 1-4 groups; each is timed on one stats and one eval forward.
        vmap is dropped, with one warning, if it raises or disagrees with the loop.
        """
        cfg = self.config
        key = (type(self.model).__qualname__, self.p_layout.shapes, str(self.device), cfg.dtype, cfg.bn_batch_size,
               cfg.superbatch, cfg.strategy.value)
        if key in _STRATEGY_CACHE:
            return _STRATEGY_CACHE[key]
        b = cfg.bn_batch_size
        x_all = (self.bn_data if self.bn_data is not None else next(iter(self.splits.values()))[0])
        n = x_all.shape[0]
        k = min(len(points), _PROBE_POINTS)
        params = unflatten(points.chunk(0, k, self.device, self.dtype), self.p_layout)
        buffers = unflatten(self._buffers_for(points, 0, k), self.b_layout)
        strategies = [Strategy.LOOP, Strategy.VMAP] if cfg.strategy is Strategy.AUTO else [cfg.strategy]
        cands = []
        for strat in strategies:
            width = k if strat is Strategy.VMAP else 1
            sizes = [cfg.superbatch] if cfg.superbatch else [b * g for g in ((2, 4, 8, 16) if width == 1 else (1, 2, 4))]
            cap = max(b, int(cfg.memory_budget * 0.6 // (3 * self.act_bytes * width)) // b * b)
            for sb in dict.fromkeys(max(b, min(sz, cap, max(b, n // b * b))) for sz in sizes):
                cands.append((strat, sb))
        times: dict[tuple[Strategy, int], float] = {}
        reference = None
        for strat, sb in cands:
            x = x_all[:sb].to(self.device)
            grp = b if x.shape[0] >= b else x.shape[0]
            x = x[: x.shape[0] // grp * grp]
            try:
                with torch.no_grad():
                    out = self._forward(self._replicas[0], strat, params, buffers, x, "eval", 1)[0]
                    self._forward(self._replicas[0], strat, params, buffers, x, "stats", grp)
                    self._sync()
                    t0 = time.perf_counter()
                    for _ in range(2):
                        self._forward(self._replicas[0], strat, params, buffers, x, "stats", grp)
                        self._forward(self._replicas[0], strat, params, buffers, x, "eval", 1)
                    self._sync()
                    times[(strat, sb)] = (time.perf_counter() - t0) / (x.shape[0] * (k if strat is Strategy.VMAP else 1))
            except Exception as e:  # noqa: BLE001 - any failure under vmap means: use the loop
                if strat is Strategy.LOOP:
                    raise
                warnings.warn(f"the model cannot run under torch.func.vmap ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); using the per-point loop", stacklevel=3)
                break
            if strat is Strategy.LOOP and reference is None:
                reference = (x.shape[0], out[:1])
            elif strat is Strategy.VMAP and reference is not None:
                m = min(reference[0], out.shape[1])
                tol = 1e-4 if self.dtype == torch.float32 else 1e-10
                if not torch.allclose(out[:1, :m], reference[1][:, :m], rtol=tol, atol=tol):
                    warnings.warn("vmap and the per-point loop disagree for this model; using the loop", stacklevel=3)
                    times = {c: t for c, t in times.items() if c[0] is Strategy.LOOP}
                    break
        loops = {c: t for c, t in times.items() if c[0] is Strategy.LOOP}
        choice = min(times, key=times.get)
        if loops and choice[0] is Strategy.VMAP and times[choice] > 0.9 * min(loops.values()):
            choice = min(loops, key=loops.get)  # a near tie goes to the simpler path
        _STRATEGY_CACHE[key] = choice
        return choice

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _buffers_for(self, points: PointSet, lo: int, hi: int) -> torch.Tensor:
        b = points.buffer_chunk(lo, hi, self.device, self.dtype)
        if b is None:
            b = self.template_buffers.to(self.device).expand(hi - lo, -1)
        return b.contiguous()

    # --- public --------------------------------------------------------------------------------
    def check_points(self, points: PointSet, bn_mode: BNMode | None = None) -> None:
        """Raise :class:`UserError` if the point set does not fit the model."""
        bn_mode = bn_mode or self.config.bn_mode
        if points.dim != self.p_layout.size:
            raise UserError(f"point vectors have length {points.dim}, but the model has {self.p_layout.size} parameters")
        if points.has_buffers and points.buffer_dim != self.b_layout.size:
            raise UserError(f"point buffers have length {points.buffer_dim}, but the model has {self.b_layout.size} buffer entries")
        if self.bn_names and bn_mode is not BNMode.RECOMPUTE and not points.has_buffers:
            raise UserError(f"bn_mode {bn_mode.value!r} needs buffers carried by the points")
        if bn_mode is BNMode.RECOMPUTE and self.bn_names and self.bn_data is None:
            raise UserError("BN recomputation needs training data (an empty or missing 'train' split)")
        if bn_mode is BNMode.INTERPOLATE and points.buffers is None and points.buffer_basis is None:
            raise UserError("bn_mode 'interpolate' needs buffer_basis (or explicit per-point buffers)")

    def evaluate(self, points: PointSet, splits: tuple[str, ...] | None = None, probs: tuple[str, ...] = (),
                 prob_sink: Callable[[str, int, torch.Tensor], None] | None = None,
                 progress: bool = False, desc: str = "points",
                 on_chunk: Callable[[int, int, EvalResult], None] | None = None,
                 bn_mode: BNMode | str | None = None) -> EvalResult:
        """Metrics at every point.

        Args:
            points: ``K`` points.
            splits: Which splits to evaluate (default: all).
            probs: Splits whose class probabilities are wanted.
            prob_sink: ``(split, first_point, probs [k, n, C])`` per chunk; without it
                the probabilities are returned in the result.
            progress: Show a progress bar.
            desc: Progress bar label.
            on_chunk: Called as ``(start, stop, chunk_result)`` after each chunk (e.g. to
                write results incrementally).
            bn_mode: Override of ``config.bn_mode`` for this call.

        Returns:
            :class:`EvalResult` over all ``K`` points.
        """
        bn_mode = self.config.bn_mode if bn_mode is None else BNMode(bn_mode)
        self.check_points(points, bn_mode)
        splits = tuple(self.splits) if splits is None else splits
        for s in (*splits, *probs):
            if s not in self.splits:
                raise UserError(f"unknown split {s!r}; the engine has {', '.join(self.splits)}")
        K = len(points)
        workers = self._workers()
        threads = torch.get_num_threads()
        per_worker = max(1, threads // workers)
        if workers > 1:  # parallel over points, one intra-op thread each: faster on few cores (README)
            torch.set_num_threads(per_worker)
        try:
            if self.strategy is None:
                self.strategy, self._superbatch = self._probe(points)
            strategy = self.strategy
            k = max(self._chunk_size(K, strategy), min(workers, K))
            parts: list[EvalResult] = []
            bar = tqdm(total=K, desc=desc, disable=not progress, leave=False)
            # OpenMP's thread count is per thread: every worker sets its own
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(per_worker,)) as pool:
                lo = 0
                while lo < K:
                    hi = min(lo + k, K)
                    try:
                        part = self._parallel_chunk(pool, workers, points, lo, hi, strategy, splits, probs, bn_mode)
                    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                        if not _is_oom(e) or k == 1:
                            raise
                        k = max(1, k // 2)
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    if prob_sink is not None:
                        for split, pr in part.probs.items():
                            prob_sink(split, lo, pr)
                        part.probs = {}
                    if on_chunk is not None:
                        on_chunk(lo, hi, part)
                    parts.append(part)
                    bar.update(hi - lo)
                    lo = hi
            bar.close()
        finally:
            torch.set_num_threads(threads)
        out = _concat(parts, splits, self.b_layout.size)
        out.strategy = strategy.value
        return out

    def _workers(self) -> int:
        if self.config.workers is not None:
            return self.config.workers
        return max(1, torch.get_num_threads()) if self.device.type == "cpu" else 1

    def _replica(self, i: int) -> tuple[nn.Module, _Ctx]:
        while len(self._replicas) <= i:
            m, ctx, _ = _engine_copy(self._template, self.dtype, self.device)
            self._replicas.append((m, ctx))
        return self._replicas[i]

    def _parallel_chunk(self, pool: ThreadPoolExecutor, workers: int, points: PointSet, lo: int, hi: int,
                        strategy: Strategy, splits: tuple[str, ...], probs: tuple[str, ...], bn_mode: BNMode
                        ) -> EvalResult:
        """Points ``lo:hi`` split over up to ``workers`` replicas (each on its own thread)."""
        bounds = np.linspace(lo, hi, min(workers, hi - lo) + 1).round().astype(int)
        ranges = [(int(a), int(b)) for a, b in zip(bounds, bounds[1:]) if b > a]
        if len(ranges) == 1:
            return self._evaluate_chunk(self._replicas[0], points, lo, hi, strategy, splits, probs, bn_mode)
        futures = [pool.submit(self._evaluate_chunk, self._replica(i), points, a, b, strategy, splits, probs, bn_mode)
                   for i, (a, b) in enumerate(ranges)]
        return _concat([f.result() for f in futures], splits, self.b_layout.size)

    def _evaluate_chunk(self, rep: tuple[nn.Module, _Ctx], points: PointSet, lo: int, hi: int, strategy: Strategy,
                        splits: tuple[str, ...], probs: tuple[str, ...], bn_mode: BNMode) -> EvalResult:
        k = hi - lo
        w = points.chunk(lo, hi, self.device, self.dtype)
        params = unflatten(w, self.p_layout)
        bflat = self._buffers_for(points, lo, hi)
        if self.bn_names and bn_mode is BNMode.RECOMPUTE:
            bflat = self._recompute(rep, strategy, params, bflat)
        buffers = unflatten(bflat, self.b_layout)
        loss, acc, pr = {}, {}, {}
        for s in dict.fromkeys((*splits, *probs)):
            l_, a_, p_ = self._eval_split(rep, strategy, params, buffers, s, k, s in probs)
            if s in splits:
                loss[s], acc[s] = l_.cpu(), a_.cpu()
            if p_ is not None:
                pr[s] = p_
        l2 = 0.5 * self.config.weight_decay * w.double().pow(2).sum(1).cpu()
        return EvalResult(loss, acc, bflat.cpu(), l2, pr, strategy.value)
