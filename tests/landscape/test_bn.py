import copy

import pytest
import torch
from torch import nn

from landscape.bn import recompute_bn


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double()


def _batches(seed, sizes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 6, generator=g, dtype=torch.float64) * 2 + 1 for b in sizes]


@pytest.mark.parametrize("sizes", [[16, 16, 16], [16, 16, 5], [3, 11, 7, 2]])
def test_batch_weighting_is_update_bn_and_mean_of_batch_stats(sizes):
    net, batches = _net(1), _batches(2, sizes)
    recompute_bn(net, batches, "batch")
    # written out: equal weight per batch of the per-batch mean / unbiased variance
    h = [net[0](b) for b in batches]
    torch.testing.assert_close(net[1].running_mean, torch.stack([a.mean(0) for a in h]).mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(net[1].running_var, torch.stack([a.var(0, unbiased=True) for a in h]).mean(0),
                               rtol=1e-12, atol=1e-14)
    assert net[1].num_batches_tracked.item() == len(sizes)


@pytest.mark.parametrize("sizes", [[16, 16, 5], [3, 11, 7, 2]])
def test_sample_weighting_formula(sizes):
    net, batches = _net(3), _batches(4, sizes)
    net.train(False)
    recompute_bn(net, batches, "sample")
    assert not net.training and net[1].momentum == 0.1  # mode and momentum restored
    h = [net[0](b) for b in batches]
    w = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
    torch.testing.assert_close(net[1].running_mean, (torch.stack([a.mean(0) for a in h]) * w[:, None]).sum(0),
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(net[1].running_var, (torch.stack([a.var(0) for a in h]) * w[:, None]).sum(0),
                               rtol=1e-12, atol=1e-14)
    # differs from the per-batch weighting when batch sizes differ
    ref = copy.deepcopy(net)
    recompute_bn(ref, batches, "batch")
    assert not torch.allclose(ref[1].running_mean, net[1].running_mean)


class _BNAfterReLU(nn.Module):
    """BN after a ReLU (conv -> relu -> bn): nothing to fold it into, so the drop-in's eval path runs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4))
        self.head = nn.Linear(4 * 40, 10)

    def forward(self, x):
        return self.head(self.body(self.conv(x)).flatten(1))


def test_unfolded_eval_path_equals_reference_and_the_folded_path():
    from landscape.config import EngineConfig
    from landscape.engine import Engine
    from landscape.grouped_bn import engine_copy
    from landscape.layout import flatten
    from landscape.points import PointSet
    from landscape.reference import reference_point

    torch.manual_seed(7)
    model = _BNAfterReLU().double()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(150, 1, 40, generator=g, dtype=torch.float64) * 1.3 + 0.2
    data = {"train": (x[:100], torch.randint(0, 10, (100,), generator=g)),
            "test": (x[100:], torch.randint(0, 10, (50,), generator=g))}
    w0 = flatten(list(model.parameters()), torch.float64)
    pts = w0 + 0.2 * torch.randn(3, w0.numel(), generator=g, dtype=torch.float64) * w0.abs().mean()
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=32, workers=1))
    assert "forward" not in vars(eng.model.body[1])  # not folded: its own forward runs
    res = eng.evaluate(PointSet.explicit(pts))
    for i in range(3):
        ref, buf = reference_point(model, pts[i], data, data["train"][0], 32)
        for split in data:
            assert res.loss[split][i].item() == pytest.approx(ref[split].loss, rel=1e-10)
        torch.testing.assert_close(res.buffers[i], buf, rtol=1e-10, atol=1e-12)
    # the folded and unfolded eval paths of a conv -> BN network agree
    conv_bn = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                            nn.Linear(160, 10)).double()
    conv_bn[1].running_mean.uniform_(-1, 1)
    conv_bn[1].running_var.uniform_(0.5, 2)
    folded, plain = (engine_copy(conv_bn, torch.float64, torch.device("cpu"), fold=f) for f in (True, False))
    assert "forward" in vars(folded.model[1]) and "forward" not in vars(plain.model[1])
    with torch.no_grad():
        torch.testing.assert_close(folded.model(x), plain.model(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(plain.model(x), conv_bn.eval()(x), rtol=1e-12, atol=1e-12)
