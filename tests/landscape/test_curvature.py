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


@pytest.mark.parametrize("seed,retain", [(0, False), (1, False), (2, True), (3, True)])
def test_products_eigenvalues_and_trace_match_the_dense_hessian(seed, retain):
    m, w, b, x, y = _tiny(seed)
    h = _dense(m, w, b, x, y)
    assert torch.allclose(h, h.T, atol=1e-12)
    # recomputed: 17 samples per pass (several data chunks); retained: one graph; 4 vectors per block
    op = HessianOperator(m, w, b, x, y, dtype=torch.float64, memory_budget=6 * 4 * 17 * 100, activation_bytes=100,
                         vectors=4, retain=retain)
    assert op.samples == 17 and op.retained == retain
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


@pytest.mark.parametrize("retain", [False, True])
def test_float32_products_agree_with_float64(retain):
    m, w, b, x, y = _tiny(2)
    op64 = HessianOperator(m, w, b, x, y, dtype=torch.float64, retain=retain)
    op32 = HessianOperator(m, w, b, x, y, dtype=torch.float32, retain=retain)
    v = torch.randn(3, w.numel(), dtype=torch.float64)
    torch.testing.assert_close(op32.matmat(v).double(), op64.matmat(v), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op32.matmat(v[:1]).double(), op64.matmat(v[:1]), rtol=1e-4, atol=1e-5)  # one vector
    assert op32.loss() == pytest.approx(op64.loss(), rel=1e-6)
    assert op64.calls == 4


def test_adaptive_trace_stops_at_its_tolerance_on_the_same_probes():
    """The adaptive estimate is the fixed one cut short: the same first probes, stopped once SE <= rtol |trace|."""
    m, w, b, x, y = _tiny(4)
    op = HessianOperator(m, w, b, x, y, dtype=torch.float64, vectors=5)
    full = hutchinson_trace(op, probes=200, seed=3)
    op.calls = 0
    rtol = 2 * full.standard_error / abs(full.trace)  # reachable well before 200 probes
    est = hutchinson_trace(op, probes=200, seed=3, rtol=rtol)
    n = len(est.samples)
    assert 10 <= n < 200 and n % 5 == 0 and op.calls == n  # whole blocks, stopped early
    # the same probes; a product may go batched or one at a time (the operator measures which is cheaper): rounding
    np.testing.assert_allclose(est.samples, full.samples[:n], rtol=1e-12)
    assert est.standard_error <= rtol * abs(est.trace)
    prev = est.samples[:n - 5]  # one block earlier the rule did not hold yet
    assert n == 10 or prev.std(ddof=1) / np.sqrt(len(prev)) > rtol * abs(prev.mean())
    assert len(hutchinson_trace(op, probes=30, seed=3, rtol=1e-9).samples) == 30  # the cap


def test_a_full_lanczos_basis_hands_over_to_arpack(monkeypatch):
    """Where the basis would pass its memory cap, ARPACK's restarted Lanczos finishes from the best Ritz vector."""
    import landscape.curvature as curvature

    m, w, b, x, y = _tiny(5)
    exact = torch.linalg.eigvalsh(_dense(m, w, b, x, y)).flip(0).numpy()
    monkeypatch.setattr(curvature, "_BASIS_BYTES", 1)  # a basis of 2k + 2 vectors only
    op = HessianOperator(m, w, b, x, y, dtype=torch.float64)
    vals, vecs = top_eigen(op, 3, tol=0.0, seed=1)
    np.testing.assert_allclose(vals, exact[:3], rtol=1e-6)
    assert op.calls > 8  # more than the capped basis: ARPACK went on


def test_hutch_plus_plus_is_exact_on_the_whole_space_and_reduces_the_variance():
    m, w, b, x, y = _tiny(6)
    h = _dense(m, w, b, x, y)
    exact = float(torch.trace(h))
    op = HessianOperator(m, w, b, x, y, dtype=torch.float64, vectors=8)
    full = hutchinson_trace(op, probes=4, seed=1, deflate=op.size)  # Q spans everything: the residual is 0
    assert full.trace == pytest.approx(exact, rel=1e-10) and full.standard_error < 1e-8 * abs(exact)
    plain = hutchinson_trace(op, probes=200, seed=2)
    deflated = hutchinson_trace(op, probes=200, seed=2, deflate=40)
    assert abs(deflated.trace - exact) < 3 * deflated.standard_error
    assert deflated.standard_error < plain.standard_error  # the dominant eigenspace's share is exact


