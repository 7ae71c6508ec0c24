"""Hessian of the mean training loss at one weight point: batched Hessian-vector products and what they give.

The loss is the mean cross-entropy over a data split with the network in eval mode, its BatchNorm
layers using fixed statistics (the point's own, recomputed by the engine), so it is a smooth function
of the weights ``w [P]``. Hessian-vector products come two ways:

* **retained** (when the gradient's graph over the whole split fits the memory budget): the gradient is
  computed once with its graph kept (``create_graph=True``), and every product is one backward pass through it
  (``autograd.grad`` with the vectors as ``grad_outputs``, batched over vectors with ``is_grads_batched``);
* **recomputed** (larger data): ``torch.func`` forward-over-reverse (``jvp(grad(L))``), vmapped over several
  vectors at once and summed over chunks of the data sized under the budget.

On them:

* :func:`top_eigen`: the largest eigenvalues and their eigenvectors, by ``scipy.sparse.linalg.eigsh``
  (ARPACK's implicitly restarted Lanczos) on a :class:`scipy.sparse.linalg.LinearOperator`;
* :func:`hutchinson_trace`: tr(H) = E[z^T H z] over Rademacher vectors z, with its standard error; stopped
  once the standard error falls below a relative tolerance, or after a fixed number of probes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .layout import Layout, buffer_layout, param_layout, unflatten

__all__ = ["HessianOperator", "top_eigen", "hutchinson_trace", "TraceEstimate"]

_FACTOR = 6  # activations of forward-over-reverse per sample and vector, in forward footprints
_GRAPH_FACTOR = 4  # a retained gradient graph per sample, in forward footprints (forward + backward saved tensors)


class HessianOperator:
    """The Hessian ``[P, P]`` of the mean cross-entropy on ``(x, y)`` at ``w``, applied to vectors.

    Args:
        model: Template network (copied; not modified).
        w: Flat weights ``[P]``.
        buffers: Flat buffers ``[Q]`` (the BN statistics the loss uses; eval mode).
        x: Inputs ``[N, ...]``; y: targets ``[N]``.
        device, dtype: Where and in which precision the products are computed.
        memory_budget: Bytes for the activations of one pass; sets the samples per pass.
        activation_bytes: Forward activation footprint per sample (the engine's ``act_bytes``).
        vectors: Vectors pushed at once by :meth:`matmat` (vmapped).
        retain: Keep the gradient's graph and backpropagate through it for every product (None: when it fits
            ``memory_budget``).

    Attributes:
        calls: Hessian-vector products computed so far (one per vector).
        retained: Whether products go through the retained graph.
    """

    def __init__(self, model: nn.Module, w: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 memory_budget: int = 2 << 30, activation_bytes: int = 1 << 12, vectors: int = 8,
                 retain: bool | None = None):
        self.model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        self.layout: Layout = param_layout(self.model)
        self.device, self.dtype = torch.device(device), dtype
        self.w = w.to(self.device, dtype)
        self.buffers = {k: v.to(self.device) for k, v in unflatten(buffers.to(dtype), buffer_layout(self.model)).items()}
        self.x, self.y = x.to(self.device, dtype), y.to(self.device)
        self.vectors = max(1, vectors)
        per_pass = memory_budget // max(1, _FACTOR * activation_bytes * self.vectors)
        self.samples = int(min(len(self.x), max(1, per_pass)))
        self.retained = _GRAPH_FACTOR * activation_bytes * len(self.x) <= memory_budget if retain is None else retain
        self.calls = 0
        self._leaf: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.layout.size

    def _loss(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of a data chunk at flat weights ``w [P]``."""
        out = functional_call(self.model, {**unflatten(w, self.layout), **self.buffers}, (x,))
        return nn.functional.cross_entropy(out, y, reduction="sum")

    def loss(self) -> float:
        """The mean loss at ``w`` (a check of what the products differentiate)."""
        with torch.no_grad():
            total = sum(float(self._loss(self.w, self.x[i:i + self.samples], self.y[i:i + self.samples]))
                        for i in range(0, len(self.x), self.samples))
        return total / len(self.x)

    def _graph(self) -> torch.Tensor:
        """The gradient ``[P]`` of the summed loss over the whole split, its graph kept (built on first use)."""
        if self._grad is None:
            self._leaf = self.w.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                self._grad = torch.autograd.grad(self._loss(self._leaf, self.x, self.y), self._leaf,
                                                 create_graph=True)[0]
        return self._grad

    def _retained(self, block: torch.Tensor) -> torch.Tensor:
        """``H block`` [k, P] (summed loss) through the retained graph: one backward pass for the block."""
        g = self._graph()
        if block.shape[0] == 1:
            return torch.autograd.grad(g, self._leaf, block[0], retain_graph=True)[0][None]
        return torch.autograd.grad(g, self._leaf, block, retain_graph=True, is_grads_batched=True)[0]

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for vectors ``v [k, P]`` (any device/dtype); returns ``[k, P]`` in the operator's dtype."""
        v = v.to(self.device, self.dtype)
        out = torch.zeros_like(v)
        if self.retained:
            for lo in range(0, v.shape[0], self.vectors):
                out[lo:lo + self.vectors] = self._retained(v[lo:lo + self.vectors]).detach()
            self.calls += v.shape[0]
            return out / len(self.x)
        for lo in range(0, v.shape[0], self.vectors):
            block = v[lo:lo + self.vectors]
            for i in range(0, len(self.x), self.samples):
                x, y = self.x[i:i + self.samples], self.y[i:i + self.samples]
                g = grad(lambda w: self._loss(w, x, y))
                hv = vmap(lambda u: jvp(g, (self.w,), (u,))[1])(block)
                out[lo:lo + block.shape[0]] += hv.detach()
        self.calls += v.shape[0]
        return out / len(self.x)

    def linear_operator(self) -> LinearOperator:
        """The operator for scipy (float64 vectors in and out)."""
        def mv(u: np.ndarray) -> np.ndarray:
            return self.matmat(torch.as_tensor(u.reshape(1, -1))).double().cpu().numpy().reshape(-1)

        def mm(u: np.ndarray) -> np.ndarray:
            return self.matmat(torch.as_tensor(np.ascontiguousarray(u.T))).double().cpu().numpy().T

        return LinearOperator((self.size, self.size), matvec=mv, matmat=mm, dtype=np.float64)


