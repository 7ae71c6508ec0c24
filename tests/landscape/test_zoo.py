"""The engine on networks no one here wrote (:mod:`tests.landscape.zoo`) against a plain reference written out here.

The reference is what a careful user would write: copy the point into the network, reset every BN layer's
statistics, run train-mode BN passes over batches of ``BN_BATCH`` with everything else in eval mode (momentum
None: the cumulative average), then evaluate in eval mode. Every entry is checked for the loop and for vmap, in
float32 (1e-5) and float64 (1e-10), or its refusal is asserted.
"""

import copy
import warnings
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.errors import UserError
from landscape.guard import Paths
from landscape.layout import buffer_layout, flatten
from landscape.points import PointSet
from tests.landscape.zoo import CLASSES, ZOO, MobileNetSE, at_point_with_bn, data_for

BN_BATCH = 16
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def plain_reference(model: nn.Module, w: torch.Tensor, data: dict) -> tuple[dict[str, float], torch.Tensor]:
    """Loss per split and flat buffers at flat weights ``w``, the obvious way (see the module docstring)."""
    x = data["train"][0]
    m = at_point_with_bn(model, w, (x[i:i + BN_BATCH] for i in range(0, x.shape[0], BN_BATCH)))
    with torch.no_grad():
        loss = {s: F.cross_entropy(m(xs).double(), ys).item() for s, (xs, ys) in data.items()}
    return loss, flatten(list(m.buffers()), torch.float64)


def _plane(model: nn.Module, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Four points of a small random plane through the network's weights ``[4, P]``."""
    w0 = flatten(list(model.parameters()), torch.float64)
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(2, w0.numel(), generator=g, dtype=torch.float64) * 0.1 * w0.abs().mean()
    coords = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.7, 1.2], [0.4, -1.5]], dtype=torch.float64)
    return (w0 + coords @ basis).to(dtype)


def _setup(entry, dtype, seed):
    torch.manual_seed(seed)
    model = entry.build().to(dtype)
    with torch.no_grad():  # non-default statistics and affine parameters, so that nothing matches by accident
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
    return model, data_for(entry, seed + 1, dtype), _plane(model, dtype, seed + 2)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("entry", ZOO, ids=[e.name for e in ZOO])
def test_zoo_matches_the_plain_reference_or_is_refused(entry, dtype, strategy):
    model, data, pts = _setup(entry, dtype, seed=zlib.crc32(entry.name.encode()) % 1000)
    cfg = EngineConfig(dtype=str(dtype).removeprefix("torch."), strategy=strategy, bn_batch_size=BN_BATCH,
                       superbatch=2 * BN_BATCH, workers=1)
    if entry.refusal:
        with pytest.raises(UserError, match=entry.refusal):
            Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
        return
    eng = Engine(model, data, config=cfg)
    res = eng.evaluate(PointSet.explicit(pts))
    assert res.strategy == strategy
    tol = TOL[dtype]
    for i in range(len(pts)):
        ref_loss, ref_buf = plain_reference(model, pts[i], data)
        for split in data:
            torch.testing.assert_close(res.loss[split][i].item(), ref_loss[split], rtol=tol, atol=0)
        torch.testing.assert_close(res.buffers[i].double(), ref_buf, rtol=tol, atol=tol)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn:
        assert (eng.guard_report.culprit is not None) == entry.guard_needed, str(eng.guard_report)


@pytest.mark.parametrize("entry", [e for e in ZOO if e.guard_needed], ids=lambda e: e.name)
def test_without_the_guard_these_networks_would_be_wrong(entry):
    """The guard is what makes them exact: with it turned off, the fast path differs from the reference."""
    model, data, pts = _setup(entry, torch.float64, seed=5)
    cfg = EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH, guard=False)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
    ref_loss, _ = plain_reference(model, pts[1], data)
    assert abs(res.loss["train"][1].item() - ref_loss["train"]) > 1e-5 * abs(ref_loss["train"])  # exact: 1e-10


def test_guard_names_the_layer_and_the_fallback_in_one_notice():
    entry = next(e for e in ZOO if e.name == "manual_bn")
    model, data, pts = _setup(entry, torch.float64, seed=6)
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH))
    with pytest.warns(UserWarning, match=r"BatchNorm layer '1' differs .* using exact BN statistics"):
        eng.evaluate(PointSet.explicit(pts))
    assert "'1'" in str(eng.guard_report) and "exact BN statistics" in str(eng.guard_report)
    assert "guard:" in str(eng.explain())


def test_shared_bn_with_per_sample_weighting_is_refused():
    entry = next(e for e in ZOO if e.name == "shared_bn")
    model, data, pts = _setup(entry, torch.float64, seed=7)
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, bn_weighting="sample",
                                                  guard=False))
    with pytest.raises(UserError, match="called several times per forward"):
        eng.evaluate(PointSet.explicit(pts))


def test_folding_only_for_plain_pytorch_pairs():
    from landscape.grouped_bn import engine_copy

    class MyConv(nn.Conv2d):
        pass

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), MyConv(4, 4, 3), nn.BatchNorm2d(4),
                        nn.Conv2d(4, 4, 3), nn.SyncBatchNorm(4), nn.Linear(2, 4), nn.BatchNorm1d(4))
    rep = engine_copy(net, torch.float32, torch.device("cpu"))
    folded = [i for i, m in enumerate(rep.model) if "forward" in vars(m)]
    assert folded == [0, 1, 6, 7]
    # a linear layer before BN1d folds only for 2-D inputs; on [N, 4, 2] the BN's channels are not its features
    lin = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)).double().eval()
    lin[1].running_mean.uniform_(-1, 1)
    x = torch.randn(5, 4, 2, dtype=torch.float64)
    rep = engine_copy(lin, torch.float64, torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(rep.model(x), lin(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rep.model(x[:, 0]), lin(x[:, 0]), rtol=1e-12, atol=1e-12)


def test_guard_cost_is_one_reference_point_and_it_can_be_turned_off():
    entry = next(e for e in ZOO if e.name == "residual")
    model, data, pts = _setup(entry, torch.float64, seed=8)
    on = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH))
    off = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, guard=False))
    a, b = on.evaluate(PointSet.explicit(pts)), off.evaluate(PointSet.explicit(pts))
    torch.testing.assert_close(a.loss["test"], b.loss["test"], rtol=0, atol=0)
    assert on.guard_report.culprit is None and on.guard_report.seconds > 0 and off.guard_report is None
    on.evaluate(PointSet.explicit(pts[:1]))  # once per engine
    assert on.guard_report is not None


