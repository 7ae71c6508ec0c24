"""Adaptive (scale-invariant) sharpness at SWA, SGD, snapshots or segment points, beside raw sharpness.

At each point w (:mod:`landscape.sharpness` has the definitions):

* **average case**, a curve over the radii ``rhos``: the mean increase of the training loss over ``samples``
  random perturbations ``d = |w| * delta``, ``delta ~ N(0, rho^2 I)`` (adaptive), and ``d = s * delta`` with one
  scale s, the RMS of ``|w|`` (raw), with the standard error over the draws. The points go through the engine in
  one batched evaluation, BN statistics by the engine's mode (default: recomputed at every perturbed point).
* **worst case** at ``worst_rho``: the largest increase over ``||delta||_inf <= worst_rho`` (each weight moves by
  at most that fraction of itself) and over ``||delta||_2 <= worst_rho * sqrt(P')`` (P' perturbed weights: the
  same size per weight on average), by ``steps`` steps of projected gradient ascent. As **m-sharpness**: the
  ascent runs on each of ``batches`` batches of ``m`` training samples (a seeded draw) and the batches'
  increases are averaged (``m = 0``: one batch, the whole split). The loss here is a differentiable function of
  the weights, so BatchNorm runs in eval mode with the point's own statistics, recomputed once at w by the
  engine and held fixed under the perturbation (as Andriushchenko et al.'s code evaluates with fixed
  statistics); the increase reported is of that loss.

Which weights are perturbed (all, or all but BatchNorm's weights and every bias) and whether the loss includes
the L2 term ``0.5 wd ||w||^2`` are settings, stored with the results. Each point is its own group
``/sharpness/<point>``, written when done (a rerun skips finished points); under torchrun the points are shared
out over the ranks.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.errors import UserError, bounded, check_bounds
from landscape.layout import buffer_layout, param_layout, unflatten
from landscape.sharpness import average_case, perturbation_points, scales, worst_case
from landscape.structure import batch_size as n_samples
from landscape.structure import call_functional, map_tensors, read_output
from swa.runs import check_points, point_set

from .common import RunContext, per_point
from .distributed import ShardedResults
from .metrics import Claim, Finding, Metric
from .registry import Analysis, Section

__all__ = ["ANALYSIS", "SharpnessConfig", "sharpness", "perturbed_mask", "describe"]


@dataclass(frozen=True)
class SharpnessConfig:
    """Settings of the sharpness analysis.

    Attributes:
        points: Where: sgd, swa, snapshot indices or t=T on the segment.
        rhos: Radii of the average case, relative to each weight (adaptive) or to their RMS (raw).
        samples: Random perturbations per radius (average case).
        report_rho: The radius compare reports (one of rhos).
        worst_rho: Radius of the worst case, per weight (0: no worst case).
        steps: Gradient-ascent steps of the worst case.
        m: Training samples per batch of the worst case's m-sharpness (0: the whole split).
        batches: Batches of m samples whose worst-case increases are averaged.
        exclude_bn_bias: Leave BatchNorm's weights and every bias unperturbed.
        l2: Sharpness of the L2-regularised loss (the run's weight decay) instead of the plain cross-entropy.
        seed: Seed of the perturbations, the batches and the ascent's starts.
    """

    points: tuple[str, ...] = ("swa", "sgd")
    rhos: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    samples: int = bounded(16, ge=2)
    report_rho: float = bounded(0.1, gt=0)
    worst_rho: float = bounded(0.01, ge=0)
    steps: int = bounded(20, ge=1)
    m: int = bounded(256, ge=0)
    batches: int = bounded(4, ge=1)
    exclude_bn_bias: bool = False
    l2: bool = False
    seed: int = bounded(0, meaning="any integer seeds the perturbations, batches and starts")

    def __post_init__(self) -> None:
        check_bounds(self)
        check_points(self.points, "sharpness")
        if not self.rhos or any(not r > 0 for r in self.rhos):
            raise UserError("sharpness radii (rhos) must be positive")
        if self.report_rho not in self.rhos:
            raise UserError(f"report_rho {self.report_rho} must be one of rhos {list(self.rhos)}")


UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (the average case follows the mode; the worst case holds w's)."""


def perturbed_mask(model: nn.Module, exclude_bn_bias: bool) -> torch.Tensor:
    """``[P]`` bool: the weights a perturbation moves (all, or all but BatchNorm's weights and every bias)."""
    layout = param_layout(model)
    bn = {f"{n}.{p}" for n, mod in model.named_modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)
          for p, _ in mod.named_parameters(recurse=False)}
    keep = [not (exclude_bn_bias and (name in bn or name.endswith("bias"))) for name in layout.names]
    return torch.cat([torch.full((n,), k) for k, n in zip(keep, layout.numels)])


