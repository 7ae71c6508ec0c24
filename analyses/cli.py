"""``swa-landscape analyze RUN NAME [flags]``: one subcommand per registered analysis, and ``all``.

Each subcommand takes the engine flags and the flags of its own config (derived from the config dataclass by
:mod:`landscape.cli_fields`); ``all`` runs :data:`analyses.batch.PAPER` and takes every one of its analyses'
flags prefixed with the analysis' name (``--rays.directions 4``). This module builds configs and calls the
library; it holds no analysis logic.
"""

from __future__ import annotations

import argparse
import dataclasses

from landscape.cli_fields import add_config_arguments, config_values
from landscape.engine import MIN_PROBE_POINTS, EngineConfig
from landscape.probe import ProbeCache
from swa.trajectory import NULL_ROLES, Trajectory

from . import batch
from .batch import with_settings
from .common import default_engine_config
from .distributed import init_from_env, rank, world
from .registry import REGISTRY, by_config, get

__all__ = ["COMMANDS", "engine_config", "run_analyses", "explain"]


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="results file (default: RUN.landscape.h5 next to the run, RUN.null.landscape.h5 "
                                 "with --null)")
    p.add_argument("--null", action="store_true",
                   help="analyse the null control's pair instead (train --controls): the second SGD solution in "
                        "SWA's place, so that compare can tell whether a criterion discriminates")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--explain", action="store_true",
                   help="print how the engine evaluated the analyses (candidate plans, their times, the choice)")
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


def _paper_analyses() -> list[str]:
    return list(dict.fromkeys(by_config(type(c)).name for _, c in batch.PAPER))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file (read only)")
    sub = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS", parser_class=type(p),
                           help="the analysis; 'analyze RUN ANALYSIS --help' lists its settings")
    for name, a in REGISTRY.items():
        s = sub.add_parser(name, help=a.help, description=a.help)
        add_config_arguments(s.add_argument_group(name), a.config)
        _common_arguments(s)
    paper = _paper_analyses()
    s = sub.add_parser("all", help="the paper's analyses in turn (" + ", ".join(k for k, _ in batch.PAPER) + ")",
                       description="The paper's analyses in turn: " + ", ".join(k for k, _ in batch.PAPER) + ". Settings "
                                   "of one analysis are its flags prefixed with its name, e.g. --rays.directions 4.")
    for name in paper:  # fields that tell batch.PAPER's entries of one analysis apart are not settings of `all`
        mine = [c for _, c in batch.PAPER if by_config(type(c)).name == name]
        fixed = tuple(f.name for f in dataclasses.fields(mine[0]) if len({repr(getattr(c, f.name)) for c in mine}) > 1)
        add_config_arguments(s.add_argument_group(name), get(name).config, prefix=name, skip=fixed)
    _common_arguments(s)


def engine_config(args: argparse.Namespace, t: Trajectory) -> EngineConfig:
    """The engine settings of the flags, with the run's own defaults for what they leave open."""
    given = {"bn_weighting": args.bn_weighting} if args.bn_weighting else {}
    budget = None if args.memory_budget_gib is None else int(args.memory_budget_gib * (1 << 30))
    return default_engine_config(t, bn_mode=args.bn_mode, bn_batches=args.bn_batches, strategy=args.strategy,
                                 chunk_size=args.chunk_size, memory_budget=budget, device=args.device,
                                 dtype=args.dtype, guard=not args.no_guard, tf32=args.tf32, **given)


def configs(args: argparse.Namespace) -> dict[str, object]:
    """The analyses' configs from the flags (built before any analysis runs, so a bad value changes nothing)."""
    if args.analysis == "all":
        return with_settings(batch.PAPER, {n: config_values(args, get(n).config, prefix=n) for n in _paper_analyses()})
    a = get(args.analysis)
    return {a.name: a.config(**config_values(args, a.config))}


def run_analyses(args: argparse.Namespace) -> None:
    """Open the run once and run the analyses on it; a BN mode an analysis cannot honour is named before any work."""
    init_from_env()  # under torchrun: shard the points of every analysis over the ranks
    say = print if rank() == 0 else (lambda *a, **k: None)
    todo = configs(args)
    cache = ProbeCache()
    with Trajectory(args.run, NULL_ROLES if args.null else None) as t:
        eng = engine_config(args, t)
        out = args.out or str(t.results_path)
        # `all` names the analyses that cannot honour the mode or the run and runs the others; one refuses itself
        batch.run_analyses(t, out, todo, eng, progress=not args.no_progress and rank() == 0, log=say,
                           skip=args.analysis == "all", cache=cache)
    say(f"results: {out}" + (f" ({world()} ranks)" if world() > 1 else ""))
    if args.explain:
        say(explain(cache, eng))


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
