"""Overhead of SWA averaging + trajectory logging on the default MNIST-1D run (not a timed test).

Times ``swa.train`` (per-epoch snapshots, checkpoints, averaging, BN recomputation,
HDF5 writes) against the same run without them: the same model, data, optimizer,
schedules, fork at the SWA start and per-epoch test evaluation, written as a plain
loop here. Runs alternate, best of ``--repeats`` each. Last line: ``ratio: <full / plain>``.

Usage:
    python benchmarks/bench_overhead.py [--epochs 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from landscape.config import resolve_device
from landscape.reference import evaluate_batches
from swa import TrainConfig, train
from swa.data import DataSpec, builtin_data
from swa.models import build_model
from swa.schedules import conventional_lr, cyclic_lr


def plain_run(cfg: TrainConfig) -> float:
    """The same training without averaging, logging or checkpoints; returns seconds."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    data = builtin_data(DataSpec(cfg.dataset, cfg.data_dir, cfg.num_samples), cfg.batch_size, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=10, **cfg.model_kwargs).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    nb, start = data.num_batches, cfg.swa_start_epoch
    cycle = max(1, round(cfg.swa_cycle * nb))
    fork = None

    def epoch(lr_fn):
        model.train()
        for j, (x, y) in enumerate(data.train(gen)):
            for g in opt.param_groups:
                g["lr"] = lr_fn(j)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        evaluate_batches(model, data.eval_batches("test"))

    for e in range(cfg.epochs):
        if e == start:
            fork = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
        epoch(lambda j, e=e: conventional_lr(e + j / nb, cfg.epochs, cfg.lr))
    if fork is None:
        fork = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
    model.load_state_dict(fork[0])
    opt.load_state_dict(fork[1])
    for e in range(cfg.swa_length):
        epoch(lambda j, e=e: cyclic_lr(e * nb + j + 1, cycle, cfg.swa_lr, cfg.swa_lr_min))
    return time.perf_counter() - t0


def full_run(cfg: TrainConfig, tmp: Path) -> float:
    t0 = time.perf_counter()
    train(cfg, tmp / "run.h5", overwrite=True, progress=False, log=lambda s: None)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from swa_landscape import DemoConfig

    cfg = DemoConfig(epochs=args.epochs).train_config()  # the demo's default run
    plain, full = [], []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeats):
            plain.append(plain_run(cfg))
            full.append(full_run(cfg, Path(d)))
            print(f"plain {plain[-1]:.2f} s   with averaging + logging {full[-1]:.2f} s")
        size = (Path(d) / "run.h5").stat().st_size
    p, f = min(plain), min(full)
    print(f"{cfg.epochs} + {cfg.swa_length} epochs, per-epoch snapshots; run file {size / 2**20:.1f} MiB")
    print(f"best of {args.repeats}: plain {p:.2f} s, full {f:.2f} s, overhead {100 * (f / p - 1):.1f}%")
    print(f"ratio: {f / p:.3f}")


if __name__ == "__main__":
    main()
