"""The SWA-SGD segment (paper Figure 5) against the slow reference, in every BN mode."""

import json

import h5py
import numpy as np
import pytest

from analyses import PlaneConfig, SegmentConfig, plane, segment
from analyses.plane import plane_basis
from analyses.segment import centre_of_minima, flat_region, segment_statistics
from landscape.config import EngineConfig
from swa import Trajectory
from tests.analyses.helpers import ENG, QUIET, reference, reference_with, sha


def test_segment_endpoints_reproduce_the_solutions(tiny_run, results_path):
    before = sha(tiny_run)
    s = segment(tiny_run, results_path, SegmentConfig(-0.5, 1.5, 5), ENG, **QUIET)
    assert sha(tiny_run) == before  # analyses never modify the run file
    with Trajectory(tiny_run) as t:
        w_swa, w_sgd = t.solution("swa")[0], t.solution("sgd")[0]
        swa_acc = t.solution_scalar("swa", "test_acc")
    t_ = s["t"]
    assert 0.0 in t_ and 1.0 in t_
    np.testing.assert_allclose(s["distance"], t_ * (w_sgd.double() - w_swa.double()).norm().item(), rtol=1e-12)
    i0, i1 = list(t_).index(0.0), list(t_).index(1.0)
    for i, w in ((i0, w_swa), (i1, w_sgd)):
        ref = reference(tiny_run, w)
        assert s["train_loss"][i] == pytest.approx(ref["train"].loss, rel=1e-10)
        assert s["test_error"][i] == pytest.approx(1 - ref["test"].acc, abs=1e-12)
    assert s["test_error"][i0] == pytest.approx(1 - swa_acc, abs=1e-9)  # trainer recomputed BN the same way
    with h5py.File(results_path, "r") as f, Trajectory(tiny_run) as t:  # the paper's L2-regularised loss
        wd = t.config["weight_decay"]
        for i, w in ((i0, w_swa), (i1, w_sgd)):
            l2 = f["segment/train_loss_l2"][i] - f["segment/train_loss"][i]
            assert wd > 0 and l2 == pytest.approx(0.5 * wd * float(w.double().pow(2).sum()), rel=1e-9)
    with h5py.File(results_path, "r") as f:
        assert f["segment/train_loss"].shape == (len(t_),) and "t_min_test_error" in f["segment"]


@pytest.mark.parametrize("mode", ["stored", "interpolate"])
def test_segment_and_plane_bn_modes_against_reference(tiny_run, tmp_path, mode):
    """Each BN mode means what it says, checked against the reference path with buffers written out in the test."""
    eng = EngineConfig(**{**ENG.__dict__, "bn_mode": mode})
    s = segment(tiny_run, tmp_path / "r.h5", SegmentConfig(-0.5, 1.5, 5), eng, **QUIET)
    with Trajectory(tiny_run) as t:
        (w_swa, b_swa), (w_sgd, b_sgd) = t.solution("swa"), t.solution("sgd")
    for i, ti in enumerate(s["t"]):
        w = w_swa.double() + ti * (w_sgd.double() - w_swa.double())
        b = b_swa.double() + (ti * (b_sgd.double() - b_swa.double()) if mode == "interpolate" else 0)
        ref = reference_with(tiny_run, w, b)
        assert s["train_loss"][i] == pytest.approx(ref["train"].loss, rel=1e-10)
        assert s["test_error"][i] == pytest.approx(1 - ref["test"].acc, abs=1e-12)
    p = plane(tiny_run, tmp_path / "r.h5", PlaneConfig(grid=(3, 2), margin=0.1), eng, **QUIET)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        idx = json.loads(f["plane"].attrs["anchors"])
        assert json.loads(f["plane"].attrs["config"])["engine"]["bn_mode"] == mode  # recorded = used
    with Trajectory(tiny_run) as t:
        w, b = t.weights(idx).double(), t.buffers(idx).double()
    basis, xy = plane_basis(w[0], w[1], w[2])
    # buffers through the three anchors: b = b1 + alpha (b3 - b1) + beta (b2 - b1), solved from the plane coordinates
    for gi, gj in ((0, 0), (2, 1)):
        x, y = p["x"][gi], p["y"][gj]
        beta = y / xy[1, 1]
        alpha = (x - beta * xy[1, 0]) / xy[2, 0]
        bb = b[0] + (alpha * (b[2] - b[0]) + beta * (b[1] - b[0]) if mode == "interpolate" else 0)
        ref = reference_with(tiny_run, w[0] + x * basis[0] + y * basis[1], bb)
        assert p["train_loss"][gi, gj] == pytest.approx(ref["train"].loss, rel=1e-10)


def test_tied_minima_resolve_to_their_centre_and_an_end_minimum_is_flagged():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(-2, 3, 12))
    v = rng.uniform(0.2, 0.9, 12)
    v[[4, 5, 6]] = 0.1  # three tied minima (test errors move in steps of 1/n)
    assert centre_of_minima(t, v) == (pytest.approx(t[[4, 5, 6]].mean(), rel=1e-12), False)
    v[9] = 0.1  # a fourth, apart from the others: the centre of all four
    assert centre_of_minima(t, v)[0] == pytest.approx(t[[4, 5, 6, 9]].mean(), rel=1e-12)
    v[-1] = 0.05  # the least value at the end of the range: reported as such
    assert centre_of_minima(t, v) == (t[-1], True)
    w = rng.uniform(0.2, 0.9, 12)
    w[0] = w[7] = 0.01
    assert centre_of_minima(t, w) == (pytest.approx((t[0] + t[7]) / 2), True)


