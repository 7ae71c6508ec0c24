"""The study behind the demo default (issue 11): which small configuration shows the paper's four findings?

Every configuration below is trained with seeds 0, 1 and 2 and analysed as the demo does (raw and
filter-normalised rays, the segment, FGE; no plane, which no finding uses), then judged by
``swa-landscape compare``. Prints one markdown table: each configuration with the verdict of each
finding and the margins behind it, and writes every configuration's comparison CSV next to its runs.

Runs are kept under ``--out`` and reused (a finished run is not trained again), so the study can be
stopped and resumed. Two configurations train side by side at one thread each (``--jobs``).

Usage:
    python benchmarks/sweep_demo.py --out /tmp/sweep [--jobs 2] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CONFIGS: dict[str, dict] = {
    # name: TrainConfig fields over the demo's base (MNIST-1D, 40 epochs, cyclic SWA branch of 20 epochs)
    "convnet_bn-5000 (old default)": dict(model="convnet_bn", num_samples=5000),
    "convnet_bn-2000": dict(model="convnet_bn", num_samples=2000),
    "convnet-4000": dict(model="convnet", num_samples=4000),
    "mlp-4000": dict(model="mlp", num_samples=4000),
    "mlp_bn-4000": dict(model="mlp_bn", num_samples=4000),
    "mlp-4000 constant swa_lr 0.05": dict(model="mlp", num_samples=4000, swa_schedule="constant"),
    "mlp-4000 wd 0": dict(model="mlp", num_samples=4000, weight_decay=0.0),
    "mlp-4000 lr 0.1 swa_lr 0.1": dict(model="mlp", num_samples=4000, lr=0.1, swa_lr=0.1, swa_lr_min=0.01),
    # round 2: the conv net without BN came closest on width, the MLP on accuracy
    "convnet-2000": dict(model="convnet", num_samples=2000),
    "convnet-2000 swa_lr 0.1": dict(model="convnet", num_samples=2000, swa_lr=0.1, swa_lr_min=0.01),
    "convnet-4000 swa_lr 0.1": dict(model="convnet", num_samples=4000, swa_lr=0.1, swa_lr_min=0.01),
    "convnet-4000 SWA branch 40 epochs": dict(model="convnet", num_samples=4000, swa_epochs=40),
    "convnet-2000 constant swa_lr 0.05": dict(model="convnet", num_samples=2000, swa_schedule="constant"),
    "mlp-4000 SWA branch 40 epochs": dict(model="mlp", num_samples=4000, swa_epochs=40),
    "mlp-2000": dict(model="mlp", num_samples=2000),
    "convnet-4000 wd 1e-3": dict(model="convnet", num_samples=4000, weight_decay=1e-3),
    # round 3: neighbours of the one configuration where all four held (convnet-2000, constant SWA lr)
    "convnet-3000 constant swa_lr 0.05": dict(model="convnet", num_samples=3000, swa_schedule="constant"),
    "convnet-2000 constant swa_lr 0.08": dict(model="convnet", num_samples=2000, swa_schedule="constant", swa_lr=0.08),
    "convnet_bn-2000 constant swa_lr 0.05": dict(model="convnet_bn", num_samples=2000, swa_schedule="constant"),
    "convnet-4000 constant swa_lr 0.05": dict(model="convnet", num_samples=4000, swa_schedule="constant"),
}
SEEDS = (0, 1, 2)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_one(name: str, seed: int, out: str) -> tuple[str, int, float]:
    """Train one (configuration, seed) and run the analyses the findings need; returns its wall time."""
    import torch

    torch.set_num_threads(1)
    from analyses import FGEConfig, RaysConfig, SegmentConfig, fge, rays, segment
    from landscape.files import default_results_path
    from swa import train
    from swa_landscape import DemoConfig

    d = Path(out) / slug(name) / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    run, res = d / "run.h5", default_results_path(d / "run.h5")
    done = d / "done"
    if done.exists():
        return name, seed, 0.0
    t0 = time.perf_counter()
    base = DemoConfig(seed=seed)
    train(base.train_config().replace(**CONFIGS[name], seed=seed), run, overwrite=True, progress=False,
          log=lambda s: None)
    if res.exists():
        res.unlink()
    for fn in (False, True):
        rays(run, res, RaysConfig(base.directions, base.ray_steps, filter_normalize=fn), progress=False)
    segment(run, res, SegmentConfig(), progress=False)
    fge(run, res, FGEConfig(), progress=False)
    done.touch()
    return name, seed, time.perf_counter() - t0


def table(out: Path, names: list[str], full: bool = True) -> str:
    """The markdown table of every configuration's verdicts (``compare`` over its seeds); ``full``: all margins,
    else only the first of each verdict's margins."""
    from analyses.catalog import findings
    from analyses.compare import compare

    FINDINGS = [f for f in findings() if not f.optional]

    head = "| configuration | SWA - SGD acc (points) | " + " | ".join(f.title for f in FINDINGS) + " | all four |"
    lines = [head, "|" + "---|" * (len(FINDINGS) + 3)]
    for name in names:
        runs = sorted((out / slug(name)).glob("seed*/run.h5"))
        runs = [r for r in runs if (r.parent / "done").exists()]
        if not runs:
            continue
        c = compare(runs)
        c.write_csv(out / slug(name) / "compare.csv")
        acc = c.stat("acc_diff")
        cells = [f"{c.verdict(f.key).word}: " + "; ".join(m.describe(text=False) for m in c.verdict(f.key).claims[:None if full else 1])
                 for f in FINDINGS]
        lines.append(f"| {name} ({len(runs)} seeds) | {acc[0]:+.2f} ± {acc[1]:.2f} | " + " | ".join(cells)
                     + f" | {'**yes**' if c.all_hold else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="sweep-demo", help="directory of the runs (reused)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained side by side, one thread each")
    p.add_argument("--only", nargs="*", help="configuration names (default: all)")
    p.add_argument("--table-only", action="store_true", help="only judge the finished runs")
    p.add_argument("--short", action="store_true", help="only the first margin of each verdict")
    args = p.parse_args()
    names = args.only or list(CONFIGS)
    out = Path(args.out)
    if not args.table_only:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(args.jobs) as ex:
            futs = [ex.submit(run_one, n, s, str(out)) for n in names for s in SEEDS]
            for f in futs:
                n, s, dt = f.result()
                print(f"{n} seed {s}: {dt:.0f} s", flush=True)
    print(table(out, names, full=not args.short))


if __name__ == "__main__":
    main()
