"""The plane of each solution's top two Hessian eigenvectors (beside the paper).

At w_SWA and at w_SGD, the grid ``w + x v_1 + y v_2`` over the point's top two eigenvectors as the ``hessian``
analysis stored them (run it first, with ``top_k >= 2``), over the same extent at both solutions so their planes
compare, with every snapshot projected like the other planes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import BNMode, EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import PointSet

from .common import RunContext
from .distributed import ShardedResults
from .plane import evaluate_plane, trajectory_projections
from .registry import Analysis, Section
from .results import stored_eigenvectors

__all__ = ["ANALYSIS", "EigenPlaneConfig", "eigen_plane", "describe", "UNSUPPORTED_BN_MODES"]


@dataclass(frozen=True)
class EigenPlaneConfig:
    """Settings of the planes spanned by each solution's top two Hessian eigenvectors.

    Attributes:
        grid: Grid points along the first and second eigenvector.
        extent: The grid spans [-extent, extent] on both axes (parameter-space L2); None: ||w_SGD - w_SWA||,
            the same for both solutions so their planes compare.
    """

    grid: tuple[int, int] = (21, 21)
    extent: float | None = bounded(None, gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        if min(self.grid) < 2:
            raise UserError("the eigen-direction plane needs at least 2 grid points per axis and a positive extent")


UNSUPPORTED_BN_MODES = {BNMode.INTERPOLATE: "a plane through one solution has one anchor, so there is "
                                             "nothing to interpolate toward (use recompute or stored)"}


def eigen_plane(run: str | os.PathLike, out: str | os.PathLike | None = None, config: EigenPlaneConfig | None = None,
                engine_config: EngineConfig | None = None, progress: bool = True, *,
                model: nn.Module | None = None, data=None) -> dict:
    """At w_SWA and w_SGD, the plane ``w + x v_1 + y v_2`` of the point's top two Hessian eigenvectors.

    Writes ``/plane_hessian_swa`` and ``/plane_hessian_sgd`` (the same groups as the other planes: grid,
    values, every snapshot projected). BN: ``recompute`` at every grid point, ``stored``: the solution's.

    Returns:
        ``{origin: plane summary}``.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _run(ctx: RunContext, results: ShardedResults, config: EigenPlaneConfig, progress: bool) -> dict:
    t = ctx.traj
    (w_swa, _), (w_sgd, _) = t.solution("swa"), t.solution("sgd")
    extent = config.extent or float((w_sgd.double() - w_swa.double()).norm())
    axis = np.linspace(-extent, extent, config.grid[0]), np.linspace(-extent, extent, config.grid[1])
    out_ = {}
    for name in ("swa", "sgd"):
        vecs = stored_eigenvectors(results, name)
        if len(vecs) < 2:
            raise UserError(f"the eigen-direction plane needs two eigenvectors at {name.upper()} (--top-k >= 2)")
        basis = torch.linalg.qr(vecs[:2].T)[0].T  # orthonormal to float64 precision (stored vectors are f4)
        basis = (basis * torch.sign((basis * vecs[:2]).sum(1, keepdim=True))).contiguous()  # QR's signs undone
        w, b = t.solution(name)
        w = w.double()
        cfg = {**asdict(config), "extent": extent, "origin": name,
               "directions_sha1": hashlib.sha1(vecs[:2].numpy().tobytes()).hexdigest()}
        out_[name] = evaluate_plane(ctx, results, f"plane_hessian_{name}",
                                    lambda c: PointSet.affine(w, basis, c, b), *axis, cfg,
                                    {**trajectory_projections(t, w, basis), "anchor_xy": np.zeros((1, 2))},
                                    progress)
    return out_


def describe(summary: dict) -> str:
    """The eigen-direction planes' summary in the lines the command prints."""
    lines = []
    for name, s in summary.items():
        lines.append(f"plane of the top two Hessian eigenvectors at {name.upper()}: {len(s['x'])}x{len(s['y'])} grid "
                     f"over +-{s['x'][-1]:.3g} ({s['computed']} points computed now); test error "
                     f"{np.nanmin(s['test_error']):.4f}..{np.nanmax(s['test_error']):.4f}")
    return "\n".join(lines)


def _report(res: dict) -> list[Section]:
    from figures import surface as fig  # here: matplotlib and plotly load only when a report is drawn

    groups = {name: res[f"plane_hessian_{name}"] for name in ("swa", "sgd") if f"plane_hessian_{name}" in res}
    if not groups:
        return []
    coords = fig.Coordinates(("eigenvector 1", "eigenvector 2"), "parameter-space L2")
    return [Section("plane_hessian", "The planes of the top two Hessian eigenvectors at SWA and at SGD",
                    "Beside the paper: the loss along each solution's sharpest directions, over the same extent and "
                    "on one colour scale (the same picture as the random surface). Compare how far the low-loss "
                    "region reaches around each; the SWA branch is drawn where it projects.", 11,
                    lambda: (fig.surface_figure(groups, coords), fig.surface_plotly(groups, coords)),
                    lambda out: fig.surface_csv(groups, out, "plane_hessian"))]


ANALYSIS = Analysis(
    name="hessian-plane", help="at SWA and SGD, the plane of the point's top two Hessian eigenvectors (run hessian "
                               "first)",
    config=EigenPlaneConfig, compute=_run, describe=describe, order=60, unsupported_bn_modes=UNSUPPORTED_BN_MODES,
    report=_report)
"""The eigen-direction plane as the toolkit sees it."""
