"""Rays (paper Figure 4): directions, widths and their refinement, BN modes, against the slow reference."""

import h5py
import numpy as np
import pytest
import torch

from analyses import RaysConfig, rays
from analyses.rays import random_directions
from analyses.widths import first_crossing
from landscape.config import EngineConfig
from landscape.errors import UserError
from swa import Trajectory
from tests.analyses.helpers import ENG, QUIET, reference, reference_with


def test_rays_start_at_the_origin_and_follow_unit_directions(tiny_run, results_path):
    cfg = RaysConfig(directions=3, steps=4, t_max=2.0, seed=7)
    s = rays(tiny_run, results_path, cfg, ENG, **QUIET)
    with Trajectory(tiny_run) as t:
        w_swa = t.solution("swa")[0]
    with h5py.File(results_path, "r") as f:
        loss = f["rays/swa/train_loss"][:]
        err = f["rays/swa/test_error"][:]
        assert f["rays/swa/directions_seed"][()] == 7 and f["rays/sgd/train_loss"].shape == (3, 4)
        np.testing.assert_allclose(f["rays/swa/t"][:], np.linspace(0, 2, 4))
    ref0 = reference(tiny_run, w_swa)
    np.testing.assert_allclose(loss[:, 0], ref0["train"].loss, rtol=1e-10)
    d = random_directions(3, w_swa.numel(), 7)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(3))
    ref = reference(tiny_run, w_swa.double() + (2.0 / 3) * d[1].double())  # direction 1, step 1, written out
    assert loss[1, 1] == pytest.approx(ref["train"].loss, rel=1e-10)
    assert err[1, 1] == pytest.approx(1 - ref["test"].acc, abs=1e-12)
    np.testing.assert_array_equal(s["swa"]["width_error"], first_crossing(np.linspace(0, 2, 4), err, 0.05))


def test_first_crossing_formula():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    v = np.array([[0.1, 0.12, 0.2, 0.5], [0.3, 0.3, 0.31, 0.32], [0.2, np.nan, 0.9, 1.0]])
    w = first_crossing(t, v, 0.05)
    assert w[0] == pytest.approx(1 + (0.15 - 0.12) / (0.2 - 0.12))
    assert w[1] == np.inf
    assert w[2] == 1.0  # NaN counts as beyond the margin


def test_rays_evaluate_the_shared_origin_once(tiny_run, results_path, monkeypatch):
    """D directions x T steps cost D (T - 1) + 1 evaluations per origin, and every row still starts at t = 0."""
    from landscape.engine import Engine

    seen = []
    real = Engine.evaluate

    def counting(self, points, *a, **k):
        seen.append(len(points))
        return real(self, points, *a, **k)

    monkeypatch.setattr(Engine, "evaluate", counting)
    rays(tiny_run, results_path, RaysConfig(directions=4, steps=5, t_max=1.0, seed=3), ENG, **QUIET)
    assert seen == [4 * 4 + 1, 4 * 4 + 1]
    with h5py.File(results_path, "r") as f:
        for origin in ("swa", "sgd"):
            g = f[f"rays/{origin}"]
            assert g["done"][:].all()
            for k in ("train_loss", "test_error"):
                col = g[k][:, 0]
                assert np.isfinite(col).all() and (col == col[0]).all()


def test_rays_bn_modes(tiny_run, results_path):
    eng = EngineConfig(**{**ENG.__dict__, "bn_mode": "stored"})
    s = rays(tiny_run, results_path, RaysConfig(directions=2, steps=3, t_max=1.0, seed=4), eng, **QUIET)
    with Trajectory(tiny_run) as t:
        w, b = t.solution("sgd")
    d = random_directions(2, w.numel(), 4)
    ref = reference_with(tiny_run, w.double() + 0.5 * d[1].double(), b)  # the solution's own statistics
    with h5py.File(results_path, "r") as f:
        assert f["rays/sgd/train_loss"][1, 1] == pytest.approx(ref["train"].loss, rel=1e-10)
    assert s["sgd"]["t"].shape == (3,)
    with pytest.raises(UserError, match="rays cannot use bn_mode 'interpolate'"):
        rays(tiny_run, tmp := results_path.with_name("i.h5"), RaysConfig(directions=2, steps=3, t_max=1.0),
             EngineConfig(**{**ENG.__dict__, "bn_mode": "interpolate"}), **QUIET)
    assert not tmp.exists()  # refused before any work


