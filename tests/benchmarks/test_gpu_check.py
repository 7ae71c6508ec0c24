"""The GPU check runs end to end at its dry-run size on any machine, so the one GPU command cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_writes_every_step(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path),
                        "--dry-run"], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    steps = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(steps) == ["device", "cuda tests", "matrix", "plane56", "lower", "overhead"]
    assert all(s["status"] == "ok" for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    if not torch.cuda.is_available():  # the CUDA tests are collected and skipped here, not failed
        assert "skipped" in steps["cuda tests"]["summary"] and steps["cuda tests"]["exit_code"] == 0
    row = steps["matrix"]["rows"][0]
    assert row["engine_pts_s"] > 0 and row["anchor_pts_s"] > 0 and 0 < row["efficiency"] < 10
    assert steps["plane56"]["rate_pts_s"] > 0 and steps["plane56"]["full_plane_s"] > 0
    lower = {r["mode"]: r for r in steps["lower"]["rows"]}
    if not torch.cuda.is_available():  # TF32 changes nothing on a CPU, float16 autocast is a GPU's
        assert lower["tf32"]["max_rel_loss_dev"] == 0 and lower["tf32"]["max_error_dev"] == 0
        assert set(lower) == {"tf32", "bfloat16", "compiled"}
    assert 0 < lower["bfloat16"]["max_rel_loss_dev"] < 0.05 and lower["compiled"]["speedup"] > 0
    assert steps["overhead"]["plain_s"] > 0 and steps["overhead"]["full_s"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    for name in steps:
        assert f"| {name} |" in table
    assert table in r.stdout
