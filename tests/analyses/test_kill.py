"""A real analyze process killed at random moments: the restart finishes with identical numbers."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analyses.common import VALUES
from analyses.journal import Journal
from tests.factories import plane_arrays

CLI = [sys.executable, "-m", "swa_landscape", "analyze"]
ARGS = ["plane", "--grid", "12", "12", "--chunk-size", "3", "--dtype", "float64", "--strategy", "loop", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ROOT = Path(__file__).resolve().parents[2]
CHUNK = "analyses.journal:Journal.append"  # a chunk of evaluated points made durable


def _killed_at(event: str, n: int, when: str, run: str, out) -> subprocess.CompletedProcess:
    """The analysis killed with SIGKILL at an event (:mod:`tests.killpoint`); ``n = 0`` only counts."""
    return subprocess.run([sys.executable, "-m", "tests.killpoint", event, str(n), when, "--", "analyze", run, *ARGS,
                           "--out", str(out)], env=ENV, cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def full(tiny_run, tmp_path_factory):
    """The analysis without a kill, and how many chunks it made durable."""
    out = tmp_path_factory.mktemp("kill") / "full.h5"
    r = _killed_at(CHUNK, 0, "after", tiny_run, out)
    assert r.returncode == 0, r.stderr
    return plane_arrays(out), int(r.stdout.rsplit("calls=", 1)[1].split()[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_analysis_restarts_with_identical_results(tiny_run, tmp_path, full, seed):
    """Killed before or after the N-th durable chunk, N drawn over all of them, or at the M-th HDF5 write after it
    (inside the merge of the journal into the results file)."""
    full, chunks = full
    rng = np.random.default_rng(seed)
    n, when = int(rng.integers(1, chunks + 1)), ["before", "after", f"during:{int(rng.integers(1, 4))}"][seed]
    out = tmp_path / "cut.h5"
    r = _killed_at(CHUNK, n, when, tiny_run, out)
    assert r.returncode == -signal.SIGKILL, r.stderr
    done_before = Journal(out).points("plane") + (int(plane_arrays(out)["done"].sum()) if out.exists() else 0)
    r = subprocess.run(CLI + [tiny_run, *ARGS, "--out", str(out)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = plane_arrays(out)
    assert got["done"].all() and not Journal(out).dir.exists()
    for k in VALUES:
        np.testing.assert_array_equal(got[k], full[k])
    if done_before:  # the restart computed only what the killed run had not made durable
        assert f"({144 - done_before} points computed now)" in r.stdout