def test_filter_normalized_t_max_is_searched_on_the_directions_used(tiny_run, tmp_path):
    """Widths lie several grid steps from t = 0 (the search once used unit directions: ||w|| times too coarse)."""
    from analyses.rays import filter_normalize
    from analyses.widths import MIN_STEPS

    cfg = RaysConfig(directions=3, steps=12, seed=5, filter_normalize=True)
    s = rays(tiny_run, tmp_path / "r.h5", cfg, ENG, **QUIET)
    for origin in ("swa", "sgd"):
        for kind in ("error", "loss"):
            w, res = s[origin][f"width_{kind}"], s[origin][f"resolution_{kind}"]
            assert np.isfinite(w).any() and np.all(w[np.isfinite(w)] >= MIN_STEPS * res[np.isfinite(w)])
    # the search rule, checked independently: at t_max / 3 the mean test error along the first two filter-normalised
    # directions from w_SWA exceeds its t = 0 value by the margin; at half that distance it did not
    t_max = s["swa"]["t"][-1]
    with Trajectory(tiny_run) as tr:
        w_swa, b_swa = tr.solution("swa")
        d = filter_normalize(random_directions(3, w_swa.numel(), 5), w_swa, tr.param_layout)
    base = 1 - reference(tiny_run, w_swa)["test"].acc  # BN recomputed at every point, as the analysis does

    def err(x):
        return np.mean([1 - reference(tiny_run, w_swa.double() + x * d[i].double())["test"].acc for i in range(2)])

    assert err(t_max / 3) > base + cfg.margin_error >= err(t_max / 6)
    assert 0.1 < t_max < 100  # in units of filter-normalised directions (norm ~ ||w||), not of unit ones


def test_early_crossings_are_resolved_on_a_finer_grid(tiny_run, tmp_path):
    from analyses.widths import MIN_STEPS

    cfg = RaysConfig(directions=2, steps=4, t_max=2000.0, seed=6)  # far too coarse: crossings in the first step
    s = rays(tiny_run, tmp_path / "r.h5", cfg, ENG, **QUIET)
    g = s["swa"]
    coarse = g["t"][1]
    w, res = g["width_error"], g["resolution_error"]
    assert np.all(np.isfinite(w)) and np.all(res < coarse) and np.all(w >= MIN_STEPS * res)
    with Trajectory(tiny_run) as tr:
        w_swa, b_swa = tr.solution("swa")
    d = random_directions(2, w_swa.numel(), 6)
    thr = g["test_error0"] + cfg.margin_error
    for i in range(2):  # the fine grid points around the reported crossing, recomputed by the reference path
        lo = np.floor(w[i] / res[i] + 1e-6) * res[i]  # the fine point at or just below the crossing
        e = [1 - reference(tiny_run, w_swa.double() + x * d[i].double())["test"].acc for x in (lo, lo + res[i])]
        assert e[0] <= thr < e[1]


def test_l2_regularised_ray_width_against_the_formula(tiny_run, results_path):
    """The paper's train loss along a ray is CE(w + t d) + 0.5 wd ||w + t d||^2: its width, by the first crossing
    written out here with the L2 term computed from the weights, the directions and the run's weight decay."""
    cfg = RaysConfig(directions=3, steps=12, t_max=6.0, seed=3, margin_loss=0.1)
    s = rays(tiny_run, results_path, cfg, ENG, **QUIET)
    with Trajectory(tiny_run) as t:
        w_sgd, wd = t.solution("sgd")[0].double(), t.config["weight_decay"]
    d = random_directions(3, w_sgd.numel(), 3).double()
    ts = np.linspace(0, 6.0, 12)
    with h5py.File(results_path, "r") as f:
        ce = f["rays/sgd/train_loss"][:]
        np.testing.assert_allclose(f["rays/sgd/train_loss_l2"][:] - ce, [[0.5 * wd * float((w_sgd + x * d[i]).pow(2).sum())
                                                                         for x in ts] for i in range(3)], rtol=1e-9)
    checked = 0
    for i in range(3):
        row = ce[i] + [0.5 * wd * float((w_sgd + x * d[i]).pow(2).sum()) for x in ts]
        j = next((j for j in range(1, 12) if row[j] > row[0] + 0.1), None)
        if j is None or j < 3:  # no crossing, or one refined on a finer grid (tested separately)
            continue
        expect = ts[j - 1] + (row[0] + 0.1 - row[j - 1]) / (row[j] - row[j - 1]) * (ts[j] - ts[j - 1])
        assert s["sgd"]["width_loss_l2"][i] == pytest.approx(expect, rel=1e-9)
        checked += 1
    assert checked >= 1
    assert not np.allclose(s["sgd"]["width_loss_l2"], s["sgd"]["width_loss"])  # the L2 term moves the width
