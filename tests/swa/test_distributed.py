"""DDP training with real torchrun processes (gloo on localhost)."""

import h5py
import numpy as np
import pytest
import torch

from swa import Trajectory, train
from tests.factories import tiny_config, torchrun

ARGS = ["--model-kwargs", '{"width": 8}', "--num-samples", "500", "--epochs", "4", "--swa-start", "2", "--swa-epochs",
        "2", "--swa-cycle", "0.5", "--batch-size", "64", "--device", "cpu", "--no-progress"]


def _layout(path):
    out = {}
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj.shape if hasattr(obj, "shape") else None))
        attrs = set(f.attrs)
    return out, attrs


def test_ddp_two_ranks_write_one_valid_run_file(tmp_path, tiny_run):
    path = tmp_path / "ddp.h5"
    stdout = torchrun(2, "train", "--out", str(path), *ARGS)
    assert stdout.count("SGD test accuracy") == 1  # only rank 0 reports
    with Trajectory(path) as t:
        assert t.status == "complete"
        cap = np.flatnonzero(t.meta("captured"))
        w_swa = t.solution("swa")[0]
        torch.testing.assert_close(w_swa, t.weights(cap).double().mean(0).float(), rtol=1e-6, atol=1e-7)
        assert t.solution_scalar("swa", "n_averaged") == len(cap) == 3
        n = t.n
    # same file layout as a single-process run of the same config
    lay, attrs = _layout(path)
    ref_lay, ref_attrs = _layout(tiny_run)
    assert attrs == ref_attrs and set(lay) == set(ref_lay)
    with Trajectory(tiny_run) as t:
        assert t.n == n and t.param_layout == Trajectory(path).param_layout


def test_ddp_resumes_an_interrupted_run(tmp_path):
    path = tmp_path / "cut.h5"
    lines = []

    def log(line):
        lines.append(line)
        if len(lines) == 4:  # header + 3 epochs: inside the SWA branch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), path, progress=False, log=log)
    torchrun(2, "train", "--resume", "--out", str(path), "--no-progress")
    with Trajectory(path) as t:
        assert t.status == "complete"
        cap = np.flatnonzero(t.meta("captured"))
        torch.testing.assert_close(t.solution("swa")[0], t.weights(cap).double().mean(0).float(), rtol=1e-6, atol=1e-7)


def test_rank0_failing_to_create_the_file_stops_every_rank_at_once(tmp_path, tiny_run):
    """An existing file without --overwrite: both ranks exit non-zero with rank 0's message, no gloo timeout."""
    import hashlib
    import time

    before = hashlib.sha256(open(tiny_run, "rb").read()).hexdigest()
    t = time.perf_counter()
    r = torchrun(2, "train", "--out", tiny_run, *ARGS, timeout=60, check=False)
    took = time.perf_counter() - t
    assert r.returncode != 0 and took < 30, (r.returncode, took)
    errors = [line for line in r.stderr.splitlines() if "swa-landscape: error:" in line]
    assert len(errors) == 2 and all("exists; pass --overwrite" in e for e in errors), r.stderr[-2000:]
    assert hashlib.sha256(open(tiny_run, "rb").read()).hexdigest() == before
