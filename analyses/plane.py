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
from torch import nn

from landscape.config import EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import PointSet, affine_buffers
from swa.runs import point
from swa.trajectory import Trajectory

from .common import VALUES, RunContext, evaluate_missing
from .distributed import ShardedResults
from .registry import Analysis, Section

__all__ = ["ANALYSIS", "plane_section", "PlaneConfig", "PRESETS", "group_name", "branch_start", "plane_basis", "project", "resolve_anchors",
           "grid_around", "trajectory_projections", "evaluate_plane", "plane", "describe"]

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (see the analysis function for their meaning)."""


@dataclass(frozen=True)
class PlaneConfig:
    """Settings of the plane analysis.

    Attributes:
        anchors: Three of ``"sgd"``, ``"swa"`` or snapshot indices; ``("fge",)`` picks the
            first, middle and last FGE proposal (captured snapshots); ``("paper-fig1",)`` the
            paper's Figure 1 plane through w_SGD, w_SWA and the point where the SWA branch
            started; empty picks the first, middle and last snapshot of the SWA branch (Figure 3).
        grid: Grid points along u and v.
        margin: Margin around the anchors, both solutions and the SWA branch's projected
            snapshots, as a fraction of their larger extent.
    """

    anchors: tuple = field(default_factory=tuple)
    grid: tuple[int, int] = (21, 21)
    margin: float = bounded(0.2, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        if min(self.grid) < 2:
            raise UserError("the plane grid needs at least 2 points per axis")


PRESETS = {"paper-fig1": "plane_fig1"}
"""Named anchor presets and the results group each is written to (other anchors: ``plane``)."""


def group_name(config: PlaneConfig) -> str:
    """The results group of a plane: ``plane``, or the preset's own (both can live in one results file)."""
    return PRESETS.get(config.anchors[0], "plane") if len(config.anchors) == 1 else "plane"


def branch_start(t: Trajectory) -> int:
    """Index of the snapshot where the SWA branch forked: the conventional run's snapshot at epoch ``swa_start``.

    Raises:
        UserError: The run has no such snapshot (an ``init`` run, or snapshots not taken at that epoch).
    """
    c = t.config
    start = t.train_config().swa_start_epoch
    idx = np.flatnonzero((t.meta("branch") == "sgd") & np.isclose(t.meta("epoch"), start))
    if c.get("init") or not idx.size:
        raise UserError(f"{t.path} has no snapshot of the conventional run at the SWA start (epoch {start}); "
                        "pass three anchors instead")
    return int(idx[-1])


