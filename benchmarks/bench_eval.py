"""Engine vs anchor-style per-point loop on a 21x21 plane (not a timed test).

Both evaluate the same points with per-point BatchNorm recomputation, training
loss and test error. The anchor is what the field's scripts do: for each point,
load the weights into the model, ``update_bn`` over a DataLoader of batch 128,
then one evaluation pass over the training data and one over the test data.

The engine tunes glibc's allocator for the process on CPU (``tune_cpu_allocator``).
To keep the comparison honest the anchor is timed twice: before the tuning (as
users run it) and after it (same allocator as the engine). The last line's ratio
is against the *tuned* anchor, the stricter of the two.

Usage:
    python benchmarks/bench_eval.py                      # CPU, default MNIST-1D conv net with BN
    python benchmarks/bench_eval.py --model preresnet --depth 20 --cifar-shaped  # GPU target
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.layout import flatten
from landscape.points import PointSet
from landscape.reference import evaluate_batches, load_point
from landscape.result import flops_per_sample
from landscape.workers import tune_cpu_allocator
from swa.data import DataSpec, load_splits
from swa.models import build_model


def matmul_rate(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """Measured float32 dense matmul FLOP/s (best of 3)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(3):
        a @ b
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def anchor(model, points: torch.Tensor, train, test, device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per point: copy weights, update_bn over a DataLoader (batch 128), evaluate train loss and test error."""
    tl = DataLoader(TensorDataset(*train), batch_size=128)
    vl = DataLoader(TensorDataset(*test), batch_size=128)
    loss, err = [], []
    t = time.perf_counter()
    for w in points:
        m = load_point(model, w).to(device)
        update_bn(tl, m, device=device)
        loss.append(evaluate_batches(m, ((x.to(device), y.to(device)) for x, y in tl)).loss)
        err.append(1 - evaluate_batches(m, ((x.to(device), y.to(device)) for x, y in vl)).acc)
    sync(device)
    return torch.tensor(loss, dtype=torch.float64), torch.tensor(err, dtype=torch.float64), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="convnet_bn")
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--cifar-shaped", action="store_true", help="random CIFAR-shaped data (50k/10k, 3x32x32)")
    ap.add_argument("--grid", type=int, default=21)
    ap.add_argument("--anchor-points", type=int, default=None, help="time the anchor on the first n points only")
    ap.add_argument("--budget-gib", type=float, default=2.0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    if args.cifar_shaped:
        g = torch.Generator().manual_seed(0)
        train = (torch.randn(50000, 3, 32, 32, generator=g), torch.randint(0, 10, (50000,), generator=g))
        test = (torch.randn(10000, 3, 32, 32, generator=g), torch.randint(0, 10, (10000,), generator=g))
        kwargs = {"num_classes": 10}
    else:
        s = load_splits(DataSpec())
        train, test, kwargs = (s.train_x, s.train_y), (s.test_x, s.test_y), {}
    if args.depth:
        kwargs["depth"] = args.depth
    model = build_model(args.model, **kwargs)
    # a plane through three nearby points, as the plane analysis builds it
    w0 = flatten(list(model.parameters()))
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(2, w0.numel(), generator=g)
    basis = basis / basis.norm(dim=1, keepdim=True) * 0.05 * w0.norm()
    t = torch.linspace(-1, 1, args.grid)
    coords = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    points = PointSet.affine(w0, basis, coords)
    k_anchor = len(points) if args.anchor_points is None else args.anchor_points
    explicit = points.chunk(0, k_anchor)

    rate = matmul_rate(device)
    fps = flops_per_sample(model, train[0][:8])
    n_flop_point = fps * (2 * train[0].shape[0] + test[0].shape[0])
    print(f"device {device}, threads {torch.get_num_threads()}, model {args.model} {kwargs}, "
          f"{w0.numel()} parameters, {len(points)} points; anchor on {k_anchor}")
    print(f"measured float32 matmul rate: {rate / 1e9:.1f} GFLOP/s; model forward {fps / 1e6:.3f} MFLOP/sample")

    a_loss0, a_err0, a_time0 = (None, None, math.nan)
    if device.type == "cpu":
        a_loss0, a_err0, a_time0 = anchor(model, explicit, train, test, device)
        print(f"anchor (default allocator): {k_anchor / a_time0:.2f} points/s")
        tune_cpu_allocator()
    a_loss, a_err, a_time = anchor(model, explicit, train, test, device)
    print(f"anchor (tuned allocator):   {k_anchor / a_time:.2f} points/s")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = EngineConfig(memory_budget=int(args.budget_gib * (1 << 30)), device=str(device))
    t0 = time.perf_counter()
    eng = Engine(model, {"train": train, "test": test}, config=cfg)
    res = eng.evaluate(points, progress=True, desc="engine")
    sync(device)
    e_time = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    e_rate = len(points) / e_time
    diff = max((res.loss["train"][:k_anchor] - a_loss).abs().max().item(),
               (res.error("test")[:k_anchor] - a_err).abs().max().item())
    achieved = n_flop_point * e_rate
    print(f"engine: {e_rate:.2f} points/s (plan: {eng.explain().choice}; setup and probe included)")
    print(f"engine achieved {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / rate:.1f}% of the measured matmul rate")
    print(f"largest difference engine vs anchor (train loss, test error): {diff:.2e}")
    kind = "RSS of the whole process" if device.type == "cpu" else "torch.cuda.max_memory_allocated"
    print(f"peak memory: {peak / 2**20:.0f} MiB ({kind}); budget {args.budget_gib:.1f} GiB")
    if device.type == "cpu":
        print(f"ratio vs anchor with default allocator: {e_rate / (k_anchor / a_time0):.2f}")
    print(f"ratio: {e_rate / (k_anchor / a_time):.2f}")


if __name__ == "__main__":
    main()
