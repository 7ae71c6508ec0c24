"""The classic 2-D surface against the loss-landscapes package itself (not a test; docs/performance.md).

Same model, same data (the default MNIST-1D split, 4000 training samples), same 51x51 grid, one process, train
cross-entropy at every point:

* theirs: ``loss_landscapes.planar_interpolation`` over the plane our two filter-normalised directions span (its
  API takes the plane's corners, so both tools evaluate the same plane), and ``random_plane`` with its own
  filter-normalised directions (its usual call), each with ``loss_landscapes.metrics.Loss``: one point per forward,
  the weights stepped in place, BN (where there is one) with the model's stored statistics;
* ours: the engine on the same grid (``PointSet.affine``), with exact per-point BN recomputation where there is BN.

Equal numbers are checked on the exact points theirs visits (recorded on a 9x9 run; its grid is offset by one step
on every other column) evaluated by the engine as explicit points, on the network without BN.

Usage (loss-landscapes installed in this environment only: ``pip install loss-landscapes==3.0.6 --no-deps``):
    python benchmarks/bench_surface.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from analyses.refine import fill, refine_grid
from analyses.surface import surface_directions
from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.layout import flatten, param_layout, unflatten
from landscape.points import PointSet
from landscape.probe import ProbeCache
from landscape.workers import tune_cpu_allocator
from swa.data import DataSpec, load_splits
from swa.models import build_model


def _with(model: torch.nn.Module, w: torch.Tensor) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in unflatten(w.float(), param_layout(m)).items():
            m.get_parameter(name).copy_(t)
    return m.eval()


def theirs_plane(model, d, x, y, steps: int, record: bool = False):
    """loss-landscapes' planar_interpolation over the square ``w +- d1 +- d2``; the values, seconds, and (with
    ``record``) every point it visited."""
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    w = flatten(list(model.parameters())).double()
    start, one, two = _with(model, w - d[0] - d[1]), _with(model, w + d[0] - d[1]), _with(model, w - d[0] + d[1])
    metric = Loss(F.cross_entropy, x, y)
    seen = []
    if record:
        inner = metric

        def metric(wrapper):
            seen.append(torch.cat([p.detach().reshape(-1) for p in wrapper.get_module_parameters().parameters]))
            return inner(wrapper)
    t = time.perf_counter()
    with torch.no_grad():
        values = loss_landscapes.planar_interpolation(start, one, two, metric, steps=steps, deepcopy_model=True)
    return values, time.perf_counter() - t, seen


def theirs_random(model, x, y, steps: int) -> float:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    t = time.perf_counter()
    with torch.no_grad():
        loss_landscapes.random_plane(_with(model, flatten(list(model.parameters()))), Loss(F.cross_entropy, x, y),
                                     distance=1, steps=steps, normalization="filter", deepcopy_model=True)
    return time.perf_counter() - t


def ours(model, d, train, test, steps: int):
    w = flatten(list(model.parameters())).double()
    axis = torch.linspace(-1, 1, steps, dtype=torch.float64)
    coords = torch.cartesian_prod(axis, axis)
    t = time.perf_counter()
    eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(bn_batch_size=128), cache=ProbeCache())
    res = eng.evaluate(PointSet.affine(w, d, coords), splits=("train",))
    return res, time.perf_counter() - t, eng


def ours_refined(model, d, train, test, steps: int, tolerance: float):
    """The engine on the same grid, coarse first and refined where the loss bends (:mod:`analyses.refine`)."""
    w = flatten(list(model.parameters())).double()
    axis = torch.linspace(-1, 1, steps, dtype=torch.float64)
    points = PointSet.affine(w, d, torch.cartesian_prod(axis, axis))
    values, done = np.full((steps, steps), np.nan), np.zeros((steps, steps), dtype=bool)
    t = time.perf_counter()
    eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(bn_batch_size=128), cache=ProbeCache())

    def evaluate(want):
        idx = np.flatnonzero(want.ravel() & ~done.ravel())
        if idx.size:
            values.flat[idx] = eng.evaluate(points.subset(torch.as_tensor(idx)), splits=("train",)).loss["train"]
            done.flat[idx] = True
        return values, done

    _, _, chain = refine_grid(evaluate, steps, tolerance)
    return fill(values, chain), int(done.sum()), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=51)
    ap.add_argument("--tolerance", type=float, default=0.05, help="the refinement's tolerance (SurfaceConfig)")
    ap.add_argument("--run", help="also around the SWA solution of this run file, on its own data (a trained network: "
                                   "e.g. demo/run.h5 after swa-landscape demo)")
    args = ap.parse_args()
    tune_cpu_allocator()
    s = load_splits(DataSpec())
    train, test = (s.train_x, s.train_y), (s.test_x, s.test_y)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps}x{args.steps} grid, "
          f"{len(train[1])} training samples")
    rows = []
    cases = [(name, None) for name in ("convnet", "convnet_bn")] + ([("trained (--run, at SWA)", args.run)] if args.run
                                                                    else [])
    for name, run in cases:
        torch.manual_seed(0)
        if run is None:
            model = build_model(name, num_classes=10).eval()
        else:
            from swa.runs import load_dataset, load_model

            model, train, test = load_model(run, "swa"), load_dataset(run, "train"), load_dataset(run, "test")
        w = flatten(list(model.parameters()))
        g = torch.Generator().manual_seed(1)
        d = surface_directions(torch.randn(2, w.numel(), generator=g), w, param_layout(model), True, False)
        n = args.steps ** 2
        _, s_theirs, _ = theirs_plane(model, d, *train, args.steps)
        try:
            s_random = theirs_random(model, *train, args.steps)
        except ZeroDivisionError as e:  # its filter normalisation divides by a zero-initialised 1-D parameter's norm
            s_random, row_note = float("nan"), f"random_plane failed: ZeroDivisionError ({e})"
        else:
            row_note = ""
        res, s_ours, eng = ours(model, d, train, test, args.steps)
        filled, evaluated, s_refined = ours_refined(model, d, train, test, args.steps, args.tolerance)
        full = res.loss["train"].numpy().reshape(args.steps, args.steps)
        row = {"model": name, "theirs_plane": n / s_theirs, "theirs_random": n / s_random, "ours": n / s_ours,
               "choice": str(eng.explain().choice), "bn": eng.bn_names != [], "note": row_note,
               "refined_speedup": s_theirs / s_refined, "evaluated": evaluated,
               "refined_err": float(np.max(np.abs(np.log(filled) - np.log(full))))}
        if not row["bn"]:
            vals, _, seen = theirs_plane(model, d, *train, 9, record=True)
            pts = PointSet.explicit(torch.stack(seen).double())
            mine = Engine(model, {"train": train}, config=EngineConfig(dtype="float64")).evaluate(pts).loss["train"]
            # an odd column is visited backwards and stored front first: its values reversed are in visit order
            theirs_in_visit_order = np.concatenate([vals[i][::-1] if i % 2 else vals[i] for i in range(9)])
            row["max_rel_diff"] = float(np.max(np.abs(mine.numpy() - theirs_in_visit_order) / np.abs(mine.numpy())))
        rows.append(row)
    print("\n| model | BN | loss-landscapes planar_interpolation pts/s | loss-landscapes random_plane pts/s | "
          "engine pts/s | engine / planar_interpolation | engine / random_plane | max rel. difference (no BN) | "
          "engine's choice |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        bn = "yes: theirs stored statistics, ours recomputed per point" if r["bn"] else "no"
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
        print(f"| {r['model']} | {bn} | {r['theirs_plane']:.1f} | {r['theirs_random']:.1f} | {r['ours']:.1f} | "
              f"{r['ours'] / r['theirs_plane']:.2f}x | {r['ours'] / r['theirs_random']:.2f}x | {diff} | "
              f"{r['choice']} |")
    print("\n| model | refined: points evaluated | wall time against planar_interpolation's full grid | "
          "max abs. difference of log loss from the full grid |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['evaluated']} of {args.steps ** 2} | {r['refined_speedup']:.2f}x faster | "
              f"{r['refined_err']:.1e} |")
    for r in rows:
        if r["note"]:
            print(f"{r['model']}: {r['note']}")


if __name__ == "__main__":
    main()
