"""``swa-landscape analyze RUN.h5 rays|segment|plane|fge|all``: builds configs and calls the analyses."""

from __future__ import annotations

import argparse

from landscape.engine import MIN_PROBE_POINTS, EngineConfig
from landscape.files import default_results_path
from landscape.probe import DEFAULT_CACHE, ProbeCache
from swa.trajectory import Trajectory

from . import batch
from .batch import PAPER
from .common import default_engine_config
from .distributed import init_from_env, rank, world
from .fge import FGEConfig
from .hessian import EigenPlaneConfig, HessianConfig
from .pca import PCAConfig
from .plane import PlaneConfig
from .rays import RaysConfig
from .segment import SegmentConfig

__all__ = ["COMMANDS", "engine_config", "run_analyses"]

ANALYSES = ("rays", "segment", "plane", "fge")
"""The paper's four (``all`` runs :data:`analyses.batch.PAPER`: the plane twice)."""
BEYOND = ("hessian", "pca")
"""Analyses beside the paper's, run by name only."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file (read only)")
    p.add_argument("analysis", choices=(*ANALYSES, *BEYOND, "all"),
                   help="which analysis to run (all: the paper's four in turn, with both planes)")
    p.add_argument("--out", help="results file (default: RUN.landscape.h5 next to the run)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--explain", action="store_true",
                   help="print how the engine evaluated each analysis (candidate plans, their times, the choice)")
    e = p.add_argument_group("engine")
    e.add_argument("--bn-mode", default="recompute", choices=("recompute", "stored", "interpolate"),
                   help="BN statistics at each point: recomputed from the training data (exact, default), the "
                        "stored ones (a snapshot's own; a ray's, segment's or plane's origin's), or interpolated "
                        "between the anchors' like the weights (not for rays)")
    e.add_argument("--bn-weighting", choices=("batch", "sample"),
                   help="weighting of recomputed BN statistics: batch (update_bn) or sample (default: the run's)")
    e.add_argument("--bn-batches", type=int, help="recompute BN from the first n batches only")
    e.add_argument("--strategy", default="auto", choices=("auto", "loop", "vmap"),
                   help="how points go through the network: auto times candidates (default), loop, vmap")
    e.add_argument("--chunk-size", type=int, help="points per chunk (default: chosen under the memory budget)")
    e.add_argument("--memory-budget-gib", type=float,
                   help="memory the engine may use for activations and points, GiB (default: 2 on a CPU, 70%% of "
                        "the free memory of a GPU)")
    e.add_argument("--tf32", action="store_true",
                   help="on a GPU, allow TF32 products and convolutions (faster, about 1e-3 relative error)")
    e.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    e.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="evaluation precision (default: float32)")
    e.add_argument("--no-guard", action="store_true",
                   help="skip the check of one point against the reference path before the first evaluation "
                        "(the guard switches to exact paths for networks the fast path gets wrong)")
    r = p.add_argument_group("rays")
    r.add_argument("--directions", type=_directions, default=10,
                   help="number of random directions (default: 10), or 'hessian': the top Hessian eigenvectors of "
                        "each solution (run the hessian analysis first); with plane: the plane of each solution's "
                        "top two eigenvectors, over +-T_MAX (default: the SGD-SWA distance)")
    r.add_argument("--ray-steps", type=int, default=30, help="distances per ray, including 0 (default: 30)")
    r.add_argument("--t-max", type=float, help="largest ray distance (default: searched)")
    r.add_argument("--seed", type=int, default=0, help="seed of the ray directions")
    r.add_argument("--filter-normalize", action="store_true", help="filter-normalised directions (Li et al. 2018)")
    r.add_argument("--margin-error", type=float, default=0.05,
                   help="width: distance where test error first exceeds its t=0 value by this (default: 0.05)")
    r.add_argument("--margin-loss", type=float, default=0.1,
                   help="width: distance where train loss first exceeds its t=0 value by this, nats (default: 0.1)")
    s = p.add_argument_group("segment")
    s.add_argument("--t-range", type=float, nargs=2, default=(-1.0, 2.0), metavar=("T_MIN", "T_MAX"),
                   help="segment range, t=0 at SWA and t=1 at SGD (default: -1 2)")
    s.add_argument("--segment-steps", type=int, default=41, help="points on the segment (default: 41)")
    pl = p.add_argument_group("plane")
    pl.add_argument("--anchors", help="three of sgd, swa or snapshot indices, comma-separated; 'fge'; or "
                                      "'paper-fig1' (w_SGD, w_SWA and the SWA branch's start; also run by all)")
    pl.add_argument("--grid", type=int, nargs=2, default=(21, 21), metavar=("NU", "NV"),
                    help="plane grid points along u and v (default: 21 21)")
    pl.add_argument("--margin", type=float, default=0.2,
                    help="plane grid margin around the anchors, both solutions and the SWA branch's projections, as "
                         "a fraction of their larger extent (default: 0.2)")
    h = p.add_argument_group("hessian")
    h.add_argument("--points", default="swa,sgd",
                   help="where: sgd, swa, snapshot indices or t=T on the segment, comma-separated (default: swa,sgd)")
    h.add_argument("--top-k", type=int, default=5, help="largest eigenvalues and eigenvectors (default: 5)")
    h.add_argument("--trace-probes", type=int, default=100,
                   help="Rademacher vectors of the Hutchinson trace; 0: no trace (default: 100)")
    h.add_argument("--tol", type=float, default=1e-4, help="relative accuracy of the eigenvalues (default: 1e-4)")
    c = p.add_argument_group("pca")
    c.add_argument("--snapshots", default="swa", choices=("swa", "all"),
                   help="snapshots whose principal plane is evaluated: the SWA branch (default) or all")


def _directions(text: str) -> int | str:
    if text == "hessian":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of directions or 'hessian', got {text!r}") from None


def engine_config(args: argparse.Namespace, t: Trajectory) -> EngineConfig:
    """The engine settings of the flags, with the run's own defaults for what they leave open."""
    given = {"bn_weighting": args.bn_weighting} if args.bn_weighting else {}
    return default_engine_config(t, bn_mode=args.bn_mode, bn_batches=args.bn_batches, strategy=args.strategy,
                                 chunk_size=args.chunk_size, memory_budget=None if args.memory_budget_gib is None
                                 else int(args.memory_budget_gib * (1 << 30)), device=args.device, dtype=args.dtype, guard=not args.no_guard, tf32=args.tf32, **given)


