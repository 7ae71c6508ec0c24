"""Lower precision, opt-in (``EngineConfig(autocast="bfloat16")``): against a plain loop under ``torch.autocast`` with
BN statistics recomputed in float32, the deviation check before the first evaluation, and the refusals."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn
from torch._dynamo.backends.registry import register_backend

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.errors import UserError
from landscape.layout import flatten, param_layout, unflatten
from landscape.points import PointSet

BN_BATCH = 32


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1),
                         nn.BatchNorm1d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 24, 6))


def _data():
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(128, 1, 24, generator=g) * 1.3 + 0.2, torch.randn(64, 1, 24, generator=g)
    return {"train": (x, torch.randint(0, 6, (128,), generator=g)), "test": (xt, torch.randint(0, 6, (64,), generator=g))}


def _points(model: nn.Module, k: int) -> torch.Tensor:
    w = flatten(list(model.parameters()))
    g = torch.Generator().manual_seed(2)
    return w + 0.1 * w.norm() / w.numel() ** 0.5 * torch.randn(k, w.numel(), generator=g)


def plain_autocast(model: nn.Module, w: torch.Tensor, data: dict) -> dict[str, tuple[float, float]]:
    """Copy the point in, recompute BN in float32 (train-mode BN, momentum None), then evaluate each split in one
    forward under ``torch.autocast("cpu", bfloat16)``: cross-entropy and error of the logits read back in float32."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in unflatten(w, param_layout(m)).items():
            m.get_parameter(name).copy_(t)
        m.eval()
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm1d)):
            bn.reset_running_stats()
            bn.momentum, bn.training = None, True
        x = data["train"][0]
        for i in range(0, len(x), BN_BATCH):
            m(x[i:i + BN_BATCH])
        m.eval()
        out = {}
        for split, (xs, ys) in data.items():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = m(xs)
            logits = logits.float()
            out[split] = (F.cross_entropy(logits.double(), ys).item(), (logits.argmax(-1) != ys).double().mean().item())
    return out


def test_bfloat16_matches_a_plain_autocast_loop_and_reports_its_deviation_from_float32():
    model, data = _net(), _data()
    pts = _points(model, 4)
    cfg = dict(bn_batch_size=BN_BATCH, strategy="loop", superbatch=4096)
    low = Engine(model, data, config=EngineConfig(autocast="bfloat16", **cfg))
    res = low.evaluate(PointSet.explicit(pts))
    full = Engine(model, data, config=EngineConfig(**cfg)).evaluate(PointSet.explicit(pts))
    for i in range(len(pts)):
        ref = plain_autocast(model, pts[i], data)
        for split, (loss, err) in ref.items():
            torch.testing.assert_close(res.loss[split][i].item(), loss, rtol=1e-5, atol=1e-6)
            assert res.error(split)[i].item() == pytest.approx(err, abs=1e-12)
    report = low.precision_report
    dev = max(abs(res.loss[s][0] - full.loss[s][0]).item() / full.loss[s][0].item() for s in data)
    assert report.loss_deviation == pytest.approx(dev, rel=1e-3) and 0 < report.loss_deviation < 0.05
    assert report.dtype == "bfloat16" and "autocast bfloat16" in str(low.explain())
    batched = Engine(model, data, config=EngineConfig(autocast="bfloat16", **{**cfg, "strategy": "vmap"}))
    res_v = batched.evaluate(PointSet.explicit(pts))  # vmap's batched kernels round differently in bfloat16
    torch.testing.assert_close(res_v.loss["test"], res.loss["test"], rtol=2e-2, atol=0)


def test_a_deviation_above_the_tolerance_is_one_notice():
    model, data = _net(), _data()
    eng = Engine(model, data, config=EngineConfig(autocast="bfloat16", autocast_tolerance=1e-9, bn_batch_size=BN_BATCH))
    with pytest.warns(UserWarning, match=r"autocast bfloat16: one point deviated from float32 by .* above the "
                                         r"tolerance 1e-09"):
        eng.evaluate(PointSet.explicit(_points(model, 2)))
    quiet = Engine(model, data, config=EngineConfig(autocast="bfloat16", autocast_tolerance=0.5, bn_batch_size=BN_BATCH))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.evaluate(PointSet.explicit(_points(model, 2)))
    assert quiet.precision_report.within


def test_refusals():
    model, data = _net(), _data()
    with pytest.raises(UserError, match="autocast float16 needs a GPU"):
        Engine(model, data, config=EngineConfig(autocast="float16", device="cpu"))
    with pytest.raises(UserError, match="autocast bfloat16 lowers float32 evaluations; dtype is float64"):
        EngineConfig(autocast="bfloat16", dtype="float64")


def test_a_compiled_pass_is_checked_on_two_points_and_matches_eager():
    """``compile`` with a tracing backend (``aot_eager``: the graph torch.compile captures, run without code
    generation, so the test stays fast): the check compares two points, the compiled pass gives the eager numbers at
    every point, and a backend that computes something else is caught and left unused."""
    model, data = _net(), _data()
    pts = _points(model, 5)
    cfg = dict(bn_batch_size=BN_BATCH, strategy="loop", dtype="float64")
    model = model.double()
    data = {s: (x.double(), y) for s, (x, y) in data.items()}
    pts = pts.double()
    eng = Engine(model, data, config=EngineConfig(compile="aot_eager", **cfg))
    res = eng.evaluate(PointSet.explicit(pts))
    eager = Engine(model, data, config=EngineConfig(**cfg)).evaluate(PointSet.explicit(pts))
    assert eng.compile_report.used and eng.compile_report.points == 2 and "compile aot_eager" in str(eng.explain())
    for s in data:
        torch.testing.assert_close(res.loss[s], eager.loss[s], rtol=1e-9, atol=0)

    def frozen(gm, example_inputs):  # a "backend" that freezes the first point's output: wrong from the second on
        first = {}

        def run(*args):
            key = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            if key not in first:
                first[key] = gm(*args)
            return first[key]

        return run

    torch._dynamo.reset()
    register_backend(name="frozen_for_test")(frozen)
    bad = Engine(model, data, config=EngineConfig(compile="frozen_for_test", **cfg))
    with pytest.warns(UserWarning, match="it differs: eager kept"):
        res = bad.evaluate(PointSet.explicit(pts))
    assert not bad.compile_report.used
    for s in data:
        torch.testing.assert_close(res.loss[s], eager.loss[s], rtol=1e-9, atol=0)
