"""The Hessian against the PyHessian package in one process: per product, top-1, top-5, trace, density (not a test).

Both tools in the same interpreter on the same network and data, already loaded: w_SWA of a run (BN in eval
mode with its statistics) and the whole training split as one batch, the mean cross-entropy, float32, the
machine's threads. Each timing is the best of ``--repeats`` and covers everything from the loaded model and data
to the answer (the gradient's graph built by each tool included):

* **per product**: one Hessian-vector product through the retained graph, ours one vector at a time and ten
  pushed at once (``is_grads_batched``), PyHessian's ``hessian_vector_product``, each the mean over 10 calls;
* **top-1 / top-5**: ``landscape.curvature.top_eigen`` (Lanczos, stopped at a 1e-4 residual) against
  ``hessian.eigenvalues(top_n=k)`` (power iteration with deflation, its default tolerance 1e-3), the relative
  errors against eigenvalues at machine precision (ARPACK on float64 products);
* **trace**: ours (Hutch++ with 10 exact directions, residual probes until a 3% standard error, at most 100)
  against ``hessian.trace(maxIter=100, tol=0)`` (100 Hutchinson probes), each with its standard error;
* **density**: ``landscape.spectrum.spectral_density`` against ``hessian.density(iter=100, n_v=1)`` (PyHessian's
  defaults), both broadened on one grid by the same Gaussian; the L1 distance between the two densities (two
  random start vectors: a second run of ours gives the distance that chance alone makes).

PyHessian 0.1's ``density`` calls ``torch.eig``, which torch removed in 1.9; for it to run at all, the benchmark gives
torch an ``eig`` that returns ``torch.linalg.eigh``'s eigenpairs of the (symmetric) tridiagonal matrix in the old
layout. Nothing else of PyHessian is changed.

Usage (PyHessian installed in the benchmark's environment only: ``pip install pyhessian --no-deps``):
    python benchmarks/bench_hessian_inprocess.py RUN.h5 [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from landscape.curvature import HessianOperator, hutchinson_trace, top_eigen
from landscape.layout import flatten
from landscape.spectrum import SpectralDensity, spectral_density
from swa import load_dataset, load_model


def best(fn, repeats: int):
    """The fastest of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def broadened(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, var: float) -> np.ndarray:
    g = np.exp(-((grid[:, None] - nodes[None]) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    return (g * weights[None]).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=["product", "top", "trace", "density"],
                    help="which rows (product, top, trace, density)")
    args = ap.parse_args()
    from pyhessian import hessian as PyHessian
    from pyhessian.utils import hessian_vector_product

    def eig(a, eigenvectors=False):  # PyHessian 0.1's density calls torch.eig (removed in torch 1.9; it raises): its
        vals, vecs = torch.linalg.eigh(a)  # tridiagonal matrix is symmetric, so eigh gives the same eigenpairs
        return torch.stack([vals, torch.zeros_like(vals)], 1), vecs

    torch.eig = eig

    model = load_model(args.run, "swa").eval()
    x, y = load_dataset(args.run, "train")
    w, b = flatten(list(model.parameters())), flatten(list(model.buffers()))
    crit = torch.nn.CrossEntropyLoss()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {w.numel()} parameters, {len(x)} samples")

    def ours(vectors: int = 10) -> HessianOperator:
        return HessianOperator(model, w, b, x, y, vectors=vectors, retain=True)

    ref = top_eigen(HessianOperator(model, w, b, x, y, dtype=torch.float64, retain=True), 5, tol=0.0)[0]
    rows = []
    if "product" in args.only:
        rows.append(_products(ours, model, crit, x, y, args.repeats, PyHessian, hessian_vector_product))
    if "top" in args.only:
        rows += _top(ours, model, crit, x, y, args.repeats, PyHessian, ref)
    if "trace" in args.only:
        rows.append(_trace(ours, model, crit, x, y, args.repeats, PyHessian))
    if "density" in args.only:
        rows.append(_density(ours, model, crit, x, y, args.repeats, PyHessian))
    head = ("what", "ours (s)", "PyHessian (s)", "ours faster by", "ours: value / accuracy", "PyHessian: value")
    print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f}x | {r[4]} | {r[5]} |")


