"""FGE ensemble versus SWA predictions (paper section 3.5).

The captured models of a cyclical SWA branch are the FGE proposals w_1..w_M. The
FGE ensemble averages their class probabilities; SWA averages their weights (the
run's SWA solution, BN recomputed by the trainer: the mean of the proposals for
the paper's procedure). Reported exactly as in the paper, on the test set, with
||.|| the L2 norm over classes:

* ``prob_diff_consecutive[i]`` = mean_x ||p_i(x) - p_{i+1}(x)||  (paper: 0.126 on CIFAR-100)
* ``prob_diff_swa_ensemble``  = mean_x ||p_SWA(x) - mean_i p_i(x)||  (paper: 0.079)
* ``agree_consecutive[i]``    = fraction of x with argmax p_i = argmax p_{i+1}  (paper: <= 87.33%)
* ``agree_swa_ensemble``      = fraction of x with argmax p_SWA = argmax of the ensemble  (paper: 95.26%)

Language models: every scored position counts as one prediction (their distributions over the vocabulary).
Regression: refused (``all`` skips it with the reason): the agreement of labels and the difference of
distributions the paper measures have no meaning for point predictions, and a substitute (the distance of the mean
prediction from SWA's) would be another quantity under the paper's name.

and the single-proposal baseline the SWA model must beat to approximate the ensemble better than one of its
members: ``prob_diff_proposal_ensemble[i]`` = mean_x ||p_i(x) - mean_j p_j(x)||.

and the paper's linearisation argument as a measurement: the proposals are shrunk
toward their mean, w_i(s) = w_SWA + s (w_i - w_SWA), which leaves w_SWA unchanged.
The consecutive differences are of first order in s and the SWA-ensemble gap of
second order, so on a log-log scale their slopes (``order_consecutive``,
``order_gap``) should be near 1 and 2.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.errors import UserError
from landscape.points import PointSet

from .common import RunContext
from .distributed import ShardedResults, sharded_evaluate
from .metrics import Claim, Finding, Metric
from .registry import Analysis, Section

__all__ = ["ANALYSIS", "FGEConfig", "agreement_stats", "fge", "describe", "PAPER"]

UNSUPPORTED_BN_MODES: dict = {}
"""BN modes this analysis cannot honour: none (see the analysis function for their meaning)."""

PAPER = {"prob_diff_consecutive": 0.126, "prob_diff_swa_ensemble": 0.079, "agree_consecutive": 0.8733,
         "agree_swa_ensemble": 0.9526}
"""The paper's values (Preactivation ResNet-110, CIFAR-100); agree_consecutive is an upper bound there."""


@dataclass(frozen=True)
class FGEConfig:
    """Settings of the FGE analysis.

    BN statistics follow the engine's ``bn_mode`` like every analysis: ``recompute`` at every
    proposal, at w_SWA and at every shrunk proposal; ``stored``: the proposals' own (captured with
    them), w_SWA's (recomputed by the trainer) for w_SWA and for the shrunk proposals;
    ``interpolate``: as stored, the shrunk proposals interpolating ``b_SWA + s (b_i - b_SWA)``.

    Attributes:
        scales: Shrink factors s of the linearisation study.
    """

    scales: tuple[float, ...] = (1.0, 0.5, 0.25)

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.scales):
            raise UserError("linearisation scales must be positive")


def agreement_stats(p_props: torch.Tensor, p_swa: torch.Tensor) -> dict[str, np.ndarray | float]:
    """The paper's four quantities from probabilities ``p_props [M, n, C]`` and ``p_swa [n, C]``."""
    p_props, p_swa = p_props.double(), p_swa.double()
    ens = p_props.mean(0)
    lab = p_props.argmax(-1)
    return {
        "prob_diff_consecutive": (p_props[1:] - p_props[:-1]).norm(dim=-1).mean(-1).numpy(),
        "prob_diff_swa_ensemble": float((p_swa - ens).norm(dim=-1).mean()),
        "prob_diff_proposal_ensemble": (p_props - ens).norm(dim=-1).mean(-1).numpy(),
        "agree_consecutive": (lab[1:] == lab[:-1]).double().mean(-1).numpy(),
        "agree_swa_ensemble": float((p_swa.argmax(-1) == ens.argmax(-1)).double().mean()),
    }


