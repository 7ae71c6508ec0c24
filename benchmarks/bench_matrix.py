"""Benchmark matrix: the engine's automatic choice against the loops a user would write (not a timed test).

For each registry model, a 2-D grid of points around the initial weights is evaluated
(train loss and test error at every point, BN recomputed per point for BN models):

(a) anchor loop: copy the point into the model, ``update_bn`` over a DataLoader of
    batch 128, evaluation passes over DataLoaders of batch 128 (what the field's scripts do);
(b) obvious loop: ``torch.no_grad()``, ``vector_to_parameters``, the whole split per
    forward (``update_bn`` over the 128-sample batches first for BN models);
(c) the engine with its automatic choice (construction, guard and probe included);
(d) efficiency: the engine's FLOP rate (matmul/conv FLOPs it must do: forwards over the
    training data twice for BN models, once otherwise, plus the test data) divided by the
    network's own best eval-forward FLOP rate measured here at several batch sizes.

All rows run in one process; ratios are taken between numbers of the same run.

Usage:
    python benchmarks/bench_matrix.py                     # the five models of docs/performance.md's table
    python benchmarks/bench_matrix.py --models mlp --grid 21 --explain
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn.utils import vector_to_parameters
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset

from landscape.bn import has_bn
from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.layout import flatten
from landscape.points import PointSet
from landscape.probe import ProbeCache
from landscape.reference import evaluate_batches, load_point
from landscape.result import flops_per_sample
from landscape.workers import tune_cpu_allocator
from swa.data import DataSpec, load_splits
from swa.models import build_model

MODELS = {
    "mlp": ("mnist1d", {}),
    "mlp_bn": ("mnist1d", {}),
    "convnet": ("mnist1d", {}),
    "convnet_bn": ("mnist1d", {}),
    "preresnet": ("cifar", {"depth": 20, "width": 0.5}),
}


def grid_points(model: torch.nn.Module, n: int) -> PointSet:
    """An n x n plane through the model's weights, spanning 5% of ||w|| each way (as the plane analysis builds it)."""
    w0 = flatten(list(model.parameters()))
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(2, w0.numel(), generator=g)
    basis = basis / basis.norm(dim=1, keepdim=True) * 0.05 * w0.norm()
    t = torch.linspace(-1, 1, n)
    return PointSet.affine(w0, basis, torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2))


def anchor(model, pts, train, test) -> float:
    """(a): seconds per point."""
    tl, vl = DataLoader(TensorDataset(*train), batch_size=128), DataLoader(TensorDataset(*test), batch_size=128)
    t = time.perf_counter()
    for w in pts:
        m = load_point(model, w)
        if has_bn(m):
            update_bn(tl, m)
        evaluate_batches(m, tl)
        evaluate_batches(m, vl)
    return (time.perf_counter() - t) / len(pts)


@torch.no_grad()
def obvious(model, pts, train, test) -> float:
    """(b): seconds per point."""
    m = load_point(model, pts[0])
    bn = has_bn(m)
    batches = [train[0][i:i + 128] for i in range(0, train[0].shape[0], 128)]
    t = time.perf_counter()
    for w in pts:
        vector_to_parameters(w, m.parameters())
        if bn:
            update_bn(batches, m)
        m.eval()
        torch.nn.functional.cross_entropy(m(train[0]), train[1])
        (m(test[0]).argmax(1) != test[1]).float().mean()
    return (time.perf_counter() - t) / len(pts)


