"""Hessian sharpness at the solutions (and any snapshot or segment point): eigenvalues, trace, density, blocks.

At each point w the training loss is the run objective's mean loss over the training split (cross-entropy for
classification) with BatchNorm in eval mode, using the statistics the engine gives that point (``recompute``, the
default: the point's own, recomputed from the training data). Computed with :mod:`landscape.curvature` and
:mod:`landscape.spectrum`:

* the ``top_k`` largest eigenvalues of the Hessian and their unit eigenvectors (Lanczos, ``eigsh``);
* the trace by Hutch++ (Meyer et al. 2021): the part in the subspace of ``H S`` for ``trace_deflate`` Rademacher
  vectors ``S`` exactly, the rest by Hutchinson's estimator over projected Rademacher vectors, with its standard
  error; probes are added until the standard error is at most ``trace_rtol`` of the trace, ``trace_probes`` at
  most (``trace_rtol`` 0: all; ``trace_deflate`` 0: plain Hutchinson);
* on request, the eigenvalue density by stochastic Lanczos quadrature (``density_runs`` start vectors of
  ``density_steps`` Lanczos steps; its nodes, weights and the Gaussian-broadened density on a grid), the most
  negative eigenvalue (``negative``: a saddle shows as one well below 0 against the top one), and per layer (the
  parameters of one module: the Hessian's diagonal block) the top eigenvalue and the trace (``blocks``).

The Hessian of the L2-regularised loss ``L + 0.5 wd ||w||^2`` is this one plus ``wd I``: its
eigenvalues are these plus the run's weight decay (stored as ``weight_decay``), its trace plus ``wd P``.

Points are named ``sgd``, ``swa``, a snapshot index, ``t=T`` for ``w_SWA + T (w_SGD - w_SWA)`` on the
segment, or ``captured``: every captured snapshot of the SWA branch (curvature along the trajectory, against the
average's). Each point is its own group ``/hessian/<name>``, written when it is done (a rerun skips points
already there with the same settings); under torchrun the points are shared out over the ranks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.curvature import HessianOperator, hutchinson_trace, top_eigen
from landscape.errors import UserError, bounded, check_bounds
from landscape.layout import Layout
from landscape.spectrum import Block, bottom_eigen, spectral_density
from swa.runs import check_points, point_set

from .common import RunContext, per_point
from .distributed import ShardedResults
from .metrics import Metric
from .registry import Analysis, Section

__all__ = ["ANALYSIS", "HessianConfig", "hessian", "hessian_operator", "describe", "layer_blocks", "chosen_blocks",
           "UNSUPPORTED_BN_MODES"]

CAPTURED = "captured"
"""The point name that stands for every captured snapshot of the SWA branch."""

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (segment points interpolate like the segment analysis)."""


@dataclass(frozen=True)
class HessianConfig:
    """Settings of the Hessian analysis.

    Attributes:
        points: Where: ``sgd``, ``swa``, snapshot indices (as strings) or ``t=T`` on the segment.
        top_k: Number of largest eigenvalues (0: none).
        trace_probes: The most Rademacher vectors of the Hutchinson trace (0: no trace).
        trace_rtol: Stop the trace once its standard error is at most this fraction of it (0: use all trace_probes).
        trace_deflate: Dimension of the subspace whose part of the trace is computed exactly (Hutch++; 0: plain
            Hutchinson); costs twice as many products.
        tol: Relative accuracy of the eigenvalues asked of ARPACK (0: machine precision).
        seed: Seed of the Lanczos start vector and the trace probes.
        vectors: Hessian-vector products vmapped in one pass (trace probes, Lanczos blocks).
        density_runs: Start vectors of the spectral density (stochastic Lanczos quadrature; 0: no density).
        density_steps: Lanczos steps per start vector (PyHessian's density: 100 steps, 1 run).
        negative: Also the most negative eigenvalue.
        blocks: Also each layer's top eigenvalue and trace (the Hessian restricted to the layer's parameters).
        block_names: With blocks, only these: module names (a layer: ``0``, ``features.3``) or parameter names
            (``0.weight``: that parameter alone), in this order; empty: every layer.
    """

    points: tuple[str, ...] = ("swa", "sgd")
    top_k: int = bounded(5, ge=0)
    trace_probes: int = bounded(100, ge=0)
    trace_rtol: float = bounded(0.03, ge=0)
    trace_deflate: int = bounded(10, ge=0)
    tol: float = bounded(1e-4, ge=0)
    seed: int = bounded(0, meaning="any integer seeds the start vector and the probes")
    vectors: int = bounded(10, ge=1)
    density_runs: int = bounded(0, ge=0)
    density_steps: int = bounded(90, ge=2)
    negative: bool = False
    blocks: bool = False
    block_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.top_k == 0 and self.trace_probes == 0 and not (self.density_runs or self.negative):
            raise UserError("hessian needs top_k >= 1, trace_probes >= 2, density_runs >= 1 or negative")
        if self.block_names and not self.blocks:
            raise UserError("block_names chooses among the blocks: ask for them with blocks")
        if self.trace_probes == 1 or self.blocks and self.trace_probes < 2:
            raise UserError("the Hutchinson trace (also each block's) needs at least 2 probes for its standard error")
        others = tuple(p for p in self.points if p != CAPTURED)
        if others or not self.points:
            check_points(others, "hessian")


