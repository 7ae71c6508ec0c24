"""A zoo of network structures no one here wrote, reproduced in a few lines each (no downloads, no new dependency).

Each entry builds a small seeded network and its data; ``tests/landscape/test_zoo.py`` checks the engine
against a plain reference written out in the test, and ``benchmarks/zoo_table.py`` renders the results
table of ``docs/exactness.md``. The structures follow what torchvision and timm build (BN subclasses with
a fused activation as timm's ``BatchNormAct2d``, pre-activation and residual blocks, depthwise and grouped
convolutions, stochastic depth) and what point-cloud and sequence models do (BN over positions folded into
the batch, token inputs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Entry", "ZOO", "IMAGE", "SEQ", "MobileNetSE", "data_for", "at_point_with_bn"]

IMAGE = (3, 8, 8)
SEQ = 12  # sequence length of the [N, L] inputs
CLASSES = 5


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's fused layer, reproduced: normalise through ``F.batch_norm`` in its own forward, then drop and act."""

    def __init__(self, c: int):
        super().__init__(c)
        self.drop, self.act = nn.Dropout(0.2), nn.SiLU()

    def forward(self, x):
        f = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, f, self.eps)
        return self.act(self.drop(x))


class ScaledSiLUBN(nn.BatchNorm2d):
    """A user's subclass: ``silu(bn(x)) * 2`` through the parent's forward."""

    def forward(self, x):
        return F.silu(super().forward(x)) * 2


class ManualBN(nn.BatchNorm2d):
    """A subclass that normalises by hand (no ``F.batch_norm``): only the guard can tell the engine."""

    def forward(self, x):
        if self.training:
            mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean)
                self.running_var.mul_(1 - f).add_(f * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        shape = (1, -1, 1, 1)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps) * self.weight.view(shape) \
            + self.bias.view(shape)


def _conv_bn(cin, cout, bn=nn.BatchNorm2d, **kw):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False, **kw), bn(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, CLASSES)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def fused_act():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), BatchNormAct2d(8),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), BatchNormAct2d(8), Head(8))


def user_subclass():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ScaledSiLUBN(8), nn.Conv2d(8, 8, 3, padding=1),
                         nn.BatchNorm2d(8), nn.ReLU(), Head(8))


def manual_bn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ManualBN(8), nn.ReLU(), Head(8))


def affine_free():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, affine=False, momentum=None), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=None), nn.ReLU(), Head(8))
    net.register_buffer("scale", torch.tensor(1.5))  # a buffer that is not a BN statistic (kept as it is)
    return net


class PointCloud(nn.Module):
    """Per-point MLP over ``[N, P, 3]`` point sets, BN1d over the points folded into the batch, max-pool over points.

    ``position_major`` folds ``[N, P, C] -> [P * N, C]`` point by point (rows of one sample are not consecutive),
    which grouping by consecutive rows gets wrong: the guard must catch it.
    """

    def __init__(self, position_major: bool = False):
        super().__init__()
        self.position_major = position_major
        self.fc1, self.bn1 = nn.Linear(3, 16), nn.BatchNorm1d(16)
        self.fc2, self.bn2 = nn.Linear(16, 16), nn.BatchNorm1d(16)
        self.head = nn.Linear(16, CLASSES)

    def _fold(self, h):
        n, p, c = h.shape
        return h.transpose(0, 1).reshape(p * n, c) if self.position_major else h.reshape(n * p, c)

    def _unfold(self, h, n, p):
        return h.reshape(p, n, -1).transpose(0, 1) if self.position_major else h.reshape(n, p, -1)

    def forward(self, x):
        n, p, _ = x.shape
        h = self._unfold(F.relu(self.bn1(self._fold(self.fc1(x)))), n, p)
        h = self._unfold(F.relu(self.bn2(self._fold(self.fc2(h)))), n, p)
        return self.head(h.max(1).values)


