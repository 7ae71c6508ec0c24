"""Planes through three points (paper Figures 1 and 3): geometry, values against the reference, resume."""

import json

import h5py
import numpy as np
import pytest
import torch

from analyses import PlaneConfig, plane
from analyses.journal import Journal
from analyses.plane import plane_basis, project
from landscape.config import EngineConfig
from landscape.errors import UserError
from swa import Trajectory
from tests.analyses.helpers import ENG, QUIET, reference


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
    ref = reference(tiny_run, w[0] + x[2] * basis[0] + y[1] * basis[1])
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