def _slope(s: np.ndarray, v: np.ndarray) -> float:
    ok = (v > 0) & np.isfinite(v)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(s[ok]), np.log(v[ok]), 1)[0])


def fge(run: str | os.PathLike, out: str | os.PathLike | None = None, config: FGEConfig | None = None,
        engine_config: EngineConfig | None = None, progress: bool = True, *,
        model: nn.Module | None = None, data=None) -> dict:
    """Compare the FGE ensemble of the captured proposals with their weight average; writes ``/fge``."""
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _accuracy(r) -> torch.Tensor:
    """Test accuracy ``[K]``: the objective's own, or one minus its error (a language model's token accuracy)."""
    m = r.metrics["test"]
    return m["accuracy"] if "accuracy" in m else 1.0 - r.error("test")


def _run(ctx: RunContext, results: ShardedResults, config: FGEConfig, progress: bool) -> dict:
    t = ctx.traj
    y = ctx.scored_test_targets("fge compares predicted distributions (agreement of labels, differences of "
                                "probabilities)")
    idx = np.flatnonzero(t.meta("captured") & (t.meta("branch") == "swa"))
    if idx.size < 2:
        how = {"import": "import them with --snapshots", "recorder": "store them with Recorder.capture"}.get(
            t.source, "train with --swa-schedule cyclic")
        raise UserError(f"fge needs at least two captured proposals of the SWA branch; {t.path} has {idx.size} ({how})")
    w, b = t.weights(idx), t.buffers(idx)
    r_props = sharded_evaluate(ctx.engine, PointSet.explicit(w, b), ("test",), probs=("test",), progress=progress,
                               desc="fge proposals")
    w_swa, b_swa = t.solution("swa")  # the average, with the statistics the trainer recomputed for it
    w_mean = w.double().mean(0)  # the centre of the linearisation study
    delta = w.double() - w_mean  # [M, P], the paper's Delta_i
    r_swa = ctx.engine.evaluate(PointSet.explicit(w_swa[None], b_swa[None]), splits=("test",), probs=("test",))
    p_props, p_swa = r_props.probs["test"], r_swa.probs["test"][0]
    stats = agreement_stats(p_props, p_swa)
    ens = p_props.double().mean(0)
    out_vals = {
        "proposal_indices": idx, **stats,
        "acc_proposals": _accuracy(r_props).numpy(),
        "acc_ensemble": float((ens.argmax(-1) == y).double().mean()),
        "acc_swa": float(_accuracy(r_swa)[0]),
        "delta_norms": delta.norm(dim=1).numpy(),
        "consecutive_distances": (w[1:].double() - w[:-1].double()).norm(dim=1).numpy(),
        "probs_proposals": p_props.numpy(), "probs_swa": p_swa.numpy(),
    }
    # linearisation study: shrink the proposals toward w_SWA
    scales = np.asarray(sorted(set(config.scales), reverse=True), dtype=np.float64)
    cons, gap = [], []
    m = len(idx)
    for s in scales:  # w_mean + s Delta_i, with buffers b_SWA + s (b_i - b_SWA) where interpolated
        shrunk = PointSet.affine(w_mean, delta, s * torch.eye(m, dtype=torch.float64),
                                 b_swa.double(), (b.double() - b_swa.double()))
        r = sharded_evaluate(ctx.engine, shrunk, ("test",), probs=("test",), progress=progress,
                             desc=f"fge scale {s:g}")
        st = agreement_stats(r.probs["test"], p_swa)
        cons.append(float(np.mean(st["prob_diff_consecutive"])))
        gap.append(st["prob_diff_swa_ensemble"])
    out_vals.update(scales=scales, scaled_prob_diff_consecutive=np.array(cons), scaled_prob_diff_swa_ensemble=np.array(gap),
                    order_consecutive=_slope(scales, np.array(cons)), order_gap=_slope(scales, np.array(gap)))
    results.write("fge", out_vals, {"config": json.dumps({**asdict(config), "engine": ctx.engine_dict()}),
                                    "norm": "L2 over classes, averaged over test points",
                                    **{f"paper_{k}": v for k, v in PAPER.items()}})
    return out_vals


