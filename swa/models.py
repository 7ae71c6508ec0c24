"""Model registry: the MNIST-1D models and the SWA paper's CIFAR architectures.

Every model is built by ``build_model(name, **kwargs)``; a run file stores the
name and the keyword arguments, so the file alone rebuilds the network.
All models take ``num_classes`` and a width knob so they run small on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from landscape.errors import UserError

from .sources import call_factory, check_model, is_import_path

__all__ = ["MODELS", "build_model", "MLP", "ConvNet1d", "VGG", "PreResNet", "WideResNet"]


class MLP(nn.Module):
    """Fully connected ReLU network for flat inputs ``[B, in_features]``.

    Args:
        in_features: Input length (40 for MNIST-1D).
        num_classes: Number of classes.
        width: Hidden units per layer.
        depth: Number of hidden layers.
        bn: Insert BatchNorm1d after each hidden linear layer.
    """

    def __init__(self, in_features: int = 40, num_classes: int = 10, width: int = 100, depth: int = 2, bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width)] + ([nn.BatchNorm1d(width)] if bn else []) + [nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of inputs ``[N, ...]``."""
        return self.net(x.flatten(1))


class ConvNet1d(nn.Module):
    """Small 1-D conv net for MNIST-1D sequences ``[B, L]`` or ``[B, 1, L]``.

    Three conv layers (kernel 5, 3, 3; the last two with stride 2), each followed by
    optional BatchNorm and ReLU, then a linear classifier.

    Args:
        length: Sequence length (40 for MNIST-1D).
        num_classes: Number of classes.
        width: Channels of each conv layer.
        bn: Use BatchNorm after each convolution.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, width: int = 32, bn: bool = True):
        super().__init__()

        def block(cin: int, k: int, s: int) -> list[nn.Module]:
            return [nn.Conv1d(cin, width, k, stride=s, padding=k // 2, bias=not bn)] + (
                [nn.BatchNorm1d(width)] if bn else []
            ) + [nn.ReLU()]

        self.features = nn.Sequential(*block(1, 5, 1), *block(width, 3, 2), *block(width, 3, 2))
        out_len = math.ceil(math.ceil(length / 2) / 2)
        self.classifier = nn.Linear(width * out_len, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of inputs ``[N, ...]``."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """VGG-16 for 32x32 images, as in the SWA paper's CIFAR experiments.

    Classifier with dropout (two hidden layers of 512 x width units).

    Args:
        num_classes: Number of classes.
        width: Channel multiplier (1.0 = the paper's network).
        bn: BatchNorm after every convolution (the ``vgg16_bn`` variant).
        dropout: Dropout probability in the classifier.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, bn: bool = False, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = max(1, int(v * width))
            layers += [nn.Conv2d(cin, c, 3, padding=1)] + ([nn.BatchNorm2d(c)] if bn else []) + [nn.ReLU(inplace=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        h = max(1, int(512 * width))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(cin, h), nn.ReLU(True), nn.Dropout(dropout), nn.Linear(h, h), nn.ReLU(True),
            nn.Linear(h, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of inputs ``[N, ...]``."""
        return self.classifier(self.features(x).flatten(1))


class _PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != planes:
            self.shortcut = nn.Conv2d(cin, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + sc


class _PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != planes * 4:
            self.shortcut = nn.Conv2d(cin, planes * 4, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + sc


class PreResNet(nn.Module):
    """Preactivation ResNet for 32x32 images (He et al. 2016).

    Args:
        depth: As in the SWA authors' code: depth >= 44 uses bottleneck blocks and must be 9n+2
            (56, 110, 164: 6, 12, 18 blocks per stage); smaller depths use basic blocks, 6n+2 (20).
        num_classes: Number of classes.
        width: Channel multiplier on the base widths 16, 32, 64.
    """

    def __init__(self, depth: int = 110, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        if depth >= 44 and (depth - 2) % 9 == 0:
            block, n = _PreActBottleneck, (depth - 2) // 9
        elif depth < 44 and (depth - 2) % 6 == 0:
            block, n = _PreActBlock, (depth - 2) // 6
        else:
            raise UserError(f"PreResNet depth must be 6n+2 below 44 (e.g. 20) or 9n+2 from 44 (e.g. 56, 110, 164), got {depth}")
        widths = [max(1, int(16 * width)), max(1, int(32 * width)), max(1, int(64 * width))]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        cin = widths[0]
        stages = []
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of inputs ``[N, ...]``."""
        out = torch.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class _WideBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, planes, 3, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1, bias=True)
        self.shortcut = None
        if stride != 1 or cin != planes:
            self.shortcut = nn.Conv2d(cin, planes, 1, stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(torch.relu(self.bn1(x))))
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + (self.shortcut(x) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """Wide ResNet (Zagoruyko and Komodakis 2016) for 32x32 images.

    Args:
        depth: 6n+4 (28 for WRN-28-10).
        widen_factor: Width multiplier k on 16, 32, 64 channels (10 for WRN-28-10).
        num_classes: Number of classes.
        dropout: Dropout between the convolutions of a block.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise UserError(f"WideResNet depth must be 6n+4 (e.g. 28), got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
        cin, stages = 16, []
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(_WideBlock(cin, w, 2 if (i > 0 and j == 0) else 1, dropout))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` of inputs ``[N, ...]``."""
        out = torch.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda **kw: MLP(**kw),
    "mlp_bn": lambda **kw: MLP(**{"bn": True, **kw}),
    "convnet": lambda **kw: ConvNet1d(**{"bn": False, **kw}),
    "convnet_bn": lambda **kw: ConvNet1d(**{"bn": True, **kw}),
    "vgg16": lambda **kw: VGG(**{"bn": False, **kw}),
    "vgg16_bn": lambda **kw: VGG(**{"bn": True, **kw}),
    "preresnet": lambda **kw: PreResNet(**kw),
    "wrn28_10": lambda **kw: WideResNet(**{"depth": 28, "widen_factor": 10, **kw}),
}
"""Registry names and constructors; keyword arguments are passed through."""


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: One of :data:`MODELS`, or ``package.module:function`` (any importable constructor or factory
            returning an ``nn.Module``: the user's own module, or a library's model factory).
        **kwargs: Constructor arguments (e.g. ``num_classes``, ``width``, ``depth``).

    Raises:
        UserError: Unknown name, bad constructor arguments, or a factory that cannot be imported, raises or
            returns something else than a module.
    """
    if is_import_path(name):
        return check_model(call_factory(name, kwargs, "model factory"), f"model factory {name!r}")
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise UserError(f"bad arguments for model {name!r}: {e}") from None