def sharpness(run: str | os.PathLike, out: str | os.PathLike | None = None, config: SharpnessConfig | None = None,
              engine_config: EngineConfig | None = None, progress: bool = True, *,
              model: nn.Module | None = None, data=None) -> dict:
    """Average-case and worst-case sharpness, adaptive and raw, at each point; writes ``/sharpness/<point>``.

    Returns:
        ``{point: {"rhos": [R], "adaptive_mean": [R], "raw_mean": [R], "worst_inf": float, ...}}``.
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _fixed_bn_losses(ctx: RunContext, buffers: torch.Tensor, wd: float):
    """``batch_loss(x, y)``.

    The loss of weights ``[P]`` on a batch, BN in eval mode with ``buffers`` held fixed (differentiable); one
    network copy serves every batch.
    """
    eng = ctx.engine
    net = copy.deepcopy(eng.template).to(device=eng.device, dtype=eng.dtype).eval()
    bufs = {k: v.to(eng.device) for k, v in unflatten(buffers.to(eng.dtype), buffer_layout(net)).items()}
    layout = param_layout(net)

    def batch_loss(x, y: torch.Tensor):
        x = map_tensors(lambda t: t.to(eng.device, eng.dtype) if t.is_floating_point() else t.to(eng.device), x)
        y = y.to(eng.device)

        def loss(w: torch.Tensor) -> torch.Tensor:
            out = read_output(call_functional(net, {**unflatten(w, layout), **bufs}, x))
            total, weight = eng.objective.summed_loss(out, y)
            return total / weight + 0.5 * wd * w.pow(2).sum()

        return loss

    return batch_loss


def _compute(ctx: RunContext, name: str, config: SharpnessConfig) -> dict:
    t0 = time.perf_counter()
    eng = ctx.engine
    pts = point_set(ctx.traj, name)
    at = eng.evaluate(pts, splits=("train",))
    wd = float(ctx.traj.config["weight_decay"]) if config.l2 else 0.0
    base = float(at.loss["train"][0] + (at.l2[0] if config.l2 else 0.0))
    w = pts.chunk(0, 1, dtype=torch.float64)[0]
    b = at.buffers[0]
    mask = perturbed_mask(eng.template, config.exclude_bn_bias)
    rhos = np.asarray(config.rhos, dtype=np.float64)
    out: dict = {"rhos": rhos, "base_loss": base, "perturbed": int(mask.sum()), "parameters": int(mask.numel())}
    for kind, adaptive in (("adaptive", True), ("raw", False)):
        res = eng.evaluate(perturbation_points(w, scales(w, mask, adaptive), rhos, config.samples, config.seed, b),
                           splits=("train",))
        losses = (res.loss["train"] + (res.l2 if config.l2 else 0.0)).numpy()
        avg = average_case(losses, base, rhos)
        out.update({f"{kind}_mean": avg.mean, f"{kind}_se": avg.standard_error, f"{kind}_increases": avg.increases})
    if config.worst_rho > 0:
        x, y = ctx.splits["train"]
        n = n_samples(x)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
        m = n if config.m == 0 else min(config.m, n)
        n_batches = 1 if config.m == 0 else min(config.batches, n // m)
        w_dev, batch_loss = w.to(eng.dtype).to(eng.device), _fixed_bn_losses(ctx, b, wd)
        for p, radius in ((math.inf, config.worst_rho), (2.0, config.worst_rho * math.sqrt(int(mask.sum())))):
            key = "inf" if math.isinf(p) else "2"
            for kind, adaptive in (("adaptive", True), ("raw", False)):
                scale = scales(w, mask, adaptive).to(eng.dtype).to(eng.device)
                inc = [worst_case(batch_loss(map_tensors(lambda t, i=idx: t[i], x), y[idx]), w_dev, scale, radius, p, config.steps,
                                  seed=config.seed + j).increase
                       for j, idx in enumerate(order[:n_batches * m].reshape(n_batches, m))]
                out.update({f"worst_{kind}_{key}": float(np.mean(inc)), f"worst_{kind}_{key}_batches": np.asarray(inc),
                            f"worst_{kind}_{key}_se": float(np.std(inc, ddof=1) / math.sqrt(len(inc)))
                            if len(inc) > 1 else math.nan, f"radius_{key}": radius})
        out.update(batch_size=m, batches=n_batches)
    out["seconds"] = time.perf_counter() - t0
    return out


def _run(ctx: RunContext, results: ShardedResults, config: SharpnessConfig, progress: bool) -> dict:
    return per_point(ctx, results, "sharpness", config, lambda name: _compute(ctx, name, config), {
        "loss": ctx.engine.objective.labels.get("loss", "loss") + (" + 0.5 wd ||w||^2" if config.l2 else ""),
        "perturbed_weights": "all but BatchNorm weights and biases" if config.exclude_bn_bias else "all",
        "worst_case_bn": "eval mode, the point's statistics held fixed"}, progress,
                     {f"{k}_{v}": ("rhos",) for k in ("adaptive", "raw") for v in ("mean", "se")})


def describe(summary: dict) -> str:
    """The sharpness summary in the lines the command prints."""
    lines = ["sharpness (increase of the training loss; adaptive: relative to each weight, raw: one scale):"]
    for name, s in summary.items():
        curve = ", ".join(f"rho {r:g}: {a:.3g} +- {ae:.1g} (raw {w:.3g})" for r, a, ae, w in
                          zip(s["rhos"], s["adaptive_mean"], s["adaptive_se"], s["raw_mean"]))
        line = f"  at {name}: average case {curve}"
        if "worst_adaptive_inf" in s:
            line += (f"; worst case (adaptive) l_inf {float(s['worst_adaptive_inf']):.3g}, l_2 "
                     f"{float(s['worst_adaptive_2']):.3g} ({int(s['batches'])} batches of {int(s['batch_size'])})")
        lines.append(line + f"; {float(s['seconds']):.1f} s")
    return "\n".join(lines)


def _at(g, key: str, rho: float) -> float:
    rhos = np.asarray(g["rhos"][:])
    hit = np.flatnonzero(np.isclose(rhos, rho))
    return float(g[key][:][hit[0]]) if hit.size else math.nan


def _value(f, origin: str, key: str) -> float:
    """One sharpness quantity at one solution (NaN where not computed)."""
    g = f.get(f"sharpness/{origin}")
    if g is None:
        return math.nan
    if key == "worst_inf":
        return float(g["worst_adaptive_inf"][()]) if "worst_adaptive_inf" in g else math.nan
    return _at(g, f"{key}_mean", float(json.loads(g.attrs["config"])["report_rho"]))


METRICS = {(o, k): Metric(f"sharpness_{o}_{k}", f"sharpness at {o.upper()}: {what}",
                          lambda f, o=o, k=k: _value(f, o, k))
           for o in ("swa", "sgd") for k, what in (("adaptive", "adaptive average case at report_rho"),
                                                   ("raw", "raw average case at report_rho"),
                                                   ("worst_inf", "adaptive worst case, l_inf"))}
"""Sharpness quantities by (origin, kind), in compare's table order."""

