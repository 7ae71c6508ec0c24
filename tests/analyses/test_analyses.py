import hashlib
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from analyses import FGEConfig, PlaneConfig, RaysConfig, ResultsFile, SegmentConfig, fge, plane, rays, segment
from analyses.fge import agreement_stats
from analyses.journal import Journal
from analyses.plane import plane_basis, project
from analyses.rays import first_crossing, random_directions
from landscape.engine import EngineConfig
from landscape.errors import UserError
from landscape.reference import load_point, reference_point
from swa import Trajectory, load_dataset, train
from swa.runs import build_run_model
from tests.factories import tiny_config

ENG = EngineConfig(dtype="float64", bn_batch_size=64, workers=1)
QUIET = dict(progress=False)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _reference(run, w):
    """Metrics at w with BN recomputed, the slow way, in float64."""
    with Trajectory(run) as t:
        model = build_run_model(t).double()
    data = {s: (x.double(), y) for s, (x, y) in ((s, load_dataset(run, s)) for s in ("train", "test"))}
    ref, _ = reference_point(model, w.double(), data, data["train"][0], 64)
    return ref


@pytest.fixture
def results_path(tmp_path):
    return tmp_path / "res.h5"


def test_segment_endpoints_reproduce_the_solutions(tiny_run, results_path):
    before = _sha(tiny_run)
    s = segment(tiny_run, results_path, SegmentConfig(-0.5, 1.5, 5), ENG, **QUIET)
    assert _sha(tiny_run) == before  # analyses never modify the run file
    with Trajectory(tiny_run) as t:
        w_swa, w_sgd = t.solution("swa")[0], t.solution("sgd")[0]
        swa_acc = t.solution_scalar("swa", "test_acc")
    t_ = s["t"]
    assert 0.0 in t_ and 1.0 in t_
    np.testing.assert_allclose(s["distance"], t_ * (w_sgd.double() - w_swa.double()).norm().item(), rtol=1e-12)
    i0, i1 = list(t_).index(0.0), list(t_).index(1.0)
    for i, w in ((i0, w_swa), (i1, w_sgd)):
        ref = _reference(tiny_run, w)
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
    ref0 = _reference(tiny_run, w_swa)
    np.testing.assert_allclose(loss[:, 0], ref0["train"].loss, rtol=1e-10)
    d = random_directions(3, w_swa.numel(), 7)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(3))
    ref = _reference(tiny_run, w_swa.double() + (2.0 / 3) * d[1].double())  # direction 1, step 1, written out
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


def test_plane_geometry_with_known_offsets():
    g = torch.Generator().manual_seed(3)
    p = 50
    q, _ = torch.linalg.qr(torch.randn(p, 3, generator=g, dtype=torch.float64))
    u0, v0, n0 = q.T
    w1 = torch.randn(p, generator=g, dtype=torch.float64)
    w3, w2 = w1 + 5 * u0, w1 + 2 * u0 + 3 * v0
    basis, xy = plane_basis(w1, w2, w3)
    np.testing.assert_allclose(xy, [[0, 0], [2, 3], [5, 0]], atol=1e-12)
    pts = torch.stack([w1 + 1 * u0 + 2 * v0 + 0.5 * n0, w1 - 4 * v0 - 1.5 * n0])
    pxy, off = project(pts, w1, basis)
    np.testing.assert_allclose(pxy, [[1, 2], [0, -4]], atol=1e-12)
    np.testing.assert_allclose(off, [0.5, 1.5], atol=1e-12)
    with pytest.raises(UserError, match="collinear"):
        plane_basis(w1, w1 + 2.5 * u0, w3)
    with pytest.raises(UserError, match="coincide"):
        plane_basis(w1, w2, w1)


