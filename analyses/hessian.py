"""Hessian sharpness at the solutions (and any snapshot or segment point): top eigenvalues and trace.

At each point w the training loss is the mean cross-entropy over the training split with BatchNorm in
eval mode, using the statistics the engine gives that point (``recompute``, the default: the point's
own, recomputed from the training data). Computed with :mod:`landscape.curvature`:

* the ``top_k`` largest eigenvalues of the Hessian and their unit eigenvectors (Lanczos, ``eigsh``);
* the trace by Hutchinson's estimator with ``trace_probes`` Rademacher vectors, and its standard error.

The Hessian of the L2-regularised loss ``L + 0.5 wd ||w||^2`` is this one plus ``wd I``: its
eigenvalues are these plus the run's weight decay (stored as ``weight_decay``), its trace plus ``wd P``.

Points are named ``sgd``, ``swa``, a snapshot index, or ``t=T`` for ``w_SWA + T (w_SGD - w_SWA)`` on the
segment. Each point is its own group ``/hessian/<name>``, written when it is done (a rerun skips points
already there with the same settings); under torchrun the points are shared out over the ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.curvature import HessianOperator, hutchinson_trace, top_eigen
from landscape.engine import BNMode, EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import PointSet

from .common import RunContext, analysis, check_bn_mode
from .distributed import ShardedResults, rank, world
from .plane import evaluate_plane, trajectory_projections
from .segment import segment_points

__all__ = ["HessianConfig", "hessian", "hessian_operator", "stored_eigenvectors", "EigenPlaneConfig", "eigen_plane",
           "describe", "UNSUPPORTED_BN_MODES", "EIGEN_PLANE_UNSUPPORTED_BN_MODES"]

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (segment points interpolate like the segment analysis)."""