class _DictLM(nn.Module):
    """A tiny language model fed ``model(input_ids=...)``: embeddings, LayerNorm, a tied output [N, L, V]."""

    def __init__(self, vocab: int = 9, d: int = 6):
        super().__init__()
        self.emb, self.mix, self.ln = nn.Embedding(vocab, d), nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, input_ids):
        h = self.emb(input_ids)
        return self.ln(h + torch.tanh(self.mix(h.cumsum(1)))) @ self.emb.weight.T


@pytest.mark.parametrize("task", ["regression", "language-model"])
@pytest.mark.parametrize("retain", [False, True])
def test_other_objectives_match_their_dense_hessian(task, retain):
    """The operator differentiates the objective's mean loss: MSE over [N, 3] targets with BN held fixed, and the
    token cross-entropy over padded sequences (a token-weighted mean, dict inputs), each against the dense float64
    Hessian of the loss written out here."""
    from landscape.objective import LanguageModel, Regression

    torch.manual_seed(11)
    if task == "regression":
        m, w, b, x, _ = _tiny(5)
        m[3] = nn.Linear(14, 3).double()
        w = flatten(list(m.parameters()), torch.float64) + 0.2 * torch.randn(param_layout(m).size, dtype=torch.float64)
        y = torch.randn(90, 3, dtype=torch.float64)
        objective, inputs = Regression(), x

        def mean_loss(out):
            return (out - y).square().mean(-1).mean()
    else:
        m = _DictLM().double().eval()
        w = flatten(list(m.parameters()), torch.float64) + 0.2 * torch.randn(param_layout(m).size, dtype=torch.float64)
        b = flatten(list(m.buffers()), torch.float64)
        tokens = torch.randint(0, 9, (30, 7))
        y = tokens.masked_fill(torch.arange(7) >= torch.randint(3, 8, (30, 1)), -100)  # padding
        objective, inputs = LanguageModel(), {"input_ids": tokens}

        def mean_loss(out):
            logits, target = out[:, :-1].reshape(-1, 9), y[:, 1:].reshape(-1)
            return nn.functional.cross_entropy(logits, target, ignore_index=-100)  # mean over scored tokens

    bufs = unflatten(b, buffer_layout(m))

    def loss(v):
        args = ((), inputs) if isinstance(inputs, dict) else ((inputs,), {})
        return mean_loss(functional_call(m, {**unflatten(v, param_layout(m)), **bufs}, *args))

    h = torch.autograd.functional.hessian(loss, w)
    op = HessianOperator(m, w, b, inputs, y, dtype=torch.float64, memory_budget=6 * 2 * 7 * 100, activation_bytes=100,
                         vectors=2, retain=retain, objective=objective)
    assert op.samples == 7 or retain  # several chunks when recomputed
    assert op.loss() == pytest.approx(float(loss(w)), rel=1e-12)
    v = torch.randn(5, w.numel(), dtype=torch.float64)
    torch.testing.assert_close(op.matmat(v), v @ h, rtol=1e-9, atol=1e-11)


def test_retained_products_choose_the_cheaper_way_and_agree_with_both(monkeypatch):
    """The first block of several vectors is measured both ways (one backward per vector, one batched backward);
    the choice is kept, and either way gives the dense Hessian's products."""
    m, w, b, x, y = _tiny(6)
    h = _dense(m, w, b, x, y)
    v = torch.randn(6, w.numel(), dtype=torch.float64)
    for forced in (True, False):
        op = HessianOperator(m, w, b, x, y, dtype=torch.float64, vectors=6, retain=True)
        assert op.batched is None
        torch.testing.assert_close(op.matmat(v), v @ h, rtol=1e-10, atol=1e-12)  # measured on these
        assert op.batched in (True, False)
        op.batched = forced
        torch.testing.assert_close(op.matmat(v), v @ h, rtol=1e-10, atol=1e-12)
