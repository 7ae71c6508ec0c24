"""``compare``: its values and verdicts against the same quantities computed here from the files."""

import csv
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from analyses import FGEConfig, RaysConfig, SegmentConfig, fge, rays, segment
from analyses.catalog import findings
from analyses.compare import compare, labels
from analyses.findings import judge
from analyses.statistics import t_interval
from landscape.config import EngineConfig
from landscape.errors import UserError
from landscape.files import default_results_path
from swa import Trajectory, train
from tests.analyses.helpers import reference
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
                for m in ("error", "loss", "loss_l2"):
                    w, end = f[f"{g}/{o}/width_{m}"][:], f[f"{g}/{o}/t"][-1]
                    v[f"{g}_{o}_{m}"] = sum(x if np.isfinite(x) else end for x in w) / len(w)
        ts, loss = f["segment/t"][:], f["segment/train_loss_l2"][:]

        def at(x, y=loss):  # linear interpolation between the two grid points around x
            j = np.searchsorted(ts, x)
            if ts[j] == x:
                return y[j]
            return y[j - 1] + (x - ts[j - 1]) / (ts[j] - ts[j - 1]) * (y[j] - y[j - 1])

        r_sgd, r_swa = at(1.5) - at(1.0), at(-0.5) - at(0.0)
        v["boundary"] = (r_sgd - r_swa) / (abs(r_sgd) + abs(r_swa))
        err = f["segment/test_error"][:]
        tied = ts[err == err.min()]
        v["t_err"] = tied.mean()  # the centre of tied minima
        v["shift"] = ts[loss == loss.min()].mean() - v["t_err"]
        # the flat region on a fine grid (1e-5 apart): below min + 10% of the lower end's rise, around the minimum
        fine = np.linspace(ts[0], ts[-1], int(round((ts[-1] - ts[0]) / 1e-5)) + 1)
        lf = np.interp(fine, ts, loss)
        rises = [r for r in (loss[0] - loss.min(), loss[-1] - loss.min()) if r > 0]
        inside = lf <= loss.min() + 0.1 * min(rises)
        i = np.argmin(lf)
        lo_i, hi_i = i, i
        while lo_i > 0 and inside[lo_i - 1]:
            lo_i -= 1
        while hi_i < len(fine) - 1 and inside[hi_i + 1]:
            hi_i += 1
        v["flat"] = (fine[lo_i], fine[hi_i])
        d_swa, d_sgd = min(0 - fine[lo_i], fine[hi_i] - 0), min(1 - fine[lo_i], fine[hi_i] - 1)  # depths
        v["centre"] = (d_swa - d_sgd) / (abs(d_swa) + abs(d_sgd))
        v["last"] = 100 * f["fge/acc_proposals"][-1]
        v["order"] = f["fge/order_gap"][()] - f["fge/order_consecutive"][()]
        v["gap"] = f["fge/prob_diff_swa_ensemble"][()]
        v["cons"] = f["fge/prob_diff_consecutive"][:].mean()
        p = f["fge/probs_proposals"][:].astype(np.float64)  # the single-proposal baseline, by hand
        ens = p.mean(0)
        v["baseline"] = np.mean([np.mean(np.sqrt(((p[i] - ens) ** 2).sum(-1))) for i in range(len(p))])
        v["agree_max"] = 100 * max(np.mean(p[i].argmax(-1) == p[i + 1].argmax(-1)) for i in range(len(p) - 1))
        v["agree_swa"] = 100 * np.mean(f["fge/probs_swa"][:].argmax(-1) == ens.argmax(-1))
    return v


