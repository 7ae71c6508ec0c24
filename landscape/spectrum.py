"""The Hessian's spectrum beyond its top eigenvalues: spectral density, the most negative eigenvalue, blocks.

On a :class:`~landscape.curvature.HessianOperator` (or anything with ``size`` and ``matmat``):

* :func:`lanczos`: ``m`` steps of Lanczos with full reorthogonalisation from one start vector, the tridiagonal
  matrix ``T_m`` it builds (``alphas [m]``, ``betas [m - 1]``);
* :func:`spectral_density`: stochastic Lanczos quadrature (Golub and Welsch; Ghorbani et al. 2019, as PyHessian's
  ``density``): per run, a Rademacher start vector ``v`` (unit norm), the eigenvalues ``theta_i`` of ``T_m`` as
  nodes and the squared first components ``tau_i`` of its eigenvectors as weights, so that
  ``sum_i tau_i f(theta_i)`` is the Gauss quadrature of ``v^T f(H) v`` (exact for polynomials of degree below
  ``2m``; with ``m = P`` steps, for every ``f``). Averaged over runs and broadened by a Gaussian of variance
  ``sigma2`` on a grid, it is the eigenvalue density: it integrates to 1 and its mean is ``tr(H) / P`` in
  expectation over the start vectors;
* :func:`bottom_eigen`: the most negative (smallest algebraic) eigenvalue, as the top eigenvalue of ``-H``;
* :class:`Block`: the Hessian restricted to one block of parameters (``H_bb``, the diagonal block of one layer),
  an operator of the block's size that the same functions take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .curvature import top_eigen

__all__ = ["lanczos", "SpectralDensity", "spectral_density", "Negated", "bottom_eigen", "Block"]


def lanczos(op, steps: int, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tridiagonal ``T_m`` of ``m <= steps`` Lanczos steps from ``v0 [P]``: ``(alphas [m], betas [m - 1])``.

    Full reorthogonalisation (twice per step); stops early when the Krylov space is exhausted. The basis lives in
    torch (float64, CPU), not numpy: numpy's BLAS threads, left spinning after each reorthogonalisation, took the
    cores from the next Hessian-vector product (measured: 100 steps 16.4 s with numpy's BLAS on 2 threads, 13.1 s
    with it on one; benchmarks/bench_hessian_inprocess.py).
    """
    n = op.size
    steps = int(min(steps, n))
    basis = torch.zeros(steps, n, dtype=torch.float64)
    v = torch.as_tensor(np.asarray(v0), dtype=torch.float64)
    basis[0] = v / v.norm()
    alphas, betas = [], []
    for j in range(steps):
        w = op.matmat(basis[j][None]).to("cpu", torch.float64)[0]
        alphas.append(float(w @ basis[j]))
        for _ in range(2):
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta = float(w.norm())
        if j + 1 == steps or beta <= 1e-10 * max(1.0, max(abs(a) for a in alphas)):
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return np.array(alphas), np.array(betas)


@dataclass(frozen=True)
class SpectralDensity:
    """A spectral density by stochastic Lanczos quadrature.

    Attributes:
        nodes: Ritz values per run ``[runs, m]`` (NaN-padded where a run stopped early).
        weights: Their quadrature weights ``[runs, m]`` (each run's sum to 1; 0 where padded).
        grid: Eigenvalues the density is evaluated at ``[G]``.
        density: The Gaussian-broadened density on the grid ``[G]`` (averaged over runs).
        sigma2: The Gaussian's variance.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma2: float

    def moment(self, k: int) -> float:
        """The quadrature's ``k``-th moment, ``mean over runs of sum_i tau_i theta_i^k`` (1 for ``k = 0``)."""
        return float(np.mean(np.nansum(self.weights * np.nan_to_num(self.nodes) ** k, axis=1)))


def spectral_density(op, runs: int = 1, steps: int = 90, seed: int = 0, bins: int = 1000,
                     sigma2: float = 1e-5, margin: float = 0.01) -> SpectralDensity:
    """The eigenvalue density of ``op`` by stochastic Lanczos quadrature (see the module docstring).

    Args:
        op: The Hessian (``size``, ``matmat``).
        runs: Start vectors (Rademacher, seeded).
        steps: Lanczos steps per run (PyHessian's default: 100 iterations, 1 run).
        seed: Seed of the start vectors.
        bins: Grid points.
        sigma2: Variance of the Gaussian each node is broadened by, relative to the squared width of the spectrum
            found (PyHessian: 1e-5, scaled the same way).
        margin: The grid reaches this fraction of the spectrum's width beyond its extreme nodes.
    """
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(runs):
        alphas, betas = lanczos(op, steps, rng.integers(0, 2, op.size) * 2.0 - 1.0)
        theta, s = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        nodes.append(theta)
        weights.append(s[0] ** 2)
    m = max(len(t) for t in nodes)
    pad = lambda a, v: np.concatenate([a, np.full(m - len(a), v)])  # noqa: E731
    nodes_, weights_ = np.stack([pad(t, np.nan) for t in nodes]), np.stack([pad(w, 0.0) for w in weights])
    lo, hi = float(np.nanmin(nodes_)), float(np.nanmax(nodes_))
    width = max(hi - lo, 1e-12)
    grid = np.linspace(lo - margin * width, hi + margin * width, bins)
    var = sigma2 * max(1.0, width) ** 2
    gauss = np.exp(-((grid[:, None, None] - nodes_[None]) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    density = np.nansum(gauss * weights_[None], axis=(1, 2)) / runs
    return SpectralDensity(nodes_, weights_, grid, density, var)


class Negated:
    """``-H`` as an operator: its top eigenvalue is ``-lambda_min(H)``."""

    def __init__(self, op):
        self.op, self.size, self.vectors = op, op.size, getattr(op, "vectors", 1)

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``-H v`` for ``v [k, P]``."""
        return -self.op.matmat(v)


def bottom_eigen(op, tol: float = 1e-4, seed: int = 0) -> tuple[float, np.ndarray]:
    """The most negative (smallest algebraic) eigenvalue of ``op`` and its unit eigenvector ``[P]``."""
    vals, vecs = top_eigen(Negated(op), 1, tol, seed)
    return -float(vals[0]), vecs[0]


class Block:
    """The Hessian restricted to the parameters ``lo:hi`` of the flat vector: the diagonal block ``H_bb``.

    Args:
        op: The whole Hessian (``size``, ``matmat``).
        lo: First index of the block in the flat parameter vector.
        hi: One past its last index.
    """

    def __init__(self, op, lo: int, hi: int):
        self.op, self.lo, self.hi = op, lo, hi
        self.size, self.vectors = hi - lo, getattr(op, "vectors", 1)

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``H_bb v`` for ``v [k, hi - lo]``: the vectors embedded with zeros elsewhere, the product's block."""
        full = torch.zeros(v.shape[0], self.op.size, dtype=v.dtype)
        full[:, self.lo:self.hi] = v.cpu()
        return self.op.matmat(full)[:, self.lo:self.hi]
