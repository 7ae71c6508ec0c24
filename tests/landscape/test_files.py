"""HDF5 files cut short are recognised from the superblock, at once, at every length."""

import time

import h5py
import numpy as np
import pytest

from landscape.errors import UserError
from landscape.files import hdf5_problem, open_hdf5, output_path


@pytest.mark.parametrize("libver", ["earliest", "latest"])  # superblock versions 0 and 3
def test_every_truncation_of_a_real_file_is_refused_quickly(tmp_path, libver):
    full = tmp_path / "full.h5"
    with h5py.File(full, "w", libver=libver) as f:
        f.create_dataset("x", data=np.random.default_rng(0).random(5000))
        f.attrs["format"] = "test"
    assert hdf5_problem(full) is None
    with open_hdf5(full) as f:
        assert f["x"].shape == (5000,)
    data = full.read_bytes()
    for n in (0, 7, 40, 200, 5000, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{n}.h5"
        cut.write_bytes(data[:n])
        assert hdf5_problem(cut) is not None
        t = time.perf_counter()
        with pytest.raises(UserError):
            open_hdf5(cut, swmr=True)
        assert time.perf_counter() - t < 5


def test_output_path_checks(tmp_path):
    assert output_path(tmp_path / "a.h5") == tmp_path / "a.h5"
    with pytest.raises(UserError, match="does not exist"):
        output_path(tmp_path / "no" / "a.h5")
    with pytest.raises(UserError, match="is a directory"):
        output_path(tmp_path)


@pytest.fixture
def disk_log(monkeypatch):
    """Every fsync (by the path its descriptor names) and every rename, in order."""
    import os

    log = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        log.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


def _durably_replaced(log, final):
    """The log holds: the file synced under its temporary name, renamed to ``final``, then its directory synced."""
    import os

    final = os.path.realpath(final)
    i = next(i for i, e in enumerate(log) if e[0] == "replace" and e[2] == final)
    tmp = log[i][1]
    assert ("fsync", tmp) in log[:i], log
    assert ("fsync", os.path.dirname(final)) in log[i + 1:], log


def test_every_rename_is_durable_file_first_directory_after(tmp_path, disk_log):
    """A power loss cannot leave a renamed file without its contents or lose the rename: checked on the results
    file's update, a journal chunk and a new run file (each counted from the calls to os.fsync and os.replace)."""
    from analyses.h5io import atomic_update
    from analyses.journal import Journal
    from swa.writer import TrajectoryWriter

    rng = np.random.default_rng(5)
    atomic_update(tmp_path / "res.h5", lambda f: f.create_dataset("a", data=rng.normal(size=4)))
    _durably_replaced(disk_log, tmp_path / "res.h5")
    chunk = Journal(tmp_path / "res.h5").append("g", "{}", np.arange(3), {"v": rng.normal(size=3)})
    _durably_replaced(disk_log, chunk)
    attrs = {"model": "{}", "dataset": "{}", "config": "{}", "param_layout": "{}", "buffer_layout": "{}"}
    w = TrajectoryWriter.create(tmp_path / "run.h5", attrs, 6, 2)
    _durably_replaced(disk_log, tmp_path / "run.h5")
    disk_log.clear()
    w.save_checkpoint({"epoch": 1, "n_snapshots": 0})
    assert disk_log == [("fsync", str((tmp_path / "run.h5").resolve()))]  # each checkpoint reaches the disk
    w.close()
