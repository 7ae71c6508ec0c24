"""``swa-landscape figures`` and ``swa-landscape demo``: build arguments, call the library."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["COMMANDS"]


def add_figures_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file")
    p.add_argument("--results", help="results file (default: RUN.landscape.h5 next to the run)")
    p.add_argument("--out", required=True, help="output directory")


def run_figures(args: argparse.Namespace) -> None:
    from landscape.errors import UserError

    from .report import make_figures

    if not Path(args.run).exists():
        raise UserError(f"{args.run}: no such file")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; figures need an output directory")
    if args.results and not Path(args.results).exists():
        raise UserError(f"--results {args.results}: no such file")
    results = args.results or str(Path(args.run).with_name(Path(args.run).name.removesuffix(".h5") + ".landscape.h5"))
    print(make_figures(args.run, results, args.out))


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    from swa.demo import DemoConfig

    d = DemoConfig()
    p.add_argument("--out", default="swa-landscape-demo", help="output directory")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training budget in epochs (default: {d.epochs})")
    p.add_argument("--num-samples", type=int, default=d.num_samples,
                   help=f"MNIST-1D samples generated in all (default: {d.num_samples})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"training seed (default: {d.seed})")
    p.add_argument("--grid", type=int, default=d.grid, help=f"plane grid points per side (default: {d.grid})")
    p.add_argument("--directions", type=int, default=d.directions,
                   help=f"random ray directions (default: {d.directions})")
    p.add_argument("--ray-steps", type=int, default=d.ray_steps, help=f"distances per ray (default: {d.ray_steps})")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_demo(args: argparse.Namespace) -> None:
    from swa.demo import DemoConfig, demo

    t0 = time.perf_counter()
    index = demo(DemoConfig(epochs=args.epochs, num_samples=args.num_samples, seed=args.seed, grid=args.grid,
                            directions=args.directions, ray_steps=args.ray_steps), args.out,
                 progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; open {index}")


COMMANDS = {
    "figures": ("render the figures and the HTML report of a run and its results", add_figures_arguments, run_figures),
    "demo": ("train, analyze and render on the embedded MNIST-1D data in one go", add_demo_arguments, run_demo),
}
