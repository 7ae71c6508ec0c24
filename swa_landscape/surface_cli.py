"""``swa-landscape surface``: the classic loss surface around one checkpoint, with no training and no run file of yours.

The checkpoint (a state_dict, or a dict holding one under ``state_dict``; a DDP or Lightning prefix is removed and
said) is imported as a one-point run next to the results (:func:`swa.recorder.import_run`), the surface analysis
(:mod:`analyses.surface`) evaluates the grid around it, and the figures are written beside: everything in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from analyses.surface import SurfaceConfig, drawn
from landscape.config import EngineConfig
from landscape.errors import UserError

from .fields import add_config_arguments, add_dataset_arguments, add_objective_arguments, config_values, json_object

__all__ = ["COMMANDS", "surface_around_checkpoint"]

_ENGINE = ("bn_mode", "strategy", "memory_budget", "device", "dtype", "autocast", "guard")


def surface_around_checkpoint(out: str | Path, *, model: str, checkpoint: str, dataset: str, model_kwargs: dict,
                              dataset_kwargs: dict, config: SurfaceConfig, engine_config: EngineConfig,
                              weight_decay: float = 0.0, bn_batch_size: int = 128, progress: bool = True,
                              objective: str = "classification", objective_kwargs: dict | None = None) -> Path:
    """The surface around one checkpoint into the directory ``out``; returns the figure's PNG.

    Raises:
        UserError: A checkpoint that is missing, is no state_dict or does not fit the model; a factory that fails.
    """
    from analyses.surface import surface
    from figures.surface import surface_csv, surface_figure, surface_plotly
    from swa.recorder import import_run

    from .reading import read_results
    from .report import save_figure

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; surface needs an output directory")
    out.mkdir(parents=True, exist_ok=True)
    run = import_run(out / "checkpoint.h5", model=model, data=dataset, model_kwargs=model_kwargs,
                     data_kwargs=dataset_kwargs, sgd=checkpoint, weight_decay=weight_decay,
                     bn_batch_size=bn_batch_size, overwrite=True, objective=objective,
                     objective_kwargs=objective_kwargs)
    results = out / "checkpoint.landscape.h5"
    results.unlink(missing_ok=True)  # the run file is new: results of an older one would be refused
    cfg = dataclasses.replace(config, centers=("sgd",))
    engine = dataclasses.replace(engine_config, bn_batch_size=bn_batch_size)
    s = surface(run, results, cfg, engine, progress=progress)["sgd"]
    i = int(abs(s["x"]).argmin())
    print(f"surface around {Path(checkpoint).name}: {len(s['x'])}x{len(s['y'])} grid over +-{s['x'][-1]:.3g}; train "
          f"loss {s['train_loss'][i, i]:.4f} at the checkpoint, {s['train_loss'].max():.4f} at most")
    groups = {Path(checkpoint).name: drawn(read_results(results)["surface"]["sgd"])}
    save_figure(surface_figure(groups), out, "surface")
    surface_plotly(groups).write_html(out / "surface.html", include_plotlyjs=True, full_html=True)
    surface_csv(groups, out)
    return out / "surface.png"


def add_surface_arguments(p: argparse.ArgumentParser) -> None:
    """The ``surface`` command's flags."""
    p.add_argument("--model", required=True, help="package.module:function building the network (or a registry name)")
    p.add_argument("--model-kwargs", type=json_object, default={}, help="its keyword arguments as JSON")
    p.add_argument("--checkpoint", required=True,
                   help="state_dict file (or a dict with 'state_dict'; DDP's 'module.' and Lightning's 'model.' "
                        "prefixes are removed)")
    add_dataset_arguments(p)
    add_objective_arguments(p)
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 coefficient of the training objective, for the L2-regularised loss (default: 0)")
    p.add_argument("--batch-size", type=int, default=128, help="BN recomputation batch size (default: 128)")
    p.add_argument("--out", required=True, help="output directory (results file, figures)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_config_arguments(p.add_argument_group("surface"), SurfaceConfig, skip=("centers",))
    skip = tuple(f.name for f in dataclasses.fields(EngineConfig) if f.name not in _ENGINE)
    add_config_arguments(p.add_argument_group("engine"), EngineConfig, skip=skip)


def run_surface(args: argparse.Namespace) -> None:
    """Build the configs from the flags and draw the surface."""
    config = SurfaceConfig(**config_values(args, SurfaceConfig))
    engine = EngineConfig(**config_values(args, EngineConfig))
    png = surface_around_checkpoint(args.out, model=args.model, checkpoint=args.checkpoint, dataset=args.dataset,
                                    model_kwargs=args.model_kwargs, dataset_kwargs=args.dataset_kwargs,
                                    config=config, engine_config=engine, weight_decay=args.weight_decay,
                                    bn_batch_size=args.batch_size, progress=not args.no_progress,
                                    objective=args.objective, objective_kwargs=args.objective_kwargs)
    print(f"figure: {png}")


COMMANDS = {"surface": ("the classic loss surface around one checkpoint (no training, no run file)",
                        add_surface_arguments, run_surface)}