def test_compare_values_and_verdicts_match_the_files(analysed_runs):
    c = compare(analysed_runs)
    exp = [_expected(*p) for p in analysed_runs]
    np.testing.assert_allclose(c.values["acc_diff"], [e["swa"] - e["sgd"] for e in exp], rtol=1e-12)
    for g in ("rays", "rays_filter"):
        for o in ("swa", "sgd"):
            for m in ("error", "loss", "loss_l2"):
                np.testing.assert_allclose(c.values[f"{g}_{o}_width_{m}"], [e[f"{g}_{o}_{m}"] for e in exp], rtol=1e-12)
    for key, e_key in (("seg_boundary", "boundary"), ("seg_t_min_test_error", "t_err"),
                       ("seg_shift", "shift"), ("fge_prob_diff_swa_ensemble", "gap"),
                       ("fge_prob_diff_proposal_ensemble", "baseline"), ("fge_agree_consecutive_max", "agree_max"),
                       ("fge_agree_swa_ensemble", "agree_swa")):
        np.testing.assert_allclose(c.values[key], [e[e_key] for e in exp], rtol=1e-9, atol=1e-12, err_msg=key)
    for key, i in (("seg_flat_low", 0), ("seg_flat_high", 1)):  # within the fine grid's spacing
        np.testing.assert_allclose(c.values[key], [e["flat"][i] for e in exp], rtol=0, atol=2e-5)
    # every claim's per-run statistic by the formulas written out, and its interval by scipy
    written = {
        ("accuracy", "gain"): [e["swa"] - e["sgd"] for e in exp],
        ("width", "rays_error"): [np.log(e["rays_swa_error"] / e["rays_sgd_error"]) for e in exp],
        ("width", "rays_filter_loss_l2"): [np.log(e["rays_filter_swa_loss_l2"] / e["rays_filter_sgd_loss_l2"])
                                           for e in exp],
        ("segment", "boundary"): [e["boundary"] for e in exp],
        ("segment", "centre"): [e["centre"] for e in exp],
        ("segment", "shift"): [e["shift"] for e in exp],
        ("fge", "baseline"): [np.log(e["baseline"] / e["gap"]) for e in exp],
        ("fge", "agreement"): [e["agree_swa"] - e["agree_max"] for e in exp],
        ("fge", "order"): [e["order"] for e in exp],
        ("averaging", "last"): [e["swa"] - e["last"] for e in exp],
    }
    for (finding, claim), x in written.items():
        m = next(m for m in c.verdict(finding).claims if m.claim.key == claim)
        atol = 1e-4 if claim == "centre" else 1e-12  # the flat region's edges above: on a fine grid
        np.testing.assert_allclose(m.values, x, rtol=1e-9, atol=atol)
        if m.claim.test == "t":  # two runs: a t-interval; the signed-rank interval needs 6 runs
            lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
            assert (m.low, m.high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
        else:
            assert np.isnan(m.low) and m.interval in ("2 runs: the signed-rank interval needs 6",
                                                      "no spread over the runs: no interval")
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


PAPER_FINDINGS = [f for f in findings() if not f.optional]


def _synthetic(rng, r: int, sign: float, scale: float = 1.0) -> dict:
    """Per-run values whose every claim has the sign ``sign`` (+1: the paper's direction) on every run, of size
    ``scale`` times 0.05-0.2."""
    v = {k: rng.uniform(0.5, 1.0, r) for k in labels()}
    up = lambda: scale * rng.uniform(0.05, 0.2, r)  # noqa: E731
    v["swa_acc"] = v["sgd_acc"] + sign * up()
    v["sgd_budget_acc"] = np.full(r, np.nan)
    for g in ("rays", "rays_filter"):
        for m in ("error", "loss_l2"):
            v[f"{g}_swa_width_{m}"] = v[f"{g}_sgd_width_{m}"] * np.exp(sign * up())
    for k in ("seg_centre", "seg_boundary", "seg_shift"):
        v[k] = sign * up()
    v["fge_prob_diff_swa_ensemble"] = v["fge_prob_diff_proposal_ensemble"] * np.exp(-sign * up())
    v["fge_agree_swa_ensemble"] = v["fge_agree_consecutive_max"] + sign * up()
    v["fge_order_gap"] = v["fge_order_consecutive"] + sign * up()
    v["fge_acc_swa"] = v["fge_acc_last_proposal"] + sign * up()
    v["sharpness_sgd_adaptive"] = v["sharpness_swa_adaptive"] + sign * up()
    return v


def test_verdicts_hold_are_contradicted_or_inconclusive_on_synthetic_runs():
    """Runs built to hold, to be contradicted, and to be inconclusive (one run against the rest); then one claim
    of each finding alone reversed, the budget-matched control and a missing analysis."""
    rng = np.random.default_rng(11)
    for sign, word in ((1, "holds"), (-1, "contradicted")):
        verdicts = judge(findings(), _synthetic(rng, 8, sign))
        assert [v.finding.key for v in verdicts] == [f.key for f in findings()]
        assert all(v.word == word and all(m.word == word for m in v.claims) for v in verdicts)
        assert all(v.holds == (word == "holds") for v in verdicts)
    for v in judge(findings(), {k: x[:1] for k, x in _synthetic(rng, 1, 1).items()}):  # one run proves nothing
        assert v.word == "inconclusive" and np.isnan(v.claims[0].low) and v.claims[0].interval == "one run: no interval"
        assert "nan" not in v.claims[0].describe() and v.claims[0].estimate.startswith("value ")
    mixed = {k: np.concatenate([a, b]) for (k, a), b in zip(_synthetic(rng, 4, 1).items(),
                                                            _synthetic(rng, 4, -1).values())}
    assert all(v.word == "inconclusive" for v in judge(findings(), mixed))
    for f in PAPER_FINDINGS:  # each claim reversed alone: its finding is contradicted, the others hold
        for claim in f.claims:
            v = _synthetic(rng, 8, 1)
            bad = _synthetic(rng, 8, -1)
            for k in labels():  # take the reversed values of the quantities this claim reads
                if not np.allclose(claim.evaluate({**v, k: bad[k]}), claim.evaluate(v), equal_nan=True):
                    v[k] = bad[k]
            words = {x.finding.key: x.word for x in judge(findings(), v)}
            assert words[f.key] == "contradicted", (f.key, claim.key)
            assert sum(w == "holds" for w in words.values()) >= len(words) - 2  # shared quantities aside
    v = _synthetic(rng, 8, 1)
    v["sgd_budget_acc"] = v["swa_acc"] + rng.uniform(0.05, 0.2, 8)  # the longer SGD run beats SWA
    assert judge(findings(), v)[0].word == "contradicted"
    v["sgd_budget_acc"][0] = np.nan  # trained without controls: the SGD branch alone
    np.testing.assert_allclose(judge(findings(), v)[0].claims[0].values[0], v["swa_acc"][0] - v["sgd_acc"][0])
    v = _synthetic(rng, 8, 1)
    v["rays_sgd_width_error"][0] = np.nan  # raw rays of run 1 not measured
    width = judge(findings(), v)[1]
    assert width.word == "not measured" and not width.holds and "run 1" in width.missing(8)
    none = dict(v, sharpness_swa_adaptive=np.full(8, np.nan), sharpness_sgd_adaptive=np.full(8, np.nan))
    assert "sharpness" not in {x.finding.key for x in judge(findings(), none)}


def test_the_null_control_is_paired_run_by_run():
    """A null pair built equal to SWA's (up to noise) does not discriminate; one whose effect is real but smaller on
    every run does, although it holds on its own (the old rule flagged exactly that); the paired difference is SWA's
    statistic minus the null's, run by run, judged by the claim's own test."""
    rng = np.random.default_rng(12)
    v = _synthetic(rng, 8, 1)
    same = {k: x * (1 + 1e-3 * rng.standard_normal(8)) for k, x in v.items()}
    smaller = _synthetic(rng, 8, 1, scale=0.1)
    for null, discriminating in ((same, False), (smaller, True)):
        for verdict in judge(findings(), v, null):
            compared = [i for i, m in enumerate(verdict.claims) if m.claim.null]
            assert compared or verdict.finding.key in ("averaging",), verdict.finding.key
            for i, m in enumerate(verdict.claims):
                p = verdict.paired[i]
                if not m.claim.null:
                    assert p is None
                    continue
                np.testing.assert_allclose(p.values, m.values - verdict.null[i].values, rtol=1e-12)
                assert p.claim.test == m.claim.test
            if not discriminating:
                assert verdict.word in ("holds, not discriminating", "holds") and not verdict.holds or not compared
            else:
                assert verdict.null_word == "holds" and verdict.word == "holds" and verdict.holds
                assert not verdict.not_discriminating


def test_zero_spread_and_two_runs_give_no_false_certainty():
    """Every run equal: no interval (not a zero-width one that 'holds'); two runs: a t-interval with one degree of
    freedom, and no signed-rank interval."""
    rng = np.random.default_rng(13)
    v = _synthetic(rng, 4, 1)
    for k in ("seg_centre", "seg_boundary", "seg_shift"):
        v[k] = np.full(4, 0.3)
    v["swa_acc"] = v["sgd_acc"] + 0.5
    verdicts = {x.finding.key: x for x in judge(findings(), v)}
    for key in ("accuracy", "segment"):
        for m in verdicts[key].claims:
            assert m.word == "inconclusive" and m.interval == "no spread over the runs: no interval"
    two = {k: x[:2] for k, x in _synthetic(rng, 2, 1).items()}
    for verdict in judge(findings(), two):
        for m in verdict.claims:
            assert np.isfinite(m.low) == (m.claim.test == "t")
            if m.claim.test == "t":
                half = stats.t.ppf(0.975, 1) * m.values.std(ddof=1) / np.sqrt(2)
                assert (m.low, m.high) == (pytest.approx(m.values.mean() - half), pytest.approx(m.values.mean() + half))


def test_compare_cli_table_csv_and_report(analysed_runs, tmp_path):
    args = [f"{run}={res}" for run, res in analysed_runs]
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "compare", *args, "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    c = compare(analysed_runs)
    for v in c.verdicts:
        assert f"{v.finding.title}: {v.word.upper()}" in r.stdout
        assert all(m.claim.text in r.stdout for m in v.claims)
    rows = list(csv.reader(open(tmp_path / "c" / "compare.csv")))
    by_key = {row[0]: row for row in rows[1:]}
    assert float(by_key["acc_diff"][2]) == pytest.approx(c.stat("acc_diff")[0])
    assert by_key["width_rays_error"][2] == c.verdict("width").word
    gain = c.verdict("accuracy").claims[0]
    assert [float(x) for x in by_key["accuracy_gain"][3:6]] == pytest.approx([gain.mean, gain.low, gain.high])
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
    assert t_interval(np.array([0.3, 0.3, 0.3]))[0] == 0.3 and np.isnan(t_interval(np.array([0.3, 0.3, 0.3]))[1])


@pytest.fixture(scope="module")
def controlled_run(tmp_path_factory):
    """A tiny run with its controls, the judged analyses on the SWA-SGD pair and on the null pair."""
    from analyses.batch import run_analyses, with_settings
    from analyses.catalog import judged
    from swa.trajectory import NULL_ROLES

    run = tmp_path_factory.mktemp("null") / "ctl.h5"
    train(tiny_config(controls=True, seed=3), run, progress=False, log=lambda s: None)
    for roles in (None, NULL_ROLES):
        with Trajectory(run, roles) as t:
            run_analyses(t, t.results_path, with_settings(judged(), {"rays": {"directions": 3, "steps": 6},
                                                                         "segment": {"steps": 21}}), ENG, progress=False,
                         log=lambda s: None)
    return run


def test_the_null_pair_puts_the_second_sgd_in_swa_place(controlled_run):
    """``analyze --null`` evaluates the null SGD where SWA was; compare reads it beside the run's own values, and the
    accuracy finding uses the better of the two SGDs of the same budget or longer."""
    from swa.trajectory import NULL_ROLES

    null_res = default_results_path(controlled_run, "null")
    assert null_res.name == "ctl.null.landscape.h5" and null_res.exists()
    with Trajectory(controlled_run) as t:
        acc = {n: 100 * t.solution_scalar(n, "test_acc") for n in ("sgd", "swa", "sgd_budget", "sgd_null")}
        w_null = t.solution("sgd_null")[0]
    with h5py.File(null_res, "r") as f:
        ts, err = f["segment/t"][:], f["segment/test_error"][:]
        assert 1 - err[list(ts).index(0.0)] == pytest.approx(reference(controlled_run, w_null)["test"].acc, abs=1e-12)
    with Trajectory(controlled_run, NULL_ROLES) as t:
        torch.testing.assert_close(t.solution("swa")[0], w_null, rtol=0, atol=0)
    c = compare([controlled_run])
    assert c.null is not None
    np.testing.assert_allclose(c.null["swa_acc"], [acc["sgd_null"]])
    np.testing.assert_allclose(c.values["sgd_budget_acc"], [acc["sgd_budget"]])
    gain = c.verdict("accuracy")
    assert gain.claims[0].values[0] == pytest.approx(acc["swa"] - max(acc["sgd"], acc["sgd_budget"]))
    assert gain.null[0].values[0] == pytest.approx(acc["sgd_null"] - max(acc["sgd"], acc["sgd_budget"]))
    exp = _expected(controlled_run, null_res)  # the null's claims by the formulas written out, from its file
    width = c.verdict("width")
    assert width.null[0].values[0] == pytest.approx(np.log(exp["rays_swa_error"] / exp["rays_sgd_error"]), rel=1e-9)
    assert c.verdict("fge").null[0].values[0] == pytest.approx(np.log(exp["baseline"] / exp["gap"]), rel=1e-9)
    assert "null control:" in c.format_table() and "null" in c.format_markdown()


def test_the_null_pair_needs_the_controls(tiny_run, tmp_path):
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "segment", "--null", "--out",
                        str(tmp_path / "n.h5")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--controls" in r.stderr
    assert not (tmp_path / "n.h5").exists()