def top_eigen(op: HessianOperator, k: int, tol: float = 1e-4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (algebraic) eigenvalues ``[k]``, descending, and unit eigenvectors ``[k, P]``.

    Args:
        op: The Hessian.
        k: How many (at most P - 1, ARPACK's limit).
        tol: ARPACK's relative accuracy of the eigenvalues (0: machine precision).
        seed: Seed of the starting vector.
    """
    v0 = np.random.default_rng(seed).standard_normal(op.size)
    vals, vecs = eigsh(op.linear_operator(), k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order].T


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
                     min_probes: int = 10) -> TraceEstimate:
    """tr(H) from Rademacher vectors pushed ``op.vectors`` at a time.

    Args:
        op: The Hessian.
        probes: The most probes (all of them when ``rtol`` is 0).
        seed: Seed of the probes (the first ``n`` probes are the same whatever the stopping rule).
        rtol: Stop once the standard error is at most ``rtol * |trace|`` (checked after each block, from
            ``min_probes`` on); 0: use all ``probes``.
        min_probes: The fewest probes an adaptive estimate stops at (its standard error needs a few).
    """
    g = torch.Generator().manual_seed(seed)
    z = (torch.randint(0, 2, (probes, op.size), generator=g) * 2 - 1).to(torch.float64)
    s = np.zeros(0)
    for lo in range(0, probes, op.vectors):
        block = z[lo:lo + op.vectors]
        s = np.concatenate([s, (block * op.matmat(block).double().cpu()).sum(1).numpy()])
        se = float(s.std(ddof=1) / math.sqrt(len(s))) if len(s) > 1 else float("inf")
        if rtol > 0 and len(s) >= min(min_probes, probes) and se <= rtol * abs(s.mean()):
            break
    return TraceEstimate(float(s.mean()), se, s)
