"""The ``swa-landscape`` command: every subcommand's parser, and :func:`main`.

The packages form layers, lowest first; none imports a higher one, at module level or inside a function
(``tests/cli/test_layers.py`` reads every import):

* ``landscape``: weight-space points and the batched evaluation engine;
* ``swa``: training, schedules, run files (uses ``landscape``);
* ``figures``: drawing functions, arrays and small summaries in, figures out (uses none of the others);
* ``analyses``: the geometry analyses, their results files, ``compare`` (uses the three above);
* ``swa_landscape``: the command line, the report and the demo (uses them all).

Each ``*_cli`` module of this package builds configs from its flags and calls the library; this module assembles
their subcommands. Run it as ``swa-landscape`` or ``python -m swa_landscape`` (e.g. under ``torchrun``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from landscape.errors import UserError
from landscape.files import toolkit_version
from landscape.workers import tune_cpu_allocator

from . import analyze_cli, demo, figures_cli, surface_cli, train_cli

__all__ = ["COMMANDS", "Parser", "build_parser", "main"]


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run files, each with its results next to it (RUN.landscape.h5), or RUN=RESULTS")
    p.add_argument("--out", default="swa-landscape-compare",
                   help="directory of compare.csv and the report index.html (default: swa-landscape-compare)")


def run_compare(args: argparse.Namespace) -> None:
    from analyses.compare import compare

    from .compare_report import comparison_report  # here: matplotlib and plotly load only for the commands that draw

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; compare needs an output directory")
    c = compare([tuple(r.split("=", 1)) if "=" in r else r for r in args.runs])
    print(c.format_table())
    out.mkdir(parents=True, exist_ok=True)
    print(f"csv: {c.write_csv(out / 'compare.csv')}\nreport: {comparison_report(c, out)}")


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's error format: one line ``swa-landscape: error: ...`` and exit code 2."""

    def error(self, message: str):
        """One line ``swa-landscape: error: MESSAGE`` and exit code 2."""
        self.exit(2, f"swa-landscape: error: {message}\n")


COMMANDS = {
    **train_cli.COMMANDS,
    **analyze_cli.COMMANDS,
    **figures_cli.COMMANDS,
    "compare": ("the paper's findings over several runs (seeds or configurations): table, CSV, report",
                add_compare_arguments, run_compare),
    **surface_cli.COMMANDS,
    **demo.COMMANDS,
}
"""Subcommand name to ``(help, add_arguments(parser), run(args))``."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, one subparser per entry of :data:`COMMANDS`."""
    parser = Parser(prog="swa-landscape", description="Loss-landscape geometry around SWA.")
    parser.add_argument("--version", action="version", version=f"swa-landscape {toolkit_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(_run=run)
    return parser


def _notice(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (the engine's guard and vmap fall-backs say what they did)."""
    sys.stderr.write(f"swa-landscape: notice: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a :class:`UserError` becomes one line on stderr and exit code 2.

    The process-wide settings of a command are made here, once: glibc's allocator keeps freed memory for reuse
    (:func:`landscape.workers.tune_cpu_allocator`; a library user's engine leaves the process alone), and
    matplotlib draws to files (the Agg backend; importing the library changes no backend).
    """
    args = build_parser().parse_args(argv)
    tune_cpu_allocator()
    os.environ["MPLBACKEND"] = "Agg"  # read when matplotlib is first imported
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _notice
            args._run(args)
        sys.stdout.flush()  # a reader that closed the pipe is noticed here, not at interpreter exit
    except UserError as e:  # one write per line: ranks sharing a stderr pipe cannot interleave within it
        sys.stderr.write(f"swa-landscape: error: {e}\n")
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("swa-landscape: interrupted\n")
        sys.stderr.flush()
        return 130
    except BrokenPipeError:  # `swa-landscape info RUN | head -1`: the reader has all it wants; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141  # 128 + SIGPIPE, as Unix tools end
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0

