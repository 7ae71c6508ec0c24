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