def test_plane_on_a_run_matches_reference_and_resumes(tiny_run, tmp_path, monkeypatch):
    cfg = PlaneConfig(grid=(4, 3), margin=0.1)
    full = plane(tiny_run, tmp_path / "full.h5", cfg, ENG, **QUIET)
    assert full["computed"] == 12
    with h5py.File(tmp_path / "full.h5", "r") as f:
        g = f["plane"]
        x, y, anchors = g["x"][:], g["y"][:], g["anchor_xy"][:]
        assert g["projection_xy"].shape[1] == 2 and g["off_plane"].shape == g["projected_indices"].shape
        idx = np.array(json.loads(g.attrs["anchors"]))
        loss = g["train_loss"][:]
    with Trajectory(tiny_run) as t:
        w = t.weights(idx).double()
        swa_branch = np.flatnonzero(t.meta("branch") == "swa")
    assert list(idx) == [swa_branch[0], swa_branch[len(swa_branch) // 2], swa_branch[-1]]
    basis, xy = plane_basis(w[0], w[1], w[2])
    np.testing.assert_allclose(anchors, xy, rtol=1e-6)
    # anchors project onto themselves, on the plane
    with h5py.File(tmp_path / "full.h5", "r") as f:
        np.testing.assert_allclose(f["plane/projection_xy"][:][idx], xy, atol=1e-4)
        np.testing.assert_allclose(f["plane/off_plane"][:][idx], 0, atol=1e-4)
    ref = _reference(tiny_run, w[0] + x[2] * basis[0] + y[1] * basis[1])
    assert loss[2, 1] == pytest.approx(ref["train"].loss, rel=1e-10)

    # a crash after the first chunk, then a restart that computes only the rest
    calls = {"n": 0}
    real = Journal.append

    def crashing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(self, *a, **k)

    monkeypatch.setattr(Journal, "append", crashing)
    eng = EngineConfig(dtype="float64", bn_batch_size=64, workers=1, chunk_size=5, guard=False)  # chunks of 5
    with pytest.raises(RuntimeError, match="simulated crash"):
        plane(tiny_run, tmp_path / "cut.h5", cfg, eng, **QUIET)
    monkeypatch.setattr(Journal, "append", real)
    assert Journal(tmp_path / "cut.h5").points("plane") == 5  # the first chunk survived, readable
    with h5py.File(tmp_path / "cut.h5", "r") as f:
        assert f["plane/done"][:].sum() == 0  # and the results file was never half-written
    again = plane(tiny_run, tmp_path / "cut.h5", cfg, eng, **QUIET)
    assert again["computed"] == 7
    with h5py.File(tmp_path / "cut.h5", "r") as a, h5py.File(tmp_path / "full.h5", "r") as b:
        for k in ("train_loss", "test_error", "train_error", "test_loss"):
            np.testing.assert_allclose(a[f"plane/{k}"][:], b[f"plane/{k}"][:], rtol=1e-12)


def test_plane_bad_anchors(tiny_run, results_path):
    with pytest.raises(UserError, match="out of range"):
        plane(tiny_run, results_path, PlaneConfig(anchors=(0, 1, 999)), ENG, **QUIET)
    with pytest.raises(UserError, match="exactly three"):
        plane(tiny_run, results_path, PlaneConfig(anchors=(0, 1)), ENG, **QUIET)
    with pytest.raises(UserError, match="collinear|coincide"):
        plane(tiny_run, results_path, PlaneConfig(anchors=("swa", "swa", 3)), ENG, **QUIET)


def test_agreement_stats_on_a_hand_made_ensemble():
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                      [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]],
                      [[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]], dtype=torch.float64)
    swa = torch.tensor([[0.5, 0.4, 0.1], [0.2, 0.5, 0.3]], dtype=torch.float64)
    s = agreement_stats(p, swa)
    d01 = (np.linalg.norm([0.1, -0.1, 0]) + np.linalg.norm([-0.4, 0.4, 0])) / 2
    d12 = (np.linalg.norm([0.4, -0.4, 0]) + np.linalg.norm([0.4, 0.2, -0.6])) / 2
    np.testing.assert_allclose(s["prob_diff_consecutive"], [d01, d12])
    ens = p.mean(0).numpy()  # [[0.5, 0.4, 0.1], [0.2333, 0.4667, 0.3]]
    gap = (np.linalg.norm(swa[0].numpy() - ens[0]) + np.linalg.norm(swa[1].numpy() - ens[1])) / 2
    assert s["prob_diff_swa_ensemble"] == pytest.approx(gap)
    np.testing.assert_allclose(s["agree_consecutive"], [0.5, 0.0])  # labels (0,1), (0,0), (1,2)
    assert s["agree_swa_ensemble"] == 1.0


def _reference_with(run, w, b):
    """Metrics at w with the given BN buffers (no recomputation), the slow way, in float64."""
    with Trajectory(run) as t:
        model = build_run_model(t).double()
    data = {s: (x.double(), y) for s, (x, y) in ((s, load_dataset(run, s)) for s in ("train", "test"))}
    return reference_point(model, w.double(), data, None, 64, buffers=b.double())[0]