def hessian_operator(ctx: RunContext, name: str, vectors: int = 10) -> tuple[HessianOperator, float]:
    """The Hessian of the training loss at a named point, on the engine's device and in its dtype.

    Returns:
        The operator and the point's training loss as the engine evaluates it (with the same statistics).
    """
    pts = point_set(ctx.traj, name)
    res = ctx.engine.evaluate(pts, splits=("train",))  # the statistics the BN mode gives this point
    w = pts.chunk(0, 1, dtype=torch.float64)[0]
    x, y = ctx.splits["train"]
    eng = ctx.engine
    op = HessianOperator(eng.template, w, res.buffers[0], x, y, eng.device, eng.dtype, eng.memory_budget,
                         eng.act_bytes, vectors, objective=eng.objective)
    return op, float(res.loss["train"][0])


def hessian(run: str | os.PathLike, out: str | os.PathLike | None = None, config: HessianConfig | None = None,
            engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Top eigenvalues and trace of the training-loss Hessian at each point; writes ``/hessian/<point>``.

    Returns:
        ``{point: {"eigenvalues": [k], "trace": float, "trace_se": float, ...}}``.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _compute(ctx: RunContext, name: str, config: HessianConfig) -> dict:
    t0 = time.perf_counter()
    op, loss = hessian_operator(ctx, name, config.vectors)
    out: dict = {"train_loss": loss, "parameters": op.size}
    if config.top_k:
        k = min(config.top_k, op.size - 1)
        vals, vecs = top_eigen(op, k, config.tol, config.seed)
        out.update(eigenvalues=vals, eigenvectors=vecs.astype(np.float32))
    if config.trace_probes:
        est = hutchinson_trace(op, config.trace_probes, config.seed, config.trace_rtol,
                               deflate=min(config.trace_deflate, op.size - 1))
        out.update(trace=est.trace, trace_se=est.standard_error, trace_samples=est.samples)
    if config.density_runs:
        d = spectral_density(op, config.density_runs, config.density_steps, config.seed)
        out.update(density_nodes=d.nodes, density_weights=d.weights, density_grid=d.grid, density=d.density,
                   density_sigma2=d.sigma2)
    if config.negative:
        out["min_eigenvalue"] = bottom_eigen(op, config.tol, config.seed)[0]
    if config.blocks:
        out.update(_blocks(op, config))
    out.update(hvps=op.calls, seconds=time.perf_counter() - t0)
    return out


def layer_blocks(layout: Layout) -> list[tuple[str, int, int]]:
    """The layers of a parameter layout: ``(module name, lo, hi)`` over the flat vector, in layout order.

    Parameters are grouped by the module they belong to: ``0.weight`` and ``0.bias`` form layer ``0``.
    """
    out: list[tuple[str, int, int]] = []
    for name, s in layout.slices.items():
        module = name.rsplit(".", 1)[0] if "." in name else name
        if out and out[-1][0] == module and out[-1][2] == s.start:
            out[-1] = (module, out[-1][1], s.stop)
        else:
            out.append((module, s.start, s.stop))
    return out


def chosen_blocks(layout: Layout, chosen: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
    """The blocks ``chosen`` by module or parameter name (every layer where empty), as :func:`layer_blocks` gives them.

    Raises:
        UserError: A name that is neither a layer nor a parameter of the layout (one line listing the layers).
    """
    layers = layer_blocks(layout)
    if not chosen:
        return layers
    known = {m: (m, lo, hi) for m, lo, hi in layers}
    known.update({n: (n, s.start, s.stop) for n, s in layout.slices.items()})
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise UserError(f"no layer or parameter named {', '.join(map(repr, unknown))}; the layers are "
                        f"{', '.join(m for m, _, _ in layers)}")
    return [known[c] for c in dict.fromkeys(chosen)]


def _blocks(op, config: HessianConfig) -> dict:
    """Each chosen block's top eigenvalue and Hutch++ trace (the Hessian's diagonal block of its parameters)."""
    names, tops, traces, ses, sizes = [], [], [], [], []
    for module, lo, hi in chosen_blocks(op.layout, config.block_names):
        blk = Block(op, lo, hi)
        if blk.size == 1:
            top = float(blk.matmat(torch.ones(1, 1, dtype=torch.float64))[0, 0])
        else:
            top = float(top_eigen(blk, 1, config.tol, config.seed)[0][0])
        est = hutchinson_trace(blk, config.trace_probes, config.seed, config.trace_rtol,
                               deflate=min(config.trace_deflate, blk.size - 1))
        names.append(module)
        tops.append(top)
        traces.append(est.trace)
        ses.append(est.standard_error)
        sizes.append(blk.size)
    return {"block_names": np.array(names, dtype="S"), "block_top_eigenvalue": np.array(tops),
            "block_trace": np.array(traces), "block_trace_se": np.array(ses), "block_parameters": np.array(sizes)}


def _run(ctx: RunContext, results: ShardedResults, config: HessianConfig, progress: bool) -> dict:
    t = ctx.traj
    captured = [str(i) for i in np.flatnonzero(t.meta("captured") & (t.meta("branch") == "swa"))]
    if CAPTURED in config.points and not captured:
        raise UserError(f"hessian at 'captured': {t.path} has no captured snapshot of the SWA branch")
    chosen_blocks(t.param_layout, config.block_names)  # refused before any work
    points = tuple(dict.fromkeys(q for p in config.points for q in (captured if p == CAPTURED else [p])))
    config = dataclasses.replace(config, points=points)
    return per_point(ctx, results, "hessian", config, lambda name: _compute(ctx, name, config),
                     {"weight_decay": ctx.traj.config["weight_decay"]}, progress)


def describe(summary: dict) -> str:
    """The Hessian's summary in the lines the command prints."""
    lines = ["hessian of the training loss (BN eval, the point's statistics):"]
    for name, s in summary.items():
        parts = [f"  at {name}: train loss {float(s['train_loss']):.4g}"]
        if "eigenvalues" in s:
            parts.append("top eigenvalues " + ", ".join(f"{v:.4g}" for v in np.asarray(s["eigenvalues"])))
        if "trace" in s:
            parts.append(f"trace {float(s['trace']):.4g} +- {float(s['trace_se']):.2g} (1 SE; "
                         f"{len(np.atleast_1d(s['trace_samples']))} residual probes)")
        if "min_eigenvalue" in s:
            parts.append(f"most negative eigenvalue {float(s['min_eigenvalue']):.4g}")
        if "density" in s:
            parts.append(f"density from {np.asarray(s['density_nodes']).shape[0]} Lanczos runs")
        if "block_names" in s:
            parts.append(f"{len(s['block_names'])} layers' blocks")
        parts.append(f"{int(s['hvps'])} Hessian-vector products in {float(s['seconds']):.1f} s")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def _value(f, origin: str, key: str) -> float:
    """The stored top eigenvalue or trace at one solution (NaN where not computed)."""
    path = f"hessian/{origin}/{key}"
    if path not in f:
        return math.nan
    return float(f[path][()] if key == "trace" else f[path][0])


METRICS = tuple(Metric(f"hessian_{o}_{q}", f"Hessian at {o.upper()}: {what}", lambda f, o=o, k=k: _value(f, o, k))
                for o in ("swa", "sgd")
                for q, k, what in (("top_eigenvalue", "eigenvalues", "top eigenvalue"),
                                   ("trace", "trace", "trace (Hutchinson)")))
"""Top eigenvalue and trace at SWA and SGD, for compare's table."""


def _report(res: dict) -> list[Section]:
    from figures import curvature, spectrum  # here: matplotlib and plotly load only when a report is drawn

    if "hessian" not in res:
        return []
    h = res["hessian"]
    groups = [g for n, g in h.items() if not n.startswith("_") and isinstance(g, dict)]
    out = [Section("hessian", "Hessian of the training loss at SGD and SWA",
                   "Beside the paper: curvature without random directions. A flatter solution has smaller top "
                   "eigenvalues and a smaller trace (error bars: one standard error of Hutchinson's estimate).", 10,
                   lambda: (spectrum.hessian_figure(h), spectrum.hessian_plotly(h)))]
    if any("density" in g for g in groups):
        out.append(Section("hessian_density", "The Hessian's eigenvalue density at SGD and SWA",
                           "Stochastic Lanczos quadrature (as PyHessian's density): the bulk near 0 and the outliers "
                           "of the sharpest directions. Mass below 0 is negative curvature.", 10.2,
                           lambda: (curvature.density_figure(h), curvature.density_plotly(h))))
    if any("block_names" in g for g in groups):
        out.append(Section("hessian_blocks", "Curvature per layer",
                           "Each layer's diagonal block of the Hessian: which layers the sharpness comes from.", 10.3,
                           lambda: (curvature.blocks_figure(h), curvature.blocks_plotly(h))))
    if any(n.isdigit() for n in h):
        out.append(Section("hessian_trajectory", "Curvature along the SWA branch",
                           "The top eigenvalue and trace of every captured snapshot against the average's (SWA, "
                           "dashed) and SGD's (dotted): does averaging lower curvature below the points it "
                           "averages?", 10.4, lambda: (curvature.trajectory_figure(h), curvature.trajectory_plotly(h))))
    return out


ANALYSIS = Analysis(
    name="hessian", help="top eigenvalues and trace of the training-loss Hessian at SWA, SGD, snapshots or segment "
                         "points",
    config=HessianConfig, compute=_run, describe=describe, order=50, unsupported_bn_modes=UNSUPPORTED_BN_MODES,
    metrics=METRICS, report=_report)
"""The Hessian as the toolkit sees it."""