def describe(s: dict) -> str:
    """The FGE summary in the lines the command prints, with the paper's numbers beside."""
    return (f"fge: {len(s['proposal_indices'])} proposals; mean ||p_i - p_i+1|| {np.mean(s['prob_diff_consecutive']):.4f} "
            f"(paper {PAPER['prob_diff_consecutive']}), ||p_SWA - p_FGE|| {s['prob_diff_swa_ensemble']:.4f} (paper "
            f"{PAPER['prob_diff_swa_ensemble']}; single proposal {np.mean(s['prob_diff_proposal_ensemble']):.4f}); "
            f"label agreement consecutive {np.mean(s['agree_consecutive']):.4f}, largest "
            f"{np.max(s['agree_consecutive']):.4f} (paper <= {PAPER['agree_consecutive']}), SWA vs FGE {s['agree_swa_ensemble']:.4f} (paper "
            f"{PAPER['agree_swa_ensemble']})\n  accuracy: proposals {np.mean(s['acc_proposals']):.4f} (mean), "
            f"FGE ensemble {s['acc_ensemble']:.4f}, SWA {s['acc_swa']:.4f}; linearisation: consecutive gap ~ s^"
            f"{s['order_consecutive']:.2f}, SWA-FGE gap ~ s^{s['order_gap']:.2f} (theory: 1 and 2)")


def _values(f) -> dict[str, float]:
    if "fge/prob_diff_swa_ensemble" not in f:
        return {}
    g = f["fge"]
    v = {"fge_prob_diff_consecutive": float(np.mean(g["prob_diff_consecutive"][:])),
         "fge_prob_diff_swa_ensemble": float(g["prob_diff_swa_ensemble"][()]),
         "fge_agree_consecutive": 100 * float(np.mean(g["agree_consecutive"][:])),
         "fge_agree_consecutive_max": 100 * float(np.max(g["agree_consecutive"][:])),
         "fge_agree_swa_ensemble": 100 * float(g["agree_swa_ensemble"][()])}
    if "prob_diff_proposal_ensemble" in g:  # results written before the baseline: rerun fge
        v["fge_prob_diff_proposal_ensemble"] = float(np.mean(g["prob_diff_proposal_ensemble"][:]))
    if "order_gap" in g:
        v["fge_order_consecutive"], v["fge_order_gap"] = float(g["order_consecutive"][()]), float(g["order_gap"][()])
    v["fge_acc_last_proposal"] = 100 * float(g["acc_proposals"][-1])
    v["fge_acc_swa"] = 100 * float(g["acc_swa"][()])
    return v


def _metric(key: str, label: str) -> Metric:
    return Metric(key, label, lambda f: _values(f).get(key, math.nan))