def test_fge_on_a_run(tiny_run, results_path):
    s = fge(tiny_run, results_path, FGEConfig(scales=(1.0, 0.5)), ENG, **QUIET)
    with Trajectory(tiny_run) as t:
        idx = np.flatnonzero(t.meta("captured"))
        w, b = t.weights(idx), t.buffers(idx)
        w_mean = w.double().mean(0)
        acc_stored = t.meta("test_acc")[idx]
        b_swa = t.solution("swa")[1]
    np.testing.assert_array_equal(s["proposal_indices"], idx)
    # recompute (the default): every proposal with BN recomputed, as the reference path does
    for i in (0, len(idx) - 1):
        assert s["acc_proposals"][i] == pytest.approx(_reference(tiny_run, w[i])["test"].acc, abs=1e-12)
    ref = _reference(tiny_run, w_mean)
    assert s["acc_swa"] == pytest.approx(ref["test"].acc, abs=1e-12)
    # stored: proposals with their own buffers reproduce the accuracies logged during training
    stored = fge(tiny_run, results_path, FGEConfig(scales=(1.0, 0.5)), EngineConfig(**{**ENG.__dict__, "bn_mode": "stored"}),
                 **QUIET)
    np.testing.assert_allclose(stored["acc_proposals"], acc_stored, atol=1e-12)
    assert stored["acc_swa"] == pytest.approx(_reference_with(tiny_run, w_mean, b_swa)["test"].acc, abs=1e-12)
    # interpolate: a shrunk proposal w_SWA + s (w_i - w_SWA) carries b_SWA + s (b_i - b_SWA), written out
    inter = fge(tiny_run, results_path, FGEConfig(scales=(0.5,)), EngineConfig(**{**ENG.__dict__, "bn_mode": "interpolate"}),
                **QUIET)
    with h5py.File(results_path, "r") as f:
        assert json.loads(f["fge"].attrs["config"])["engine"]["bn_mode"] == "interpolate"  # recorded = used
    with Trajectory(tiny_run) as t:
        model = build_run_model(t).double()
    xt = load_dataset(tiny_run, "test")[0].double()

    def probs(wi, bi):
        with torch.no_grad():
            return torch.softmax(load_point(model, wi.double(), bi.double()).eval()(xt), -1)

    p_swa = probs(w_mean, b_swa)
    shrunk = [probs(w_mean + 0.5 * (w[i].double() - w_mean), b_swa.double() + 0.5 * (b[i].double() - b_swa.double()))
              for i in range(len(idx))]
    gap = (p_swa - torch.stack(shrunk).mean(0)).norm(dim=-1).mean().item()  # the paper's ||p_SWA - p_FGE||
    assert inter["scaled_prob_diff_swa_ensemble"][0] == pytest.approx(gap, rel=1e-5)
    np.testing.assert_allclose(inter["acc_proposals"], acc_stored, atol=1e-12)
    _, y = load_dataset(tiny_run, "test")
    ens = torch.as_tensor(s["probs_proposals"]).double().mean(0)
    assert s["acc_ensemble"] == pytest.approx((ens.argmax(-1) == y).double().mean().item())
    assert s["scales"].tolist() == [1.0, 0.5] and np.isfinite(s["order_consecutive"])
    with h5py.File(results_path, "r") as f:
        assert f["fge/prob_diff_consecutive"].shape == (len(idx) - 1,)


def test_fge_needs_captured_proposals_and_results_belong_to_one_run(tmp_path, tiny_run, tiny_run_constant):
    cut = tmp_path / "cut.h5"
    lines = []

    def log(line):
        lines.append(line)
        if len(lines) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), cut, progress=False, log=log)
    with pytest.raises(UserError, match="at least two captured proposals"):
        fge(cut, tmp_path / "r.h5", engine_config=ENG, progress=False)
    shared = tmp_path / "shared.h5"
    segment(tiny_run, shared, SegmentConfig(0, 1, 2), ENG, **QUIET)
    with pytest.raises(UserError, match="results of another run"):
        segment(tiny_run_constant, shared, SegmentConfig(0, 1, 2), ENG, **QUIET)
    with pytest.raises(UserError, match="must not be the run file"):
        segment(tiny_run, tiny_run, SegmentConfig(0, 1, 2), ENG, **QUIET)


