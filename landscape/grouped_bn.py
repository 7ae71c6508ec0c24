"""The engine's private model copy: a grouped-statistics BatchNorm drop-in and BN folding.

In train mode a batch is normalised with its own statistics only, so many BN groups
of ``bn_batch_size`` samples can go through the network in one forward:
:class:`GroupedBN` reshapes its input to ``[groups, bn_batch_size, ...]``,
normalises each group with that group's mean and biased variance and records the
per-group means and unbiased variances. Nothing is updated in place, which sidesteps
the vmap + BatchNorm pitfalls (``momentum=None`` calling ``.item()``, lost updates to
non-contiguous stacked buffers).

In eval mode the layer applies the running statistics, or passes its input through
when the preceding conv/linear layer already applies them (:func:`fold_bn`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

__all__ = ["BNContext", "GroupedBN", "Replica", "fold_bn", "engine_copy"]


@dataclass
class BNContext:
    """Mode shared by a replica's BN layers during one forward.

    Attributes:
        mode: ``"eval"`` (running statistics) or ``"stats"`` (grouped train-mode statistics).
        group: Samples per BN group in ``"stats"`` mode.
        stats: Per BN call ``(sum over groups of means [C], sum of unbiased variances [C])``.
        names: BN layer names in call order (kept outside vmap: not tensors).
    """

    mode: str = "eval"
    group: int = 1
    stats: list | None = None
    names: list[str] = field(default_factory=list)


class GroupedBN(nn.Module):
    """Drop-in for a BatchNorm layer: grouped batch statistics or fixed running statistics.

    Keeps the parameter and buffer names of the layer it replaces, so
    ``functional_call`` with the original names substitutes its tensors.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, ctx: BNContext, name: str):
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


def fold_bn(layer: nn.Module, bn: GroupedBN) -> None:
    """In eval mode, apply ``bn`` through ``layer``'s weights (conv or linear followed by BN).

    The BN layer then passes its input through: one elementwise pass fewer per BN.
    ``layer`` keeps its parameter names (only its instance ``forward`` changes); the BN
    tensors are read at call time, so ``functional_call`` substitutions are honoured.
    """
    plain, ctx = layer.forward, bn.ctx

    def forward(x: torch.Tensor) -> torch.Tensor:
        if ctx.mode != "eval":
            return plain(x)
        scale, shift = bn.eval_affine()
        w = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.dim() - 1))
        b = shift if layer.bias is None else layer.bias * scale + shift
        return F.linear(x, w, b) if isinstance(layer, nn.Linear) else layer._conv_forward(x, w, b)

    layer.forward = forward
    bn.folded = True


@dataclass
class Replica:
    """A private copy of the model with :class:`GroupedBN` layers; one per worker thread.

    Attributes:
        model: The copy (eval mode, engine dtype and device).
        ctx: Its BN layers' shared mode.
        bn_names: Names of the replaced BN layers.
    """

    model: nn.Module
    ctx: BNContext
    bn_names: list[str]
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
    """Deep-copy ``model``, replace its BN layers by :class:`GroupedBN` and fold BN where it can.

    Folding applies to a conv/linear directly followed by BN inside an ``nn.Sequential``
    (other layouts would need graph tracing); ``fold=False`` keeps every BN unfolded.
    """
    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    ctx = BNContext()
    names = []
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            parent_name, _, attr = name.rpartition(".")
            parent = m.get_submodule(parent_name) if parent_name else m
            setattr(parent, attr, GroupedBN(mod, ctx, name))
            names.append(name)
    if fold:
        for seq in m.modules():
            if isinstance(seq, nn.Sequential):
                kids = list(seq.children())
                for a, b in zip(kids, kids[1:]):
                    if (isinstance(a, _FOLDABLE) and isinstance(b, GroupedBN) and not b.folded
                            and a.weight.shape[0] == b.running_mean.shape[0]):
                        fold_bn(a, b)
    return Replica(m, ctx, names)
