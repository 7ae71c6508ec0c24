import pytest
import torch

from landscape.errors import UserError
from swa.models import MODELS, build_model

SMALL = {
    "mlp": {}, "mlp_bn": {}, "convnet": {"width": 4}, "convnet_bn": {"width": 4},
    "vgg16": {"width": 0.0625}, "vgg16_bn": {"width": 0.0625}, "preresnet": {"depth": 20, "width": 0.25},
    "wrn28_10": {"widen_factor": 1},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registry_model_builds_and_runs(name):
    assert name in SMALL
    torch.manual_seed(0)
    m = build_model(name, num_classes=7, **SMALL[name]).eval()
    x = torch.randn(3, 40) if name.startswith(("mlp", "conv")) else torch.randn(3, 3, 32, 32)
    out = m(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    has_bn = any(isinstance(k, torch.nn.modules.batchnorm._BatchNorm) for k in m.modules())
    assert has_bn == (name.endswith("_bn") or name in ("preresnet", "wrn28_10"))


@pytest.mark.parametrize("depth,blocks", [(20, 9), (56, 18), (110, 36), (164, 54)])
def test_preresnet_depths(depth, blocks):
    m = build_model("preresnet", depth=depth, width=0.25)
    n = sum(1 for k in m.modules() if type(k).__name__ in ("_PreActBlock", "_PreActBottleneck"))
    assert n == blocks


def test_paper_sizes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # published sizes: PreAct ResNet-164 1.7M (He et al. 2016), WRN-28-10 36.5M (Zagoruyko and Komodakis 2016)
    assert 1.6e6 < count(build_model("preresnet", depth=164, num_classes=10)) < 1.8e6
    assert 36e6 < count(build_model("wrn28_10", num_classes=100)) < 37e6


def test_bad_model_arguments():
    for bad in (21, 50):
        with pytest.raises(UserError, match="9n\\+2 from 44"):
            build_model("preresnet", depth=bad)
    with pytest.raises(UserError, match="bad arguments"):
        build_model("mlp", colour="red")
