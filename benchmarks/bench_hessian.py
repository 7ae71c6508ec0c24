"""Time of the Hessian analysis (top-5 eigenvalues + trace) against PyHessian-style one-vector-at-a-time code.

Both compute the same quantities at w_SWA of a run, on the whole training split, BN in eval mode with
the point's recomputed statistics:

* **ours** (:mod:`landscape.curvature`): ``torch.func`` forward-over-reverse Hessian-vector products,
  vmapped over ``--vectors`` vectors per pass over the data; ARPACK's Lanczos (``eigsh``) for the top
  5 eigenvalues; Hutchinson's trace with 100 Rademacher probes pushed ``--vectors`` at a time.
* **PyHessian-style** (Yao et al. 2020, the code users copy): one vector at a time, each product a
  loop over mini-batches of 128 with ``loss.backward(create_graph=True)`` and ``autograd.grad`` of the
  gradient against the vector; the top 5 eigenvalues by power iteration with deflation (at most 100
  iterations each, relative tolerance 1e-3, PyHessian's defaults); the trace by Hutchinson with the
  same 100 probes.

Prints the time of each, the ratio, the products each needed and the largest eigenvalue difference.

Usage:
    python benchmarks/bench_hessian.py RUN.h5 [--vectors 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from analyses.common import open_run
from analyses.hessian import hessian_operator
from landscape.curvature import hutchinson_trace, top_eigen
from landscape.layout import param_layout, unflatten
from landscape.reference import load_point
from swa.trajectory import Trajectory


def pyhessian_style(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, probes: int, seed: int,
                    batch: int = 128) -> tuple[np.ndarray, float, int]:
    """Top-k eigenvalues by power iteration with deflation and the Hutchinson trace, one HVP at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    calls = [0]

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        calls[0] += 1
        out = [torch.zeros_like(p) for p in params]
        for i in range(0, len(x), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            loss = nn.functional.cross_entropy(model(xb), yb)
            g = torch.autograd.grad(loss, params, create_graph=True)
            hv = torch.autograd.grad(g, params, grad_outputs=v)
            for o, h in zip(out, hv):
                o += h.detach() * len(xb)
        return [o / len(x) for o in out]

    def dot(a, b):
        return sum((u * w).sum() for u, w in zip(a, b))

    def normalize(v):
        n = torch.sqrt(dot(v, v))
        return [u / n for u in v]

    g = torch.Generator().manual_seed(seed)
    eigs, vecs = [], []
    for _ in range(k):
        v = normalize([torch.randn(p.shape, generator=g) for p in params])
        val = None
        for _ in range(100):
            for w in vecs:  # deflation: orthogonalise against the eigenvectors found
                c = dot(v, w)
                v = [a - c * b for a, b in zip(v, w)]
            v = normalize(v)
            hv = hvp(v)
            new = float(dot(hv, v))
            v = normalize(hv)
            if val is not None and abs(new - val) / (abs(val) + 1e-6) < 1e-3:
                val = new
                break
            val = new
        eigs.append(val)
        vecs.append(v)
    gt = torch.Generator().manual_seed(seed)
    z = (torch.randint(0, 2, (probes, sum(p.numel() for p in params)), generator=gt) * 2 - 1).float()
    tr = []
    for zi in z:
        zs = list(unflatten(zi, param_layout(model)).values())
        tr.append(float(dot(hvp(zs), zs)))
    return np.array(eigs), float(np.mean(tr)), calls[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--vectors", type=int, default=10, help="HVPs per vmapped pass (ours)")
    args = p.parse_args()
    with Trajectory(args.run) as t:
        ctx = open_run(t)
        t0 = time.perf_counter()
        op, _ = hessian_operator(ctx, "swa", args.vectors)
        vals, _ = top_eigen(op, 5, tol=1e-4)
        est = hutchinson_trace(op, 100)
        ours = time.perf_counter() - t0
        bufs = [b.reshape(-1).float() for b in op.buffers.values()]
        model = load_point(ctx.engine.template, op.w, torch.cat(bufs) if bufs else None)
        model.eval()
        x, y = ctx.splits["train"]
        t0 = time.perf_counter()
        pv, ptr, pcalls = pyhessian_style(model, x.float(), y, 5, 100, 0)
        base = time.perf_counter() - t0
    print(f"run {args.run}: {op.size} parameters, {len(op.x)} training samples, {torch.get_num_threads()} threads")
    print(f"ours           {ours:7.1f} s  {op.calls:4d} HVPs  top-5 {np.round(vals, 4)}  trace {est.trace:.4g} "
          f"+- {est.standard_error:.2g}")
    print(f"PyHessian-style{base:7.1f} s  {pcalls:4d} HVPs  top-5 {np.round(np.sort(pv)[::-1], 4)}  trace {ptr:.4g}")
    print(f"speed-up {base / ours:.2f}x; time per HVP: ours {1000 * ours / op.calls:.1f} ms, PyHessian-style "
          f"{1000 * base / pcalls:.1f} ms; largest |eigenvalue difference| "
          f"{np.max(np.abs(np.sort(pv)[::-1] - vals)):.3g}")


if __name__ == "__main__":
    main()
