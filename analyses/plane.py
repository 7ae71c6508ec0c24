"""The plane through three weight points (paper section 3.1, Figures 1 and 3).

Orthonormal basis by Gram-Schmidt: u = (w3 - w1) / ||w3 - w1||, v = the part of
(w2 - w1) orthogonal to u, normalised. Plane coordinates are parameter-space L2
distances from w1 along u and v. Every trajectory snapshot (and both solutions) is
projected onto the plane and its distance from the plane is recorded: those points
generally do not lie in the plane, and the figures show by how much.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from landscape.engine import EngineConfig
from landscape.errors import UserError
from landscape.points import PointSet, affine_buffers
from swa.runs import point
from swa.trajectory import Trajectory

from .common import RunContext, analysis, evaluate_missing
from .distributed import ShardedResults

__all__ = ["PlaneConfig", "plane_basis", "project", "resolve_anchors", "plane", "describe"]

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (see the analysis function for their meaning)."""


@dataclass(frozen=True)
class PlaneConfig:
    """Settings of the plane analysis.

    Attributes:
        anchors: Three of ``"sgd"``, ``"swa"`` or snapshot indices; ``("fge",)`` picks the
            first, middle and last FGE proposal (captured snapshots); empty picks the
            first, middle and last snapshot of the SWA branch.
        grid: Grid points along u and v.
        margin: Margin around the anchors, as a fraction of their extent on each axis.
    """

    anchors: tuple = field(default_factory=tuple)
    grid: tuple[int, int] = (21, 21)
    margin: float = 0.2

    def __post_init__(self) -> None:
        if min(self.grid) < 2:
            raise UserError("the plane grid needs at least 2 points per axis")
        if self.margin < 0:
            raise UserError("the plane margin must be non-negative")


