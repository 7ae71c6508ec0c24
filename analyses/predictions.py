"""SWA's and SGD's test predictions, sample by sample: the evidence one run holds about the accuracy gain.

Both solutions classify the same test samples, so their accuracies are paired. McNemar's exact test reads only the
discordant samples: ``swa_only`` that SWA gets right and SGD wrong, ``sgd_only`` the reverse; under "equally
accurate" each discordant sample is a fair coin (:func:`analyses.statistics.mcnemar`). This is within-run
evidence: it says the gain on this test set is not chance agreement of two models, not that another training seed
would give it (``compare`` over seeds says that); :mod:`analyses.within` keeps the two apart.

Language models: every scored token is one prediction. Regression: refused (``all`` skips it with the reason).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.points import PointSet

from .common import RunContext
from .distributed import ShardedResults
from .metrics import Metric
from .registry import Analysis
from .statistics import mcnemar

__all__ = ["PredictionsConfig", "predictions", "describe", "ANALYSIS"]


@dataclass(frozen=True)
class PredictionsConfig:
    """Settings of the predictions analysis: none (it evaluates w_SWA and w_SGD on the whole test split)."""


def predictions(run: str | os.PathLike, out: str | os.PathLike | None = None, config: PredictionsConfig | None = None,
                engine_config: EngineConfig | None = None, progress: bool = True, *,
                model: nn.Module | None = None, data=None) -> dict:
    """Store which test samples w_SWA and w_SGD predict right; writes ``/predictions``.

    BN statistics follow the engine's ``bn_mode`` (``recompute``: each solution's own, recomputed; ``stored`` and
    ``interpolate``: the statistics stored with each solution).
    """
    return ANALYSIS(run, out, config, engine_config, progress, model=model, data=data)


def _run(ctx: RunContext, results: ShardedResults, config: PredictionsConfig, progress: bool) -> dict:
    y = ctx.scored_test_targets("predictions compares predicted labels sample by sample", "labels")
    (w_swa, b_swa), (w_sgd, b_sgd) = ctx.traj.solution("swa"), ctx.traj.solution("sgd")
    r = ctx.engine.evaluate(PointSet.explicit(torch.stack([w_swa, w_sgd]), torch.stack([b_swa, b_sgd])),
                            splits=("test",), probs=("test",))
    right = (r.probs["test"].argmax(-1) == y.reshape(1, -1).to(r.probs["test"].device)).cpu().numpy()  # [2, n]
    swa_only, sgd_only = int(np.sum(right[0] & ~right[1])), int(np.sum(right[1] & ~right[0]))
    out = {"correct_swa": right[0].astype(np.uint8), "correct_sgd": right[1].astype(np.uint8),
           "swa_only": swa_only, "sgd_only": sgd_only, "p_value": mcnemar(swa_only, sgd_only)}
    results.write("predictions", out, {"config": json.dumps({"engine": ctx.engine_dict()}),
                                       "test": "McNemar's exact two-sided test on the discordant samples"})
    return out


def describe(s: dict) -> str:
    """The summary in the line the command prints."""
    n = len(s["correct_swa"])
    return (f"predictions: {n} test predictions; SWA right {s['correct_swa'].mean():.4f}, SGD right "
            f"{s['correct_sgd'].mean():.4f}; only SWA right on {s['swa_only']}, only SGD on {s['sgd_only']} "
            f"(McNemar's exact p = {s['p_value']:.3g})")


def _read(key: str):
    return lambda f: float(f[f"predictions/{key}"][()]) if f"predictions/{key}" in f else math.nan


METRICS = (Metric("pred_swa_only", "test samples only SWA predicts right", _read("swa_only")),
           Metric("pred_sgd_only", "test samples only SGD predicts right", _read("sgd_only")),
           Metric("pred_p_value", "McNemar's exact p, SWA vs SGD on the test predictions (within run)",
                  _read("p_value")))
"""The counts of discordant test samples and McNemar's p, in compare's table order."""

ANALYSIS = Analysis(
    name="predictions", help="SWA's and SGD's test predictions sample by sample (McNemar's exact test, within run)",
    config=PredictionsConfig, compute=_run, describe=describe, order=15, judged=True,
    paper=(("predictions", PredictionsConfig()),), skippable=True, metrics=METRICS)
"""The predictions as the toolkit sees them."""