class SharedBN(nn.Module):
    """One BN layer called twice in one forward (on two branches of the same width)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.head = Head(8)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.a(x))) + F.relu(self.bn(self.b(x))))


class Residual(nn.Module):
    """ResNet basic block: BN inside the residual branch, and a BN after the addition."""

    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 8)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.after = nn.BatchNorm2d(8)
        self.head = Head(8)

    def forward(self, x):
        h = self.stem(x)
        return self.head(F.relu(self.after(h + self.branch(h))))


class PreAct(nn.Module):
    """Pre-activation blocks (BN -> ReLU -> conv): no conv before a BN to fold into."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                   nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.bn, self.head = nn.BatchNorm2d(8), Head(8)

    def forward(self, x):
        h = self.conv0(x)
        return self.head(F.relu(self.bn(h + self.block(h))))


def depthwise_grouped():
    """MobileNet/ShuffleNet-style: depthwise and grouped convolutions, each followed by BN."""
    return nn.Sequential(_conv_bn(3, 8), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                         nn.ReLU6(), nn.Conv2d(8, 16, 1, groups=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         Head(16))


def norms_only():
    """A transformer-style and a GroupNorm network: no BatchNorm at all."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.GELU(), nn.Flatten(2),
                         nn.LayerNorm(64), nn.Flatten(), nn.Linear(8 * 64, CLASSES))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample in training, identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) > self.p).to(x.dtype)
        return x * keep / (1 - self.p)


class Stochastic(nn.Module):
    """Dropout and stochastic depth around BN layers (both off in the BN pass, as in the reference)."""

    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 8)
        self.branch = nn.Sequential(nn.Dropout(0.3), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.drop_path = DropPath(0.5)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 64, CLASSES))

    def forward(self, x):
        h = self.stem(x)
        return self.head(h + self.drop_path(self.branch(h)))


class TokenConv(nn.Module):
    """A network taking ``[N, L]`` token sequences: embedding, conv over positions with BN1d, pooling."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.body = nn.Sequential(nn.Conv1d(8, 12, 3, padding=1), nn.BatchNorm1d(12), nn.ReLU())
        self.head = nn.Linear(12, CLASSES)

    def forward(self, x):
        return self.head(self.body(self.embed(x).transpose(1, 2)).mean(2))


class ConvCalledAlone(nn.Module):
    """A conv inside an ``nn.Sequential`` before its BN, also called on its own (that output bypasses the BN):
    folding the BN into the conv would change the second call, so the guard must turn folding off."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = Head(8)

    def forward(self, x):
        return self.head(self.seq(x) + self.seq[0](x))


def no_running_stats():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False), Head(8))


class SqueezeExcite(nn.Module):
    """torchvision's squeeze-excitation: a per-sample channel gate from the pooled features."""

    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, max(8, c // 4), 1), nn.Conv2d(max(8, c // 4), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expansion, depthwise k x k, squeeze-excitation, 1x1 projection, each conv without
    bias before its BN; a residual where the shape allows."""

    def __init__(self, cin: int, exp: int, cout: int, k: int, stride: int, se: bool):
        super().__init__()
        self.expand = (nn.Sequential(nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), nn.Hardswish())
                       if exp != cin else nn.Identity())
        self.dw = nn.Sequential(nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp),
                                nn.Hardswish())
        self.se = SqueezeExcite(exp) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


MOBILENET_BLOCKS = ((16, 16, 16, 3, 2, True), (16, 72, 24, 3, 2, False), (24, 88, 24, 3, 1, False),
                    (24, 96, 40, 5, 2, True), (40, 240, 40, 5, 1, True), (40, 120, 48, 5, 1, True),
                    (48, 144, 48, 5, 1, True), (48, 288, 96, 5, 2, True), (96, 576, 96, 5, 1, True))
"""MobileNetV3-Small's blocks (input channels, expansion, output channels, kernel, stride, squeeze-excitation)."""


class MobileNetSE(nn.Module):
    """A deep depthwise-separable network with squeeze-excitation, as torchvision's MobileNetV3-Small builds it
    (``blocks``: how many of :data:`MOBILENET_BLOCKS`)."""

    def __init__(self, blocks: int = len(MOBILENET_BLOCKS), classes: int = CLASSES):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(*[InvertedResidual(*b) for b in MOBILENET_BLOCKS[:blocks]])
        c = MOBILENET_BLOCKS[blocks - 1][2]
        self.head = nn.Sequential(nn.Conv2d(c, 6 * c, 1, bias=False), nn.BatchNorm2d(6 * c), nn.Hardswish())
        self.fc = nn.Linear(6 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.head(self.blocks(self.stem(x))), 1).flatten(1))


@dataclass(frozen=True)
class Entry:
    """A zoo network: how to build it, which inputs it takes, and what the engine must do with it.

    Attributes:
        name: Short name.
        structure: What is special about it, in words (the docs' table column).
        build: Seeded constructor.
        inputs: ``"image"`` ``[N, 3, 8, 8]``, ``"points"`` ``[N, 16, 3]`` or ``"tokens"`` ``[N, L]`` (int64).
        refusal: A phrase of the engine's error message when the network must be refused, else None.
        guard_needed: The fast path alone is wrong here; the guard must switch to the exact path.
    """

    name: str
    structure: str
    build: Callable[[], nn.Module]
    inputs: str = "image"
    refusal: str | None = None
    guard_needed: bool = False


ZOO = (
    Entry("fused_act", "BatchNorm2d subclass with fused dropout + SiLU in its forward (timm BatchNormAct2d)",
          fused_act),
    Entry("user_subclass", "user's BN subclass returning silu(bn(x)) * 2", user_subclass),
    Entry("manual_bn", "BN subclass normalising by hand, without F.batch_norm", manual_bn, guard_needed=True),
    Entry("affine_free", "BN with affine=False and momentum=None; a non-BN buffer", affine_free),
    Entry("point_cloud", "BN1d over positions folded into the batch, [N,16,C] -> [16N,C]", PointCloud, "points"),
    Entry("point_cloud_pm", "the same, folded position-major (a sample's rows not consecutive)",
          lambda: PointCloud(position_major=True), "points", guard_needed=True),
    Entry("shared_bn", "one BN layer called twice in one forward", SharedBN),
    Entry("residual", "BN inside a residual branch and after the addition", Residual),
    Entry("preact", "pre-activation blocks (BN before conv, nothing to fold)", PreAct),
    Entry("depthwise", "depthwise and grouped convolutions with BN", depthwise_grouped),
    Entry("mobilenet_se", "inverted residuals: depthwise convolutions, squeeze-excitation, hard-swish "
          "(torchvision MobileNetV3)", lambda: MobileNetSE(blocks=4)),
    Entry("norms_only", "GroupNorm and LayerNorm only, no BN", norms_only),
    Entry("stochastic", "dropout and stochastic depth around BN", Stochastic),
    Entry("tokens", "[N, L] token sequences: embedding, conv1d, BN1d", TokenConv, "tokens"),
    Entry("conv_called_alone", "a conv before its BN in a Sequential, also called on its own (bypassing the BN)",
          ConvCalledAlone, guard_needed=True),
    Entry("no_running_stats", "BN with track_running_stats=False", no_running_stats,
          refusal="does not track running statistics"),
)


def data_for(entry: Entry, seed: int, dtype: torch.dtype, n_train: int = 64, n_test: int = 32
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fresh random ``train``/``test`` splits for the entry's inputs (never zeros)."""
    g = torch.Generator().manual_seed(seed)

    def x(n):
        if entry.inputs == "tokens":
            return torch.randint(0, 20, (n, SEQ), generator=g)
        shape = (n, 16, 3) if entry.inputs == "points" else (n, *IMAGE)
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 1.3 + 0.2).to(dtype)

    return {"train": (x(n_train), torch.randint(0, CLASSES, (n_train,), generator=g)),
            "test": (x(n_test), torch.randint(0, CLASSES, (n_test,), generator=g))}


@torch.no_grad()
def at_point_with_bn(model: nn.Module, w: torch.Tensor, batches, call=lambda m, x: m(x)) -> nn.Module:
    """The test's plain reference of BN recomputation: a copy of ``model`` holding the flat weights ``w``, each BN
    layer reset and run in train mode (everything else in eval mode, momentum None: the cumulative average, as
    ``update_bn``) over ``batches`` of inputs (passed to the model by ``call``), then put in eval mode."""
    from landscape.layout import param_layout, unflatten

    m = copy.deepcopy(model)
    for name, t in unflatten(w, param_layout(m)).items():
        m.get_parameter(name).copy_(t)
    bns = [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
    m.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum, bn.training = None, True
    for x in batches if bns else ():
        call(m, x)
    return m.eval()
