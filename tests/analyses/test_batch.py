"""``analyze all`` (the paper's analyses on one engine) from the command line, in every BN mode."""

import json
import subprocess
import sys

import h5py
import pytest

from swa import Trajectory
from tests.analyses.helpers import sha


def test_cli_analyze_all(tiny_run, tmp_path):
    before = sha(tiny_run)
    out = tmp_path / "cli.h5"
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "all", "--out", str(out),
                        "--rays.directions", "2", "--rays.steps", "3", "--rays.t-max", "1", "--segment.steps", "3",
                        "--plane.grid", "3", "3", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for word in ("rays (random directions):", "segment:", "plane through", "fge:", "results:"):
        assert word in r.stdout
    assert sha(tiny_run) == before
    with h5py.File(out, "r") as f, Trajectory(tiny_run) as t:
        assert set(f) == {"rays", "rays_filter", "predictions", "segment", "plane", "plane_fig1", "fge"}  # PAPER, as the demo
        sgd, swa, start = json.loads(f["plane_fig1"].attrs["anchors"])  # the paper's Figure 1 plane
        assert (sgd, swa) == ("sgd", "swa")
        assert t.meta("branch")[start] == "sgd" and t.meta("epoch")[start] == t.config["swa_start"]
        assert json.loads(f["plane"].attrs["anchors"]) != [sgd, swa, start]
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", tiny_run, "plane", "--anchors", "0,1,100000",
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "out of range" in r.stderr


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
        assert lines[0].startswith("rays skipped: bn_mode 'interpolate'") and groups == {"predictions", "segment",
                                                                                          "plane", "plane_fig1", "fge"}
    else:
        assert groups == {"rays", "rays_filter", "predictions", "segment", "plane", "plane_fig1", "fge"}