DIFF_CONSECUTIVE = _metric("fge_prob_diff_consecutive", "FGE: mean ||p_i - p_i+1||")
DIFF_SWA = _metric("fge_prob_diff_swa_ensemble", "FGE: ||p_SWA - p_FGE||")
DIFF_PROPOSAL = _metric("fge_prob_diff_proposal_ensemble", "FGE: mean_i ||p_i - p_FGE|| (single-proposal baseline)")
AGREE_CONSECUTIVE = _metric("fge_agree_consecutive", "FGE: label agreement consecutive (%)")
AGREE_CONSECUTIVE_MAX = _metric("fge_agree_consecutive_max", "FGE: largest consecutive label agreement (%)")
AGREE_SWA = _metric("fge_agree_swa_ensemble", "FGE: label agreement SWA vs FGE (%)")
ORDER_CONSECUTIVE = _metric("fge_order_consecutive", "FGE: order of ||p_i - p_i+1|| in the shrink factor s (theory 1)")
ORDER_GAP = _metric("fge_order_gap", "FGE: order of ||p_SWA - p_FGE|| in the shrink factor s (theory 2)")
ACC_LAST = _metric("fge_acc_last_proposal", "FGE: test accuracy of the SWA branch's last proposal (%)")
ACC_SWA = _metric("fge_acc_swa", "FGE: test accuracy of SWA, as evaluated beside the proposals (%)")
METRICS = (DIFF_CONSECUTIVE, DIFF_SWA, DIFF_PROPOSAL, AGREE_CONSECUTIVE, AGREE_CONSECUTIVE_MAX, AGREE_SWA,
           ORDER_CONSECUTIVE, ORDER_GAP, ACC_LAST, ACC_SWA)
"""FGE's quantities, in compare's table order."""

_SAME_ENSEMBLE = ("paired against a second SGD solution measured against the same ensemble: SWA's value minus the "
                  "null SGD's is positive when SWA approximates the ensemble better than another good solution does")
FINDING = Finding("fge", "SWA approximates the FGE ensemble", "fge (a cyclic run's proposals)", (
    Claim("baseline", "log(mean_i ||p_i - p_FGE|| / ||p_SWA - p_FGE||): SWA closer to the ensemble than a single "
                      "proposal (stricter than the paper's comparison with consecutive proposals)",
          (DIFF_PROPOSAL, DIFF_SWA), lambda proposal, swa: np.log(proposal / swa), null=_SAME_ENSEMBLE),
    Claim("agreement", "label agreement SWA vs FGE minus the largest consecutive-proposal agreement, points",
          (AGREE_SWA, AGREE_CONSECUTIVE_MAX), lambda swa, consecutive: swa - consecutive, null=_SAME_ENSEMBLE),
    Claim("order", "the paper's argument: the SWA-ensemble gap shrinks at second order in the proposals' spread, "
                   "consecutive differences at first: order of the gap minus order of the consecutive differences",
          (ORDER_GAP, ORDER_CONSECUTIVE), lambda gap, consecutive: gap - consecutive)))
"""The paper's section 3.5 finding."""

AVERAGING = Finding("averaging", "Averaging, not the SWA branch's learning rate, makes SWA's accuracy",
                    "fge (a cyclic run's proposals)", (
    Claim("last", "SWA test accuracy minus the SWA branch's last proposal's (same schedule, no averaging), points",
          (ACC_SWA, ACC_LAST), lambda swa, last: swa - last),), optional=True)
"""Beside the paper: a control that separates averaging from the branch's higher learning rate."""


def _report(res: dict) -> list[Section]:
    from figures import plots  # here: matplotlib and plotly load only when a report is drawn

    if "fge" not in res:
        return []
    return [Section("fge", "FGE ensemble versus SWA (paper section 3.5)",
                    "The SWA model's predictions should lie closer to the ensemble's than consecutive proposals to "
                    "each other (hatched bars below plain ones), as the paper's linearisation argument predicts.", 6,
                    lambda: (plots.fge_figure(res["fge"]), plots.fge_plotly(res["fge"])))]


ANALYSIS = Analysis(
    name="fge", help="the FGE ensemble of the SWA branch's proposals against their average (paper section 3.5)",
    config=FGEConfig, compute=_run, describe=describe, order=40, judged=True, paper=(("fge", FGEConfig()),),
    unsupported_bn_modes=UNSUPPORTED_BN_MODES, skippable=True, metrics=METRICS, findings=(FINDING, AVERAGING),
    report=_report)
"""FGE as the toolkit sees it."""