def test_the_guard_checks_a_finite_point_when_the_first_is_not():
    """A first point whose output is not finite (here weights of 1e300 that overflow; in the segment, extrapolated
    BN variances below 0) tells the guard nothing: it checks point K/2 instead, still finds the layer the fast path gets wrong, and
    every finite point matches the reference. With no finite point at all, nothing is checked (and nothing
    refused) and the next evaluation checks again."""
    entry = next(e for e in ZOO if e.name == "manual_bn")
    model, data, pts = _setup(entry, torch.float64, seed=9)
    pts = pts.clone()
    pts[0] = 1e300
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH))
    with pytest.warns(UserWarning, match="using exact BN statistics"):
        res = eng.evaluate(PointSet.explicit(pts))
    assert eng.guard_report.culprit is not None and eng.guard_report.max_difference <= 1e-9
    assert not torch.isfinite(res.loss["train"][0])
    for i in range(1, len(pts)):
        ref_loss, _ = plain_reference(model, pts[i], data)
        torch.testing.assert_close(res.loss["train"][i].item(), ref_loss["train"], rtol=1e-9, atol=0)
    fresh = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH))
    fresh.evaluate(PointSet.explicit(torch.full_like(pts[:2], 1e300)))
    assert fresh.guard_report is None
    with pytest.warns(UserWarning, match="using exact BN statistics"):
        fresh.evaluate(PointSet.explicit(pts[1:]))
    assert fresh.guard_report is not None


def _old_rule(model: nn.Module, buffers: torch.Tensor, ref: torch.Tensor) -> float:
    """The guard's former comparison: each BN statistic relative to its own largest value."""
    layout, worst, at = buffer_layout(model), 0.0, 0
    for name, n in zip(layout.names, layout.numels):
        if name.endswith(("running_mean", "running_var")):
            a, e = buffers[at:at + n].double(), ref[at:at + n].double()
            worst = max(worst, float((a - e).abs().max() / e.abs().max().clamp(min=1e-12)))
        at += n
    return worst


def test_the_guard_stays_silent_on_rounding_in_a_deep_depthwise_network():
    """MobileNetV3-Small's structure at torchvision's initialisation (BN weight 1, bias 0), 256 images 3x32x32, float32:
    bias-free 1x1 convolutions of normalised inputs have means that are zero but for rounding, which differed by
    100% between the paths under the former rule (relative to the mean itself) and made the guard switch to exact
    paths for nothing. Relative to each channel's spread, both paths agree to rounding: the guard keeps the fast
    path and says nothing, and the numbers match the reference."""
    torch.manual_seed(0)
    model = MobileNetSE()
    g = torch.Generator().manual_seed(1)
    data = {"train": (torch.randn(256, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (256,), generator=g)),
            "test": (torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (64,), generator=g))}
    w = flatten(list(model.parameters()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a notice would be an error here
        eng = Engine(model, data, config=EngineConfig(bn_batch_size=BN_BATCH))
        res = eng.evaluate(PointSet.explicit(w[None]))
    report = eng.guard_report
    assert report.culprit is None and report.paths == Paths() and report.max_difference < 1e-5, str(report)
    ref_loss, ref_buf = plain_reference(copy.deepcopy(model).double(), w.double(),
                                        {k: (x.double(), y) for k, (x, y) in data.items()})
    for split in data:
        torch.testing.assert_close(res.loss[split][0].item(), ref_loss[split], rtol=1e-5, atol=0)
    assert _old_rule(model, res.buffers[0], ref_buf) > 1e-4  # what made the former guard cry wolf


def test_a_float32_difference_that_vanishes_in_float64_is_rounding(monkeypatch):
    """With a float32 tolerance too tight for rounding, the guard checks the point again with both paths in float64:
    the difference vanishes there, so the fast path is kept and the report says why; a network the fast path gets
    wrong still switches (its difference stays in float64)."""
    import landscape.guard as guard

    real = guard.tolerance
    monkeypatch.setattr(guard, "tolerance", lambda dtype: 1e-12 if dtype == torch.float32 else real(dtype))
    entry = next(e for e in ZOO if e.name == "residual")
    model, data, pts = _setup(entry, torch.float32, seed=3)
    eng = Engine(model, data, config=EngineConfig(bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH))
    eng.evaluate(PointSet.explicit(pts))
    report = eng.guard_report
    assert report.culprit is None and report.rounding > 1e-12 and report.max_difference <= 1e-9
    assert "vanished in float64 (rounding)" in str(report)
    entry = next(e for e in ZOO if e.name == "manual_bn")
    model, data, pts = _setup(entry, torch.float32, seed=3)
    eng = Engine(model, data, config=EngineConfig(bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH))
    with pytest.warns(UserWarning, match="exact BN statistics"):
        eng.evaluate(PointSet.explicit(pts))
    assert eng.guard_report.culprit is not None and eng.guard_report.paths.exact_bn
