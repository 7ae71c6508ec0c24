"""The Hessian analysis against the PyHessian package itself: top-1, top-5 and the trace, values and wall times.

Each measurement is one process, timed from its start to its end (interpreter, imports, loading the run's
network and data, the computation), as a user runs it:

* **ours**: ``swa-landscape analyze RUN hessian --points swa ...`` into a fresh results file (products through
  the retained gradient graph, Lanczos stopped at convergence, the trace by Hutch++ with its residual stage
  stopped at a 3% standard error);
* **PyHessian** (``pip install pyhessian``, version 0.1, installed in the benchmark's environment only, not a
  dependency): a script that loads w_SWA and the training split of the same run (``swa.load_model``,
  ``swa.load_dataset``) and calls ``pyhessian.hessian(model, criterion, data=(x, y), cuda=False)`` with the
  whole split as its one batch, then ``eigenvalues(top_n=k)``, ``trace(...)`` or ``density(iter=100, n_v=1)``
  (its ``torch.eig``, removed from torch in 1.9, replaced by ``eigh``'s eigenpairs of its symmetric tridiagonal
  matrix in the old layout: nothing else changed).

Both evaluate the mean cross-entropy over the training split in eval mode at w_SWA (a network with BatchNorm:
its stored statistics, which the trainer recomputed for w_SWA; ours recomputes them again, to the same values).
Accuracy is judged against a reference computed here: the top-5 eigenvalues by ARPACK at machine precision on
float64 products, and for the trace the standard error each estimate reports (PyHessian reports none; its
samples are returned and their standard error is computed here).

Usage:
    python benchmarks/bench_hessian.py RUN.h5 [--repeats 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PYHESSIAN = """
import json, sys, time
import numpy as np, torch
from pyhessian import hessian
from swa import load_dataset, load_model
run, what = sys.argv[1], sys.argv[2]
model = load_model(run, "swa").eval()
x, y = load_dataset(run, "train")
h = hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
def eig(a, eigenvectors=False):  # PyHessian's density calls torch.eig, removed in torch 1.9 (see the docstring)
    vals, vecs = torch.linalg.eigh(a)
    return torch.stack([vals, torch.zeros_like(vals)], 1), vecs
torch.eig = eig
if what == "density":
    nodes, weights = h.density(iter=100, n_v=1)
    print(json.dumps({"nodes": len(nodes[0])}))
elif what.startswith("top"):
    vals, _ = h.eigenvalues(top_n=int(what[3:]))
    print(json.dumps({"eigenvalues": sorted(vals, reverse=True)}))
else:
    probes, tol = (100, 0.0) if what == "trace-fixed" else (100, 1e-3)
    s = h.trace(maxIter=probes, tol=tol)
    print(json.dumps({"trace": float(np.mean(s)), "samples": len(s),
                      "se": float(np.std(s, ddof=1) / np.sqrt(len(s))) if len(s) > 1 else None}))
"""

OURS = {"top1": ["--top-k", "1", "--trace-probes", "0"], "top5": ["--top-k", "5", "--trace-probes", "0"],
        "trace": ["--top-k", "0"], "trace-equal": ["--top-k", "0"],
        "trace-fixed": ["--top-k", "0", "--trace-probes", "100", "--trace-rtol", "0", "--trace-deflate", "0"],
        "density": ["--top-k", "0", "--trace-probes", "0", "--density-runs", "1", "--density-steps", "100"]}
THEIRS = {"trace-equal": "trace-fixed"}  # PyHessian's 100 probes give about the standard error our default stops at
LABELS = {"top1": "top-1 eigenvalue", "top5": "top-5 eigenvalues",
          "trace": "trace, each tool's default", "trace-equal": "trace, ours by default, PyHessian with 100 probes",
          "trace-fixed": "trace, plain Hutchinson with 100 probes both",
          "density": "spectral density, 100 Lanczos steps, 1 run (PyHessian's default)"}


def _ours(run: str, what: str, tmp: Path) -> tuple[float, dict]:
    out = tmp / f"{what}.h5"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", run, "hessian", "--points", "swa",
                    *OURS[what], "--out", str(out), "--no-progress"], check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    with h5py.File(out, "r") as f:
        g = f["hessian/swa"]
        vals = {"hvps": int(g["hvps"][()]), "seconds": float(g["seconds"][()])}
        if "eigenvalues" in g:
            vals["eigenvalues"] = g["eigenvalues"][:].tolist()
        if "density" in g:
            vals["nodes"] = int(np.isfinite(g["density_nodes"][:]).sum())
        if "trace" in g:
            vals.update(trace=float(g["trace"][()]), se=float(g["trace_se"][()]), samples=len(g["trace_samples"][:]),
                        deflated="--trace-deflate" not in OURS[what])
    return wall, vals


def _pyhessian(run: str, what: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PYHESSIAN, run, what], check=True, capture_output=True, text=True,
                       cwd=ROOT)
    return time.perf_counter() - t0, json.loads(r.stdout.strip().splitlines()[-1])


def _reference(run: str) -> np.ndarray:
    """The top-5 eigenvalues at machine precision, float64 products."""
    from analyses.common import default_engine_config, open_run
    from analyses.hessian import hessian_operator
    from landscape.curvature import top_eigen
    from swa.trajectory import Trajectory

    with Trajectory(run) as t:
        ctx = open_run(t, default_engine_config(t, dtype="float64"))
        op, _ = hessian_operator(ctx, "swa")
        return top_eigen(op, 5, tol=0.0)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--repeats", type=int, default=1, help="runs of each; the best wall time is reported")
    p.add_argument("--only", nargs="*", default=list(OURS), choices=list(OURS), help="which rows")
    args = p.parse_args()
    if importlib.util.find_spec("pyhessian") is None:
        raise SystemExit("install the PyHessian package in this environment first: pip install pyhessian==0.1")
    ref = _reference(args.run)
    print(f"reference top-5 (ARPACK, tol 0, float64): {np.round(ref, 5).tolist()}")
    print("| what | ours: wall s | PyHessian: wall s | speed-up | ours: value (rel. error or SE) | "
          "PyHessian: value (rel. error or SE) | ours: HVPs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for what in args.only:
            ours = min((_ours(args.run, what, Path(tmp)) for _ in range(args.repeats)), key=lambda r: r[0])
            theirs = min((_pyhessian(args.run, THEIRS.get(what, what)) for _ in range(args.repeats)),
                         key=lambda r: r[0])

            def value(v: dict) -> str:
                if "nodes" in v:
                    return f"{v['nodes']} quadrature nodes"
                if "eigenvalues" in v:
                    e = np.asarray(v["eigenvalues"])
                    err = np.max(np.abs(e - ref[:len(e)]) / np.abs(ref[:len(e)]))
                    return f"{np.round(e, 4).tolist()} (max rel. error {err:.1e})"
                se = "n/a" if v.get("se") is None else f"{v['se']:.3g}"
                return f"{v['trace']:.4g} ± {se} ({v['samples']} probes{' + 20 for Hutch++' if v.get('deflated') else ''})"

            print(f"| {LABELS[what]} | {ours[0]:.1f} | {theirs[0]:.1f} | {theirs[0] / ours[0]:.2f}x | "
                  f"{value(ours[1])} | {value(theirs[1])} | {ours[1]['hvps']} |", flush=True)


if __name__ == "__main__":
    main()
