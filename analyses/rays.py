"""Random-direction rays from w_SWA and w_SGD (paper section 3.4, Figure 4).

w(t, d_i) = w + t d_i for directions d_i uniform on the unit sphere of the full
parameter space (normalised Gaussian draws), the same directions from both
solutions; t is parameter-space L2 distance. Optionally filter-normalised
directions (Li et al. 2018), for which t is in units of the filter norms.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import BNMode, EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.layout import Layout
from landscape.points import PointSet
from landscape.ranks import barrier

from .common import VALUES, RunContext, evaluate_missing
from .distributed import ShardedResults
from .metrics import Claim, Finding, Metric
from .registry import Analysis, Section
from .results import stored_eigenvectors
from .widths import auto_t_max, mean_width, resolve_early

__all__ = ["RaysConfig", "random_directions", "filter_normalize", "group_name", "rays", "ANALYSIS"]


@dataclass(frozen=True)
class RaysConfig:
    """Settings of the rays analysis.

    Attributes:
        directions: Number of random directions D.
        steps: Number of distances T (including t = 0).
        t_max: Largest distance; None searches for it on the directions as used (3 x the distance
            where the mean test error along two of them first exceeds its t = 0 value by ``margin_error``).
            Crossings closer than ``MIN_STEPS`` grid steps to t = 0 are resolved on finer grids.
        seed: Seed of the directions (stored).
        filter_normalize: Li et al. filter normalisation, per origin.
        hessian: Follow the top Hessian eigenvectors of each origin (``analyze hessian`` stores them)
            instead of random directions: the width along the sharpest directions; ``directions`` and
            ``seed`` are then unused.
        margin_error: Width: distance at which the test error first exceeds its t = 0 value by this, in the error's units (a fraction for classification, MSE for regression).
        margin_loss: Width: distance at which train loss first exceeds its t = 0 value by this (nats); the same
            margin for the plain cross-entropy and for the L2-regularised train loss (the paper's quantity).
    """

    directions: int = bounded(10, ge=1)
    steps: int = bounded(30, ge=2)
    t_max: float | None = bounded(None, gt=0)
    seed: int = bounded(0, meaning="any integer seeds the directions")
    filter_normalize: bool = False
    margin_error: float = bounded(0.05, gt=0)
    margin_loss: float = bounded(0.1, gt=0)
    hessian: bool = False

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.hessian and self.filter_normalize:
            raise UserError("rays along Hessian eigenvectors are not filter-normalised (pick one)")


UNSUPPORTED_BN_MODES = {BNMode.INTERPOLATE: "a ray has one anchor, so there is nothing to interpolate toward "
                                             "(use recompute or stored)"}
"""BN modes the rays cannot honour, with the reason."""


def random_directions(n: int, p: int, seed: int) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere of R^p ``[n, p]`` (normalised Gaussian draws)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, p, generator=g)
    return d / d.norm(dim=1, keepdim=True)


def filter_normalize(d: torch.Tensor, w: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Filter-normalised directions (Li et al. 2018).

    Each filter (row of a weight with >1 dims) of each direction gets the norm of the corresponding
    filter of ``w``; 1-D parameters (biases, BN) get zero. ``d [n, P]``, ``w [P]``.
    """
    out = torch.zeros_like(d)
    for sl, shape in zip(layout.slices.values(), layout.shapes):
        if len(shape) < 2:
            continue
        dd = d[:, sl].reshape(d.shape[0], shape[0], -1)
        ww = w[sl].reshape(shape[0], -1)
        out[:, sl] = (dd / dd.norm(dim=2, keepdim=True).clamp_min(1e-30) * ww.norm(dim=1)[None, :, None]).reshape(
            d.shape[0], -1)
    return out


def group_name(config: RaysConfig) -> str:
    """The results group of rays with these settings: ``rays`` (raw), ``rays_filter`` or ``rays_hessian``."""
    return "rays_hessian" if config.hessian else "rays_filter" if config.filter_normalize else "rays"


def rays(run: str | os.PathLike, out: str | os.PathLike | None = None, config: RaysConfig | None = None,
         engine_config: EngineConfig | None = None, progress: bool = True, *,
         model: nn.Module | None = None, data=None) -> dict:
    """Rays from both solutions; writes ``/rays/{swa,sgd}`` (``/rays_filter/...`` when filter-normalised).

    Raw and filter-normalised rays live in separate groups, so one results file holds both.

    Returns:
        Summary ``{origin: {"width_error": [D], "width_loss": [D], "width_loss_l2": [D], "t": [T], ...}}``.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _run(ctx: RunContext, results: ShardedResults, config: RaysConfig, progress: bool) -> dict:
    w_swa, b_swa = ctx.traj.solution("swa")
    w_sgd, b_sgd = ctx.traj.solution("sgd")
    layout = ctx.traj.param_layout
    if config.hessian:
        used = {name: stored_eigenvectors(results, name).float() for name in ("swa", "sgd")}
    else:
        base_dirs = random_directions(config.directions, layout.size, config.seed)
        used = {name: filter_normalize(base_dirs, w, layout) if config.filter_normalize else base_dirs
                for name, w in (("swa", w_swa), ("sgd", w_sgd))}
    n_dirs = len(used["swa"])
    # searched on the directions the rays follow (filter-normalised ones have norm ~ ||w||, not 1)
    t_max = config.t_max or auto_t_max(ctx, w_swa, b_swa, used["swa"], config.margin_error)
    t = np.linspace(0.0, t_max, config.steps)
    summary = {}
    for name, w, b in (("swa", w_swa, b_swa), ("sgd", w_sgd, b_sgd)):
        dirs = used[name]
        coords = torch.zeros(n_dirs * config.steps, n_dirs, dtype=torch.float64)
        for i in range(n_dirs):
            coords[i * config.steps:(i + 1) * config.steps, i] = torch.as_tensor(t, dtype=torch.float64)
        points = PointSet.affine(w, dirs, coords, buffer_origin=b)  # stored: the solution's statistics
        group = f"{group_name(config)}/{name}"
        shape = (n_dirs, config.steps)
        cfg = {**asdict(config), "t_max": t_max, "origin": name, "engine": ctx.engine_dict()}
        if config.hessian:  # new eigenvectors (a rerun of hessian) restart the rays
            cfg["directions_sha1"] = hashlib.sha1(dirs.numpy().tobytes()).hexdigest()
        done = results.prepare(group, cfg, {k: (shape, "f8", np.nan) for k in VALUES},
                               {"t": t, "directions_seed": config.seed, "direction": np.arange(n_dirs)},
                               axes=("direction", "t"))
        _evaluate_rays(ctx, results, group, points, done, config.steps, progress, f"rays from {name}")
        with results.read() as f:
            err, loss, loss_l2 = (f[group][k][:] for k in ("test_error", "train_loss", "train_loss_l2"))
        widths = {"error": resolve_early(ctx, w, b, dirs, t, err, config.margin_error, "test",
                                         lambda r: r.error("test").numpy()),
                  "loss": resolve_early(ctx, w, b, dirs, t, loss, config.margin_loss, "train",
                                        lambda r: r.loss["train"].numpy()),
                  "loss_l2": resolve_early(ctx, w, b, dirs, t, loss_l2, config.margin_loss, "train",
                                           lambda r: (r.loss["train"] + r.l2).numpy())}
        found = {**{f"width_{k}": v[0] for k, v in widths.items()},
                 **{f"resolution_{k}": v[1] for k, v in widths.items()}}
        results.write(group, found, {"margin_error": config.margin_error, "margin_loss": config.margin_loss,
                                     "filter_normalized": config.filter_normalize})
        summary[name] = {"kind": group_name(config), **found, "t": t, "test_error0": float(err[0, 0]),
                         "train_loss0": float(loss[0, 0])}
    return summary




def _evaluate_rays(ctx: RunContext, results: ShardedResults, group: str, points: PointSet, done: np.ndarray, steps: int,
                   progress: bool, desc: str) -> int:
    """Evaluate the missing ray points; the shared t = 0 point once per origin, not once per direction.

    Returns:
        Points computed.
    """
    shared = np.arange(steps, done.size, steps)  # flat index of t = 0 on directions 1..D-1
    skip = done.copy()
    skip[shared] = True
    n = evaluate_missing(ctx, results, group, points, skip, progress, desc)
    missing = shared[~done[shared]]
    if missing.size:
        with results.read() as f:
            origin = {k: f[group][k][0, 0] for k in VALUES}
        results.write_points(group, missing, {k: np.full(missing.size, v) for k, v in origin.items()})
    barrier()  # every rank reads the filled rows
    return n


def describe(summary: dict) -> str:
    kind = {"rays": "random ", "rays_filter": "filter-normalised ", "rays_hessian": "Hessian eigen-"}[summary["swa"]["kind"]]
    lines = [f"rays ({kind}directions): {len(summary['swa']['t'])} distances up to {summary['swa']['t'][-1]:.3g}"]
    for name in ("swa", "sgd"):
        s = summary[name]

        def width(m: str) -> str:
            w = s[f"width_{m}"][np.isfinite(s[f"width_{m}"])]
            return (f"{w.mean() if w.size else float('inf'):.3g} +- {w.std() if w.size else 0:.2g} "
                    f"({w.size}/{len(s[f'width_{m}'])} crossed)")

        lines.append(f"  from {name.upper()}: test error at t=0 {s['test_error0']:.4f}; width by test error "
                     f"{width('error')}, by train loss {width('loss')}, by L2-reg. train loss {width('loss_l2')}")
    return "\n".join(lines)


GROUPS = {"rays": "random directions", "rays_filter": "filter-normalised random directions",
          "rays_hessian": "the top Hessian eigenvectors of each solution"}
"""The results groups of rays (:func:`group_name`) and what their directions are."""
COMPARED = {"rays": "raw", "rays_filter": "filter-normalised"}
"""The ray groups whose widths compare tabulates and the width finding judges (random directions), with their kind."""
JUDGED_MARGINS = {"error": "test-error margin", "loss_l2": "L2-regularised train-loss margin"}
"""The margins the width finding's claims use, in words."""
_MARGINS = {"error": "test-error", "loss": "train-loss", "loss_l2": "L2-reg. train-loss"}


def _width(group: str, origin: str, margin: str) -> Metric:
    """The mean width of one ray group from one solution for one margin (NaN where not computed)."""
    return Metric(f"{group}_{origin}_width_{margin}",
                  f"width from {origin.upper()}, {_MARGINS[margin]} margin, {COMPARED[group]}",
                  lambda f: mean_width(f[f"{group}/{origin}"], margin) if f"{group}/{origin}/width_{margin}" in f
                  else math.nan)


WIDTHS = {(g, o, m): _width(g, o, m) for g in COMPARED for m in _MARGINS for o in ("swa", "sgd")}
"""The width metrics by (group, origin, margin), in compare's table order."""


def _width_claim(group: str, margin: str, what: str) -> Claim:
    return Claim(f"{group}_{margin}", f"log(SWA / SGD width), {what}, {COMPARED[group]} directions",
                 (WIDTHS[group, "swa", margin], WIDTHS[group, "sgd", margin]), lambda swa, sgd: np.log(swa / sgd),
                 null="a log ratio: antisymmetric under swapping the pair's roles and free of the widths' scale, so "
                      "0 in expectation for two exchangeable SGD solutions")


WIDTH = Finding("width", "SWA is wider", "rays, with and without --filter-normalize",
                tuple(_width_claim(g, m, what) for g in COMPARED for m, what in JUDGED_MARGINS.items()))
"""The paper's section 3.4 finding judged from the rays' widths."""


def _comparable(f) -> dict[str, tuple]:
    return {g: (int(f[f"{g}/swa/directions_seed"][()]), f[f"{g}/swa/width_error"].shape[0])
            for g in COMPARED if f"{g}/swa/directions_seed" in f}


def _report(res: dict) -> list[Section]:
    from figures import plots  # here: matplotlib and plotly load only when a report is drawn

    return [Section(g, f"Rays from SWA and SGD along {kind} (paper Figure 4)",
                    "The paper finds the curves from SWA flatter: its width (dashed) is larger than SGD's. Compare the "
                    "dashed lines of the two colours in both panels.", 4 + i / 10,
                    lambda g=g, kind=kind: (plots.rays_figure(res[g], f"rays along {kind} (width: first distance "
                                                                      "where the margin is exceeded)"),
                                            plots.rays_plotly(res[g], f"rays along {kind}")))
            for i, (g, kind) in enumerate(GROUPS.items()) if g in res]


ANALYSIS = Analysis(
    name="rays", help="random-direction rays from SWA and SGD: width and flatness (paper Figure 4)",
    config=RaysConfig, compute=_run, describe=describe, order=10, judged=True,
    paper=(("rays", RaysConfig()), ("rays_filter", RaysConfig(filter_normalize=True))),
    unsupported_bn_modes=UNSUPPORTED_BN_MODES, metrics=tuple(WIDTHS.values()), findings=(WIDTH,),
    comparable=_comparable, report=_report)
"""The rays as the toolkit sees them."""
