"""Sharded analyses: real torchrun processes with gloo on localhost."""

import re

import h5py
import numpy as np
import pytest

from analyses import PlaneConfig, plane
from analyses.common import VALUES
from analyses.journal import Journal
from landscape.config import EngineConfig
from tests.factories import plane_arrays, torchrun

PLANE_ARGS = ["plane", "--grid", "4", "3", "--dtype", "float64", "--strategy", "loop", "--no-progress"]
ENG = EngineConfig(dtype="float64", strategy="loop", workers=1, bn_batch_size=64)


def _torchrun(n, *args):
    return torchrun(n, "analyze", *args)


@pytest.fixture(scope="module")
def single(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.h5"
    plane(tiny_run, out, PlaneConfig(grid=(4, 3)), ENG, progress=False)
    return plane_arrays(out)


def test_two_ranks_equal_one_process(tiny_run, tmp_path, single):
    out = tmp_path / "two.h5"
    stdout = _torchrun(2, tiny_run, *PLANE_ARGS, "--out", str(out))
    assert "(2 ranks)" in stdout and "(12 points computed now)" in stdout
    got = plane_arrays(out)
    assert got["done"].all()
    for k in ("train_loss", "test_error", "test_loss", "train_error"):
        np.testing.assert_allclose(got[k], single[k], rtol=1e-12)
    assert not Journal(out).dir.exists()  # merged and removed


def test_resume_with_another_number_of_ranks(tiny_run, tmp_path, single, monkeypatch):
    out = tmp_path / "res.h5"
    calls = {"n": 0}
    real = Journal.append

    def crash_after_first_chunk(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(self, *a, **k)

    monkeypatch.setattr(Journal, "append", crash_after_first_chunk)
    with pytest.raises(RuntimeError):
        plane(tiny_run, out, PlaneConfig(grid=(4, 3)),
              EngineConfig(**{**ENG.__dict__, "chunk_size": 5, "guard": False}), progress=False)  # chunks of 5
    monkeypatch.setattr(Journal, "append", real)
    assert Journal(out).points("plane") == 5
    # a dead rank of a 3-rank run left two finished points in the journal
    with h5py.File(out, "r") as f:
        config = f["plane"].attrs["config"]
    left = np.array([6, 9])
    Journal(out).append("plane", config, left, {k: single[k].reshape(-1)[left] for k in VALUES}, rank=2)
    stdout = _torchrun(2, tiny_run, *PLANE_ARGS, "--out", str(out))
    assert re.search(r"\((\d+) points computed now\)", stdout).group(1) == "5"  # 12 - 5 done - 2 merged
    got = plane_arrays(out)
    assert got["done"].all()
    for k in ("train_loss", "test_error", "train_loss_l2"):
        np.testing.assert_allclose(got[k], single[k], rtol=1e-12)


def test_fge_sharded_over_two_ranks_equals_one_process(tiny_run, tmp_path):
    from analyses import FGEConfig, fge

    one = fge(tiny_run, tmp_path / "one.h5", FGEConfig(scales=(1.0, 0.5)), ENG, progress=False)
    out = tmp_path / "two.h5"
    _torchrun(2, tiny_run, "fge", "--dtype", "float64", "--strategy", "loop", "--no-progress", "--out", str(out))
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["fge/proposal_indices"][:], one["proposal_indices"])
        np.testing.assert_allclose(f["fge/probs_proposals"][:], one["probs_proposals"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(f["fge/acc_proposals"][:], one["acc_proposals"], atol=1e-12)
        for k in ("prob_diff_consecutive", "agree_consecutive", "prob_diff_swa_ensemble", "acc_swa"):
            np.testing.assert_allclose(f[f"fge/{k}"][()], one[k], rtol=1e-6)


def test_hessian_sharded_over_two_ranks_equals_one_process(tiny_run, tmp_path):
    """Each rank takes its own points; rank 0 writes every point's group (same numbers as one process)."""
    from analyses import HessianConfig, hessian

    cfg = HessianConfig(points=("swa", "sgd", "t=0.5"), top_k=2, trace_probes=6, tol=1e-10)
    one = hessian(tiny_run, tmp_path / "one.h5", cfg, ENG, progress=False)
    out = tmp_path / "two.h5"
    _torchrun(2, tiny_run, "hessian", "--points", "swa,sgd,t=0.5", "--top-k", "2", "--trace-probes", "6", "--tol",
              "1e-10", "--dtype", "float64", "--strategy", "loop", "--no-progress", "--out", str(out))
    with h5py.File(out, "r") as f:
        assert set(f["hessian"]) == {"swa", "sgd", "t=0.5"}
        for name, s in one.items():
            np.testing.assert_allclose(f[f"hessian/{name}/eigenvalues"][:], s["eigenvalues"], rtol=1e-8)
            np.testing.assert_allclose(f[f"hessian/{name}/trace"][()], s["trace"], rtol=1e-8)