def test_segment_reports_the_paper_claims_on_its_stored_curves(tiny_run, results_path):
    """The rises beyond each end, the flat region and the train/test shift, from the stored curves by the formulas
    written out, and where each minimum lies."""
    from analyses.segment import ANALYSIS

    segment(tiny_run, results_path, SegmentConfig(), ENG, **QUIET)  # the default range [-2, 3]
    with h5py.File(results_path, "r") as f:
        s = f["segment"]
        ts, loss, err = s["t"][:], s["train_loss_l2"][:], s["test_error"][:]
        m = ANALYSIS.measure(f)
        tied = np.flatnonzero(err == err.min())
        assert bool(s["t_min_test_error_at_edge"][()]) == (tied[0] == 0 or tied[-1] == len(ts) - 1)
    assert ts[0] == -2 and ts[-1] == 3 and 0.0 in ts and 1.0 in ts
    L = dict(zip(ts.round(12), loss))
    r_sgd, r_swa = L[1.5] - L[1.0], L[-0.5] - L[0.0]  # 1.5 and -0.5 on the grid
    assert m["seg_boundary"] == pytest.approx((r_sgd - r_swa) / (abs(r_sgd) + abs(r_swa)), rel=1e-12)
    assert m["seg_t_min_train_loss_l2"] == ts[np.argmin(loss)]
    assert m["seg_shift"] == pytest.approx(ts[np.argmin(loss)] - ts[tied].mean(), abs=1e-12)
    low, high = m["seg_flat_low"], m["seg_flat_high"]
    thr = loss.min() + 0.1 * min(r for r in (loss[0] - loss.min(), loss[-1] - loss.min()) if r > 0)
    assert np.interp(low, ts, loss) == pytest.approx(thr, rel=1e-9) or (low == ts[0] and m["seg_flat_censored"])
    assert np.interp(high, ts, loss) == pytest.approx(thr, rel=1e-9) or (high == ts[-1] and m["seg_flat_censored"])
    inside = (ts > low) & (ts < high)
    assert inside.any() and (loss[inside] <= thr).all()
    d_swa, d_sgd = min(-low, high), min(1 - low, high - 1)  # each point's depth: negative outside the region
    assert m["seg_centre"] == pytest.approx((d_swa - d_sgd) / (abs(d_swa) + abs(d_sgd)), rel=1e-12)


def _bowl(t: np.ndarray, centre: float, steep: float) -> np.ndarray:
    """A flat-bottomed loss around ``centre`` that rises ``steep`` times faster above it than below."""
    d = t - centre
    return 1.0 + np.where(d > 0, steep, 1.0) * d ** 2 + 0.01 * np.sin(7 * t)


def test_segment_statistics_hold_are_contradicted_and_swap_sign_with_the_roles():
    """On curves built for it: SWA centred and SGD at a steep edge holds every claim; the mirror image (the pair's
    roles swapped) contradicts it, and every statistic changes sign exactly; a loss flat to the range's end is
    flagged as censored."""
    t = np.linspace(-2, 3, 51)  # symmetric about 1/2, like the default grid: t -> 1 - t reverses it
    rng = np.random.default_rng(7)
    for _ in range(5):
        loss = _bowl(t, rng.uniform(-0.4, 0.2), rng.uniform(3, 20))
        err = 0.2 + 0.05 * (t - rng.uniform(-1.5, -0.5)) ** 2 + 0.001 * rng.standard_normal(51)
        s = segment_statistics(t, loss, err)
        assert s["centre"] > 0 and s["boundary"] > 0 and s["shift"] > 0 and not s["flat_censored"]
        m = segment_statistics(t, loss[::-1], err[::-1])
        for k in ("centre", "boundary", "shift"):
            assert m[k] == pytest.approx(-s[k], rel=1e-12, abs=1e-12), k
        assert (m["flat_low"], m["flat_high"]) == (pytest.approx(1 - s["flat_high"]), pytest.approx(1 - s["flat_low"]))
        noise = rng.uniform(0.5, 1.5, 51)  # random curves too: the swap is exact whatever their shape
        a, b = segment_statistics(t, noise, noise ** 2), segment_statistics(t, noise[::-1], noise[::-1] ** 2)
        assert all(a[k] == pytest.approx(-b[k], abs=1e-12) for k in ("centre", "boundary", "shift"))
    for scale, shift in ((3.0, 0.0), (1.0, 5.0)):  # scale-free: L scaled or shifted gives the same statistics
        assert segment_statistics(t, scale * loss + shift, err) == pytest.approx(s)
    flat = 1.0 + (t - 3.0) ** 2  # least at the range's end: the true region may go on beyond it
    low, high, low_censored, high_censored = flat_region(t, flat)
    assert high == t[-1] and high_censored and not low_censored
    assert low == pytest.approx(3 - np.sqrt(2.5), abs=0.01)  # (3 - t)^2 = 0.1 * 25
    assert segment_statistics(t, flat, flat)["flat_censored"] == 1.0