def test_cli_analyze_all(tiny_run, tmp_path):
    before = _sha(tiny_run)
    out = tmp_path / "cli.h5"
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "all", "--out", str(out),
                        "--rays.directions", "2", "--rays.steps", "3", "--rays.t-max", "1", "--segment.steps", "3",
                        "--plane.grid", "3", "3", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for word in ("rays (random directions):", "segment:", "plane through", "fge:", "results:"):
        assert word in r.stdout
    assert _sha(tiny_run) == before
    with h5py.File(out, "r") as f, Trajectory(tiny_run) as t:
        assert set(f) == {"rays", "rays_filter", "segment", "plane", "plane_fig1", "fge"}  # PAPER, as the demo
        sgd, swa, start = json.loads(f["plane_fig1"].attrs["anchors"])  # the paper's Figure 1 plane
        assert (sgd, swa) == ("sgd", "swa")
        assert t.meta("branch")[start] == "sgd" and t.meta("epoch")[start] == t.config["swa_start"]
        assert json.loads(f["plane"].attrs["anchors"]) != [sgd, swa, start]
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "plane", "--anchors", "0,1,100000",
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "out of range" in r.stderr


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
        ref = _reference_with(tiny_run, w, b)
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
        ref = _reference_with(tiny_run, w[0] + x * basis[0] + y * basis[1], bb)
        assert p["train_loss"][gi, gj] == pytest.approx(ref["train"].loss, rel=1e-10)


def test_rays_bn_modes(tiny_run, results_path):
    eng = EngineConfig(**{**ENG.__dict__, "bn_mode": "stored"})
    s = rays(tiny_run, results_path, RaysConfig(directions=2, steps=3, t_max=1.0, seed=4), eng, **QUIET)
    with Trajectory(tiny_run) as t:
        w, b = t.solution("sgd")
    d = random_directions(2, w.numel(), 4)
    ref = _reference_with(tiny_run, w.double() + 0.5 * d[1].double(), b)  # the solution's own statistics
    with h5py.File(results_path, "r") as f:
        assert f["rays/sgd/train_loss"][1, 1] == pytest.approx(ref["train"].loss, rel=1e-10)
    assert s["sgd"]["t"].shape == (3,)
    with pytest.raises(UserError, match="rays cannot use bn_mode 'interpolate'"):
        rays(tiny_run, tmp := results_path.with_name("i.h5"), RaysConfig(directions=2, steps=3, t_max=1.0),
             EngineConfig(**{**ENG.__dict__, "bn_mode": "interpolate"}), **QUIET)
    assert not tmp.exists()  # refused before any work


@pytest.mark.parametrize("mode", ["stored", "interpolate"])
def test_analyze_all_completes_in_every_bn_mode(tiny_run, tmp_path, mode):
    out = tmp_path / "all.h5"
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "all", "--out", str(out),
                        "--bn-mode", mode, "--rays.directions", "2", "--rays.steps", "3", "--rays.t-max", "1",
                        "--plane.grid", "3", "3", "--segment.steps", "3", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    with h5py.File(out, "r") as f:
        groups = set(f)
        for g in groups:
            cfg = json.loads(f[g].attrs["config"]) if "config" in f[g].attrs else json.loads(
                f[g]["swa"].attrs["config"])
            assert cfg["engine"]["bn_mode"] == mode
    if mode == "interpolate":  # said before any work, the others done
        assert lines[0].startswith("rays skipped: bn_mode 'interpolate'") and groups == {"segment", "plane",
                                                                                          "plane_fig1", "fge"}
    else:
        assert groups == {"rays", "rays_filter", "segment", "plane", "plane_fig1", "fge"}


def test_filter_normalized_t_max_is_searched_on_the_directions_used(tiny_run, tmp_path):
    """Widths lie several grid steps from t = 0 (the search once used unit directions: ||w|| times too coarse)."""
    from analyses.rays import MIN_STEPS, filter_normalize

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
    base = 1 - _reference(tiny_run, w_swa)["test"].acc  # BN recomputed at every point, as the analysis does

    def err(x):
        return np.mean([1 - _reference(tiny_run, w_swa.double() + x * d[i].double())["test"].acc for i in range(2)])

    assert err(t_max / 3) > base + cfg.margin_error >= err(t_max / 6)
    assert 0.1 < t_max < 100  # in units of filter-normalised directions (norm ~ ||w||), not of unit ones


def test_early_crossings_are_resolved_on_a_finer_grid(tiny_run, tmp_path):
    from analyses.rays import MIN_STEPS

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
        e = [1 - _reference(tiny_run, w_swa.double() + x * d[i].double())["test"].acc for x in (lo, lo + res[i])]
        assert e[0] <= thr < e[1]
