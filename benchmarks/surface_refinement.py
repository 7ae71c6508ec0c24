"""The refined surface against the full grid on a run (not a test; docs/performance.md).

Evaluates the surface around SWA and SGD twice into a scratch results file, the full grid and the refined one
(``SurfaceConfig(refine=True)``), and reports per centre: the points evaluated, the wall time, the largest
difference of the interpolated log train loss from the full grid, and the share of grid points that fall into
another band of the contour levels the figure draws (14 levels, log-spaced over both centres' range).

Usage:
    python benchmarks/surface_refinement.py demo/run.h5 [--grid 51] [--tolerance 0.01]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from analyses.surface import SurfaceConfig, surface
from figures.plots import log_levels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--grid", type=int, default=51)
    ap.add_argument("--tolerance", type=float, nargs="+", default=[0.01, 0.05])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        full = surface(args.run, Path(d) / "full.h5", SurfaceConfig(grid=args.grid), progress=False)
        t_full = time.perf_counter() - t
        refined = {}
        for tol in args.tolerance:
            t = time.perf_counter()
            refined[tol] = surface(args.run, Path(d) / f"ref{tol}.h5", SurfaceConfig(
                grid=args.grid, refine=True, refine_tolerance=tol), progress=False), time.perf_counter() - t
    values = np.concatenate([full[c]["train_loss_l2"].ravel() for c in full])
    levels = log_levels(np.maximum(values, 1e-4), 14)
    print(f"{args.grid}x{args.grid} surface of {args.run}: the full grid took {t_full:.1f} s\n")
    print("| tolerance | centre | points evaluated | of | wall time against the full grid | max abs. difference of log "
          "train loss | max rel. difference | points in another contour band |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    for tol, (ref, t_ref) in refined.items():
        for c in full:
            a, b = full[c]["train_loss_l2"], ref[c]["train_loss_l2_interpolated"]
            band = (np.digitize(a, levels) != np.digitize(b, levels)).mean()
            print(f"| {tol} | {c} | {ref[c]['computed']} | {a.size} | {t_full / t_ref:.2f}x | "
                  f"{np.max(np.abs(np.log(a) - np.log(b))):.2e} | {np.max(np.abs(a - b) / a):.2e} | {100 * band:.2f}% |")


if __name__ == "__main__":
    main()
