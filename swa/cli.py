"""``swa-landscape train`` and ``swa-landscape info``: build a config from the arguments and call the library.

:data:`COMMANDS` maps each subcommand to ``(help, add_arguments, run)``; the ``swa_landscape``
module assembles them with the other packages' commands into the one command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from enum import Enum

from .config import TrainConfig, load_toml

__all__ = ["COMMANDS", "train_config"]


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