@torch.no_grad()
def best_forward_rate(model, x, fps: float) -> tuple[float, int]:
    """The network's best eval-forward FLOP rate over batch sizes (best of 3 each) and that batch size."""
    m = load_point(model, flatten(list(model.parameters()))).eval()
    best = (0.0, 0)
    for bs in (128, 512, 2048, x.shape[0]):
        xb = x[:bs]
        m(xb)
        for _ in range(3):
            reps = max(1, int(2e9 // max(fps * bs, 1)))  # about 2 GFLOP per timing
            t = time.perf_counter()
            for _ in range(reps):
                m(xb)
            best = max(best, (fps * bs * reps / (time.perf_counter() - t), bs))
    return best


def _lower(model, train, test, pts, full, mode: str) -> tuple:
    """The engine with autocast or a compiled pass on the same points: its rate (whole evaluation, and without the
    one-off check and compile cost), that cost, and the largest deviations from the float32 eager results."""
    settings = {"compile": mode.split(":", 1)[1]} if mode.startswith("compile:") else {"autocast": mode}
    t = time.perf_counter()
    eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(**settings), cache=ProbeCache())
    res = eng.evaluate(pts)
    seconds = time.perf_counter() - t
    report = eng.precision_report if "autocast" in settings else eng.compile_report
    once = report.seconds if report is not None else 0.0
    loss_dev = float(((res.loss["train"] - full.loss["train"]).abs() / full.loss["train"].abs()).max())
    err_dev = float((res.error("test") - full.error("test")).abs().max())
    return len(pts) / seconds, len(pts) / max(seconds - once, 1e-9), once, loss_dev, err_dev, str(report)


def data_for(kind: str, n_train: int, n_test: int):
    if kind == "mnist1d":
        s = load_splits(DataSpec())
        return (s.train_x, s.train_y), (s.test_x, s.test_y), {}
    g = torch.Generator().manual_seed(0)
    return ((torch.randn(n_train, 3, 32, 32, generator=g), torch.randint(0, 10, (n_train,), generator=g)),
            (torch.randn(n_test, 3, 32, 32, generator=g), torch.randint(0, 10, (n_test,), generator=g)),
            {"num_classes": 10})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--grid", type=int, default=21, help="grid side for the MNIST-1D models")
    ap.add_argument("--cifar-grid", type=int, default=6, help="grid side for the CIFAR-shaped model")
    ap.add_argument("--cifar-train", type=int, default=2000, help="CIFAR-shaped random training images")
    ap.add_argument("--cifar-test", type=int, default=500, help="CIFAR-shaped random test images")
    ap.add_argument("--loop-points", type=int, default=60, help="points timed for (a) and (b) on MNIST-1D")
    ap.add_argument("--cifar-loop-points", type=int, default=6, help="points timed for (a) and (b) on CIFAR-shaped data")
    ap.add_argument("--explain", action="store_true", help="print the engine's candidates and choice per model")
    ap.add_argument("--lower", nargs="*", default=["bfloat16"], metavar="MODE",
                    help="also run the engine with EngineConfig(autocast=MODE) and/or compile=BACKEND "
                         "(compile:inductor), against float32 eager in this process (default: bfloat16; none: skip)")
    args = ap.parse_args()
    tune_cpu_allocator()  # the engine sets it for the process; the loops run with the same allocator
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows, lower = [], []
    for name in args.models:
        kind, kw = MODELS[name]
        train, test, extra = data_for(kind, args.cifar_train, args.cifar_test)
        torch.manual_seed(0)
        model = build_model(name, **kw, **extra)
        pts = grid_points(model, args.grid if kind == "mnist1d" else args.cifar_grid)
        few = pts.chunk(0, min(args.loop_points if kind == "mnist1d" else args.cifar_loop_points, len(pts)))
        s_a = anchor(model, few, train, test)
        s_b = obvious(model, few, train, test)
        t = time.perf_counter()
        eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(), cache=ProbeCache())
        full = eng.evaluate(pts)
        s_c = (time.perf_counter() - t) / len(pts)
        for mode in args.lower:
            lower.append((name, mode, 1 / s_c, *_lower(model, train, test, pts, full, mode)))
        guard = eng.guard_report.reference_seconds if eng.guard_report is not None else 0.0
        fps = flops_per_sample(model, train[0][:8])
        flop_point = fps * ((2 if has_bn(model) else 1) * train[0].shape[0] + test[0].shape[0])
        peak, peak_bs = best_forward_rate(model, train[0], fps)
        eff = flop_point / s_c / peak
        rows.append((name, 1 / s_a, 1 / s_b, 1 / s_c, s_a / s_c, s_b / s_c, eff, peak / 1e9, peak_bs,
                     str(eng.explain().choice), guard, guard / (s_c * len(pts))))
        if args.explain:
            print(f"\n{name}:\n{eng.explain()}")
    head = ("model", "(a) anchor pts/s", "(b) obvious pts/s", "(c) engine pts/s", "(c)/(a)", "(c)/(b)",
            "(d) efficiency", "best fwd GFLOP/s", "at batch", "engine's choice", "guard's reference s (share of (c))")
    print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.2f}x | {r[5]:.2f}x | {100 * r[6]:.0f}% | "
              f"{r[7]:.1f} | {r[8]} | {r[9]} | {r[10]:.2f} ({100 * r[11]:.1f}%) |")
    if lower:
        head = ("model", "mode", "float32 eager pts/s", "pts/s", "ratio", "pts/s without the one-off cost",
                "one-off s (check, compile)", "max rel. train-loss deviation", "max test-error deviation (points)",
                "engine's own check")
        print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        for r in lower:
            print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[3] / r[2]:.2f}x | {r[4]:.1f} | {r[5]:.1f} | "
                  f"{r[6]:.1e} | {100 * r[7]:.2f} | {r[8]} |")


if __name__ == "__main__":
    main()
