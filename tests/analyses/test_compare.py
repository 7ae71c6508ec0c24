"""``compare``: its values and verdicts against the same quantities computed here from the files."""

import csv
import subprocess
import sys

import h5py
import numpy as np
from scipy import stats
import pytest

from analyses import FGEConfig, RaysConfig, SegmentConfig, fge, rays, segment
from analyses.compare import compare, labels
from analyses.findings import FINDINGS, FLATNESS, MIN_ACC_GAIN, t_interval
from analyses.findings import judge
from landscape.engine import EngineConfig
from landscape.errors import UserError
from swa import Trajectory, train
from tests.factories import tiny_config

ENG = EngineConfig(bn_batch_size=64, workers=1)


@pytest.fixture(scope="module")
def analysed_runs(tiny_run, tmp_path_factory):
    """Two tiny runs (seeds 0 and 1), each with raw and filter-normalised rays, the segment and FGE."""
    d = tmp_path_factory.mktemp("compare")
    second = d / "seed1.h5"
    train(tiny_config(seed=1), second, progress=False, log=lambda s: None)
    pairs = []
    for i, run in enumerate((tiny_run, str(second))):
        res = d / f"res{i}.h5"
        for fn in (False, True):
            rays(run, res, RaysConfig(3, 6, seed=5, filter_normalize=fn), ENG, progress=False)
        segment(run, res, SegmentConfig(-1.0, 2.0, 13), ENG, progress=False)
        fge(run, res, FGEConfig(scales=(1.0, 0.5)), ENG, progress=False)
        pairs.append((run, str(res)))
    return pairs


def _expected(run, res) -> dict:
    """The quantities compare reports, computed here from the files with h5py and written-out formulas."""
    v = {}
    with Trajectory(run) as t:
        v["sgd"], v["swa"] = (100 * t.solution_scalar(n, "test_acc") for n in ("sgd", "swa"))
    with h5py.File(res, "r") as f:
        for g in ("rays", "rays_filter"):
            for o in ("swa", "sgd"):
                for m in ("error", "loss"):
                    w, end = f[f"{g}/{o}/width_{m}"][:], f[f"{g}/{o}/t"][-1]
                    v[f"{g}_{o}_{m}"] = sum(x if np.isfinite(x) else end for x in w) / len(w)
        ts, loss = f["segment/t"][:], f["segment/train_loss_l2"][:]

        def at(x):  # linear interpolation between the two grid points around x
            j = np.searchsorted(ts, x)
            if ts[j] == x:
                return loss[j]
            return loss[j - 1] + (x - ts[j - 1]) / (ts[j] - ts[j - 1]) * (loss[j] - loss[j - 1])

        v["slope_sgd"], v["slope_swa"] = (at(1.5) - at(1.0)) / 0.5, (at(-0.5) - at(0.0)) / 0.5
        err = f["segment/test_error"][:]
        v["t_err"] = ts[np.nanargmin(err)]
        v["gap"] = f["fge/prob_diff_swa_ensemble"][()]
        v["cons"] = f["fge/prob_diff_consecutive"][:].mean()
    return v


