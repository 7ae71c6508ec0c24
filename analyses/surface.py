"""The classic loss surface around a trained model (Li et al. 2018), at SWA and at SGD along the same two directions.

Two random directions ``d1, d2`` are drawn once (seeded, stored). At each centre ``w_c`` (``swa``, ``sgd``, a
snapshot index or ``t=T`` on the SGD-SWA segment) they are filter-normalised as Li et al. define it: every filter
(a row of a weight with more than one dimension) of a direction is rescaled to the norm of the centre's filter, and
the 1-D parameters (biases, BN) are zeroed, or, with ``include_1d``, set to the centre's own values (as Li et al.'s
code does when it does not ignore them). Without filter normalisation each direction is scaled to the centre's norm
``||w_c||``. The grid ``w_c + a d1_c + b d2_c`` for ``a, b`` in ``[-extent, extent]`` (0 always on the grid) is
evaluated like every plane: train and test loss and error, the L2-regularised train loss, BN recomputed per point.

Both centres use the same ``d1, d2``, so the panels answer the SWA paper's question of the classic picture: which
minimum is wider. The figure draws them side by side on one colour scale, with the 1-D curves along each direction.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import BNMode, EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.layout import Layout
from landscape.points import PointSet
from swa.runs import check_points, point_set

from .common import VALUES, RunContext, evaluate_missing
from .distributed import ShardedResults
from .plane import evaluate_plane
from .rays import filter_normalize
from .refine import fill, refine_grid
from .registry import Analysis, Section

__all__ = ["SurfaceConfig", "surface_directions", "surface", "drawn", "describe", "ANALYSIS"]

UNSUPPORTED_BN_MODES = {BNMode.INTERPOLATE: "a surface has one centre, so there is nothing to interpolate toward "
                                             "(use recompute or stored)"}
"""BN modes the surface cannot honour, with the reason."""


@dataclass(frozen=True)
class SurfaceConfig:
    """Settings of the surface analysis.

    Attributes:
        centers: The points the surface is drawn around (sgd, swa, a snapshot index, t=T on the segment), each
            with the same two directions.
        grid: Points along each direction (0 is always added).
        extent: The grid runs over [-extent, extent] along each direction, in units of the normalised direction
            (1: one filter norm of the centre with filter normalisation, one ||w|| without).
        seed: Seed of the two random directions (stored with them).
        filter_normalize: Li et al.'s filter normalisation per centre (off: each direction scaled to ||w||).
        include_1d: Keep the 1-D parameters (biases, BN) in the directions, set to the centre's own values,
            instead of zeroing them.
        refine: Evaluate a coarse grid first and refine only the cells whose train loss changes fast, down to the
            full grid (:mod:`analyses.refine`); the rest is interpolated (stored as ``<value>_interpolated``, the
            evaluated points in ``done``). Needs an odd ``grid``.
        refine_tolerance: A cell is refined when bilinear interpolation of the log L2-regularised train loss may
            err by more than this inside it (0.05: about 5%).
    """

    centers: tuple[str, ...] = ("swa", "sgd")
    grid: int = bounded(21, ge=3)
    extent: float = bounded(1.0, gt=0)
    seed: int = bounded(0, meaning="any integer seeds the directions")
    filter_normalize: bool = True
    include_1d: bool = False
    refine: bool = False
    refine_tolerance: float = bounded(0.05, gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        check_points(self.centers, "surface", "centre")
        if self.refine and self.grid % 2 == 0:
            raise UserError(f"a refined surface needs an odd grid (0 on it, evenly spaced), got {self.grid}")


def surface_directions(base: torch.Tensor, w: torch.Tensor, layout: Layout, filter_wise: bool, include_1d: bool
                       ) -> torch.Tensor:
    """The two directions ``[2, P]`` at a centre ``w [P]`` from the random ``base [2, P]`` (see the module docstring).

    Raises:
        UserError: Filter normalisation on a network without any weight of two or more dimensions.
    """
    base, w = base.double(), w.double()
    if not filter_wise:
        return base / base.norm(dim=1, keepdim=True) * w.norm()
    d = filter_normalize(base, w, layout)
    for sl, shape in zip(layout.slices.values(), layout.shapes):
        if len(shape) < 2 and include_1d:
            d[:, sl] = w[sl]
    if not bool((d != 0).any()):
        raise UserError("filter normalisation leaves nothing: the network has no weight of two or more dimensions "
                        "(use --no-filter-normalize or --include-1d)")
    return d


def surface(run: str | os.PathLike, out: str | os.PathLike | None = None, config: SurfaceConfig | None = None,
            engine_config: EngineConfig | None = None, progress: bool = True, *,
            model: nn.Module | None = None, data=None) -> dict:
    """Evaluate the surface around each centre; writes ``/surface/<centre>`` and ``/surface/directions``.

    BN modes: ``recompute`` at every point; ``stored``: the centre's statistics at every point.

    Returns:
        Summary ``{centre: {"x": [G], "y": [G], "train_loss": [G, G], ...}}``.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _group(center: str) -> str:
    return f"surface/{center}"


