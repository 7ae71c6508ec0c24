"""A real analyze process killed at random moments: the restart finishes with identical numbers."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from analyses.common import VALUES
from analyses.journal import Journal
from tests.factories import plane_arrays

CLI = [sys.executable, "-m", "swa_landscape", "analyze"]
ARGS = ["plane", "--grid", "12", "12", "--chunk-size", "3", "--dtype", "float64", "--strategy", "loop", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def full(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "full.h5"
    subprocess.run(CLI + [tiny_run, *ARGS, "--out", str(out)], check=True, env=ENV, capture_output=True)
    return plane_arrays(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_analysis_restarts_with_identical_results(tiny_run, tmp_path, full, seed):
    out = tmp_path / "cut.h5"
    delay = np.random.default_rng(seed).uniform(0.0, 1.0)
    proc = subprocess.Popen(CLI + [tiny_run, *ARGS, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not Journal(out).chunks("plane") and proc.poll() is None and time.time() - t0 < 60:
        time.sleep(0.005)  # the first chunk is durable: the evaluation is under way
    time.sleep(delay)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = Journal(out).points("plane") + (int(plane_arrays(out)["done"].sum()) if out.exists() else 0)
    r = subprocess.run(CLI + [tiny_run, *ARGS, "--out", str(out)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = plane_arrays(out)
    assert got["done"].all() and not Journal(out).dir.exists()
    for k in VALUES:
        np.testing.assert_array_equal(got[k], full[k])
    if killed and done_before:  # the restart computed only what the killed run had not made durable
        assert f"({144 - done_before} points computed now)" in r.stdout
