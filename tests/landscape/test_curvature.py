"""Hessian-vector products, eigenvalues and trace against the dense float64 Hessian of a tiny model."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.curvature import HessianOperator, hutchinson_trace, top_eigen
from landscape.layout import buffer_layout, flatten, param_layout, unflatten


def _tiny(seed: int):
    """A BN network of 301 parameters in eval mode with random statistics, and random data."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(12, 14), nn.BatchNorm1d(14), nn.Tanh(), nn.Linear(14, 7)).double()
    m[1].running_mean.normal_()
    m[1].running_var.uniform_(0.5, 2.0)
    x, y = torch.randn(90, 12, dtype=torch.float64), torch.randint(0, 7, (90,))
    w = flatten(list(m.parameters()), torch.float64) + 0.3 * torch.randn(param_layout(m).size, dtype=torch.float64)
    return m.eval(), w, flatten(list(m.buffers()), torch.float64), x, y


def _dense(m, w, b, x, y) -> torch.Tensor:
    """The Hessian [P, P] of the mean cross-entropy, by torch.autograd.functional.hessian in float64."""
    bufs = unflatten(b, buffer_layout(m))

    def loss(v):
        return nn.functional.cross_entropy(functional_call(m, {**unflatten(v, param_layout(m)), **bufs}, (x,)), y)

    return torch.autograd.functional.hessian(loss, w)


@pytest.mark.parametrize("seed", [0, 1])
def test_products_eigenvalues_and_trace_match_the_dense_hessian(seed):
    m, w, b, x, y = _tiny(seed)
    h = _dense(m, w, b, x, y)
    assert torch.allclose(h, h.T, atol=1e-12)
    # 17 samples per pass (several data chunks), 4 vectors per vmapped block
    op = HessianOperator(m, w, b, x, y, dtype=torch.float64, memory_budget=6 * 4 * 17 * 100, activation_bytes=100,
                         vectors=4)
    assert op.samples == 17
    v = torch.randn(9, w.numel(), dtype=torch.float64)
    torch.testing.assert_close(op.matmat(v), v @ h, rtol=1e-10, atol=1e-12)
    exact = torch.linalg.eigvalsh(h).flip(0).numpy()
    vals, vecs = top_eigen(op, 5, tol=0.0, seed=seed)
    np.testing.assert_allclose(vals, exact[:5], rtol=1e-6)
    hv = vecs @ h.numpy()
    np.testing.assert_allclose(hv, vals[:, None] * vecs, atol=1e-6 * abs(vals[0]))  # they are eigenvectors
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-10)
    est = hutchinson_trace(op, probes=200, seed=seed)
    tr = float(torch.trace(h))
    assert abs(est.trace - tr) < 3 * est.standard_error
    s = est.samples
    assert est.standard_error == pytest.approx(s.std(ddof=1) / np.sqrt(len(s)), rel=1e-12)


def test_float32_products_agree_with_float64():
    m, w, b, x, y = _tiny(2)
    op64 = HessianOperator(m, w, b, x, y, dtype=torch.float64)
    op32 = HessianOperator(m, w, b, x, y, dtype=torch.float32)
    v = torch.randn(3, w.numel(), dtype=torch.float64)
    torch.testing.assert_close(op32.matmat(v).double(), op64.matmat(v), rtol=1e-4, atol=1e-5)
    assert op32.loss() == pytest.approx(op64.loss(), rel=1e-6)
    assert op64.calls == 3
