"""Several analyses of one run in turn: ``analyze all`` and its Python twin :func:`analyze_all`.

The run is opened once; the engine settings, the network and the data are shared. For ``all`` (the
paper's analyses, :data:`PAPER`), an analysis that cannot honour the BN mode, or that the run lacks what it
needs for (a plane without snapshots, FGE without proposals), is skipped with its reason; the others run.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from landscape.engine import EngineConfig
from landscape.errors import UserError
from landscape.files import default_results_path
from swa.trajectory import Trajectory

from . import fge, hessian, pca, plane, rays, segment

__all__ = ["PAPER", "UNSUPPORTED", "RUNNERS", "run_analyses", "analyze_all"]

PAPER = ("rays", "segment", "plane", "plane_fig1", "fge")
"""The paper's analyses, run by ``all`` (the plane twice: the Figure 3 plane and the ``paper-fig1`` preset)."""

UNSUPPORTED = {"rays": rays.UNSUPPORTED_BN_MODES, "segment": segment.UNSUPPORTED_BN_MODES,
               "plane": plane.UNSUPPORTED_BN_MODES, "plane_fig1": plane.UNSUPPORTED_BN_MODES,
               "fge": fge.UNSUPPORTED_BN_MODES, "hessian": hessian.UNSUPPORTED_BN_MODES,
               "pca": pca.UNSUPPORTED_BN_MODES}
"""BN modes each analysis cannot honour, with the reason."""

RUNNERS = {rays.RaysConfig: (rays.rays, rays.describe), segment.SegmentConfig: (segment.segment, segment.describe),
           plane.PlaneConfig: (plane.plane, plane.describe), fge.FGEConfig: (fge.fge, fge.describe),
           hessian.HessianConfig: (hessian.hessian, hessian.describe),
           hessian.EigenPlaneConfig: (hessian.eigen_plane, hessian.describe_eigen_plane),
           pca.PCAConfig: (pca.pca, pca.describe)}
"""Config type to ``(analysis function, describe)``."""

_SKIPPABLE = ("plane", "plane_fig1", "fge")  # need snapshots or proposals a run may not have


def default_configs() -> dict:
    """The configs of :data:`PAPER` with their defaults."""
    return {"rays": rays.RaysConfig(), "segment": segment.SegmentConfig(), "plane": plane.PlaneConfig(),
            "plane_fig1": plane.PlaneConfig(("paper-fig1",)), "fge": fge.FGEConfig()}


def run_analyses(t: Trajectory, out: str | os.PathLike, configs: dict, engine_config: EngineConfig, *,
                 model: nn.Module | None = None, data=None, progress: bool = True, log: Callable[[str], None] = print,
                 skip: bool = False) -> dict:
    """Run the analyses ``configs`` (name to config, in order) on the open run; returns name to summary.

    Args:
        t: The open run.
        out: Results file.
        configs: Analysis name to its config (built before anything runs, so a bad one changes nothing).
        engine_config: Engine settings for all of them.
        model, data: For a run the file cannot rebuild (see :func:`analyses.common.open_run`).
        progress: Progress bars (on a terminal).
        log: Receives each analysis' description and each skip's reason.
        skip: Skip (with its reason) an analysis the BN mode or the run does not allow, instead of refusing.
    """
    refused = {n: UNSUPPORTED[n][engine_config.bn_mode] for n in configs
               if engine_config.bn_mode in UNSUPPORTED.get(n, {})} if skip else {}
    for name, why in refused.items():
        log(f"{name} skipped: bn_mode {engine_config.bn_mode.value!r}: {why}")
    out_ = {}
    for name, cfg in configs.items():
        if name in refused:
            continue
        fn, describe = RUNNERS[type(cfg)]
        try:
            out_[name] = fn(t, out, cfg, engine_config, progress, model=model, data=data)
        except UserError as e:
            if not skip or name not in _SKIPPABLE:
                raise
            log(f"{name} skipped: {e}")
            continue
        log(describe(out_[name]))
    return out_


def analyze_all(run: str | os.PathLike, out: str | os.PathLike | None = None,
                engine_config: EngineConfig | None = None, *, model: nn.Module | None = None, data=None,
                progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """The paper's analyses (:data:`PAPER`) with default settings, as ``swa-landscape analyze RUN all`` runs them.

    Returns:
        Analysis name to its summary (skipped ones absent).
    """
    from .common import default_engine_config

    with Trajectory(run) as t:
        return run_analyses(t, out or default_results_path(t.path), default_configs(),
                            engine_config or default_engine_config(t), model=model, data=data, progress=progress,
                            log=log, skip=True)
