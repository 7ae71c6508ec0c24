"""The spectral density, the most negative eigenvalue and the blocks against the dense float64 Hessian."""

import numpy as np
import pytest
import torch

from landscape.curvature import HessianOperator, hutchinson_trace, top_eigen
from landscape.spectrum import Block, bottom_eigen, lanczos, spectral_density
from tests.landscape.test_curvature import _dense, _tiny


@pytest.fixture(scope="module")
def setting():
    m, w, b, x, y = _tiny(7)
    return HessianOperator(m, w, b, x, y, dtype=torch.float64, vectors=8), _dense(m, w, b, x, y)


def test_quadrature_moments_nodes_and_the_density(setting):
    op, h = setting
    eig = torch.linalg.eigvalsh(h).numpy()
    full = spectral_density(op, runs=1, steps=op.size, seed=3)
    z = np.random.default_rng(3).integers(0, 2, op.size) * 2.0 - 1.0  # the run's start vector, as drawn there
    v = torch.as_tensor(z / np.linalg.norm(z))
    for k in range(5):  # with P steps the quadrature is exact: sum_i tau_i theta_i^k = v^T H^k v
        exact = float(v @ torch.linalg.matrix_power(h, k) @ v)
        assert full.moment(k) == pytest.approx(exact, rel=1e-7, abs=1e-9 * float(eig.max()) ** k)
    short = spectral_density(op, runs=4, steps=20, seed=1)
    nodes = short.nodes[np.isfinite(short.nodes)]
    assert nodes.min() >= eig.min() - 1e-8 * abs(eig).max() and nodes.max() <= eig.max() * (1 + 1e-8)
    np.testing.assert_allclose(short.weights.sum(1), 1.0, rtol=1e-12)
    assert np.trapezoid(short.density, short.grid) == pytest.approx(1.0, abs=5e-3)
    # 20 steps are exact for degree < 40: the first moment of each run is z^T H z / P for its start vector
    rng = np.random.default_rng(1)
    zs = [rng.integers(0, 2, op.size) * 2.0 - 1.0 for _ in range(4)]
    want = np.mean([float(torch.as_tensor(z) @ h @ torch.as_tensor(z)) / op.size for z in zs])
    assert short.moment(1) == pytest.approx(want, rel=1e-9)
    assert abs(short.moment(1) - float(torch.trace(h)) / op.size) < 0.5 * abs(eig).max()  # near tr/P, not exactly
    a, bt = lanczos(op, 5, zs[0])
    assert len(a) == 5 and len(bt) == 4 and (bt > 0).all()


def test_the_most_negative_eigenvalue(setting):
    op, h = setting
    eig = torch.linalg.eigvalsh(h).numpy()
    assert eig.min() < 0 < eig.max()  # the tiny network's Hessian is indefinite here: a real test
    val, vec = bottom_eigen(op, tol=0.0, seed=2)
    assert val == pytest.approx(eig.min(), rel=1e-6)
    np.testing.assert_allclose(h.numpy() @ vec, val * vec, atol=1e-6 * abs(eig).max())


def test_a_block_is_the_dense_hessians_block(setting):
    op, h = setting
    lo, hi = 12 * 14, 12 * 14 + 14  # the first layer's bias
    blk = Block(op, lo, hi)
    sub = h[lo:hi, lo:hi]
    v = torch.randn(3, hi - lo, dtype=torch.float64)
    torch.testing.assert_close(blk.matmat(v), v @ sub, rtol=1e-10, atol=1e-12)
    vals, _ = top_eigen(blk, 2, tol=0.0)
    np.testing.assert_allclose(vals, torch.linalg.eigvalsh(sub).flip(0)[:2].numpy(), rtol=1e-6)
    est = hutchinson_trace(blk, probes=4, deflate=hi - lo - 1)  # nearly all of the block exactly
    assert est.trace == pytest.approx(float(torch.trace(sub)), rel=1e-3)
