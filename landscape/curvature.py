"""Hessian of the mean training loss at one weight point: batched Hessian-vector products and what they give.

The loss is the objective's mean loss (cross-entropy for classification) over a data split with the network in eval mode, its BatchNorm
layers using fixed statistics (the point's own, recomputed by the engine), so it is a smooth function
of the weights ``w [P]``. Hessian-vector products come two ways:

* **retained** (when the gradient's graph over the whole split fits the memory budget): the gradient is
  computed once with its graph kept (``create_graph=True``), and every product is one backward pass through it
  (``autograd.grad`` with the vectors as ``grad_outputs``, batched over vectors with ``is_grads_batched``);
* **recomputed** (larger data): ``torch.func`` forward-over-reverse (``jvp(grad(L))``), vmapped over several
  vectors at once and summed over chunks of the data sized under the budget.

On them:

* :func:`top_eigen`: the largest eigenvalues and their eigenvectors, by Lanczos with full reorthogonalisation,
  stopped when the wanted Ritz pairs have converged (ARPACK's restarted Lanczos for very large networks);
* :func:`hutchinson_trace`: tr(H) = E[z^T H z] over Rademacher vectors z, with its standard error; stopped
  once the standard error falls below a relative tolerance, or after a fixed number of probes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp, vmap

from .layout import Layout, buffer_layout, param_layout, unflatten
from .memory import batch_to, place
from .objective import Classification, Objective
from .structure import batch_size as n_samples
from .structure import call_functional, map_tensors, read_output

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

__all__ = ["HessianOperator", "scipy_operator", "top_eigen", "hutchinson_trace", "TraceEstimate"]

_FACTOR = 6  # activations of forward-over-reverse per sample and vector, in forward footprints
_GRAPH_FACTOR = 4  # a retained gradient graph per sample, in forward footprints (forward + backward saved tensors)


class HessianOperator:
    """The Hessian ``[P, P]`` of the objective's mean loss on ``(x, y)`` at ``w``, applied to vectors.

    Args:
        model: Template network (copied; not modified).
        w: Flat weights ``[P]``.
        buffers: Flat buffers ``[Q]`` (the BN statistics the loss uses; eval mode).
        x: Inputs ``[N, ...]`` (or a tuple or dict of them); y: targets ``[N, ...]``.
        device, dtype: Where and in which precision the products are computed.
        memory_budget: Bytes for the activations of one pass; sets the samples per pass.
        activation_bytes: Forward activation footprint per sample (the engine's ``act_bytes``).
        vectors: Vectors pushed at once by :meth:`matmat` (vmapped).
        retain: Keep the gradient's graph and backpropagate through it for every product (None: when it fits
            ``memory_budget``).
        objective: Whose loss (:meth:`~landscape.objective.Objective.summed_loss`; default: classification).

    Attributes:
        calls: Hessian-vector products computed so far (one per vector).
        batched: Whether retained products are pushed as a block (``is_grads_batched``) or one at a time: measured
            on the first block of two or more (None until then).
        retained: Whether products go through the retained graph.
    """

    def __init__(self, model: nn.Module, w: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 memory_budget: int = 2 << 30, activation_bytes: int = 1 << 12, vectors: int = 8,
                 retain: bool | None = None, objective: Objective | None = None):
        self.model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        self.layout: Layout = param_layout(self.model)
        self.device, self.dtype = torch.device(device), dtype
        self.w = w.to(self.device, dtype)
        self.buffers = {k: v.to(self.device) for k, v in unflatten(buffers.to(dtype), buffer_layout(self.model)).items()}
        self.objective = objective or Classification()
        # on the device once where it fits a quarter of the budget; else read a chunk at a time (streamed)
        self.x, self.y = map_tensors(lambda t: place(t, dtype, self.device, memory_budget), x), y.to(self.device)
        self.n = n_samples(self.x)
        self.vectors = max(1, vectors)
        per_pass = memory_budget // max(1, _FACTOR * activation_bytes * self.vectors)
        self.samples = int(min(self.n, max(1, per_pass)))
        self.retained = _GRAPH_FACTOR * activation_bytes * self.n <= memory_budget if retain is None else retain
        self.calls = 0
        self.batched: bool | None = None  # retained products: batched or one at a time, measured on first use
        self._weight: float | None = None if not isinstance(self.objective, Classification) else float(self.n)
        self._leaf: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """The operator's side: the number of parameters P."""
        return self.layout.size

    def _summed(self, w: torch.Tensor, x, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The objective's summed loss of a data chunk at flat weights ``w [P]`` and the chunk's summed weight."""
        out = read_output(call_functional(self.model, {**unflatten(w, self.layout), **self.buffers}, x))
        return self.objective.summed_loss(out, y)

    def _loss(self, w: torch.Tensor, x, y: torch.Tensor) -> torch.Tensor:
        return self._summed(w, x, y)[0]

    def _chunks(self):
        for i in range(0, self.n, self.samples):
            yield self._part(i, i + self.samples)

    def _part(self, lo: int, hi: int):
        """Samples ``lo:hi`` on the operator's device, floating-point inputs in its dtype."""
        return batch_to(self.x, lo, hi, self.device, self.dtype), self.y[lo:hi].to(self.device)

    @property
    def weight(self) -> float:
        """The summed sample weight of the split (the number of samples, or of scored tokens), the mean's divisor."""
        if self._weight is None:
            with torch.no_grad():
                self._weight = sum(float(self._summed(self.w, x, y)[1]) for x, y in self._chunks())
        return self._weight

    def loss(self) -> float:
        """The mean loss at ``w`` (a check of what the products differentiate)."""
        with torch.no_grad():
            total = sum(float(self._loss(self.w, x, y)) for x, y in self._chunks())
        return total / self.weight

    def _graph(self) -> torch.Tensor:
        """The gradient ``[P]`` of the summed loss over the whole split, its graph kept (built on first use)."""
        if self._grad is None:
            self._leaf = self.w.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                self._grad = torch.autograd.grad(self._loss(self._leaf, *self._part(0, self.n)), self._leaf,
                                                 create_graph=True)[0]
        return self._grad

    def _retained(self, block: torch.Tensor) -> torch.Tensor:
        """``H block`` [k, P] (summed loss) through the retained graph.

        One backward pass per vector, or one for the whole block (``is_grads_batched``), whichever the first block
        of two or more vectors measured cheaper per vector (on a CPU the batched pass has cost more per vector).
        """
        g = self._graph()
        one = lambda u: torch.autograd.grad(g, self._leaf, u, retain_graph=True)[0]  # noqa: E731
        many = lambda u: torch.autograd.grad(g, self._leaf, u, retain_graph=True, is_grads_batched=True)[0]  # noqa: E731
        if block.shape[0] == 1:
            return one(block[0])[None]
        if self.batched is None:  # measure both on this block's halves: the same products either way
            h = block.shape[0] // 2
            t0 = time.perf_counter()
            first = torch.stack([one(u) for u in block[:h]])
            t1 = time.perf_counter()
            second = many(block[h:])
            self.batched = (time.perf_counter() - t1) / (block.shape[0] - h) < (t1 - t0) / h
            return torch.cat([first, second])
        return many(block) if self.batched else torch.stack([one(u) for u in block])

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for vectors ``v [k, P]`` (any device/dtype); returns ``[k, P]`` in the operator's dtype."""
        v = v.to(self.device, self.dtype)
        out = torch.zeros_like(v)
        if self.retained:
            for lo in range(0, v.shape[0], self.vectors):
                out[lo:lo + self.vectors] = self._retained(v[lo:lo + self.vectors]).detach()
            self.calls += v.shape[0]
            return out / self.weight
        for lo in range(0, v.shape[0], self.vectors):
            block = v[lo:lo + self.vectors]
            for x, y in self._chunks():
                g = grad(lambda w, x=x, y=y: self._loss(w, x, y))
                hv = vmap(lambda u: jvp(g, (self.w,), (u,))[1])(block)
                out[lo:lo + block.shape[0]] += hv.detach()
        self.calls += v.shape[0]
        return out / self.weight

    def linear_operator(self) -> LinearOperator:
        """The operator for scipy (float64 vectors in and out): :func:`scipy_operator`."""
        return scipy_operator(self)


def scipy_operator(op) -> LinearOperator:
    """A scipy ``LinearOperator`` on float64 vectors.

    Of any operator with ``size`` and ``matmat``: the Hessian, one of its blocks, its negation.
    """
    def mv(u: np.ndarray) -> np.ndarray:
        return op.matmat(torch.as_tensor(u.reshape(1, -1))).double().cpu().numpy().reshape(-1)

    def mm(u: np.ndarray) -> np.ndarray:
        return op.matmat(torch.as_tensor(np.ascontiguousarray(u.T))).double().cpu().numpy().T

    from scipy.sparse.linalg import LinearOperator  # here: scipy's import costs every command's start-up

    return LinearOperator((op.size, op.size), matvec=mv, matmat=mm, dtype=np.float64)


_BASIS_BYTES = 1 << 30  # the most memory the Lanczos basis may take before ARPACK's restarted Lanczos takes over


def top_eigen(op: HessianOperator, k: int, tol: float = 1e-4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (algebraic) eigenvalues ``[k]``, descending, and unit eigenvectors ``[k, P]``.

    Lanczos with full reorthogonalisation, one Hessian-vector product per step, stopped as soon as every wanted
    Ritz pair has converged: its residual ``||H y - theta y||`` (``beta_j |s_j|``, free from the tridiagonal
    matrix) is at most ``tol * |theta|``, the criterion ARPACK applies. ARPACK's ``eigsh`` instead fills a basis
    of at least 20 vectors before it first checks, so a top-1 eigenvalue costs it 21 products where this stops
    when converged. Where the basis would pass ``_BASIS_BYTES`` (very large networks), ARPACK's implicitly
    restarted Lanczos takes over from the best Ritz vector found.

    Args:
        op: The Hessian.
        k: How many (at most P - 1).
        tol: Relative accuracy of the eigenvalues' residuals (0: machine precision).
        seed: Seed of the starting vector.
    """
    from scipy.linalg import eigh_tridiagonal

    n = op.size
    tol_ = max(tol, 1e-12)
    steps = int(min(n, max(2 * k + 2, _BASIS_BYTES // (8 * n))))
    q = np.random.default_rng(seed).standard_normal(n)
    basis = np.zeros((steps, n))
    basis[0] = q / np.linalg.norm(q)
    alphas, betas = [], []
    theta = s = None
    for j in range(steps):
        w = op.matmat(torch.as_tensor(basis[j][None])).double().cpu().numpy()[0]
        alphas.append(float(w @ basis[j]))
        for _ in range(2):  # full reorthogonalisation, twice (Kahan's "twice is enough")
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta = float(np.linalg.norm(w))
        theta, s = eigh_tridiagonal(np.array(alphas), np.array(betas)) if j else (np.array(alphas), np.ones((1, 1)))
        top = np.argsort(theta)[::-1][:k]
        converged = len(top) == k and all(beta * abs(s[-1, i]) <= tol_ * abs(theta[i]) for i in top)
        if converged or beta <= 1e-12 * max(1.0, abs(theta).max()) or j + 1 == steps:
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    top = np.argsort(theta)[::-1][:k]
    vecs = s[:, top].T @ basis[:len(alphas)]
    if not converged and len(top) == k and j + 1 == steps < n:  # basis full: ARPACK restarts from the best vector
        from scipy.sparse.linalg import eigsh

        vals, v = eigsh(scipy_operator(op), k=k, which="LA", tol=tol, v0=vecs[0])
        order = np.argsort(vals)[::-1]
        return vals[order], v[:, order].T
    return theta[top], vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of tr(H).

    Attributes:
        trace: Mean of z^T H z over the probes.
        standard_error: Sample standard deviation of z^T H z over sqrt(probes).
        samples: The probes' values z^T H z ``[n]``.
    """

    trace: float
    standard_error: float
    samples: np.ndarray


def hutchinson_trace(op: HessianOperator, probes: int = 100, seed: int = 0, rtol: float = 0.0,
                     min_probes: int = 10, deflate: int = 0) -> TraceEstimate:
    """tr(H) from Rademacher vectors pushed ``op.vectors`` at a time, optionally deflated as in Hutch++.

    With ``deflate = b > 0`` (Meyer et al. 2021, Hutch++, its residual stage made adaptive): ``Q`` [P, b], an
    orthonormal basis of ``H S`` for ``b`` Rademacher vectors ``S``, captures the dominant eigenspace; its part
    of the trace, ``tr(Q^T H Q)``, is exact (``b`` more products), and Hutchinson estimates only the rest,
    ``tr((I - QQ^T) H (I - QQ^T))``, from probes ``(I - QQ^T) z``. Both parts are unbiased; the residual has far
    less variance when a few eigenvalues dominate, as in trained networks. The standard error is the residual's.

    Args:
        op: The Hessian.
        probes: The most residual probes (all of them when ``rtol`` is 0).
        seed: Seed of the probes (the first ``n`` probes are the same whatever the stopping rule).
        rtol: Stop once the standard error is at most ``rtol * |trace|`` (checked after each block, from
            ``min_probes`` on); 0: use all ``probes``.
        min_probes: The fewest probes an adaptive estimate stops at (its standard error needs a few).
        deflate: Size ``b`` of the exactly computed subspace (0: plain Hutchinson). Costs ``2 b`` products.

    Returns:
        The estimate; ``samples`` holds the residual probes' values (plain Hutchinson: ``z^T H z``).
    """
    g = torch.Generator().manual_seed(seed)
    z = (torch.randint(0, 2, (probes, op.size), generator=g) * 2 - 1).to(torch.float64)
    exact, q = 0.0, None
    if deflate:
        s = (torch.randint(0, 2, (deflate, op.size), generator=g) * 2 - 1).to(torch.float64)
        q = torch.linalg.qr(op.matmat(s).double().cpu().T)[0]  # [P, b]
        exact = float((q * op.matmat(q.T.contiguous()).double().cpu().T).sum())  # tr(Q^T H Q)
    s_ = np.zeros(0)
    se = float("inf")
    for lo in range(0, probes, op.vectors):
        block = z[lo:lo + op.vectors]
        if q is not None:
            block = block - (block @ q) @ q.T  # (I - QQ^T) z
        s_ = np.concatenate([s_, (block * op.matmat(block).double().cpu()).sum(1).numpy()])
        se = float(s_.std(ddof=1) / math.sqrt(len(s_))) if len(s_) > 1 else float("inf")
        if rtol > 0 and len(s_) >= min(min_probes, probes) and se <= rtol * abs(exact + s_.mean()):
            break
    return TraceEstimate(exact + float(s_.mean()), se, s_)