def test_compare_values_and_verdicts_match_the_files(analysed_runs):
    c = compare(analysed_runs)
    exp = [_expected(*p) for p in analysed_runs]
    np.testing.assert_allclose(c.values["acc_diff"], [e["swa"] - e["sgd"] for e in exp], rtol=1e-12)
    for g in ("rays", "rays_filter"):
        for o in ("swa", "sgd"):
            for m in ("error", "loss"):
                np.testing.assert_allclose(c.values[f"{g}_{o}_width_{m}"], [e[f"{g}_{o}_{m}"] for e in exp], rtol=1e-12)
    np.testing.assert_allclose(c.values["seg_slope_beyond_sgd"], [e["slope_sgd"] for e in exp], rtol=1e-10)
    np.testing.assert_allclose(c.values["seg_slope_beyond_swa"], [e["slope_swa"] for e in exp], rtol=1e-10)
    np.testing.assert_allclose(c.values["fge_prob_diff_swa_ensemble"], [e["gap"] for e in exp], rtol=1e-12)
    # the verdicts by the criteria written out
    acc = [e["swa"] - e["sgd"] > 0 for e in exp]
    assert c.verdict("accuracy").per_run == tuple(acc)
    assert c.verdict("accuracy").holds == (all(acc) and np.mean([e["swa"] - e["sgd"] for e in exp]) >= 0.5)
    wide = [all(e[f"{g}_swa_{m}"] > e[f"{g}_sgd_{m}"] for g in ("rays", "rays_filter") for m in ("error", "loss"))
            for e in exp]
    assert c.verdict("width").per_run == tuple(wide) and c.verdict("width").holds == all(wide)
    edge = [e["t_err"] < 0.5 and e["slope_sgd"] > e["slope_swa"] for e in exp]
    assert c.verdict("segment").per_run == tuple(edge)
    close = [e["gap"] < e["cons"] for e in exp]
    assert c.verdict("fge").per_run == tuple(close) and c.verdict("fge").holds == all(close)
    assert c.all_hold == all(v.holds for v in c.verdicts)
    m, s = c.stat("swa_acc")
    assert m == pytest.approx(np.mean([e["swa"] for e in exp])) and s == pytest.approx(np.std([e["swa"] for e in exp],
                                                                                               ddof=1))


def test_a_direction_that_never_crosses_counts_at_the_rays_end(analysed_runs, tmp_path):
    """The tiny runs' rays all cross; here one direction's width is made inf (no crossing within the ray)."""
    import shutil

    run, res = analysed_runs[0]
    copy = tmp_path / "res.h5"
    shutil.copy(res, copy)
    with h5py.File(copy, "r+") as f:
        w = f["rays_filter/sgd/width_loss"]
        w[1] = np.inf
        widths, end = w[:], f["rays_filter/sgd/t"][-1]
    expected = (widths[0] + end + widths[2:].sum()) / len(widths)
    c = compare([(run, str(copy))])
    assert c.values["rays_filter_sgd_width_loss"][0] == pytest.approx(expected, rel=1e-12)


def test_judge_flips_with_each_criterion():
    """Random values made to satisfy every criterion; then each one broken on one run alone."""
    rng = np.random.default_rng(11)
    r = 3

    def good():
        v = {k: rng.uniform(0.5, 1.0, r) for k in labels()}
        v["acc_diff"] = rng.uniform(MIN_ACC_GAIN + 0.1, 2.0, r)
        for g in ("rays", "rays_filter"):
            for m in ("error", "loss"):
                v[f"{g}_swa_width_{m}"] = v[f"{g}_sgd_width_{m}"] * rng.uniform(1.01, 1.5, r)
        v["seg_t_min_test_error"] = rng.uniform(-1, 0.45, r)
        v["seg_slope_beyond_swa"] = v["seg_slope_beyond_sgd"] - rng.uniform(0.01, 0.1, r)
        v["fge_prob_diff_swa_ensemble"] = v["fge_prob_diff_consecutive"] * rng.uniform(0.1, 0.9, r)
        v["sharpness_sgd_adaptive"] = v["sharpness_swa_adaptive"] + rng.uniform(0.1, 0.2, r)
        return v

    assert all(x.holds for x in judge(good()))
    breaks = {
        "accuracy": lambda v: v["acc_diff"].__setitem__(1, -0.01),
        "width": lambda v: v["rays_filter_sgd_width_loss"].__setitem__(2, v["rays_filter_swa_width_loss"][2] * 1.001),
        "segment": lambda v: v["seg_t_min_test_error"].__setitem__(0, 0.55),
        "fge": lambda v: v["fge_prob_diff_swa_ensemble"].__setitem__(1, v["fge_prob_diff_consecutive"][1] * 1.01),
    }
    for key, brk in breaks.items():
        v = good()
        brk(v)
        verdicts = {x.finding.key: x for x in judge(v)}
        assert not verdicts[key].holds and verdicts[key].word == "does not hold"
        assert sum(p is False for p in verdicts[key].per_run) == 1
        assert all(x.holds for k, x in verdicts.items() if k != key)
    v = good()
    v["acc_diff"] = np.array([0.2, 0.3, 0.4])  # SWA better on every run, but not by enough on average
    acc = judge(v)[0]
    assert acc.per_run == (True, True, True) and not acc.holds
    v = good()
    v["seg_slope_beyond_swa"] = v["seg_slope_beyond_sgd"] + 0.01  # steeper beyond SWA
    assert not judge(v)[2].holds
    v = good()
    v["rays_sgd_width_error"][0] = np.nan  # raw rays of one run not measured
    width = judge(v)[1]
    assert width.per_run[0] is None and width.word == "not measured" and not width.holds
    assert [f.key for f in FINDINGS] == ["accuracy", "width", "segment", "fge"]


