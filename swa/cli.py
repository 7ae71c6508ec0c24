"""The ``swa-landscape`` command: builds a config from its arguments and calls the library.

Subcommands register themselves in :data:`COMMANDS` as ``(add_arguments, run)`` pairs.
Any :class:`landscape.errors.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from enum import Enum

from landscape.errors import UserError

from .config import TrainConfig, load_toml

__all__ = ["main", "COMMANDS"]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _field_type(f: dataclasses.Field) -> Callable[[str], object]:
    ann = str(f.type)
    if "dict" in ann:
        return _json_object
    if ann.startswith("int"):
        return int
    if ann.startswith("float"):
        return float
    return str


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's error format: one line ``swa-landscape: error: ...`` and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"swa-landscape: error: {message}\n")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with TrainConfig keys (top level or a [train] table)")
    p.add_argument("--out", required=True, help="run file (HDF5) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    meaning = TrainConfig.help()
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = default.value if isinstance(default, Enum) else default
        flag = f"--{f.name.replace('_', '-')}"
        helptext = f"{meaning[f.name]} (default: {json.dumps(shown)})".replace("%", "%%")
        if str(f.type).startswith("bool"):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=helptext)
        else:
            p.add_argument(flag, dest=f.name, type=_field_type(f), default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=helptext)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, overridden by the TOML file, overridden by flags."""
    values = load_toml(args.config) if args.config else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig(**values)


def run_train(args: argparse.Namespace) -> None:
    from .trainer import resume, train

    if args.resume:
        resume(args.out, progress=not args.no_progress)
    else:
        train(train_config(args), args.out, overwrite=args.overwrite, progress=not args.no_progress)


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file")


def run_info(args: argparse.Namespace) -> None:
    from .runs import info

    print(info(args.run))


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "train": ("train SGD and SWA and log the trajectory to HDF5", add_train_arguments, run_train),
    "info": ("summarise a run file", add_info_arguments, run_info),
}


def _register_optional() -> None:
    """Subcommands of the other packages, when present."""
    import importlib

    for mod in ("analyses.cli", "figures.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        COMMANDS.update(m.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    _register_optional()
    parser = Parser(prog="swa-landscape", description="Loss-landscape geometry around SWA.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args._run(args)
    except UserError as e:
        print(f"swa-landscape: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("swa-landscape: interrupted", file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
