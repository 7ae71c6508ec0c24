"""The results file, its chunk journal and the atomic update beneath both, tested directly on random values."""

import json

import h5py
import numpy as np
import pytest

import analyses.h5io
from analyses.h5io import atomic_update
from analyses.journal import Journal
from analyses.results import FORMAT, ResultsFile, open_results, read_groups
from landscape.errors import UserError
from swa import Trajectory


def test_atomic_update_applies_to_a_copy_and_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5), rng.normal(size=7)
    assert atomic_update(path, lambda f: f.create_dataset("a", data=a).shape) == (5,)  # a new file; fn's return
    with pytest.raises(RuntimeError, match="midway"):
        def fail(f):
            f.create_dataset("b", data=b)
            raise RuntimeError("midway")
        atomic_update(path, fail)
    with h5py.File(path, "r") as f:
        assert set(f) == {"a"}  # the failed change never reached the file
        np.testing.assert_array_equal(f["a"][:], a)
    atomic_update(path, lambda f: f.create_dataset("b", data=b))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["b"][:], b)


def test_atomic_update_is_one_replace(tmp_path, monkeypatch):
    """The file at its path is only ever swapped whole: a crash before the replace leaves the old file."""
    path = tmp_path / "f.h5"
    atomic_update(path, lambda f: f.create_dataset("x", data=np.arange(3)))
    replaced = []
    monkeypatch.setattr(analyses.h5io.os, "replace", lambda src, dst: replaced.append((src, dst)))
    atomic_update(path, lambda f: f.create_dataset("y", data=np.arange(4)))
    assert len(replaced) == 1 and replaced[0][1] == path  # (not done here: the "crash")
    with h5py.File(path, "r") as f:
        assert set(f) == {"x"}


def test_journal_chunks_merge_into_the_results_file(tiny_run, tmp_path):
    rng = np.random.default_rng(1)
    with Trajectory(tiny_run) as t:
        rf = ResultsFile(tmp_path / "r.h5", t)
        rf.prepare("g", {"k": 1}, {"v": ((3, 4), "f8", np.nan), "w": ((3, 4), "f8", np.nan)})
        j = Journal(rf.path)
        cfg = json.dumps({"k": 1}, sort_keys=True)
        idx = rng.permutation(12)
        vals = rng.normal(size=(2, 12))
        j.append("g", cfg, idx[:5], {"v": vals[0, :5], "w": vals[1, :5]}, rank=0)
        j.append("g", cfg, idx[5:9], {"v": vals[0, 5:9], "w": vals[1, 5:9]}, rank=1)
        j.append("g", '{"k": 2}', idx[9:], {"v": vals[0, 9:], "w": vals[1, 9:]})  # another config: discarded
        (j.dir / ".g.r0.p1.00000099.h5.tmp").write_bytes(b"half")  # a killed write: not a chunk
        assert len(j.chunks("g")) == 3 and j.points("g") == 12
        assert j.merge(rf, "g") == 9 and not j.dir.exists()
        with rf.read() as f:
            done, v, w = f["g/done"][:], f["g/v"][:].reshape(-1), f["g/w"][:].reshape(-1)
        assert done[idx[:9]].all() and not done[idx[9:]].any()
        np.testing.assert_array_equal(v[idx[:9]], vals[0, :9])
        np.testing.assert_array_equal(w[idx[:9]], vals[1, :9])
        assert np.isnan(v[idx[9:]]).all()
        assert rf.prepare("g", {"k": 1}, {"v": ((3, 4), "f8", np.nan)})[idx[:9]].all()  # same config: resumed
        assert not rf.prepare("g", {"k": 3}, {"v": ((3, 4), "f8", np.nan)}).any()  # another: restarted


def test_results_file_belongs_to_one_run_and_is_validated(tiny_run, tiny_run_constant, tmp_path):
    with Trajectory(tiny_run) as t:
        rf = ResultsFile(tmp_path / "r.h5", t)
        rf.write("g", {"x": np.arange(3.0)}, {"note": "n"})
        with open_results(rf.path) as f:
            assert f.attrs["format"] == FORMAT and f.attrs["run_hash"] == t.content_hash()
        groups = read_groups(rf.path)
        np.testing.assert_array_equal(groups["g"]["x"], np.arange(3.0))
        assert groups["g"]["_attrs"]["note"] == "n"
        with pytest.raises(UserError, match="must not be the run file"):
            ResultsFile(tiny_run, t)
    with Trajectory(tiny_run_constant) as other, pytest.raises(UserError, match="results of another run"):
        ResultsFile(tmp_path / "r.h5", other)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(UserError, match="not a swa-landscape results file"):
        read_groups(tmp_path / "plain.h5")


def test_stored_results_resume_only_their_own_config(tiny_run, tmp_path):
    """The results file's resume rule (analyses that write a group whole, like the Hessian's points)."""
    with Trajectory(tiny_run) as t:
        rf = ResultsFile(tmp_path / "r.h5", t)
        assert rf.stored("g", {"a": 1}) is None
        rf.write("g", {"x": np.arange(3.0)}, {"config": '{"a": 1}'})
        np.testing.assert_array_equal(rf.stored("g", {"a": 1})["x"], np.arange(3.0))
        assert rf.stored("g", {"a": 2}) is None
        rf.prepare("h", {"b": 1}, {"v": ((4,), "f8", np.nan)})
        assert rf.stored("h", {"b": 1}) is None  # points still to do
