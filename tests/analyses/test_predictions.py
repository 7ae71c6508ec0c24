"""The predictions analysis and the within-run tests, against a plain loop and the formulas written out."""

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from analyses import RaysConfig, predictions, rays
from analyses.compare import compare
from analyses.statistics import hodges_lehmann
from analyses.within import within_run
from landscape.config import EngineConfig
from landscape.reference import load_point
from swa import Trajectory
from swa.runs import build_run_model, load_dataset
from tests.analyses.helpers import ENG, QUIET, reference


def test_predictions_sample_by_sample_against_a_plain_loop(tiny_run, results_path):
    """BN stored: each solution loaded into the network and run over the test set one batch at a time in float64;
    BN recomputed: the fraction right equals the reference accuracy."""
    s = predictions(tiny_run, results_path, None, EngineConfig(bn_mode="stored", workers=1), **QUIET)
    x, y = load_dataset(tiny_run, "test")
    with Trajectory(tiny_run) as t:
        model = build_run_model(t).double().eval()
        right = {}
        for name in ("swa", "sgd"):
            w, b = t.solution(name)
            m = load_point(model, w.double(), b.double())
            with torch.no_grad():
                right[name] = torch.cat([m(x[i:i + 7].double()).argmax(-1) == y[i:i + 7] for i in range(0, len(y), 7)])
    np.testing.assert_array_equal(s["correct_swa"], right["swa"].numpy())
    np.testing.assert_array_equal(s["correct_sgd"], right["sgd"].numpy())
    a, b = int((right["swa"] & ~right["sgd"]).sum()), int((right["sgd"] & ~right["swa"]).sum())
    assert (s["swa_only"], s["sgd_only"]) == (a, b)
    assert s["p_value"] == pytest.approx(stats.binomtest(a, a + b).pvalue if a + b else 1.0, rel=1e-12)
    s = predictions(tiny_run, results_path, None, ENG, **QUIET)
    with Trajectory(tiny_run) as t:
        assert s["correct_swa"].mean() == pytest.approx(reference(tiny_run, t.solution("swa")[0])["test"].acc, abs=1e-12)


def test_one_run_is_judged_within_the_run_and_shows_no_nan(tiny_run, tmp_path):
    """With one run, compare adds McNemar's test and the signed-rank interval over shared ray directions, labelled
    within run, computed here by the formulas; its table, Markdown and verdicts show no 'nan' and no '± 0'."""
    res = tmp_path / "res.h5"
    predictions(tiny_run, res, None, ENG, **QUIET)
    rays(tiny_run, res, RaysConfig(7, 6, seed=4), ENG, **QUIET)
    c = compare([(tiny_run, str(res))])
    with h5py.File(res, "r") as f:
        found = {w.claim: w for w in within_run(f)}
        a, b = int(f["predictions/swa_only"][()]), int(f["predictions/sgd_only"][()])
        n = len(f["predictions/correct_swa"])

        def widths(o):
            w = f[f"rays/{o}/width_error"][:]
            return np.where(np.isfinite(w), w, f[f"rays/{o}/t"][-1])

        ratio = np.log(widths("swa") / widths("sgd"))
    acc = next(w for w in c.within if w.finding == "SWA generalises better")
    assert acc.estimate == pytest.approx(100 * (a - b) / n) and acc.n == a + b
    p = stats.binomtest(a, a + b).pvalue if a + b else 1.0
    assert acc.word == ("inconclusive" if p >= 0.05 else "holds" if a > b else "contradicted")
    width = next(w for w in c.within if "test-error margin, raw" in w.claim)
    est, lo, hi = hodges_lehmann(ratio)
    assert width.estimate == pytest.approx(est) and width.n == 7
    assert width.word == ("holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive")
    assert set(found) == {w.claim for w in c.within} and len(found) == 3  # accuracy and the raw rays' two margins
    for text in (c.format_table(), c.format_markdown()):
        assert "nan" not in text and "± 0" not in text and "within this run" in text.lower()
    assert "one run: no interval" in c.format_verdicts()