FLATNESS = Finding("sharpness", "SWA is flatter (adaptive sharpness)", "sharpness", (
    Claim("adaptive", "SGD's minus SWA's adaptive average-case sharpness at report_rho",
          (METRICS["sgd", "adaptive"], METRICS["swa", "adaptive"]), lambda sgd, swa: sgd - swa,
          null="antisymmetric under swapping the pair's roles, so 0 in expectation for two exchangeable SGD "
               "solutions"),),
    optional=True)
"""Beside the paper, shown only where the sharpness analysis ran."""


def _report(res: dict) -> list[Section]:
    from figures import sharpness as fig  # here: matplotlib and plotly load only when a report is drawn

    if "sharpness" not in res:
        return []
    return [Section("sharpness", "Sharpness against the perturbation's radius at SWA and SGD",
                    "Beside the paper: how much the training loss rises under random perturbations relative to "
                    "each weight (adaptive: unchanged by rescaling layers) and of one size for all (raw). A "
                    "flatter solution's curve lies lower; worst-case values are the markers.", 13,
                    lambda: (fig.sharpness_figure(res["sharpness"]), fig.sharpness_plotly(res["sharpness"])))]


ANALYSIS = Analysis(
    name="sharpness", help="adaptive (scale-invariant) and raw sharpness, average and worst case, at SWA, SGD or "
                           "any point",
    config=SharpnessConfig, compute=_run, describe=describe, order=80, unsupported_bn_modes=UNSUPPORTED_BN_MODES,
    metrics=tuple(METRICS.values()), findings=(FLATNESS,), report=_report)
"""Sharpness as the toolkit sees it."""