def resolve_anchors(t: Trajectory, anchors: tuple) -> list[str | int]:
    """Turn the anchor spec into three concrete points (names or snapshot indices)."""
    branch, captured = t.meta("branch"), t.meta("captured")
    if not anchors or tuple(anchors) == ("fge",):
        pool = np.flatnonzero(captured) if anchors else np.flatnonzero(branch == "swa")
        what = "captured FGE proposals" if anchors else "snapshots of the SWA branch"
        if pool.size < 3:
            raise UserError(f"the plane needs three {what}; {t.path} has {pool.size}")
        return [int(pool[0]), int(pool[pool.size // 2]), int(pool[-1])]
    if len(anchors) != 3:
        raise UserError(f"the plane needs exactly three anchors, got {len(anchors)}")
    out: list[str | int] = []
    for a in anchors:
        if isinstance(a, str) and a in ("sgd", "swa"):
            out.append(a)
            continue
        try:
            i = int(a)
        except (TypeError, ValueError):
            raise UserError(f"anchor {a!r} is neither 'sgd', 'swa' nor a snapshot index") from None
        if not 0 <= i < t.n:
            raise UserError(f"anchor index {i} out of range: {t.path} has {t.n} snapshots")
        out.append(i)
    return out


def plane_basis(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor, rtol: float = 1e-6
                ) -> tuple[torch.Tensor, np.ndarray]:
    """Gram-Schmidt basis ``[2, P]`` (rows u, v) and the anchors' plane coordinates ``[3, 2]``.

    Raises:
        UserError: Two anchors coincide or the three are collinear.
    """
    a, b = (w3 - w1).double(), (w2 - w1).double()
    na = a.norm()
    if na == 0:
        raise UserError("plane anchors 1 and 3 coincide")
    u = a / na
    bx = b @ u
    perp = b - bx * u
    npp = perp.norm()
    if npp <= rtol * max(b.norm().item(), na.item()):
        raise UserError("the three plane anchors are collinear (or two coincide); pick other anchors")
    v = perp / npp
    xy = np.array([[0.0, 0.0], [bx.item(), npp.item()], [na.item(), 0.0]])
    return torch.stack([u, v]), xy


def project(weights: torch.Tensor, origin: torch.Tensor, basis: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Plane coordinates ``[N, 2]`` and distance from the plane ``[N]`` of points ``[N, P]``."""
    d = weights.double() - origin.double()
    xy = d @ basis.T
    off = (d - xy @ basis).norm(dim=1)
    return xy.numpy(), off.numpy()


def plane(run: str | os.PathLike, out: str | os.PathLike | None = None, config: PlaneConfig | None = None,
          engine_config: EngineConfig | None = None, progress: bool = True) -> dict:
    """Evaluate the plane grid; writes ``/plane`` into the results file (resumable).

    BN modes: ``recompute`` at every grid point; ``stored``: the first anchor's statistics everywhere;
    ``interpolate``: the three anchors' statistics interpolated affinely with the plane coordinates.
    """
    config = config or PlaneConfig()
    with analysis(run, out, engine_config) as (ctx, results):
        return _run(ctx, results, config, progress)


def _run(ctx: RunContext, results: ShardedResults, config: PlaneConfig, progress: bool) -> dict:
    t = ctx.traj
    names = resolve_anchors(t, config.anchors)
    pts = [point(t, a) for a in names]
    basis, anchor_xy = plane_basis(pts[0][0], pts[1][0], pts[2][0])
    lo, hi = anchor_xy.min(0), anchor_xy.max(0)
    ext = hi - lo
    xs = np.linspace(lo[0] - config.margin * ext[0], hi[0] + config.margin * ext[0], config.grid[0])
    ys = np.linspace(lo[1] - config.margin * ext[1], hi[1] + config.margin * ext[1], config.grid[1])
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    coords = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
    w1 = pts[0][0].double()
    b0, bb = affine_buffers(torch.as_tensor(anchor_xy), torch.stack([p[1] for p in pts]))  # through the 3 anchors
    points = PointSet.affine(w1, basis, coords, b0, bb)
    # projections of every snapshot, chunk by chunk, and of both solutions
    proj_xy, off = [], []
    for i in range(0, t.n, 256):
        xy, o = project(t.weights(slice(i, min(i + 256, t.n))), w1, basis)
        proj_xy.append(xy)
        off.append(o)
    sol = [s for s in ("sgd", "swa") if t.has_solution(s)]
    sxy, soff = project(torch.stack([t.solution(s)[0] for s in sol]), w1, basis)
    cfg = {**asdict(config), "anchors": names, "engine": ctx.engine_dict()}
    shape = (len(xs), len(ys))
    arrays = {k: (shape, "f8", np.nan) for k in ("train_loss", "train_error", "test_loss", "test_error")}
    scalars = {"x": xs, "y": ys, "anchor_xy": anchor_xy,
               "projection_xy": np.concatenate(proj_xy) if proj_xy else np.zeros((0, 2)),
               "off_plane": np.concatenate(off) if off else np.zeros(0),
               "projected_indices": np.arange(t.n), "projected_branch": t.meta("branch").astype("S3"),
               "projected_captured": t.meta("captured"),
               "solutions_xy": sxy, "solutions_off_plane": soff, "solutions": np.array(sol, dtype="S3")}
    done = results.prepare("plane", cfg, arrays, scalars)
    n_new = evaluate_missing(ctx, results, "plane", points, done, progress, "plane")
    results.write("plane", {}, {"anchors": json.dumps(names)})
    with results.read() as f:
        g = f["plane"]
        summary = {k: g[k][:] for k in ("x", "y", "train_loss", "test_error", "anchor_xy", "solutions_xy",
                                        "solutions_off_plane", "off_plane")}
    summary.update(anchors=names, computed=n_new, solutions=sol)
    return summary


def describe(s: dict) -> str:
    sol = ", ".join(f"{n.upper()} at ({xy[0]:.3g}, {xy[1]:.3g}) {o:.3g} off the plane"
                    for n, xy, o in zip(s["solutions"], s["solutions_xy"], s["solutions_off_plane"]))
    return (f"plane through {s['anchors']}: {len(s['x'])}x{len(s['y'])} grid ({s['computed']} points computed now); "
            f"test error {np.nanmin(s['test_error']):.4f}..{np.nanmax(s['test_error']):.4f}; "
            f"snapshots lie up to {np.max(s['off_plane']) if s['off_plane'].size else 0:.3g} off the plane\n  {sol}")
