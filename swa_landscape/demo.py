"""``swa-landscape demo``: the whole pipeline on the embedded MNIST-1D data (train, analyze, figures, verdicts)."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from analyses.batch import analyze_all
from analyses.compare import compare
from landscape.errors import UserError, bounded, check_bounds
from landscape.files import default_results_path
from swa.config import TrainConfig
from swa.trainer import train

__all__ = ["DemoConfig", "demo", "COMMANDS"]


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings.

    The defaults are the configuration of the study in ``benchmarks/sweep_demo.py`` chosen for the demo
    (docs/findings.md): the paper's four findings held on seeds 0, 1 and 2. The conv net without BatchNorm on
    4000 MNIST-1D samples (3200 to train on), budget 40 epochs, SWA branch from epoch 30 for 20 epochs (the
    paper's 1.25 budget) with the cyclical schedule from 0.1 to 0.01, one cycle per epoch (each cycle's end is
    an FGE proposal).

    ``seeds`` runs are trained (seeds ``seed``, ``seed + 1``, ...): the first gets every analysis and the figures,
    the others the analyses the findings are judged by (:func:`analyses.catalog.judged`). The verdicts are judged
    over all of them (a t-interval needs two runs, the segment's signed-rank interval six), and the first run's
    within-run tests (McNemar's exact test on the paired test predictions, the signed-rank test over the shared
    ray directions) are printed apart from them. One run by default: three seeds take about twice as long and
    their intervals (two degrees of freedom) still leave most claims inconclusive, where the within-run tests
    of one run decide the accuracy and width findings.
    """

    epochs: int = bounded(40, ge=1)
    num_samples: int = bounded(4000, ge=10)
    seed: int = bounded(0, meaning="any integer seeds the training run")
    seeds: int = bounded(1, ge=1)
    grid: int = bounded(21, ge=2)
    directions: int = bounded(10, ge=1)
    ray_steps: int = bounded(30, ge=2)

    def __post_init__(self) -> None:
        check_bounds(self)

    def train_config(self, seed: int | None = None) -> TrainConfig:
        """The training settings of the demo's run with ``seed`` (default: the config's)."""
        return TrainConfig(model="convnet", dataset="mnist1d", num_samples=self.num_samples, epochs=self.epochs,
                           swa_epochs=max(1, self.epochs // 2), swa_schedule="cyclic", swa_lr=0.1, swa_lr_min=0.01,
                           swa_cycle=1.0, seed=self.seed if seed is None else seed)


def demo(config: DemoConfig, out: str | os.PathLike, progress: bool = True) -> Path:
    """Run the demo into directory ``out``: train, the paper's analyses, figures and the verdicts of its findings.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; the demo needs an output directory")
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run.h5"
    results = default_results_path(run)
    if results.exists():
        results.unlink()  # a new run: results of an older one would be refused
    print(f"[1/4] training ({config.epochs} epochs + SWA branch) -> {run}")
    train(config.train_config(), run, overwrite=True, progress=progress)
    print("[2/4] analyses -> " + str(results))
    rays = {"directions": config.directions, "steps": config.ray_steps, "seed": config.seed}  # each run its own draw
    analyze_all(run, results, progress=progress, settings={"rays": rays, "plane": {"grid": (config.grid, config.grid)}})
    print("[3/4] figures")
    from .report import make_figures  # here: matplotlib and plotly load only for the commands that draw

    index = make_figures(run, results, out)
    runs = [run]
    for seed in range(config.seed + 1, config.seed + config.seeds):
        runs.append(out / "seeds" / f"seed{seed}" / "run.h5")
        runs[-1].parent.mkdir(parents=True, exist_ok=True)
        print(f"[3/4] seed {seed}: training and the analyses the findings use -> {runs[-1]}")
        train(config.train_config(seed), runs[-1], overwrite=True, progress=progress, log=lambda s: None)
        default_results_path(runs[-1]).unlink(missing_ok=True)
        analyze_all(runs[-1], progress=progress, log=lambda s: None, settings={"rays": {**rays, "seed": seed}},
                    only_judged=True)
    c = compare(runs)
    print(f"[4/4] the paper's findings over {len(runs)} run(s) (swa-landscape compare):")
    print(c.format_table())  # its last lines: each finding's verdict, each claim's interval over the runs
    if len(runs) > 1:
        print(f"run 1 (seed {config.seed}) alone, {c.format_within()}")
    else:
        print("one run gives no interval over seeds, so the verdicts over runs stay inconclusive; the within-run tests "
              "above use this run's own test samples and ray directions ('--seeds 3' judges three seeds)")
    return index


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--out", default="swa-landscape-demo", help="output directory")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training budget in epochs (default: {d.epochs})")
    p.add_argument("--num-samples", type=int, default=d.num_samples,
                   help=f"MNIST-1D samples generated in all (default: {d.num_samples})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"training seed (default: {d.seed})")
    p.add_argument("--seeds", type=int, default=d.seeds,
                   help=f"runs to judge the findings over, seeds SEED, SEED+1, ... (default: {d.seeds}; a 95%% "
                        "interval needs at least 2)")
    p.add_argument("--grid", type=int, default=d.grid, help=f"plane grid points per side (default: {d.grid})")
    p.add_argument("--directions", type=int, default=d.directions,
                   help=f"random ray directions (default: {d.directions})")
    p.add_argument("--ray-steps", type=int, default=d.ray_steps, help=f"distances per ray (default: {d.ray_steps})")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_demo(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    config = DemoConfig(epochs=args.epochs, num_samples=args.num_samples, seed=args.seed, seeds=args.seeds, grid=args.grid,
                        directions=args.directions, ray_steps=args.ray_steps)
    index = demo(config, args.out, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; open {index}")


COMMANDS = {"demo": ("train, analyze and render on the embedded MNIST-1D data in one go", add_demo_arguments, run_demo)}
