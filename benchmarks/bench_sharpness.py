"""Average-case sharpness through the engine against the obvious per-perturbation loop (points/s, one process).

At w_SWA of a run: ``--rhos`` x ``--samples`` adaptive perturbations ``w + rho |w| z_k``. The engine evaluates
them as one point set (:func:`landscape.sharpness.perturbation_points`; BN statistics recomputed per point for
a BN network, its automatic plan choice, construction and probe included). The obvious loop is what a user
writes: for each perturbation, ``vector_to_parameters`` into the network, ``update_bn`` over the training
split in batches of the run's batch size for a BN network, then the mean training loss in eval mode over the
whole split under ``torch.no_grad()``. Both give the same increases (checked to 1e-4 relative here).

Usage:
    python benchmarks/bench_sharpness.py RUN.h5 [--samples 16] [--rhos 0.02 0.05 0.1 0.2]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters
from torch.optim.swa_utils import update_bn

from analyses.common import open_run
from landscape.sharpness import perturbation_points, scales
from landscape.workers import tune_cpu_allocator
from swa.trajectory import Trajectory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--rhos", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    args = p.parse_args()
    tune_cpu_allocator()  # as the command line does, for both
    with Trajectory(args.run) as t:
        ctx = open_run(t)
        w, b = t.solution("swa")
        batch = int(t.config["batch_size"])
    rhos = np.asarray(args.rhos)
    mask = torch.ones(w.numel(), dtype=torch.bool)
    pts = perturbation_points(w, scales(w, mask, True), rhos, args.samples, 0, b)
    x, y = ctx.splits["train"]
    t0 = time.perf_counter()
    eng = type(ctx.engine)(ctx.engine.template, {"train": (x, y)}, config=ctx.engine_config)
    fast = eng.evaluate(pts, splits=("train",)).loss["train"].numpy()
    t_engine = time.perf_counter() - t0
    model = copy.deepcopy(ctx.engine.template)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    t0 = time.perf_counter()
    slow = []
    for k in range(len(pts)):
        vector_to_parameters(pts.chunk(k, k + 1)[0], model.parameters())
        if has_bn:
            update_bn([(x[i:i + batch],) for i in range(0, len(x), batch)], model)
        model.eval()
        with torch.no_grad():
            slow.append(float(nn.functional.cross_entropy(model(x), y)))
    t_loop = time.perf_counter() - t0
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6)
    n = len(pts)
    print(f"run {args.run}: {w.numel()} parameters, {len(x)} training samples, BN: {has_bn}, "
          f"{torch.get_num_threads()} threads; {n} perturbed points ({len(rhos)} radii x {args.samples})")
    print(f"| method | points/s | ratio |\n| --- | --- | --- |\n| obvious loop | {n / t_loop:.1f} | 1.00x |\n"
          f"| engine (batched) | {n / t_engine:.1f} | {t_loop / t_engine:.2f}x |")
    print(f"engine plan: {eng.explain().choice if eng.explain() else 'plain'}")


if __name__ == "__main__":
    main()
