"""Sharpness around a weight point: random (average-case) and worst-case increases of the loss, adaptive or raw.

Adaptive sharpness (Kwon et al. 2021; Andriushchenko et al. 2023) measures perturbations relative to each
weight's own magnitude, ``d = |w| * delta`` elementwise, so a reparametrisation that rescales layers (a ReLU
network's ``W1 -> a W1, W2 -> W2 / a``) rescales the perturbations with them and leaves it unchanged:

* **average case**: ``E[L(w + d) - L(w)]`` over ``delta ~ N(0, rho^2 I)``;
* **worst case**: ``max L(w + d) - L(w)`` over ``||delta||_p <= rho`` (p = 2 or infinity), by projected
  gradient ascent on ``delta``.

The raw (non-adaptive) counterparts use ``d = s * delta`` with one scale ``s`` for every weight: the root mean
square of ``|w|`` over the perturbed weights, so that both perturbations have the same expected size.
A ``mask [P]`` leaves some weights unperturbed (e.g. BatchNorm's and the biases). This module knows nothing of
networks: :func:`perturbation_points` builds the average case's points for the engine, :func:`worst_case` runs
the ascent on any differentiable loss of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .points import PointSet

__all__ = ["scales", "perturbation_points", "AverageCase", "average_case", "WorstCase", "worst_case"]


def scales(w: torch.Tensor, mask: torch.Tensor, adaptive: bool) -> torch.Tensor:
    """The per-weight scale ``[P]`` of the perturbations.

    ``|w|`` (adaptive) or the RMS of ``|w|`` (raw), 0 where ``mask`` is False.
    """
    w, m = w.double(), mask.to(torch.float64)
    if adaptive:
        return w.abs() * m
    rms = float(torch.sqrt((w.pow(2) * m).sum() / m.sum().clamp_min(1)))
    return rms * m


def perturbation_points(w: torch.Tensor, scale: torch.Tensor, rhos: np.ndarray, samples: int, seed: int,
                        buffers: torch.Tensor | None = None) -> PointSet:
    """The points ``w + rho * scale * z_k`` for every ``rho`` in ``rhos [R]`` and ``z_k ~ N(0, I)``, k < ``samples``.

    The same draws ``z_k`` serve every ``rho`` (a curve over rho is then smooth). Point ``r * samples + k`` is
    radius ``r``, draw ``k``; ``buffers [Q]`` ride along for the BN modes that use stored statistics.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, w.numel(), generator=g, dtype=torch.float64)
    basis = z * scale.double()  # [K, P]
    coords = torch.zeros(len(rhos) * samples, samples, dtype=torch.float64)
    for r, rho in enumerate(rhos):
        coords[r * samples:(r + 1) * samples] = float(rho) * torch.eye(samples, dtype=torch.float64)
    return PointSet.affine(w.double(), basis, coords, buffer_origin=buffers)


@dataclass(frozen=True)
class AverageCase:
    """Average-case sharpness over radii.

    Attributes:
        rhos: Radii ``[R]``.
        mean: Mean increase of the loss per radius ``[R]``.
        standard_error: Its standard error over the draws ``[R]``.
        increases: Every draw's increase ``[R, K]``.
    """

    rhos: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    increases: np.ndarray


def average_case(losses: np.ndarray, base: float, rhos: np.ndarray) -> AverageCase:
    """The increases of ``losses [R * K]`` (ordered as :func:`perturbation_points`) over the loss ``base`` at w."""
    inc = np.asarray(losses, dtype=np.float64).reshape(len(rhos), -1) - base
    k = inc.shape[1]
    se = inc.std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.full(len(rhos), np.inf)
    return AverageCase(np.asarray(rhos, dtype=np.float64), inc.mean(axis=1), se, inc)


@dataclass(frozen=True)
class WorstCase:
    """The worst-case increase found by projected gradient ascent.

    Attributes:
        increase: ``L(w + scale * delta) - L(w)`` at the best ``delta`` found.
        delta: That ``delta [P]``.
        trace: The increase after each step ``[steps + 1]`` (the first: the random start).
    """

    increase: float
    delta: torch.Tensor
    trace: np.ndarray


def _project(delta: torch.Tensor, rho: float, p: float) -> torch.Tensor:
    if math.isinf(p):
        return delta.clamp(-rho, rho)
    n = float(delta.norm())
    return delta * (rho / n) if n > rho else delta


def worst_case(loss: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor, scale: torch.Tensor, rho: float,
               p: float = 2.0, steps: int = 20, step_size: float | None = None, seed: int = 0) -> WorstCase:
    """``max L(w + scale * delta) - L(w)`` over ``||delta||_p <= rho`` by projected gradient ascent.

    From a random start of size ``rho / 10`` on the perturbed weights (at a minimum the gradient is zero), each
    step moves ``delta`` by ``step_size`` along the normalised gradient (p = 2) or its sign (p = infinity) and
    projects back onto the ball; the best iterate is kept.

    Args:
        loss: Differentiable loss of the weights ``[P]`` (a scalar tensor).
        w: The point ``[P]``.
        scale: Per-weight scale ``[P]`` (:func:`scales`; 0: not perturbed).
        rho: Radius.
        p: 2 or ``math.inf``.
        steps: Ascent steps (Andriushchenko et al.'s code uses 20).
        step_size: Default ``2.5 * rho / steps`` (the ball's diameter is crossed in under half the steps).
        seed: Seed of the start.
    """
    if p not in (2.0, math.inf):
        raise ValueError(f"p must be 2 or inf, got {p}")
    step = 2.5 * rho / steps if step_size is None else step_size
    w, scale = w.detach(), scale.to(w.dtype)
    live = scale != 0
    with torch.no_grad():
        base = float(loss(w))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(w.numel(), generator=g, dtype=torch.float64).to(w) * live
    start = z.sign() if math.isinf(p) else z / z.norm().clamp_min(1e-30)
    delta = 0.1 * rho * start
    best, best_delta, trace = -math.inf, delta, []
    for i in range(steps + 1):
        d = delta.detach().requires_grad_(True)
        value = loss(w + scale * d)
        inc = float(value.detach()) - base
        trace.append(inc)
        if inc > best:
            best, best_delta = inc, d.detach().clone()
        if i == steps:
            break
        (grad,) = torch.autograd.grad(value, d)
        grad = grad * live
        move = grad.sign() if math.isinf(p) else grad / grad.norm().clamp_min(1e-30)
        delta = _project(d.detach() + step * move, rho, p)
    return WorstCase(best, best_delta, np.asarray(trace))
