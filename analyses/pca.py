"""The trajectory's own principal plane: the first two principal components of its snapshots.

The snapshots ``W [n, P]`` (the SWA branch by default, or the whole trajectory) are centred at their
mean ``m``; the plane is ``m + span(v_1, v_2)`` with v_1, v_2 the top right-singular vectors of
``W - m`` (orthonormal), and the explained variance ratio of component i is ``s_i^2 / sum_j s_j^2``.
Plane coordinates are parameter-space L2 distances from the mean. Every snapshot and both solutions
are projected onto the plane with their distance from it, as in :mod:`analyses.plane`, and the
losses are evaluated through the engine on a grid covering the chosen snapshots and both solutions.
"""

from __future__ import annotations

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
from .plane import evaluate_plane, grid_around, trajectory_projections
from .registry import Analysis, Section

__all__ = ["ANALYSIS", "PCAConfig", "principal_plane", "pca", "describe", "UNSUPPORTED_BN_MODES"]

UNSUPPORTED_BN_MODES = {BNMode.INTERPOLATE: "the PCA plane has no anchors whose statistics could be interpolated "
                                            "(use recompute, or stored: the snapshots' mean statistics)"}
"""BN modes the PCA plane cannot honour, with the reason."""


@dataclass(frozen=True)
class PCAConfig:
    """Settings of the PCA plane.

    Attributes:
        snapshots: ``"swa"`` (the SWA branch's snapshots) or ``"all"`` (the whole trajectory).
        grid: Grid points along the two components.
        margin: Margin around the snapshots and both solutions, as a fraction of their larger extent.
    """

    snapshots: str = "swa"
    grid: tuple[int, int] = (21, 21)
    margin: float = bounded(0.2, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.snapshots not in ("swa", "all"):
            raise UserError(f"pca snapshots must be 'swa' or 'all', got {self.snapshots!r}")
        if min(self.grid) < 2 or self.margin < 0:
            raise UserError("the pca grid needs at least 2 points per axis and a non-negative margin")


def principal_plane(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Mean ``[P]``, the top two principal directions ``[2, P]`` and every component's explained variance ratio.

    Args:
        w: Snapshots ``[n, P]`` (n >= 3).
    """
    w = w.double()
    mean = w.mean(0)
    _, s, vh = torch.linalg.svd(w - mean, full_matrices=False)
    var = (s ** 2).numpy()
    return mean, vh[:2].contiguous(), var / var.sum()


def pca(run: str | os.PathLike, out: str | os.PathLike | None = None, config: PCAConfig | None = None,
        engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Evaluate the PCA plane of the snapshots; writes ``/pca`` into the results file (resumable).

    BN modes: ``recompute`` at every grid point; ``stored``: the mean of the chosen snapshots' statistics.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _run(ctx: RunContext, results: ShardedResults, config: PCAConfig, progress: bool) -> dict:
    t = ctx.traj
    idx = np.flatnonzero(t.meta("branch") == "swa") if config.snapshots == "swa" else np.arange(t.n)
    if idx.size < 3:
        raise UserError(f"pca needs at least three snapshots ({config.snapshots}); {t.path} has {idx.size}")
    mean, basis, ratio = principal_plane(t.weights(idx))
    b_mean = t.buffers(idx).double().mean(0)
    proj = trajectory_projections(t, mean, basis)
    chosen = proj["projection_xy"][idx]
    xs, ys = grid_around(np.concatenate([chosen, proj["solutions_xy"]]), config.grid, config.margin)
    summary = evaluate_plane(ctx, results, "pca", lambda c: PointSet.affine(mean, basis, c, b_mean), xs, ys,
                             asdict(config), {**proj, "explained_variance_ratio": ratio, "snapshot_indices": idx,
                                              "anchor_xy": np.zeros((1, 2))}, progress)
    summary["solutions"] = [s.decode() for s in summary["solutions"]]
    return summary


def describe(s: dict) -> str:
    """The PCA plane's summary in the lines the command prints."""
    r = s["explained_variance_ratio"]
    sol = ", ".join(f"{n.upper()} at ({xy[0]:.3g}, {xy[1]:.3g}) {o:.3g} off the plane"
                    for n, xy, o in zip(s["solutions"], s["solutions_xy"], s["solutions_off_plane"]))
    own = s["off_plane"][s["snapshot_indices"]]
    return (f"pca plane of {len(s['snapshot_indices'])} snapshots: components explain {100 * r[0]:.1f}% and "
            f"{100 * r[1]:.1f}% of their variance; {len(s['x'])}x{len(s['y'])} grid ({s['computed']} points computed "
            f"now), test error {np.nanmin(s['test_error']):.4f}..{np.nanmax(s['test_error']):.4f}; the snapshots lie "
            f"up to {own.max():.3g} off the plane\n  {sol}")


def _report(res: dict) -> list[Section]:
    from figures import surface as fig  # here: matplotlib and plotly load only when a report is drawn

    if "pca" not in res:
        return []
    ratio = res["pca"]["explained_variance_ratio"]
    groups = {"the snapshots' mean": res["pca"]}
    coords = fig.Coordinates((f"PC 1 ({100 * ratio[0]:.1f}%)", f"PC 2 ({100 * ratio[1]:.1f}%)"), "parameter-space L2")
    return [Section("pca", f"The SWA branch's principal plane ({100 * ratio[0]:.1f}% + {100 * ratio[1]:.1f}% of the "
                           "variance)",
                    "Beside the paper: the plane the trajectory itself moves in most, centred at the snapshots' "
                    "mean, drawn as the surfaces are. Look at whether SWA sits in the middle of the low-loss region "
                    "the snapshots explore.", 12,
                    lambda: (fig.surface_figure(groups, coords), fig.surface_plotly(groups, coords)),
                    lambda out: fig.surface_csv({"mean": res["pca"]}, out, "pca"))]


ANALYSIS = Analysis(
    name="pca", help="the plane of the trajectory's two principal components, centred at the snapshots' mean",
    config=PCAConfig, compute=_run, describe=describe, order=70, unsupported_bn_modes=UNSUPPORTED_BN_MODES,
    report=_report)
"""The PCA plane as the toolkit sees it."""
