"""Where a ray leaves its flat region: the width of the paper's section 3.4, Figure 4.

A ray's width is the first distance t where its value (test error, train loss) exceeds its value at t = 0 by a
margin, interpolated linearly between grid points. Crossings closer than ``MIN_STEPS`` grid steps to t = 0 are
resolved on finer grids; the grid's extent is searched so that crossings land in its first third.
"""

from __future__ import annotations

import numpy as np
import torch

from landscape.points import PointSet

from .common import RunContext

__all__ = ["first_crossing", "censored_widths", "mean_width", "auto_t_max", "resolve_early", "MIN_STEPS"]


def _first_above(row: np.ndarray, margin: float) -> int | None:
    """Index of the first value of ``row [T]`` after t = 0 above ``row[0] + margin`` (NaN counts as above), or None."""
    hits = np.flatnonzero(~(row[1:] <= row[0] + margin)) + 1
    return int(hits[0]) if hits.size else None


def first_crossing(t: np.ndarray, values: np.ndarray, margin: float) -> np.ndarray:
    """Per row, the first t where ``values`` exceeds its value at t[0] by ``margin``.

    Linear interpolation between the grid points around the crossing; NaN/inf values
    count as exceeding. ``inf`` where no crossing happens within the range.

    Args:
        t: Distances ``[T]`` (increasing, t[0] = 0).
        values: ``[D, T]``.
        margin: Threshold above the t = 0 value.

    Returns:
        ``[D]`` distances.
    """
    out = np.full(values.shape[0], np.inf)
    for i, row in enumerate(values):
        j = _first_above(row, margin)
        if j is None:
            continue
        thr = row[0] + margin
        lo, hi = row[j - 1], row[j]
        frac = (thr - lo) / (hi - lo) if np.isfinite(hi) and hi > lo else 1.0
        out[i] = t[j - 1] + frac * (t[j] - t[j - 1])
    return out


MIN_STEPS = 3
"""A reported width lies at least this many grid steps from t = 0 (refining the grid near early crossings)."""
_FINE = 4 * MIN_STEPS  # steps of a refined grid on [0, end of the bracket]
_ROUNDS = 4  # refinements at most (each makes the step _FINE / MIN_STEPS times finer at least)


def auto_t_max(ctx: RunContext, w: torch.Tensor, b: torch.Tensor, dirs: torch.Tensor, margin: float) -> float:
    """Three times the distance where test error along the first two directions, as used, first exceeds the margin.

    Doubles t from a weight-space step of 2% of ||w|| (t is in units of ``dirs``, whose norm is 1 for unit
    directions and about ||w|| for filter-normalised ones), so those crossings land in the first third of
    the grid but well away from t = 0.
    """
    base = ctx.engine.evaluate(PointSet.explicit(w[None], b[None]), splits=("test",)).error("test")[0].item()
    d = 0.02 * w.double().norm().item() / dirs[:2].double().norm(dim=1).mean().item()
    for _ in range(16):
        pts = PointSet.affine(w, dirs[:2], torch.eye(2, dtype=torch.float64) * d, buffer_origin=b)
        err = ctx.engine.evaluate(pts, splits=("test",)).error("test").mean().item()
        if not err <= base + margin:
            break
        d *= 2
    return 3 * d


def resolve_early(ctx: RunContext, w: torch.Tensor, b: torch.Tensor, dirs: torch.Tensor, t: np.ndarray,
                   values: np.ndarray, margin: float, split: str, metric) -> tuple[np.ndarray, np.ndarray]:
    """Widths ``[D]`` with crossings closer than ``MIN_STEPS`` grid steps to t = 0 resolved on finer grids.

    Args:
        ctx: The open run and its engine.
        w: The rays' origin ``[P]``.
        b: Its buffers ``[Q]``.
        dirs: The directions ``[D, P]``.
        t: Grid ``[T]``.
        values: The values on it ``[D, T]``.
        margin: Width threshold above the t = 0 value.
        split: The split the values come from (the only one evaluated at refined points).
        metric: ``EvalResult -> [k]`` values of the refined points.

    Returns:
        Widths ``[D]`` and the grid step each was resolved with ``[D]``.
    """
    widths = first_crossing(t, values, margin)
    steps = np.full(len(widths), t[1] - t[0])
    for i in np.flatnonzero(np.isfinite(widths) & (widths < MIN_STEPS * steps)):
        row_t, row = t, values[i]
        for _ in range(_ROUNDS):
            row_t = np.linspace(0.0, row_t[_first_above(row, margin)], _FINE + 1)  # up to the bracket's upper end
            coords = torch.as_tensor(row_t[1:], dtype=torch.float64)[:, None]
            res = ctx.engine.evaluate(PointSet.affine(w, dirs[i:i + 1].double(), coords, buffer_origin=b),
                                      splits=(split,))
            row = np.concatenate([values[i, :1], metric(res)])
            widths[i], steps[i] = first_crossing(row_t, row[None], margin)[0], row_t[1]
            if widths[i] >= MIN_STEPS * steps[i]:
                break
    return widths, steps


def censored_widths(g, margin: str) -> np.ndarray:
    """One origin's widths per direction ``[D]``, a direction that never crosses counted at the ray's end.

    ``margin``: ``"error"``, ``"loss"`` or ``"loss_l2"``; ``g``: the results group, h5py or as read into dicts. A
    width counted at the ray's end is a lower bound.
    """
    w = np.asarray(g[f"width_{margin}"][:], dtype=float)
    return np.where(np.isfinite(w), w, float(g["t"][-1]))


def mean_width(g, margin: str) -> float:
    """Mean width over directions of one origin's rays (:func:`censored_widths`)."""
    return float(np.mean(censored_widths(g, margin)))