@dataclass(frozen=True)
class HessianConfig:
    """Settings of the Hessian analysis.

    Attributes:
        points: Where: ``sgd``, ``swa``, snapshot indices (as strings) or ``t=T`` on the segment.
        top_k: Number of largest eigenvalues (0: none).
        trace_probes: Rademacher vectors of the Hutchinson trace (0: no trace).
        tol: Relative accuracy of the eigenvalues asked of ARPACK (0: machine precision).
        seed: Seed of the Lanczos start vector and the trace probes.
        vectors: Hessian-vector products vmapped in one pass (trace probes, Lanczos blocks).
    """

    points: tuple[str, ...] = ("swa", "sgd")
    top_k: int = bounded(5, ge=0)
    trace_probes: int = bounded(100, ge=0)
    tol: float = bounded(1e-4, ge=0)
    seed: int = bounded(0, meaning="any integer seeds the start vector and the probes")
    vectors: int = bounded(10, ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.top_k == 0 and self.trace_probes == 0:
            raise UserError("hessian needs top_k >= 1 or trace_probes >= 2")
        if self.trace_probes == 1:
            raise UserError("the Hutchinson trace needs at least 2 probes for its standard error")
        if not self.points:
            raise UserError("hessian needs at least one point")
        for p in self.points:
            _parse(p)


def _parse(name: str) -> tuple[str, float | int | None]:
    """``("solution", None)``, ``("snapshot", i)`` or ``("segment", t)`` for a point name."""
    if name in ("sgd", "swa"):
        return "solution", None
    if name.startswith("t="):
        try:
            return "segment", float(name[2:])
        except ValueError:
            pass
    elif name.lstrip("-").isdigit():
        return "snapshot", int(name)
    raise UserError(f"hessian point {name!r}: use sgd, swa, a snapshot index or t=T on the SGD-SWA segment")


def _point_set(ctx: RunContext, name: str) -> PointSet:
    """The point as a one-point set carrying the buffers the BN modes need."""
    kind, arg = _parse(name)
    t = ctx.traj
    if kind == "solution":
        w, b = t.solution(name)
        return PointSet.explicit(w[None], b[None])
    if kind == "snapshot":
        return PointSet.explicit(t.weights([arg]), t.buffers([arg]))
    return segment_points(t, np.array([arg]))[0]


def hessian_operator(ctx: RunContext, name: str, vectors: int = 10) -> tuple[HessianOperator, float]:
    """The Hessian of the training loss at a named point, on the engine's device and in its dtype.

    Returns:
        The operator and the point's training loss as the engine evaluates it (with the same statistics).
    """
    pts = _point_set(ctx, name)
    res = ctx.engine.evaluate(pts, splits=("train",))  # the statistics the BN mode gives this point
    w = pts.chunk(0, 1, dtype=torch.float64)[0]
    x, y = ctx.splits["train"]
    eng = ctx.engine
    op = HessianOperator(eng.template, w, res.buffers[0], x, y, eng.device, eng.dtype, eng.memory_budget,
                         eng.act_bytes, vectors)
    return op, float(res.loss["train"][0])


def hessian(run: str | os.PathLike, out: str | os.PathLike | None = None, config: HessianConfig | None = None,
            engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Top eigenvalues and trace of the training-loss Hessian at each point; writes ``/hessian/<point>``.

    Returns:
        ``{point: {"eigenvalues": [k], "trace": float, "trace_se": float, ...}}``.
    """
    config = config or HessianConfig()
    with analysis(run, out, engine_config, model, data) as (ctx, results):
        return _run(ctx, results, config, progress)


def _compute(ctx: RunContext, name: str, config: HessianConfig) -> dict:
    t0 = time.perf_counter()
    op, loss = hessian_operator(ctx, name, config.vectors)
    out: dict = {"train_loss": loss, "parameters": op.size}
    if config.top_k:
        k = min(config.top_k, op.size - 1)
        vals, vecs = top_eigen(op, k, config.tol, config.seed)
        out.update(eigenvalues=vals, eigenvectors=vecs.astype(np.float32))
    if config.trace_probes:
        est = hutchinson_trace(op, config.trace_probes, config.seed)
        out.update(trace=est.trace, trace_se=est.standard_error, trace_samples=est.samples)
    out.update(hvps=op.calls, seconds=time.perf_counter() - t0)
    return out


def _run(ctx: RunContext, results: ShardedResults, config: HessianConfig, progress: bool) -> dict:
    import torch.distributed as dist

    cfg = {**asdict(config), "engine": ctx.engine_dict()}
    cfg.pop("points")
    cfg_json = json.dumps(cfg, sort_keys=True)
    summary: dict = {}
    with results.read() if results.path.exists() else nullcontext() as f:
        for name in config.points:
            g = f"hessian/{name}" if f is not None else None
            if g and g in f and f[g].attrs.get("config") == cfg_json and "hvps" in f[g]:
                summary[name] = {k: f[g][k][()] for k in f[g]}
    todo = [n for n in config.points if n not in summary]
    r, w = rank(), world()
    for lo in range(0, len(todo), w):  # one round: one point per rank, then rank 0 writes them all
        mine = todo[lo + r] if lo + r < len(todo) else None
        if progress and mine is not None:
            print(f"hessian at {mine} (rank {r})" if w > 1 else f"hessian at {mine}", flush=True)
        got = [(mine, _compute(ctx, mine, config) if mine is not None else None)]
        if w > 1:
            parts: list = [None] * w
            dist.all_gather_object(parts, got[0])
            got = parts
        for name, vals in got:
            if name is None:
                continue
            results.write(f"hessian/{name}", vals, {"config": cfg_json, "weight_decay": ctx.traj.config["weight_decay"],
                                                    "point": name})
            summary[name] = vals
    return {n: summary[n] for n in config.points}


def stored_eigenvectors(results: ShardedResults, name: str) -> torch.Tensor:
    """The unit eigenvectors ``[k, P]`` (float64) that ``analyze hessian`` stored at point ``name``.

    Raises:
        UserError: The results file holds none there.
    """
    key = f"hessian/{name}/eigenvectors"
    with (results.read() if results.path.exists() else nullcontext()) as f:
        if f is None or key not in f:
            raise UserError(f"directions along Hessian eigenvectors need the eigenvectors at {name.upper()}: run "
                            f"'swa-landscape analyze RUN hessian' first (into {results.path})")
        d = torch.from_numpy(f[key][:]).double()
    return d / d.norm(dim=1, keepdim=True)


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


EIGEN_PLANE_UNSUPPORTED_BN_MODES = {BNMode.INTERPOLATE: "a plane through one solution has one anchor, so there is "
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
    config = config or EigenPlaneConfig()
    check_bn_mode("the eigen-direction plane", engine_config, EIGEN_PLANE_UNSUPPORTED_BN_MODES)
    with analysis(run, out, engine_config, model, data) as (ctx, results):
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
    lines = ["hessian of the training loss (BN eval, the point's statistics):"]
    for name, s in summary.items():
        parts = [f"  at {name}: train loss {float(s['train_loss']):.4g}"]
        if "eigenvalues" in s:
            parts.append("top eigenvalues " + ", ".join(f"{v:.4g}" for v in np.asarray(s["eigenvalues"])))
        if "trace" in s:
            parts.append(f"trace {float(s['trace']):.4g} +- {float(s['trace_se']):.2g} (Hutchinson, 1 SE)")
        parts.append(f"{int(s['hvps'])} Hessian-vector products in {float(s['seconds']):.1f} s")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def describe_eigen_plane(summary: dict) -> str:
    lines = []
    for name, s in summary.items():
        lines.append(f"plane of the top two Hessian eigenvectors at {name.upper()}: {len(s['x'])}x{len(s['y'])} grid "
                     f"over +-{s['x'][-1]:.3g} ({s['computed']} points computed now); test error "
                     f"{np.nanmin(s['test_error']):.4f}..{np.nanmax(s['test_error']):.4f}")
    return "\n".join(lines)
