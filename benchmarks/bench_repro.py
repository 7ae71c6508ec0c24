"""What of the default demo run is reproducible (not a test): the same run at 2, 2 and 1 intra-op threads.

Trains the demo's default configuration three times in fresh processes and prints the
SGD and SWA test accuracies and whether the final weights are bitwise equal.

Usage:
    python benchmarks/bench_repro.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from swa import Trajectory
from swa_landscape import DemoConfig


def main() -> None:
    cfg = DemoConfig().train_config()
    flags = []
    for k, v in cfg.to_dict().items():
        if v is None or (k == "model_kwargs" and not v):
            continue
        flag = f"--{k.replace('_', '-')}"
        flags += ([flag] if v is True else [f"--no-{k.replace('_', '-')}"] if v is False else
                  [flag, v if isinstance(v, str) else __import__("json").dumps(v)])
    runs = {}
    with tempfile.TemporaryDirectory() as d:
        for name, threads in (("2 threads, run 1", 2), ("2 threads, run 2", 2), ("1 thread", 1)):
            out = Path(d) / f"{len(runs)}.h5"
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            subprocess.run([sys.executable, "-m", "swa_landscape", "train", "--out", str(out), "--no-progress", *map(str, flags)],
                           check=True, env=env, capture_output=True)
            with Trajectory(out) as t:
                runs[name] = (t.solution_scalar("sgd", "test_acc"), t.solution_scalar("swa", "test_acc"),
                              t.solution("swa")[0])
    first = runs["2 threads, run 1"][2]
    for name, (sgd, swa, w) in runs.items():
        print(f"{name:18s} SGD {sgd:.4f}  SWA {swa:.4f}  w_SWA bitwise equal to run 1: {torch.equal(w, first)}  "
              f"max |diff| {(w - first).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
