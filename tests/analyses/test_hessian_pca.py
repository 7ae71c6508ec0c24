"""The Hessian and PCA analyses against dense float64 Hessians and an SVD computed here."""

import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn

from analyses import HessianConfig, PCAConfig, RaysConfig, hessian, pca, rays
from analyses.hessian_plane import EigenPlaneConfig, eigen_plane
from landscape.config import EngineConfig
from landscape.errors import UserError
from landscape.layout import buffer_layout, flatten, param_layout, unflatten
from landscape.reference import load_point
from swa import Trajectory, load_dataset, train
from swa.runs import build_run_model
from tests.factories import tiny_config

ENG = EngineConfig(dtype="float64", bn_batch_size=64, workers=1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """An MLP with BatchNorm of 381 parameters: small enough for a dense Hessian."""
    path = tmp_path_factory.mktemp("hess") / "small.h5"
    train(tiny_config(model="mlp_bn", model_kwargs={"width": 7, "depth": 1}), path, progress=False, log=lambda s: None)
    return str(path)


def _dense_hessian(run, w):
    """Dense float64 Hessian of the mean train cross-entropy at w, BN in eval with statistics from update_bn."""
    with Trajectory(run) as t:
        model = build_run_model(t).double()
    x, y = load_dataset(run, "train")
    x = x.double()
    m = load_point(model, w.double())
    update_bn([x[i:i + 64] for i in range(0, len(x), 64)], m)  # the reference recomputation, independent of the engine
    m.eval()
    bufs = unflatten(flatten(list(m.buffers()), torch.float64), buffer_layout(m))

    def loss(v):
        return nn.functional.cross_entropy(functional_call(m, {**unflatten(v, param_layout(m)), **bufs}, (x,)), y)

    return torch.autograd.functional.hessian(loss, w.double()), float(loss(w.double()))


def test_hessian_matches_the_dense_float64_hessian(small_run, tmp_path):
    res = tmp_path / "r.h5"
    cfg = HessianConfig(points=("swa", "sgd", "t=0.5"), top_k=4, trace_probes=300, tol=0.0, seed=3, vectors=7)
    out = hessian(small_run, res, cfg, ENG, progress=False)
    with Trajectory(small_run) as t:
        (w_swa, _), (w_sgd, _) = t.solution("swa"), t.solution("sgd")
    points = {"swa": w_swa.double(), "sgd": w_sgd.double(), "t=0.5": 0.5 * (w_swa.double() + w_sgd.double())}
    for name, w in points.items():
        h, loss = _dense_hessian(small_run, w)
        assert h.shape[0] == 381
        exact = torch.linalg.eigvalsh(h).flip(0).numpy()
        s = out[name]
        np.testing.assert_allclose(s["eigenvalues"], exact[:4], rtol=1e-6)
        vecs = s["eigenvectors"].astype(np.float64)
        np.testing.assert_allclose(np.abs(np.einsum("kp,pq,kq->k", vecs, h.numpy(), vecs)), np.abs(exact[:4]),
                                   rtol=1e-5)  # Rayleigh quotients of the stored (float32) vectors
        tr = float(torch.trace(h))
        assert abs(s["trace"] - tr) < 3 * s["trace_se"], (name, s["trace"], tr, s["trace_se"])
        assert s["train_loss"] == pytest.approx(loss, rel=1e-10)
    with h5py.File(res, "r") as f:
        assert set(f["hessian"]) == {"swa", "sgd", "t=0.5"}
        assert f["hessian/swa"].attrs["weight_decay"] == pytest.approx(5e-4)


def test_hessian_resumes_and_refuses_bad_points(small_run, tmp_path, monkeypatch):
    res = tmp_path / "r.h5"
    cfg = HessianConfig(points=("swa",), top_k=2, trace_probes=4)
    first = hessian(small_run, res, cfg, ENG, progress=False)
    mod = sys.modules["analyses.hessian"]  # the package's name `hessian` is the function
    monkeypatch.setattr(mod, "_compute", lambda *a: pytest.fail("a finished point was computed again"))
    again = hessian(small_run, res, cfg, ENG, progress=False)
    np.testing.assert_array_equal(again["swa"]["eigenvalues"], first["swa"]["eigenvalues"])
    for bad in (("w",), ("t=x",)):
        with pytest.raises(UserError, match="hessian point"):
            HessianConfig(points=bad)
    with pytest.raises(UserError, match="top_k"):
        HessianConfig(top_k=0, trace_probes=0)


def test_rays_along_hessian_eigenvectors(small_run, tmp_path):
    res = tmp_path / "r.h5"
    with pytest.raises(UserError, match="run 'swa-landscape analyze RUN hessian' first"):
        rays(small_run, res, RaysConfig(steps=4, hessian=True), ENG, progress=False)
    hessian(small_run, res, HessianConfig(top_k=3, trace_probes=0, tol=1e-8), ENG, progress=False)
    rays(small_run, res, RaysConfig(steps=4, t_max=0.9, hessian=True), ENG, progress=False)
    with h5py.File(res, "r") as f, Trajectory(small_run) as t:
        for origin in ("swa", "sgd"):
            g = f[f"rays_hessian/{origin}"]
            assert g["train_loss"].shape == (3, 4)
            v = torch.from_numpy(f[f"hessian/{origin}/eigenvectors"][1]).double()
            w = t.solution(origin)[0].double() + 0.6 * v / v.norm()  # direction 1 at t = 0.6
            _, loss_here = _dense_hessian(small_run, w)
            assert g["train_loss"][1, 2] == pytest.approx(loss_here, rel=1e-9)
    planes = eigen_plane(small_run, res, EigenPlaneConfig(grid=(3, 5), extent=0.7), ENG, progress=False)
    with h5py.File(res, "r") as f, Trajectory(small_run) as t:
        for origin in ("swa", "sgd"):
            g = f[f"plane_hessian_{origin}"]
            np.testing.assert_allclose(g["x"][:], [-0.7, 0.0, 0.7])
            v = torch.from_numpy(f[f"hessian/{origin}/eigenvectors"][:2]).double()
            v = v / v.norm(dim=1, keepdim=True)
            w = t.solution(origin)[0].double() + g["x"][2] * v[0] + g["y"][1] * v[1]
            _, loss_here = _dense_hessian(small_run, w)  # the grid point (0.7, -0.35) by hand
            assert g["train_loss"][2, 1] == pytest.approx(loss_here, rel=1e-6)
            i = list(g["solutions"][:].astype(str)).index(origin)
            np.testing.assert_allclose(g["solutions_xy"][i], [0, 0], atol=1e-9)  # the plane passes through it
            assert g["solutions_off_plane"][i] < 1e-9
        assert planes["swa"]["computed"] == 15


def test_pca_plane_matches_the_svd(small_run, tmp_path):
    out = pca(small_run, tmp_path / "r.h5", PCAConfig(grid=(4, 3)), ENG, progress=False)
    with Trajectory(small_run) as t:
        idx = np.flatnonzero(t.meta("branch") == "swa")
        w = t.weights(idx).double().numpy()
        all_w = t.weights(slice(None)).double().numpy()
        w_swa = t.solution("swa")[0].double().numpy()
    centred = w - w.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # the reference, in numpy
    with h5py.File(tmp_path / "r.h5", "r") as f:
        g = f["pca"]
        np.testing.assert_allclose(g["explained_variance_ratio"][:], s ** 2 / (s ** 2).sum(), rtol=1e-10,
                                   atol=1e-15)  # the last component of n centred points is 0
        xy = g["projection_xy"][:]
        # the stored coordinates are projections on two orthonormal directions equal to the SVD's up to sign
        signs = np.sign(np.sum(xy[idx] * (centred @ vt[:2].T), 0))
        np.testing.assert_allclose(xy * signs, (all_w - w.mean(0)) @ vt[:2].T, rtol=1e-8, atol=1e-9)
        resid = (all_w - w.mean(0)) - ((all_w - w.mean(0)) @ vt[:2].T) @ vt[:2]
        np.testing.assert_allclose(g["off_plane"][:], np.linalg.norm(resid, axis=1), rtol=1e-8, atol=1e-9)
        i = list(g["solutions"][:].astype(str)).index("swa")
        np.testing.assert_allclose(g["solutions_xy"][i] * signs, (w_swa - w.mean(0)) @ vt[:2].T, rtol=1e-8, atol=1e-9)
        x, y = g["x"][:], g["y"][:]
        assert x[0] <= xy[idx, 0].min() and x[-1] >= xy[idx, 0].max()  # the grid holds the snapshots
        assert y[0] <= xy[idx, 1].min() and y[-1] >= xy[idx, 1].max()
        assert np.isfinite(g["test_error"][:]).all() and g["done"][:].all()
    assert out["explained_variance_ratio"][0] > out["explained_variance_ratio"][1]
    with pytest.raises(UserError, match="pca cannot use bn_mode 'interpolate'"):
        pca(small_run, tmp_path / "r.h5", PCAConfig(), EngineConfig(bn_mode="interpolate"), progress=False)
