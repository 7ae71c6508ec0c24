import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

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
    ref = copy.deepcopy(net)
    update_bn(batches, ref)
    recompute_bn(net, batches, "batch")
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean, rtol=0, atol=0)
    # written out: equal weight per batch of the per-batch mean / unbiased variance
    h = [net[0](b) for b in batches]
    torch.testing.assert_close(net[1].running_mean, torch.stack([a.mean(0) for a in h]).mean(0))
    torch.testing.assert_close(net[1].running_var, torch.stack([a.var(0, unbiased=True) for a in h]).mean(0))


@pytest.mark.parametrize("sizes", [[16, 16, 5], [3, 11, 7, 2]])
def test_sample_weighting_formula(sizes):
    net, batches = _net(3), _batches(4, sizes)
    net.train(False)
    recompute_bn(net, batches, "sample")
    assert not net.training and net[1].momentum == 0.1  # mode and momentum restored
    h = [net[0](b) for b in batches]
    w = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
    torch.testing.assert_close(net[1].running_mean, (torch.stack([a.mean(0) for a in h]) * w[:, None]).sum(0))
    torch.testing.assert_close(net[1].running_var, (torch.stack([a.var(0) for a in h]) * w[:, None]).sum(0))
    # differs from the per-batch weighting when batch sizes differ
    ref = copy.deepcopy(net)
    recompute_bn(ref, batches, "batch")
    assert not torch.allclose(ref[1].running_mean, net[1].running_mean)
