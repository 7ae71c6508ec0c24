"""``swa-landscape figures``: build arguments, call the library."""

from __future__ import annotations

import argparse
from pathlib import Path

from landscape.errors import UserError
from landscape.files import default_results_path

__all__ = ["COMMANDS"]


def add_figures_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file")
    p.add_argument("--results", help="results file (default: RUN.landscape.h5 next to the run)")
    p.add_argument("--out", required=True, help="output directory")


def run_figures(args: argparse.Namespace) -> None:
    from .report import make_figures

    if not Path(args.run).exists():
        raise UserError(f"{args.run}: no such file")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; figures need an output directory")
    if args.results and not Path(args.results).exists():
        raise UserError(f"--results {args.results}: no such file")
    results = args.results or str(default_results_path(args.run))
    print(make_figures(args.run, results, args.out))


COMMANDS = {
    "figures": ("render the figures and the HTML report of a run and its results", add_figures_arguments, run_figures),
}