def test_compare_cli_table_csv_and_report(analysed_runs, tmp_path):
    args = [f"{run}={res}" for run, res in analysed_runs]
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "compare", *args, "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    c = compare(analysed_runs)
    for v in c.verdicts:
        assert f"{v.finding.title}: {v.word.upper()}" in r.stdout and v.finding.criterion in r.stdout
    rows = list(csv.reader(open(tmp_path / "c" / "compare.csv")))
    by_key = {row[0]: row for row in rows[1:]}
    assert float(by_key["acc_diff"][2]) == pytest.approx(c.stat("acc_diff")[0])
    assert by_key["finding_width"][2] == c.verdict("width").word
    page = (tmp_path / "c" / "index.html").read_text()
    assert page.index("Findings") < page.index("Quantities") and "rays_runs.png" in page
    assert (tmp_path / "c" / "rays_runs.png").stat().st_size > 10_000


def test_compare_refuses_bad_input(analysed_runs, tiny_run_constant, tmp_path):
    (run, res), _ = analysed_runs
    with pytest.raises(UserError, match="another run"):
        compare([(tiny_run_constant, res)])
    with pytest.raises(UserError, match="at least one run"):
        compare([])
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "compare", str(tmp_path / "missing.h5")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr


def test_t_interval_against_scipy_and_the_formula():
    rng = np.random.default_rng(21)
    for n in (2, 3, 7, 30):
        x = rng.normal(rng.uniform(-1, 1), rng.uniform(0.1, 2), n)
        mean, lo, hi = t_interval(x)
        half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)  # written out
        assert mean == pytest.approx(x.mean(), rel=1e-12)
        assert (lo, hi) == (pytest.approx(x.mean() - half, rel=1e-10), pytest.approx(x.mean() + half, rel=1e-10))
        assert (lo, hi) == pytest.approx(stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x)))
    assert np.isnan(t_interval(np.array([1.0]))[1])


def test_the_flatness_verdict_is_three_way_and_shown_only_where_measured():
    rng = np.random.default_rng(22)
    base = {k: rng.uniform(0.5, 1.0, 4) for k in labels()}
    cases = {"holds": rng.uniform(0.2, 0.3, 4), "contradicted": -rng.uniform(0.2, 0.3, 4),
             "inconclusive": np.array([0.3, -0.3, 0.2, -0.25])}
    for word, diff in cases.items():
        v = dict(base, sharpness_sgd_adaptive=base["sharpness_swa_adaptive"] + diff)
        flat = {x.finding.key: x for x in judge(v)}["sharpness"]
        assert flat.finding is FLATNESS and flat.word == word and flat.holds == (word == "holds")
        assert flat.interval == pytest.approx(t_interval(diff)) and "95% t-interval" in flat.margin
    one = {k: x[:1] for k, x in base.items()}
    assert {x.finding.key: x for x in judge(one)}["sharpness"].word == "inconclusive"  # one run proves nothing
    none = dict(base, sharpness_swa_adaptive=np.full(4, np.nan), sharpness_sgd_adaptive=np.full(4, np.nan))
    assert "sharpness" not in {x.finding.key for x in judge(none)}
