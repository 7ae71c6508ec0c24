"""Rebuild things from a run file alone: the model at a solution or snapshot, the data, a summary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape.errors import UserError
from landscape.layout import buffer_layout, param_layout
from landscape.objective import Objective, objective_from
from landscape.points import PointSet, segment_points
from landscape.reference import load_point

from .data import DataSpec, load_splits
from .models import build_model
from .schema import SOLUTIONS
from .sources import as_splits, check_fingerprints
from .trajectory import Trajectory

__all__ = ["build_run_model", "check_layout", "load_model", "load_dataset", "run_objective", "run_splits", "parse_point", "check_points", "point",
           "point_set", "snapshot_points", "info"]


def check_layout(model: nn.Module, t: Trajectory, what: str = "the model") -> None:
    """Refuse a network whose parameters or buffers (names and shapes) differ from those stored in the run."""
    for kind, mine, stored in (("parameter", param_layout(model), t.param_layout),
                               ("buffer", buffer_layout(model), t.buffer_layout)):
        if mine.names != stored.names or mine.shapes != stored.shapes:
            diff = next((f"{a}{list(sa)} vs {b}{list(sb)}" for a, sa, b, sb in zip(mine.names, mine.shapes,
                         stored.names, stored.shapes) if (a, sa) != (b, sb)), f"{len(mine.names)} vs "
                        f"{len(stored.names)} tensors")
            raise UserError(f"{what} does not match the {kind} layout stored in {t.path} (first difference: {diff})")


def build_run_model(t: Trajectory, model: nn.Module | None = None) -> nn.Module:
    """The run's architecture with fresh weights (or ``model``, checked against the stored layout).

    Registry networks and those of an import path (``package.module:function``, stored with their keyword
    arguments) are rebuilt from the file alone; a network passed to the trainer as an object must be passed
    again.

    Raises:
        UserError: A user-model run without ``model``, or a model whose layout differs.
    """
    spec = t.model_spec
    if model is None:
        if spec.get("name") is None:
            raise UserError(f"{t.path} was trained with a user model ({spec.get('class')}); pass model=... in Python, "
                            "or train with --model package.module:function so that the file can rebuild it")
        model = build_model(spec["name"], **spec["kwargs"])
    check_layout(model, t)
    return model


def run_objective(t: Trajectory) -> Objective:
    """The objective the run was trained with (stored in its config; runs from before objectives: classification).

    Raises:
        UserError: A user objective whose import path no longer imports (one line).
    """
    cfg = t.config
    return objective_from(cfg.get("objective", "classification"), cfg.get("objective_kwargs") or {})


def run_splits(t: Trajectory, data=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The run's evaluation data.

    ``data`` (checked against the fingerprint stored at training time) or, when None, the data set the file
    names (built-in, or a data factory's import path).

    Args:
        t: The open run.
        data: What :func:`swa.sources.as_splits` takes, or None.

    Raises:
        UserError: User data that the file cannot rebuild and was not passed, or data that is not the run's.
    """
    splits = {s: load_dataset(t, s) for s in ("train", "test")} if data is None else as_splits(data)
    check_fingerprints(t.dataset_spec.get("fingerprint"), splits, t.path)  # also a factory's data may change
    return splits


def parse_point(name: str | int, what: str = "point") -> tuple[str, float | int | None]:
    """The one reading of a point's name.

    ``("solution", None)`` for ``sgd``/``swa``, ``("snapshot", i)`` for a snapshot index, ``("segment", t)`` for
    ``t=T`` on the SGD-SWA segment (t = 0 SWA, t = 1 SGD).

    Args:
        name: The name (an int is a snapshot index).
        what: What the point is for, in the error message (e.g. ``"hessian point"``).

    Raises:
        UserError: Any other name.
    """
    if isinstance(name, (int, np.integer)):
        return "snapshot", int(name)
    if name in ("sgd", "swa"):
        return "solution", None
    if name.startswith("t="):
        try:
            return "segment", float(name[2:])
        except ValueError:
            pass
    elif name.lstrip("-").isdigit():
        return "snapshot", int(name)
    raise UserError(f"{what} {name!r}: use sgd, swa, a snapshot index or t=T on the SGD-SWA segment")


def check_points(names: tuple[str, ...], analysis: str, noun: str = "point") -> None:
    """Refuse an empty list of point names or a name :func:`parse_point` cannot read (for an analysis' config).

    Raises:
        UserError: ``"<analysis> needs at least one <noun>"``, or :func:`parse_point`'s line for a bad name.
    """
    if not names:
        raise UserError(f"{analysis} needs at least one {noun}")
    for name in names:
        parse_point(name, f"{analysis} {noun}")


