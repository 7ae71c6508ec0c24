"""The engine's private model copy: grouped BatchNorm statistics where the normalisation happens, and BN folding.

Every module keeps its own ``forward``. BatchNorm layers of any kind (PyTorch's, a library's
subclass with a fused activation, a user's subclass) normalise through
``torch.nn.functional.batch_norm``; during the engine's statistics pass a
:class:`~torch.overrides.TorchFunctionMode` intercepts exactly that call and replaces it by
*grouped* train-mode normalisation: the rows of the forward are split into ``groups``
consecutive groups, each normalised with its own mean and biased variance, and the
per-group means and unbiased variances are recorded. What the module does around the call
(an activation, a drop, a scale) runs unchanged. One forward then holds many BN batches,
which is what ``update_bn`` over batches of ``bn_batch_size`` samples computes batch by batch.

Groups follow samples, not rows: a layer that sees ``k`` rows per input sample (positions
folded into the batch) gets ``k x bn_batch_size`` rows per group. That is exact when each
sample's rows are consecutive; the engine's guard (:mod:`landscape.guard`) compares with the
reference path and falls back to an exact per-point pass when they are not.

Nothing is updated in place, which sidesteps the vmap + BatchNorm pitfalls
(``momentum=None`` calling ``.item()``, lost updates to stacked buffers).

In eval mode the layers are the modules' own forwards. :func:`fold_bn` folds a plain
PyTorch BN into the plain PyTorch conv/linear before it, only where that is provably the
same function (exact classes, adjacent in an ``nn.Sequential``, no hooks).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .bn import bn_modules
from .errors import UserError

__all__ = ["BNContext", "GroupingError", "GroupedStatsMode", "grouped_batch_norm", "Replica", "fold_bn",
           "engine_copy"]

_BN_SIGNATURE = inspect.signature(F.batch_norm)


class GroupingError(UserError):
    """A BN layer's rows cannot be split into the forward's BN groups (the engine then uses its exact path)."""


@dataclass
class BNContext:
    """Mode shared by a replica's BN layers during one forward.

    Attributes:
        mode: ``"eval"`` (the modules' own eval forwards) or ``"stats"`` (grouped train-mode statistics).
        groups: BN groups (batches of ``bn_batch_size`` samples) in the forward's input, in ``"stats"`` mode.
        stats: Per intercepted ``batch_norm`` call ``(sum over groups of means [C], sum of unbiased variances [C])``.
        names: The BN layer of each call, in call order (kept outside vmap: not tensors).
        stack: BN layers whose forward is running (innermost last).
        skip: A BN layer whose normalisation the preceding folded layer already applied.
    """

    mode: str = "eval"
    groups: int = 1
    stats: list | None = None
    names: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    skip: nn.Module | None = None

    def enter(self, name: str) -> None:
        """A BN layer's forward starts (a forward pre-hook; returns None so the input is unchanged)."""
        self.stack.append(name)

    def leave(self) -> None:
        """A BN layer's forward ended (a forward hook; returns None so the output is unchanged)."""
        if self.stack:
            self.stack.pop()

    def reset(self, mode: str, groups: int) -> None:
        """Start a forward in ``mode`` with ``groups`` BN groups: no statistics, calls or layers recorded yet."""
        self.mode, self.groups, self.stats, self.names, self.stack, self.skip = mode, groups, [], [], [], None


def grouped_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                       groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train-mode BN of ``groups`` consecutive row groups of ``x [R, C, *S]``, each with its own statistics.

    Sums over the batch dimension first and uses the centred two-pass variance: several times
    faster on CPU than ``var_mean`` over non-contiguous dimensions.

    Returns:
        The normalised ``x`` and the sums over groups of the means ``[C]`` and unbiased variances ``[C]``.

    Raises:
        GroupingError: ``R`` is not a multiple of ``groups``.
    """
    rows, c = x.shape[0], x.shape[1]
    if rows % groups:
        raise GroupingError(f"{rows} rows do not split into {groups} BN batches")
    xg = x.reshape(groups, rows // groups, *x.shape[1:])  # [g, r, C, *S]
    n = xg.numel() // (groups * c)  # values per statistic: r * prod(S)
    s1 = xg.sum(1)
    mean = (s1 if x.dim() == 2 else s1.flatten(2).sum(-1)) / n  # [g, C]
    shape = (groups, 1, c) + (1,) * (x.dim() - 2)
    centred = xg - mean.reshape(shape)
    s2 = centred.square().sum(1)
    var = (s2 if x.dim() == 2 else s2.flatten(2).sum(-1)) / n  # biased, [g, C]
    scale = torch.rsqrt(var + eps)
    shift = torch.zeros_like(scale)
    if weight is not None:
        scale = scale * weight
    if bias is not None:
        shift = shift + bias
    y = torch.addcmul(shift.reshape(shape), centred, scale.reshape(shape)).reshape(x.shape)
    return y, mean.sum(0), (var * (n / max(n - 1, 1))).sum(0)


class GroupedStatsMode(TorchFunctionMode):
    """Intercepts ``F.batch_norm`` called inside a BN layer's forward.

    In ``"stats"`` mode it normalises grouped (:func:`grouped_batch_norm`) and records the statistics in the
    context. Every other call, and every call outside a BN layer, runs as it is.
    """

    def __init__(self, ctx: BNContext):
        super().__init__()
        self.ctx = ctx

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ctx = self.ctx
        if func is not F.batch_norm or ctx.mode != "stats" or not ctx.stack:
            return func(*args, **kwargs)
        a = _BN_SIGNATURE.bind(*args, **kwargs)
        a.apply_defaults()
        p = a.arguments
        try:
            y, m, v = grouped_batch_norm(p["input"], p["weight"], p["bias"], p["eps"], ctx.groups)
        except GroupingError as e:
            raise GroupingError(f"BatchNorm layer {ctx.stack[-1]!r}: {e}") from None
        ctx.names.append(ctx.stack[-1])
        ctx.stats.append((m, v))
        return y


_FOLDABLE = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d,
             nn.Linear: nn.BatchNorm1d}
"""Exact classes (not subclasses) of a layer and of the BN after it that fold into one layer."""


def _eval_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``x * scale + shift`` ``([C], [C])``, from the tensors the layer holds now."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    return scale, shift


def fold_bn(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm, ctx: BNContext) -> None:
    """In eval mode, apply ``bn`` through ``layer``'s weights (a conv or linear directly followed by the BN).

    The BN then passes its input through for that call: one elementwise pass fewer per BN.
    Both keep their parameter names (only their instance ``forward`` changes); the BN tensors
    are read at call time, so ``functional_call`` substitutions are honoured. A linear layer
    folds only for 2-D inputs, where its output features are the BN's channels.
    """
    plain_layer, plain_bn = layer.forward, bn.forward
    is_linear = isinstance(layer, nn.Linear)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if ctx.mode != "eval" or (is_linear and x.dim() != 2):
            return plain_layer(x)
        scale, shift = _eval_affine(bn)
        w = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.dim() - 1))
        b = shift if layer.bias is None else layer.bias * scale + shift
        ctx.skip = bn
        return F.linear(x, w, b) if is_linear else layer._conv_forward(x, w, b)

    def bn_forward(x: torch.Tensor) -> torch.Tensor:
        if ctx.skip is bn:
            ctx.skip = None
            return x
        return plain_bn(x)

    layer.forward, bn.forward = forward, bn_forward


def _foldable(a: nn.Module, b: nn.Module) -> bool:
    hooks = ("_forward_hooks", "_forward_pre_hooks")
    return (_FOLDABLE.get(type(a)) is type(b) and b.track_running_stats and a.weight.shape[0] == b.num_features
            and not any(getattr(m, h) for m in (a, b) for h in hooks))


@dataclass
class Replica:
    """A private copy of the model (eval mode, engine dtype and device); one per worker thread.

    Attributes:
        model: The copy; its BN layers report themselves to ``ctx`` (forward hooks), some are folded.
        ctx: Its BN layers' shared mode.
        bn_names: Names of its BN layers (any ``_BatchNorm`` subclass).
        mode: The function mode that groups BN statistics in ``ctx``'s ``"stats"`` mode.
        exact_model: An unmodified copy for the exact per-point statistics pass (made on first use).
        compiled: The copy compiled for the per-point loop's evaluation pass, or None.
    """

    model: nn.Module
    ctx: BNContext
    bn_names: list[str]
    mode: GroupedStatsMode
    exact_model: nn.Module | None = None
    compiled: nn.Module | None = None
    """The copy through ``torch.compile`` for the per-point loop's evaluation pass (``EngineConfig(compile=...)``)."""
    tensors: dict[str, torch.Tensor] = field(init=False, repr=False)
    """Parameters and buffers by name (the per-point loop copies each point into them)."""

    def __post_init__(self) -> None:
        self.tensors = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy one point's named parameters/buffers into the copy (as a user's loop would)."""
        for name, t in tensors.items():
            self.tensors[name].copy_(t)


def engine_copy(model: nn.Module, dtype: torch.dtype, device: torch.device, fold: bool = True) -> Replica:
    """Deep-copy ``model``, let its BN layers report to a shared context, and fold BN where provably exact.

    Folding applies to a conv/linear directly followed by a BN inside an ``nn.Sequential``, both of
    PyTorch's exact classes (:data:`_FOLDABLE`), registered once and without hooks; ``fold=False``
    folds nothing.

    Raises:
        UserError: A BN layer that does not track running statistics (its eval output depends on the batch).
    """
    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    ctx = BNContext()
    seen: dict[int, int] = {}
    for _, mod in m.named_modules(remove_duplicate=False):
        seen[id(mod)] = seen.get(id(mod), 0) + 1
    pairs = [(a, b) for seq in m.modules() if isinstance(seq, nn.Sequential)
             for a, b in zip(list(seq.children()), list(seq.children())[1:])
             if fold and _foldable(a, b) and seen[id(a)] == seen[id(b)] == 1]  # shared layers: never folded
    names = []
    for name, bn in bn_modules(m):
        if not bn.track_running_stats:
            raise UserError(f"BatchNorm layer {name!r} does not track running statistics; its output depends on the "
                            "batch, so no landscape of it is well defined")
        bn.register_forward_pre_hook(lambda _m, _i, n=name: ctx.enter(n))
        bn.register_forward_hook(lambda _m, _i, _o: ctx.leave(), always_call=True)
        names.append(name)
    for a, b in pairs:
        fold_bn(a, b, ctx)
    return Replica(m, ctx, names, GroupedStatsMode(ctx))
