"""What a training run is built from.

The network (the registry's or the user's), the data, the device, and the run file's root attributes.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from landscape.config import resolve_device
from landscape.errors import UserError
from landscape.objective import Objective, objective_from
from landscape.ranks import rank, world
from landscape.reference import evaluate_batches
from landscape.structure import map_tensors

from .checkpoints import load_into
from .config import TrainConfig
from .data import DataSpec, TrainData, builtin_data
from .models import build_model
from .schema import run_attributes
from .sources import as_splits, fingerprint, is_import_path

__all__ = ["build_run", "check_objective", "load_init", "run_file_attributes"]


def run_file_attributes(cfg: TrainConfig, model: nn.Module, model_spec: dict, data: TrainData) -> dict[str, str]:
    """The run file's root attributes, with the fingerprint of the data in evaluation form."""
    splits = as_splits(data)  # the data in evaluation form: its fingerprint lets analyses refuse other data
    return run_attributes(cfg.to_dict(), model, model_spec, data.spec,
                          {s: fingerprint(*xy) for s, xy in splits.items()})


def build_run(cfg: TrainConfig, model: nn.Module | None, data: TrainData | None
           ) -> tuple[nn.Module, dict, TrainData, torch.device]:
    """The network on its device, how to rebuild it, the data and the device of a run (validated settings).

    Args:
        cfg: The settings.
        model: A user network (default: ``cfg.model`` from the registry).
        data: User data (default: the built-in ``cfg.dataset``).
    """
    cfg.validate()
    objective = objective_from(cfg.objective, cfg.objective_kwargs)  # a bad import path: one line, nothing written
    device = resolve_device(cfg.device)
    if data is None:
        data = builtin_data(DataSpec(cfg.dataset, cfg.data_dir, cfg.num_samples, cfg.data_seed, cfg.dataset_kwargs,
                                     cfg.test_samples),
                            cfg.batch_size, device, rank(), world())
    torch.manual_seed(cfg.seed)
    if model is None:
        kwargs = dict(cfg.model_kwargs)
        if "num_classes" in data.spec and not is_import_path(cfg.model):  # a factory's signature is its own
            kwargs.setdefault("num_classes", data.spec["num_classes"])
        try:
            model = build_model(cfg.model, **kwargs)
        except UserError:
            raise
        except (TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"model {cfg.model!r} rejects model_kwargs {json.dumps(kwargs)}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        spec = {"name": cfg.model, "kwargs": kwargs}
    else:
        spec = {"name": None, "class": f"{type(model).__module__}.{type(model).__qualname__}", "kwargs": {}}
    model = model.to(device)
    check_objective(model, data, objective, device)
    return model, spec, data, device


def check_objective(model: nn.Module, data: TrainData, objective: Objective, device: torch.device) -> None:
    """Refuse, before anything is written, data or outputs the objective cannot read: one batch of 8 samples.

    The random state is left as it was (a DataLoader draws a seed when iterated), so training is unchanged.

    Raises:
        UserError: Targets of the wrong shape, an output nothing reads, a loss that is not per sample.
    """
    state = torch.get_rng_state()
    try:
        x, y = next(iter(data.eval_batches("train")))
        evaluate_batches(model, [(map_tensors(lambda t: t[:8].to(device), x), y[:8].to(device))], objective)
    except StopIteration:
        raise UserError("the training data is empty") from None
    finally:
        torch.set_rng_state(state)


def load_init(model: nn.Module, path: str, device: torch.device) -> None:
    """Load a pre-trained checkpoint into ``model`` (:func:`swa.checkpoints.load_into`) or raise one UserError."""
    load_into(model, path, notice=True, label=f"--init {path}", device=device)