def point(t: Trajectory, which: str | int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights [P], buffers [Q])`` of ``"sgd"``, ``"swa"`` or a snapshot index.

    Raises:
        UserError: Another name (a segment point is no stored point: see :func:`point_set`).
    """
    kind, arg = parse_point(which)
    if kind == "snapshot":
        return t.weights(arg), t.buffers(arg)
    if kind == "solution":
        return t.solution(which)
    raise UserError(f"{which!r} is not a stored point: use sgd, swa or a snapshot index")


def point_set(t: Trajectory, name: str | int) -> PointSet:
    """Any named point (:func:`parse_point`) as a one-point set carrying the buffers the BN modes need."""
    kind, arg = parse_point(name)
    if kind == "segment":
        return segment_points(t.solution("swa"), t.solution("sgd"), torch.tensor([arg]))[0]
    w, b = point(t, name)
    return PointSet.explicit(w[None], b[None])


def snapshot_points(run: str | os.PathLike, indices: list[int] | np.ndarray) -> PointSet:
    """Snapshots of a run file as explicit points ``[K, P]`` carrying their own buffers ``[K, Q]``.

    Raises:
        UserError: An index out of range.
    """
    with Trajectory(run) as t:
        return PointSet.explicit(t.weights(indices), t.buffers(indices))


def load_model(run: str | os.PathLike, which: str | int = "swa", model: nn.Module | None = None) -> nn.Module:
    """The network of a run with the weights and buffers of ``which``, in eval mode.

    Args:
        run: Run file.
        which: ``"sgd"``, ``"swa"`` or a snapshot index.
        model: For runs of a user model: an instance of that model.
    """
    with Trajectory(run) as t:
        m = build_run_model(t, model)
        w, b = point(t, which)
    return load_point(m, w, b).eval()


def load_dataset(run: str | os.PathLike | Trajectory, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of ``"train"`` or ``"test"`` exactly as the trainer evaluates them (no augmentation).

    Args:
        run: Run file, or an open :class:`Trajectory` (not opened again).
        split: ``"train"`` or ``"test"``.
    """
    if isinstance(run, Trajectory):
        d = run.dataset_spec
    else:
        with Trajectory(run) as t:
            d = t.dataset_spec
    if d.get("name") in (None, "custom"):
        path = run.path if isinstance(run, Trajectory) else run
        raise UserError(f"{path} was trained on user data; pass data=... in Python, or train with "
                        "--dataset package.module:function so that the file can rebuild it")
    spec = DataSpec(**{k: d[k] for k in ("name", "data_dir", "num_samples", "data_seed", "test_samples") if k in d},
                    kwargs=d.get("kwargs", {}))
    return load_splits(spec).split(split)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def info(run: str | os.PathLike) -> str:
    """A readable multi-line summary of a run file."""
    with Trajectory(run) as t:
        c, m, d, tc = t.config, t.model_spec, t.dataset_spec, t.train_config()
        branch, captured = t.meta("branch"), t.meta("captured")
        lines = [
            f"run file     {Path(run)} ({_size(t.file_size())}), status: {t.status}" + (f" ({t.message})" if t.message else ""),
            f"model        {m.get('name') or m.get('class')} {m.get('kwargs', {})}; "
            f"{t.param_layout.size} parameters, {t.buffer_layout.size} buffer entries",
            f"dataset      {d.get('name')}" + (f" from {d['data_dir']}" if d.get("data_dir") else "")
            + (f" (data_seed {d['data_seed']}, {d['num_samples']} samples"
               + (f", {d['test_samples']} test)" if d.get("test_samples") else ")") if d.get("name") == "mnist1d" else ""),
            f"optimizer    {c['optimizer']} lr {c['lr']} momentum {c['momentum']} weight decay {c['weight_decay']}, "
            f"batch {c['batch_size']}, seed {c['seed']}",
            f"schedule     budget {c['epochs']} epochs; SWA from epoch {tc.swa_start_epoch}"
            f" for {tc.swa_length} epochs, "
            f"{c['swa_schedule']} lr {c['swa_lr']}" + (f"->{c['swa_lr_min']}" if c["swa_schedule"] == "cyclic" else "")
            + f", cycle {c['swa_cycle']} epochs, {c['average']} average, BN weighting {c['bn_weighting']}"
            + (f"; init {c['init']}" if c.get("init") else ""),
            f"snapshots    {t.n} total: {int((branch == 'sgd').sum())} sgd, {int((branch == 'swa').sum())} swa, "
            f"{int(captured.sum())} captured; dtype {t._f['snapshots/weights'].dtype}",
        ]
        for name in SOLUTIONS:  # the controls (train --controls) where trained
            if t.has_solution(name):
                extra = f", {int(t.solution_scalar(name, 'n_averaged'))} models averaged" if name == "swa" else ""
                lines.append(
                    f"{name:<12} test acc {t.solution_scalar(name, 'test_acc'):.4f} loss {t.solution_scalar(name, 'test_loss'):.4f}; "
                    f"train acc {t.solution_scalar(name, 'train_acc'):.4f} loss {t.solution_scalar(name, 'train_loss'):.4f}{extra}"
                )
            else:
                lines.append(f"{name:<12} not written yet")
    return "\n".join(lines)
