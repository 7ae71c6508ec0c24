"""Several analyses of one run in turn: ``analyze all``, the demo, and their Python twin :func:`analyze_all`.

The run is opened once and one engine (network, data, settings, the guard's verdict and the timed plans) serves
every analysis. For ``all`` (every analysis' ``paper`` entries, :func:`analyses.catalog.paper`), an analysis that
cannot honour the BN mode, or that the run lacks what it needs for (a plane without snapshots, FGE without
proposals), is skipped with its reason; the others run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from torch import nn

from landscape.config import EngineConfig
from landscape.errors import UserError
from landscape.probe import ProbeCache
from swa.trajectory import NULL_ROLES, Trajectory

from .catalog import by_config, judged, paper
from .common import analysis, default_engine_config

__all__ = ["with_settings", "run_analyses", "analyze_all"]

def with_settings(configs: tuple[tuple[str, object], ...], settings: Mapping[str, Mapping]) -> dict[str, object]:
    """``configs`` with fields replaced per analysis.

    ``settings = {"rays": {"directions": 4}}`` changes every rays config of the list (``analyze all
    --rays.directions 4``).

    Raises:
        UserError: A setting names an analysis the list does not hold or a field its config lacks.
    """
    out = dict(configs)
    for name, values in settings.items():
        mine = [k for k, c in configs if by_config(type(c)).name == name]
        if values and not mine:
            raise UserError(f"settings for {name}, which this list of analyses does not run")
        for k in mine:
            try:
                out[k] = dataclasses.replace(out[k], **values)
            except TypeError as e:
                raise UserError(f"{name}: {e}") from None
    return out


def run_analyses(t: Trajectory, out: str | os.PathLike, configs: Mapping[str, object], engine_config: EngineConfig,
                 *, model: nn.Module | None = None, data=None, progress: bool = True,
                 log: Callable[[str], None] = print, skip: bool = False, cache: ProbeCache | None = None) -> dict:
    """Run the analyses ``configs`` (key to config, in order) on the open run, on one engine; returns key to summary.

    Args:
        t: The open run.
        out: Results file.
        configs: Key to config (built before anything runs, so a bad one changes nothing); the config's type
            names the analysis (:func:`analyses.catalog.by_config`).
        engine_config: Engine settings for all of them.
        model: The network, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).
        data: The data, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).
        progress: Progress bars (on a terminal).
        log: Receives each analysis' description and each skip's reason.
        skip: Skip (with its reason) an analysis the BN mode or the run does not allow, instead of refusing.
        cache: The engine's probe cache (the command line reads it for ``--explain``).
    """
    todo = {key: by_config(type(cfg)) for key, cfg in configs.items()}
    for key, a in list(todo.items()):
        if skip and engine_config.bn_mode in a.unsupported_bn_modes:
            log(f"{key} skipped: bn_mode {engine_config.bn_mode.value!r}: {a.unsupported_bn_modes[engine_config.bn_mode]}")
            del todo[key]
        else:
            a.check_bn_mode(engine_config)
    summaries = {}
    with analysis(t, out, engine_config, model, data, cache) as (ctx, results):
        for key, a in todo.items():
            try:
                summaries[key] = a.compute(ctx, results, configs[key], progress)
            except UserError as e:
                if not (skip and a.skippable):
                    raise
                log(f"{key} skipped: {e}")
                continue
            log(a.describe(summaries[key]))
    return summaries


def analyze_all(run: str | os.PathLike, out: str | os.PathLike | None = None,
                engine_config: EngineConfig | None = None, *, model: nn.Module | None = None, data=None,
                progress: bool = True, log: Callable[[str], None] = print,
                settings: Mapping[str, Mapping] | None = None, null: bool = False, only_judged: bool = False) -> dict:
    """The paper's analyses (:func:`analyses.catalog.paper`), as ``swa-landscape analyze RUN all`` runs them.

    Args:
        run: Run file (read only).
        out: Results file (default ``RUN.landscape.h5``).
        engine_config: Engine settings (default: the run's).
        model: The network, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).
        data: The data, for a run the file cannot rebuild (see :func:`analyses.common.open_run`).
        progress: Progress bars (on a terminal).
        log: Receives each analysis' description and each skip's reason.
        settings: Fields to change per analysis, e.g. ``{"rays": {"directions": 4}}`` (:func:`with_settings`).
        null: Analyse the null control's pair (``train --controls``; default results ``RUN.null.landscape.h5``).
        only_judged: Only what the findings are judged by (:func:`analyses.catalog.judged`; the demo's extra seeds).

    Returns:
        Results key to its summary (skipped ones absent).
    """
    configs = with_settings(judged() if only_judged else paper(), settings or {})
    with Trajectory(run, NULL_ROLES if null else None) as t:
        return run_analyses(t, out or t.results_path, configs, engine_config or default_engine_config(t),
                            model=model, data=data, progress=progress, log=log, skip=True)