def _config(name: str, args: argparse.Namespace):
    """The analysis' config from the flags (built before any analysis runs, so a bad value changes nothing)."""
    if name == "rays":
        along_hessian = args.directions == "hessian"
        return RaysConfig(2 if along_hessian else args.directions, args.ray_steps, args.t_max, args.seed,
                          args.filter_normalize, args.margin_error, args.margin_loss, along_hessian)
    if name == "hessian":
        points = tuple(x.strip() for x in args.points.split(",") if x.strip())
        return HessianConfig(points, args.top_k, args.trace_probes, args.tol, args.seed)
    if name == "pca":
        return PCAConfig(args.snapshots, tuple(args.grid), args.margin)
    if name == "segment":
        return SegmentConfig(args.t_range[0], args.t_range[1], args.segment_steps)
    if name == "plane" and args.directions == "hessian":
        return EigenPlaneConfig(tuple(args.grid), args.t_max)
    if name in ("plane", "plane_fig1"):
        anchors = tuple(a.strip() for a in args.anchors.split(",")) if args.anchors else ()
        return PlaneConfig(("paper-fig1",) if name == "plane_fig1" else anchors, tuple(args.grid), args.margin)
    return FGEConfig()


def run_analyses(args: argparse.Namespace) -> None:
    """Open the run once and run the analyses on it; a BN mode an analysis cannot honour is named before any work."""
    init_from_env()  # under torchrun: shard the points of every analysis over the ranks
    say = print if rank() == 0 else (lambda *a, **k: None)
    todo = PAPER if args.analysis == "all" else (args.analysis,)
    with Trajectory(args.run) as t:
        eng = engine_config(args, t)
        configs = {name: _config(name, args) for name in todo}
        out = args.out or str(default_results_path(t.path))
        # `all` names the analyses that cannot honour the mode or the run and runs the others; one refuses itself
        batch.run_analyses(t, out, configs, eng, progress=not args.no_progress and rank() == 0, log=say,
                           skip=args.analysis == "all")
    say(f"results: {out}" + (f" ({world()} ranks)" if world() > 1 else ""))
    if args.explain:
        say(explain(DEFAULT_CACHE, eng))


def explain(cache: ProbeCache, eng: EngineConfig) -> str:
    """What the engine chose for the evaluations of this command, from the probe cache."""
    if eng.strategy.value != "auto":
        return f"engine: strategy {eng.strategy.value!r} set by --strategy; nothing was probed"
    lines = [f"engine: evaluations of fewer than {MIN_PROBE_POINTS} points use the plain plan unprobed; "
             f"{len(cache)} probe(s) decided the rest:"]
    for key, report in cache.entries.items():
        splits = ", ".join(f"{s} ({n} samples)" for s, n in key.splits)
        lines += [f"-- evaluations of {splits}:", str(report)]
    return "\n".join(lines)


COMMANDS = {"analyze": ("run the geometry analyses on a run file (writes a separate results file)",
                        add_arguments, run_analyses)}