def resolve_anchors(t: Trajectory, anchors: tuple) -> list[str | int]:
    """Turn the anchor spec into three concrete points (names or snapshot indices)."""
    branch, captured = t.meta("branch"), t.meta("captured")
    if tuple(anchors) == ("paper-fig1",):
        return ["sgd", "swa", branch_start(t)]
    if not anchors or tuple(anchors) == ("fge",):
        pool = np.flatnonzero(captured) if anchors else np.flatnonzero(branch == "swa")
        what = "captured FGE proposals" if anchors else "snapshots of the SWA branch"
        if pool.size < 3:
            hint = {"import": " (import them with --snapshots)", "recorder": " (store them with Recorder.capture)"}
            raise UserError(f"the plane needs three {what}; {t.path} has {pool.size}{hint.get(t.source, '')}")
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
          engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Evaluate the plane grid; writes ``/plane`` (``/plane_fig1`` for that preset) into the results file (resumable).

    BN modes: ``recompute`` at every grid point; ``stored``: the first anchor's statistics everywhere;
    ``interpolate``: the three anchors' statistics interpolated affinely with the plane coordinates.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def grid_around(xy: np.ndarray, grid: tuple[int, int], margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates along u ``[NU]`` and v ``[NV]`` covering the points ``xy [N, 2]`` with a margin.

    The margin is a fraction of the larger extent, on both axes, so a thin point cloud still gets a
    grid with room on its short side.
    """
    lo, hi = xy.min(0), xy.max(0)
    pad = margin * max(float((hi - lo).max()), 1e-12)
    return (np.linspace(lo[0] - pad, hi[0] + pad, grid[0]), np.linspace(lo[1] - pad, hi[1] + pad, grid[1]))


def trajectory_projections(t: Trajectory, origin: torch.Tensor, basis: torch.Tensor) -> dict[str, np.ndarray]:
    """Every snapshot and both solutions projected onto the plane ``origin + span(basis)``, with off-plane distances."""
    proj_xy, off = [], []
    for i in range(0, t.n, 256):  # chunk by chunk: a run's snapshots need not fit in memory
        xy, o = project(t.weights(slice(i, min(i + 256, t.n))), origin, basis)
        proj_xy.append(xy)
        off.append(o)
    sol = [s for s in ("sgd", "swa") if t.has_solution(s)]
    sxy, soff = project(torch.stack([t.solution(s)[0] for s in sol]), origin, basis)
    return {"projection_xy": np.concatenate(proj_xy) if proj_xy else np.zeros((0, 2)),
            "off_plane": np.concatenate(off) if off else np.zeros(0),
            "projected_indices": np.arange(t.n), "projected_branch": t.meta("branch").astype("S3"),
            "projected_captured": t.meta("captured"),
            "solutions_xy": sxy, "solutions_off_plane": soff, "solutions": np.array(sol, dtype="S3")}


def evaluate_plane(ctx: RunContext, results: ShardedResults, group: str, points_of, xs: np.ndarray, ys: np.ndarray,
                   cfg: dict, scalars: dict, progress: bool) -> dict:
    """Evaluate a plane's grid into ``group`` (resumable) and return its arrays.

    Args:
        ctx: The open run and its engine.
        results: The results file.
        group: The plane's results group.
        points_of: ``coords [NU * NV, 2] -> PointSet`` of the plane.
        xs: Grid coordinates along the first basis vector ``[NU]``.
        ys: Grid coordinates along the second basis vector ``[NV]``.
        cfg: The analysis settings (a different config restarts the group).
        scalars: Datasets written with the group (projections, anchors...).
        progress: Show a progress bar.
    """
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    coords = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
    arrays = {k: ((len(xs), len(ys)), "f8", np.nan) for k in VALUES}
    done = results.prepare(group, {**cfg, "engine": ctx.engine_dict()}, arrays, {"x": xs, "y": ys, **scalars},
                           axes=("x", "y"))
    n_new = evaluate_missing(ctx, results, group, points_of(coords), done, progress, group)
    with results.read() as f:
        g = f[group]
        summary = {k: g[k][()] for k in g}
    summary["computed"] = n_new
    return summary


def _run(ctx: RunContext, results: ShardedResults, config: PlaneConfig, progress: bool) -> dict:
    t = ctx.traj
    names = resolve_anchors(t, config.anchors)
    pts = [point(t, a) for a in names]
    basis, anchor_xy = plane_basis(pts[0][0], pts[1][0], pts[2][0])
    w1 = pts[0][0].double()
    b0, bb = affine_buffers(torch.as_tensor(anchor_xy), torch.stack([p[1] for p in pts]))  # through the 3 anchors
    proj = trajectory_projections(t, w1, basis)
    # the grid holds the anchors, both solutions and the SWA branch's snapshots, with the margin around them
    swa = proj["projected_branch"].astype(str) == "swa"
    xs, ys = grid_around(np.concatenate([anchor_xy, proj["solutions_xy"], proj["projection_xy"][swa]]),
                         config.grid, config.margin)
    cfg = {**asdict(config), "anchors": names}
    summary = evaluate_plane(ctx, results, group_name(config), lambda c: PointSet.affine(w1, basis, c, b0, bb),
                             xs, ys, cfg, {"anchor_xy": anchor_xy, **proj}, progress)
    results.write(group_name(config), {}, {"anchors": json.dumps(names)})
    summary.update(anchors=names, solutions=[s.decode() for s in summary["solutions"]])
    return summary


def describe(s: dict) -> str:
    """The plane's summary in the lines the command prints."""
    sol = ", ".join(f"{n.upper()} at ({xy[0]:.3g}, {xy[1]:.3g}) {o:.3g} off the plane"
                    for n, xy, o in zip(s["solutions"], s["solutions_xy"], s["solutions_off_plane"]))
    return (f"plane through {s['anchors']}: {len(s['x'])}x{len(s['y'])} grid ({s['computed']} points computed now); "
            f"test error {np.nanmin(s['test_error']):.4f}..{np.nanmax(s['test_error']):.4f}; "
            f"snapshots lie up to {np.max(s['off_plane']) if s['off_plane'].size else 0:.3g} off the plane\n  {sol}")


def plane_section(res: dict, key: str, title: str, what: str, order: float) -> Section:
    """The report section of a plane group (the planes, the eigen-direction planes and the PCA plane share it)."""
    from figures import planes  # here: matplotlib and plotly load only when a report is drawn

    return Section(key, title, what, order, lambda: (planes.plane_figure(res[key]), planes.plane_plotly(res[key])))


def _report(res: dict) -> list[Section]:
    out = []
    if "plane_fig1" in res:
        out.append(plane_section(
            res, "plane_fig1", "The plane through SGD, SWA and the SWA branch's start (paper Figure 1)",
            "The paper finds w_SWA near the centre of the low-error region and w_SGD near its edge. Look at where "
            "the SWA diamond and the SGD square sit relative to the test-error contours.", 1))
    if "plane" in res:
        out.append(plane_section(
            res, "plane", f"Plane through three points of the SWA branch {res['plane']['_attrs'].get('anchors', '')} "
                          "(paper Figure 3)",
            "The SWA branch's snapshots circle a low-loss region; the paper finds their average, w_SWA, near its "
            "centre. Snapshots far off the plane (bright colours) are drawn where they project.", 3))
    return out


ANALYSIS = Analysis(
    name="plane", help="the plane through three points (SWA branch snapshots, FGE proposals, or paper-fig1: SGD, SWA "
                       "and the branch's start) with the trajectory projected (paper Figures 1 and 3)",
    config=PlaneConfig, compute=_run, describe=describe, order=30,
    paper=(("plane", PlaneConfig()), ("plane_fig1", PlaneConfig(("paper-fig1",)))),
    unsupported_bn_modes=UNSUPPORTED_BN_MODES, skippable=True, report=_report)
"""The plane as the toolkit sees it."""