def _run(ctx: RunContext, results: ShardedResults, config: SurfaceConfig, progress: bool) -> dict:
    layout = ctx.traj.param_layout
    g = torch.Generator().manual_seed(config.seed)
    base = torch.randn(2, layout.size, generator=g)
    base = base / base.norm(dim=1, keepdim=True)
    axis = np.unique(np.concatenate([np.linspace(-config.extent, config.extent, config.grid), [0.0]]))
    cfg = asdict(config)
    cfg.pop("centers")
    results.write("surface", {"directions": base.numpy().astype(np.float32)},
                  {"seed": config.seed, "what": "the two random directions before normalisation at each centre"})
    summary = {}
    for center in config.centers:
        pts = point_set(ctx.traj, center)
        w = pts.chunk(0, 1, "cpu", torch.float64)[0]
        b = pts.buffer_chunk(0, 1, "cpu", torch.float64, interpolate=True)[0]
        dirs = surface_directions(base, w, layout, config.filter_normalize, config.include_1d)
        points_of = lambda c, w=w, dirs=dirs, b=b: PointSet.affine(w, dirs, c, b)  # noqa: E731
        scalars = {"direction_norms": dirs.norm(dim=1).numpy(), "center": center}
        evaluate = _refined if config.refine else evaluate_plane
        summary[center] = evaluate(ctx, results, _group(center), points_of, axis, axis, {**cfg, "center": center},
                                   scalars, progress, **({"tolerance": config.refine_tolerance} if config.refine else {}))
    return summary


def _refined(ctx: RunContext, results: ShardedResults, group: str, points_of, xs: np.ndarray, ys: np.ndarray,
             cfg: dict, scalars: dict, progress: bool, tolerance: float) -> dict:
    """The grid coarse first, refined where the L2-regularised train loss bends; the rest interpolated."""
    g = len(xs)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    points = points_of(torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64))
    arrays = {k: ((g, g), "f8", np.nan) for k in VALUES}
    results.prepare(group, {**cfg, "engine": ctx.engine_dict()}, arrays, {"x": xs, "y": ys, **scalars}, axes=("x", "y"))
    computed = 0

    def evaluate(want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal computed
        with results.read() as f:
            done = f[group]["done"][:]
        computed += evaluate_missing(ctx, results, group, points, done | ~want.ravel(), progress, group)
        with results.read() as f:
            return f[group]["train_loss_l2"][:], f[group]["done"][:].reshape(g, g)

    _, done, steps = refine_grid(evaluate, g, tolerance)
    with results.read() as f:
        raw = {k: f[group][k][:] for k in VALUES}
    filled = {f"{k}_interpolated": fill(np.where(done, v, np.nan), steps) for k, v in raw.items()}
    results.write(group, filled, {"evaluated": int(done.sum())})
    with results.read() as f:
        summary = {k: f[group][k][()] for k in f[group]}
    summary["computed"] = computed
    return summary


def describe(summary: dict) -> str:
    """The surfaces' summary in the lines the command prints."""
    lines = []
    for center, s in summary.items():
        i = int(np.argmin(np.abs(s["x"])))
        lines.append(f"surface around {center}: {len(s['x'])}x{len(s['y'])} grid over +-{s['x'][-1]:.3g} "
                     f"({s['computed']} points computed now); train loss {s['train_loss'][i, i]:.4f} at the centre, "
                     f"{np.nanmax(s['train_loss']):.4f} at most; test error {s['test_error'][i, i]:.4f} at the centre")
    return "\n".join(lines)


def drawn(group: dict) -> dict:
    """A surface's results group as the figures draw it.

    A refined grid's interpolated values stand in place of its values, which are NaN where no point was evaluated.
    """
    return {**group, **{k.removesuffix("_interpolated"): v for k, v in group.items() if k.endswith("_interpolated")}}


def _report(res: dict) -> list[Section]:
    from figures import surface as fig  # here: matplotlib and plotly load only when a report is drawn

    found = {k: v for k, v in res.get("surface", {}).items() if isinstance(v, dict) and "train_loss" in v}
    groups = {k: drawn(found[k]) for k in sorted(found, key=lambda c: (c != "swa", c != "sgd", c))}  # SWA, SGD, rest
    if not groups:
        return []
    return [Section("surface", "The loss surface around SWA and SGD along the same two random directions",
                    "Li et al.'s picture, asked the SWA paper's question: both panels share the directions "
                    "(filter-normalised at each centre) and one colour scale. The wider basin reaches further "
                    "from the centre before the contours rise; the curves below cut through the centre along each "
                    "direction.", 13.5, lambda: (fig.surface_figure(groups), fig.surface_plotly(groups)),
                    lambda out: fig.surface_csv(groups, out))]


ANALYSIS = Analysis(
    name="surface", help="the classic loss surface (Li et al.) around SWA and SGD along the same two random "
                         "filter-normalised directions",
    config=SurfaceConfig, compute=_run, describe=describe, order=65, unsupported_bn_modes=UNSUPPORTED_BN_MODES,
    report=_report)
"""The surface as the toolkit sees it."""
