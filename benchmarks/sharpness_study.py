"""Adaptive and raw sharpness at SWA and SGD over seeds: the demo's default and a BatchNorm configuration.

For each configuration and seed: train (``swa-landscape train``), then ``analyze RUN sharpness`` with its
defaults. Prints, per configuration, every run's values and, over seeds, the mean difference SGD - SWA with a
95% t-interval (``scipy.stats.t``): an interval above 0 says SWA is flatter by that measure.

Configurations: ``demo`` (the demo's default: ``convnet`` without BN, 4000 MNIST-1D samples, cyclic SWA 0.1 ->
0.01) and ``bn`` (``TrainConfig``'s defaults: ``convnet_bn``, 5000 samples, cyclic 0.05 -> 0.005).

Usage:
    python benchmarks/sharpness_study.py --out study [--seeds 0 1 2] [--reuse demo=PATH_OF_SEED_0_RUN]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from analyses.statistics import t_interval

CONFIGS = {
    "demo": ["--model", "convnet", "--num-samples", "4000", "--epochs", "40", "--swa-epochs", "20",
             "--swa-schedule", "cyclic", "--swa-lr", "0.1", "--swa-lr-min", "0.01", "--swa-cycle", "1.0"],
    "bn": [],
}
QUANTITIES = (("adaptive_mean", "adaptive average case at report_rho"), ("raw_mean", "raw average case at report_rho"),
              ("worst_adaptive_inf", "adaptive worst case, l_inf"), ("worst_adaptive_2", "adaptive worst case, l_2"),
              ("worst_raw_inf", "raw worst case, l_inf"))


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "swa_landscape", *args], check=True, capture_output=True)


def _value(g, key: str) -> float:
    if key.endswith("_mean"):
        rhos, rho = g["rhos"][:], float(json.loads(g.attrs["config"])["report_rho"])
        return float(g[key][:][np.flatnonzero(np.isclose(rhos, rho))[0]])
    return float(g[key][()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reuse", action="append", default=[], help="CONFIG=RUN: use this run for the first seed")
    args = p.parse_args()
    reuse = dict(r.split("=", 1) for r in args.reuse)
    out = Path(args.out)
    for name, flags in CONFIGS.items():
        rows = []
        for i, seed in enumerate(args.seeds):
            run = out / f"{name}-s{seed}.h5"
            if i == 0 and name in reuse and not run.exists():
                out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(reuse[name], run)
            if not run.exists():
                _cli("train", *flags, "--seed", str(seed), "--out", str(run), "--no-progress")
            res = run.with_suffix(".landscape.h5")
            _cli("analyze", str(run), "sharpness", "--out", str(res), "--no-progress")
            with h5py.File(res, "r") as f:
                rows.append({o: {k: _value(f[f"sharpness/{o}"], k) for k, _ in QUANTITIES} for o in ("swa", "sgd")})
        print(f"\n### {name}: seeds {', '.join(map(str, args.seeds))}\n")
        print("| quantity | SWA per seed | SGD per seed | SGD - SWA: mean [95% t-interval] |\n| --- | --- | --- | --- |")
        for key, label in QUANTITIES:
            swa = np.array([r["swa"][key] for r in rows])
            sgd = np.array([r["sgd"][key] for r in rows])
            d = sgd - swa
            _, lo, hi = t_interval(d)
            print(f"| {label} | {', '.join(f'{v:.4g}' for v in swa)} | {', '.join(f'{v:.4g}' for v in sgd)} | "
                  f"{d.mean():+.4g} [{lo:+.4g}, {hi:+.4g}] |", flush=True)


if __name__ == "__main__":
    main()
