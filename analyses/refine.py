"""A sharp picture for fewer points: a coarse grid first, refined only where the loss changes fast.

On a grid of ``n + 1`` points per axis the cell size (in grid steps) goes down a chain of divisors of ``n``
(:func:`step_chain`: 50 -> 10, 5, 1). At each level a cell where bilinear interpolation of the log-loss may err by
more than a tolerance (estimated from the second differences at its corners) is refined: every point of the next
level's sub-grid inside it is evaluated. What is not evaluated is filled by
bilinear interpolation within the smallest evaluated cell around it (:func:`fill`), level by level, so the picture
is complete at full resolution and exact wherever it was refined.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["step_chain", "coarse_mask", "cells_to_refine", "fill", "refine_grid"]


def step_chain(n: int, min_cells: int = 4) -> list[int]:
    """Cell sizes from coarse to 1 for ``n`` grid intervals per axis.

    The largest divisor of ``n`` leaving at least ``min_cells`` cells per axis, then down by the smallest prime
    factor each time.
    """
    start = max(d for d in range(1, n + 1) if n % d == 0 and n // d >= min(min_cells, n))
    chain = [start]
    while chain[-1] > 1:
        s = chain[-1]
        p = next(q for q in range(2, s + 1) if s % q == 0)
        chain.append(s // p)
    return chain


def coarse_mask(g: int, step: int) -> np.ndarray:
    """The points ``[g, g]`` of the coarsest level (every ``step``-th index on both axes)."""
    mask = np.zeros((g, g), dtype=bool)
    mask[::step, ::step] = True
    return mask


def _curvature(c: np.ndarray, axis: int) -> np.ndarray:
    """|second difference| of ``c`` along ``axis`` at every point (an edge takes its inner neighbour's)."""
    d = np.abs(np.diff(c, 2, axis=axis))
    first, last = (np.take(d, [0], axis=axis), np.take(d, [-1], axis=axis))
    return np.concatenate([first, d, last], axis=axis) if d.shape[axis] else np.zeros_like(c)


def cells_to_refine(filled: np.ndarray, step: int, sub: int, tolerance: float) -> np.ndarray:
    """The points ``[g, g]`` to evaluate for the next level.

    The ``sub``-grid inside every cell of size ``step`` where bilinear interpolation of the log values may err by
    more than ``tolerance``: the error of linear interpolation is about an eighth of the second difference over the
    cell, estimated from this level's points at the cell's corners (a non-finite corner always refines).

    Args:
        filled: The values at this level's resolution ``[g, g]`` (all finite or inf at multiples of ``step``).
        step: This level's cell size.
        sub: The next level's cell size (a divisor of ``step``).
        tolerance: Largest estimated interpolation error of ``log(value)`` inside a cell left unrefined.
    """
    g = filled.shape[0]
    c = np.log(np.maximum(filled[::step, ::step], 1e-300))
    bad = ~np.isfinite(c)
    c = np.where(bad, 0.0, c)
    at = np.maximum(_curvature(c, 0), _curvature(c, 1)) / 8 + np.where(bad, np.inf, 0.0)
    cell = np.maximum.reduce([at[:-1, :-1], at[1:, :-1], at[:-1, 1:], at[1:, 1:]])
    want = np.zeros((g, g), dtype=bool)
    for ci, cj in zip(*np.nonzero(cell > tolerance)):
        i0, j0 = ci * step, cj * step
        want[i0:i0 + step + 1:sub, j0:j0 + step + 1:sub] = True
    return want


def fill(values: np.ndarray, steps: list[int]) -> np.ndarray:
    """``values [g, g]`` (NaN where not evaluated) completed at full resolution, level by level down ``steps``.

    A point evaluated keeps its value; any other is interpolated bilinearly from the corners of its cell one level up.
    """
    g = values.shape[0]
    out = np.full_like(values, np.nan, dtype=float)
    s0 = steps[0]
    out[::s0, ::s0] = values[::s0, ::s0]
    for s, sub in zip(steps, steps[1:]):
        idx = np.arange(0, g, sub)
        i0 = np.minimum(idx // s * s, g - 1 - s)  # the cell's lower corner (the last point belongs to the last cell)
        f = (idx - i0) / s
        a, b = np.ix_(i0, i0)
        fa, fb = np.ix_(f, f)
        interp = ((1 - fa) * (1 - fb) * out[a, b] + fa * (1 - fb) * out[a + s, b] + (1 - fa) * fb * out[a, b + s]
                  + fa * fb * out[a + s, b + s])
        known = values[np.ix_(idx, idx)]
        out[np.ix_(idx, idx)] = np.where(np.isnan(known), interp, known)
    return out


def refine_grid(evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], g: int, tolerance: float
                ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Evaluate a ``g x g`` grid coarse first and refine it level by level.

    Args:
        evaluate: ``evaluate(wanted [g, g] bool) -> (values [g, g], done [g, g])``: evaluates the wanted points not
            evaluated yet and returns every value so far (the one deciding refinement) and which are evaluated.
        g: Points per axis.
        tolerance: See :func:`cells_to_refine`.

    Returns:
        The values, the evaluated mask, and the chain of cell sizes (for :func:`fill`).
    """
    steps = step_chain(g - 1)
    want = coarse_mask(g, steps[0])
    for level, s in enumerate(steps):
        values, done = evaluate(want)
        if s == 1:
            break
        want |= cells_to_refine(fill(np.where(done, values, np.nan), steps[:level + 1]), s, steps[level + 1],
                                tolerance)
    return values, done, steps
