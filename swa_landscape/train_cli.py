"""``swa-landscape train`` and ``swa-landscape info``: build a config from the arguments and call the library.

:data:`COMMANDS` maps each subcommand to ``(help, add_arguments, run)``; the ``swa_landscape``
module assembles them with the other packages' commands into the one command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from swa.config import TrainConfig, load_toml

from .fields import add_config_arguments, add_dataset_arguments, add_objective_arguments, config_values, json_object

__all__ = ["COMMANDS", "train_config"]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with TrainConfig keys (top level or a [train] table)")
    p.add_argument("--out", required=True, help="run file (HDF5) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_config_arguments(p, TrainConfig)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, overridden by the TOML file, overridden by flags."""
    return TrainConfig(**{**(load_toml(args.config) if args.config else {}), **config_values(args, TrainConfig)})


def run_train(args: argparse.Namespace) -> None:
    from swa.trainer import resume, train

    if args.resume:
        resume(args.out, progress=not args.no_progress)
    else:
        train(train_config(args), args.out, overwrite=args.overwrite, progress=not args.no_progress)


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file")


def run_info(args: argparse.Namespace) -> None:
    from swa.runs import info

    print(info(args.run))


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="package.module:function building the network (or a registry name)")
    p.add_argument("--model-kwargs", type=json_object, default={}, help="its keyword arguments as JSON")
    add_dataset_arguments(p)
    p.add_argument("--sgd", help="state_dict file of w_SGD")
    p.add_argument("--swa", help="state_dict file of w_SWA (default: the average of --snapshots, BN recomputed)")
    p.add_argument("--snapshots", help="glob of the SWA branch's checkpoints (averaged; the FGE proposals), "
                                       "in natural order, e.g. 'ckpt/swa_*.pt'")
    p.add_argument("--sgd-snapshots", help="glob of the conventional run's checkpoints")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 coefficient of the training objective (default: 0)")
    add_objective_arguments(p)
    p.add_argument("--batch-size", type=int, default=128, help="BN recomputation batch size (default: 128)")
    p.add_argument("--out", required=True, help="run file (HDF5) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run file")


def run_import(args: argparse.Namespace) -> None:
    from swa.recorder import import_run

    path = import_run(args.out, model=args.model, data=args.dataset, model_kwargs=args.model_kwargs,
                      data_kwargs=args.dataset_kwargs, sgd=args.sgd, swa=args.swa, snapshots=args.snapshots,
                      sgd_snapshots=args.sgd_snapshots, weight_decay=args.weight_decay, bn_batch_size=args.batch_size,
                      overwrite=args.overwrite, objective=args.objective, objective_kwargs=args.objective_kwargs)
    print(f"run file: {path}")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "train": ("train SGD and SWA and log the trajectory to HDF5", add_train_arguments, run_train),
    "import": ("build a run file from state_dicts you already have (any network and data by import path)",
               add_import_arguments, run_import),
    "info": ("summarise a run file", add_info_arguments, run_info),
}
