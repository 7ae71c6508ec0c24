"""Sharpness against formulas written out here: an explicit loop, closed forms, and the rescaling it ignores."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.layout import flatten, param_layout, unflatten
from landscape.sharpness import average_case, perturbation_points, scales, worst_case


def _relu_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).double()


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(120, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (120,), generator=g)


def _loss_fn(net: nn.Module, x, y):
    layout = param_layout(net)
    return lambda w: nn.functional.cross_entropy(functional_call(net, unflatten(w, layout), (x,)), y)


def _rescaled(net: nn.Module, a: float) -> nn.Module:
    """The same function: W1 -> a W1, b1 -> a b1, W2 -> W2 / a (ReLU is positively homogeneous)."""
    twin = _relu_net(0)
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        twin[0].weight.mul_(a)
        twin[0].bias.mul_(a)
        twin[2].weight.div_(a)
    return twin


def test_average_case_through_the_engine_equals_an_explicit_loop():
    net, (x, y) = _relu_net(1), _data(2)
    w = flatten(list(net.parameters()), torch.float64)
    mask = torch.ones(w.numel(), dtype=torch.bool)
    mask[:8] = False  # some weights unperturbed
    rhos = np.array([0.05, 0.2])
    loss = _loss_fn(net, x, y)
    for adaptive in (True, False):
        s = scales(w, mask, adaptive)
        pts = perturbation_points(w, s, rhos, 6, seed=3)
        res = Engine(net, {"train": (x, y)}, config=EngineConfig(dtype="float64")).evaluate(pts)
        got = average_case(res.loss["train"].numpy(), float(loss(w)), rhos)
        z = torch.randn(6, w.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        for r, rho in enumerate(rhos):  # the definition, one perturbation at a time
            inc = [float(loss(w + rho * s * z[k])) - float(loss(w)) for k in range(6)]
            np.testing.assert_allclose(got.increases[r], inc, rtol=1e-10, atol=1e-12)
            assert got.mean[r] == pytest.approx(np.mean(inc), rel=1e-10)
            assert got.standard_error[r] == pytest.approx(np.std(inc, ddof=1) / math.sqrt(6), rel=1e-8)
        assert (pts.chunk(0, len(pts), dtype=torch.float64)[:, :8] == w[:8]).all()
    rms = math.sqrt(float((w[8:] ** 2).mean()))
    torch.testing.assert_close(scales(w, mask, False)[8:], torch.full((w.numel() - 8,), rms, dtype=torch.float64))


def test_worst_case_l2_on_a_quadratic_equals_half_rho_squared_lambda_max():
    """At the minimum of L(v) = 0.5 (v - c)^T A (v - c), max over ||delta||_2 <= rho of L(c + D delta) - L(c) is
    0.5 rho^2 lambda_max(D A D), D = diag(scale)."""
    g = torch.Generator().manual_seed(4)
    p = 12
    q = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.linspace(0.1, 3.0, p, dtype=torch.float64)) @ q.T
    c = torch.randn(p, generator=g, dtype=torch.float64)
    scale = c.abs()

    def loss(v):
        return 0.5 * (v - c) @ a @ (v - c)

    dad = scale[:, None] * a * scale[None, :]
    exact = 0.5 * 0.3 ** 2 * float(torch.linalg.eigvalsh(dad)[-1])
    got = worst_case(loss, c, scale, 0.3, 2.0, steps=300, step_size=0.05)
    assert got.increase == pytest.approx(exact, rel=1e-6)
    assert float(got.delta.norm()) == pytest.approx(0.3, rel=1e-9)


def test_worst_case_linf_on_a_linear_loss_equals_rho_times_the_l1_norm():
    g = torch.Generator().manual_seed(5)
    gvec, w = torch.randn(20, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
    scale = w.abs()
    got = worst_case(lambda v: gvec @ v, w, scale, 0.1, math.inf, steps=20)
    assert got.increase == pytest.approx(0.1 * float((scale * gvec).abs().sum()), rel=1e-12)
    assert got.trace[0] < got.increase and float(got.delta.abs().max()) <= 0.1 + 1e-15


def test_adaptive_sharpness_ignores_layer_rescaling_and_raw_sharpness_does_not():
    net, (x, y) = _relu_net(6), _data(7)
    twin = _rescaled(net, 4.0)
    torch.testing.assert_close(twin(x), net(x), rtol=1e-12, atol=1e-12)  # the same function
    w, w2 = (flatten(list(m.parameters()), torch.float64) for m in (net, twin))
    mask = torch.ones(w.numel(), dtype=torch.bool)
    rhos = np.array([0.1, 0.3])
    avg = {}
    for name, m, v in (("net", net, w), ("twin", twin, w2)):
        eng = Engine(m, {"train": (x, y)}, config=EngineConfig(dtype="float64"))
        base = float(_loss_fn(m, x, y)(v))
        for adaptive in (True, False):
            res = eng.evaluate(perturbation_points(v, scales(v, mask, adaptive), rhos, 8, seed=9))
            avg[name, adaptive] = average_case(res.loss["train"].numpy(), base, rhos).increases
    np.testing.assert_allclose(avg["twin", True], avg["net", True], rtol=1e-9, atol=1e-12)  # same seeds: exact
    assert np.max(np.abs(avg["twin", False] - avg["net", False])) > 10 * np.max(np.abs(avg["net", False])) * 1e-3
    for p, rho in ((math.inf, 0.05), (2.0, 0.05 * math.sqrt(w.numel()))):
        worst = {(n, ad): worst_case(_loss_fn(m, x, y), v, scales(v, mask, ad), rho, p, steps=20).increase
                 for n, m, v in (("net", net, w), ("twin", twin, w2)) for ad in (True, False)}
        assert worst["twin", True] == pytest.approx(worst["net", True], rel=1e-8)
        assert abs(worst["twin", False] - worst["net", False]) > 1e-3 * abs(worst["net", False])