def _products(ours, model, crit, x, y, repeats, PyHessian, hessian_vector_product):  # noqa: N803
    op = ours()
    v1, v10 = torch.randn(1, op.size), torch.randn(10, op.size)
    op.matmat(v10)  # the graph, and the operator's own measurement of which way is cheaper
    chosen = op.batched
    one = best(lambda: [op.matmat(v1) for _ in range(10)], repeats)[0] / 10
    op.batched = True
    batched = best(lambda: op.matmat(v10), repeats)[0] / 10
    op.batched = chosen
    ph = PyHessian(model, crit, data=(x, y), cuda=False)
    vs = [[torch.randn_like(p) for p in ph.params]]
    theirs = best(lambda: [hessian_vector_product(ph.gradsH, ph.params, vs[0]) for _ in range(10)], repeats)[0] / 10
    return ("one product (s)", f"{one:.4f} (one at a time), {batched:.4f} (10 at once, forced)", f"{theirs:.4f}",
            theirs / (batched if chosen else one), f"the operator chose {'batched' if chosen else 'one at a time'}", "")


def _top(ours, model, crit, x, y, repeats, PyHessian, ref):  # noqa: N803
    rows = []
    for k in (1, 5):
        t_o, (vals_o, _) = best(lambda k=k: top_eigen(ours(), k, tol=1e-4), repeats)
        t_p, (vals_p, _) = best(lambda k=k: PyHessian(model, crit, data=(x, y), cuda=False).eigenvalues(top_n=k),
                                repeats)
        err_o = float(np.max(np.abs(np.sort(vals_o)[::-1] - ref[:k]) / np.abs(ref[:k])))
        err_p = float(np.max(np.abs(np.sort(vals_p)[::-1] - ref[:k]) / np.abs(ref[:k])))
        rows.append((f"top-{k} eigenvalue{'s' if k > 1 else ''}", f"{t_o:.2f}", f"{t_p:.2f}", t_p / t_o,
                     f"rel. error {err_o:.1e}", f"rel. error {err_p:.1e}"))
    return rows


def _trace(ours, model, crit, x, y, repeats, PyHessian):  # noqa: N803
    t_o, est = best(lambda: hutchinson_trace(ours(), probes=100, rtol=0.03, deflate=10), repeats)
    t_p, s = best(lambda: PyHessian(model, crit, data=(x, y), cuda=False).trace(maxIter=100, tol=0.0), repeats)
    se_p = float(np.std(s, ddof=1) / np.sqrt(len(s)))
    return ("trace", f"{t_o:.2f}", f"{t_p:.2f}", t_p / t_o, f"{est.trace:.4g} ± {est.standard_error:.2g}",
            f"{np.mean(s):.4g} ± {se_p:.2g}")


def _density(ours, model, crit, x, y, repeats, PyHessian):  # noqa: N803
    t_o, dens = best(lambda: spectral_density(ours(), runs=1, steps=100, seed=0), repeats)
    t_p, (eig_p, wts_p) = best(lambda: PyHessian(model, crit, data=(x, y), cuda=False).density(iter=100, n_v=1),
                               repeats)
    other: SpectralDensity = spectral_density(ours(), runs=1, steps=100, seed=1)
    lo = min(np.nanmin(dens.nodes), min(eig_p[0]), np.nanmin(other.nodes))
    hi = max(np.nanmax(dens.nodes), max(eig_p[0]), np.nanmax(other.nodes))
    grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 20000)
    var = dens.sigma2
    p_o = broadened(np.nan_to_num(dens.nodes[0]), dens.weights[0], grid, var)
    p_p = broadened(np.asarray(eig_p[0]), np.asarray(wts_p[0]), grid, var)
    p_2 = broadened(np.nan_to_num(other.nodes[0]), other.weights[0], grid, var)
    l1 = float(np.trapezoid(np.abs(p_o - p_p), grid))
    l1_chance = float(np.trapezoid(np.abs(p_o - p_2), grid))
    return ("density (100 Lanczos steps, 1 run)", f"{t_o:.2f}", f"{t_p:.2f}", t_p / t_o,
            f"L1 to PyHessian's {l1:.3f}", f"L1 between two runs of ours {l1_chance:.3f}")


if __name__ == "__main__":
    main()
