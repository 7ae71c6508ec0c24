"""``swa-landscape analyze RUN NAME [flags]``: one subcommand per analysis (:mod:`analyses.catalog`), and ``all``.

Each subcommand takes the engine flags (one per field of :class:`~landscape.config.EngineConfig`) and the flags of
its own config, all derived from the config dataclasses by :mod:`swa_landscape.fields`; ``all`` runs every
analysis' ``paper`` entries (:func:`analyses.catalog.paper`) and takes every one of its analyses' flags prefixed
with the analysis' name (``--rays.directions 4``). This module builds configs and calls the library; it holds no
analysis logic.
"""

from __future__ import annotations

import argparse
import dataclasses

from analyses import catalog
from analyses.batch import run_analyses as run_configs
from analyses.batch import with_settings
from analyses.common import default_engine_config
from landscape.config import EngineConfig
from landscape.plans import MIN_PROBE_POINTS
from landscape.probe import ProbeCache
from landscape.ranks import init_from_env, rank, world
from swa.trajectory import NULL_ROLES, Trajectory

from .fields import add_config_arguments, config_values

__all__ = ["COMMANDS", "ENGINE_FLAGS", "engine_config", "run_analyses", "explain"]

ENGINE_FLAGS = ("bn_mode", "bn_weighting", "bn_batch_size", "bn_batches", "strategy", "chunk_size", "memory_budget",
                "device", "dtype", "superbatch", "workers", "tf32", "autocast", "autocast_tolerance", "compile", "guard")
"""The :class:`~landscape.config.EngineConfig` fields the command line sets (``weight_decay`` is always the run's;
the allocator is the command line's own choice)."""

_RUN_DEFAULTS = {"bn_weighting": "the run's", "bn_batch_size": "the run's training batch size"}


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="results file (default: RUN.landscape.h5 next to the run, RUN.null.landscape.h5 "
                                 "with --null)")
    p.add_argument("--null", action="store_true",
                   help="analyse the null control's pair instead (train --controls): the second SGD solution in "
                        "SWA's place, so that compare can tell whether a criterion discriminates")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--explain", action="store_true",
                   help="print how the engine evaluated the analyses (candidate plans, their times, the choice)")
    skip = tuple(f.name for f in dataclasses.fields(EngineConfig) if f.name not in ENGINE_FLAGS)
    add_config_arguments(p.add_argument_group("engine"), EngineConfig, skip=skip, shown_defaults=_RUN_DEFAULTS)


def _paper_analyses() -> list[str]:
    return list(dict.fromkeys(catalog.by_config(type(c)).name for _, c in catalog.paper()))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``analyze`` subcommands: one per analysis, and ``all``."""
    p.add_argument("run", help="run file (read only)")
    sub = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS", parser_class=type(p),
                           help="the analysis; 'analyze RUN ANALYSIS --help' lists its settings")
    for a in catalog.analyses():
        s = sub.add_parser(a.name, help=a.help, description=a.help)
        add_config_arguments(s.add_argument_group(a.name), a.config)
        _common_arguments(s)
    paper = catalog.paper()
    keys = ", ".join(k for k, _ in paper)
    s = sub.add_parser("all", help=f"the paper's analyses in turn ({keys})",
                       description=f"The paper's analyses in turn: {keys}. Settings of one analysis are its flags "
                                   "prefixed with its name, e.g. --rays.directions 4.")
    for name in _paper_analyses():  # fields that tell one analysis' paper entries apart are not settings of `all`
        mine = [c for _, c in paper if catalog.by_config(type(c)).name == name]
        fixed = tuple(f.name for f in dataclasses.fields(mine[0]) if len({repr(getattr(c, f.name)) for c in mine}) > 1)
        add_config_arguments(s.add_argument_group(name), catalog.get(name).config, prefix=name, skip=fixed)
    _common_arguments(s)


def engine_config(args: argparse.Namespace, t: Trajectory) -> EngineConfig:
    """The engine settings of the flags, with the run's own defaults for what they leave open."""
    return default_engine_config(t, **config_values(args, EngineConfig))


def configs(args: argparse.Namespace) -> dict[str, object]:
    """The analyses' configs from the flags (built before any analysis runs, so a bad value changes nothing)."""
    if args.analysis == "all":
        return with_settings(catalog.paper(),
                             {n: config_values(args, catalog.get(n).config, prefix=n) for n in _paper_analyses()})
    a = catalog.get(args.analysis)
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
        run_configs(t, out, todo, eng, progress=not args.no_progress and rank() == 0, log=say,
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
