"""Where a run's network and data come from when they are not the registry's: import paths, user objects, checks.

* ``package.module:function`` import paths for a model factory (returns an ``nn.Module``) or a data factory
  (returns ``(train, test)``); the paths and their keyword arguments are stored in the run file, so every
  command rebuilds both from the file alone.
* :func:`as_splits` turns what a user has (tensor pairs, datasets, DataLoaders, a :class:`~swa.data.TrainData`;
  batches as ``(inputs, targets)`` pairs with inputs a tensor, a tuple or a dict of tensors, or dict batches with
  their targets under ``labels``) into the evaluation tensors the analyses use.
* :func:`fingerprint` summarises a split (size, label counts, a hash of a fixed sample of inputs and labels);
  stored at training time, it lets an analysis refuse data that is not the run's with one line.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from landscape.errors import UserError
from landscape.structure import batch_size, map_tensors

from .spill import SPILL_BYTES, gather

__all__ = ["TARGET_KEYS", "as_pair", "is_import_path", "import_object", "call_factory", "as_splits", "fingerprint", "check_fingerprints", "check_model"]

_SAMPLE = 64  # rows of each split hashed into its fingerprint


def is_import_path(name: str) -> bool:
    """Whether ``name`` is a ``package.module:attribute`` import path rather than a registry name."""
    return ":" in name


def import_object(path: str, what: str) -> Any:
    """The object at ``package.module:attribute`` (the working directory is importable, as under ``python -m``).

    Raises:
        UserError: Malformed path, a module that cannot be imported, or a missing attribute.
    """
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise UserError(f"{what} {path!r} is not an import path of the form package.module:function")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure while importing the user's module is theirs to see
        raise UserError(f"{what} {path!r}: cannot import {module} ({type(e).__name__}: {e})") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{what} {path!r}: {module} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{what} {path!r} is a {type(obj).__name__}, not a function or class")
    return obj


def call_factory(path: str, kwargs: dict, what: str) -> Any:
    """Import and call a factory with ``kwargs``; whatever it raises becomes one :class:`UserError` naming it."""
    fn = import_object(path, what)
    try:
        return fn(**kwargs)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"{what} {path!r} raised {type(e).__name__}: {first}") from None


TARGET_KEYS = ("labels", "label", "targets", "target", "y")
"""Keys under which a dict batch holds its targets (the rest of the dict are the model's keyword inputs)."""


def as_pair(batch: Any, what: str = "a batch") -> tuple[Any, torch.Tensor]:
    """``(inputs, targets)`` of one batch: a pair (inputs a tensor, a tuple or a dict of tensors) or a dict batch."""
    if isinstance(batch, dict):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise UserError(f"{what} yields dict batches without targets; put them under one of "
                            f"{', '.join(TARGET_KEYS)} (the other keys are the model's inputs)")
        return {k: v for k, v in batch.items() if k != key}, torch.as_tensor(batch[key])
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and _all_tensors(batch[0]):
        return batch[0], torch.as_tensor(batch[1])
    raise UserError(f"{what} yields {type(batch).__name__} items; expected (inputs, targets) batches or dicts with "
                    f"targets under {TARGET_KEYS[0]!r}")


def _all_tensors(inputs: Any) -> bool:
    leaves = tree_leaves(inputs)
    return bool(leaves) and all(isinstance(t, torch.Tensor) for t in leaves)


def _tensors_of(source: Any, what: str, spill_bytes: int = SPILL_BYTES) -> tuple[Any, torch.Tensor]:
    """``(inputs, targets)`` of a pair, a map-style dataset or an iterable of batches, concatenated.

    Batches past ``spill_bytes`` in all are gathered on disk, memory-mapped (:func:`swa.spill.gather`).

    Inputs are a tensor ``[N, ...]`` or a tuple or dict of them; targets a tensor ``[N, ...]`` (integer targets as
    int64). Whether the targets fit the objective is the objective's check (the engine's first batch).
    """
    if isinstance(source, (tuple, list)) and len(source) == 2 and _all_tensors(source[0]) \
            and isinstance(source[1], torch.Tensor):
        x, y = source
    else:
        if isinstance(source, torch.utils.data.Dataset) and hasattr(source, "__getitem__") and hasattr(source, "__len__"):
            source = torch.utils.data.DataLoader(source, batch_size=512, shuffle=False)
        if not isinstance(source, Iterable) or isinstance(source, (dict, torch.Tensor)):
            raise UserError(f"{what} is a {type(source).__name__}; expected an (inputs, targets) pair of tensors, "
                            "a dataset or a DataLoader")
        x, y = gather((as_pair(b, what) for b in source), what, spill_bytes)
    x = map_tensors(lambda t: t.detach().cpu(), x)
    y = y.detach().cpu()
    n = batch_size(x)
    if y.dim() == 0 or y.shape[0] != n:
        raise UserError(f"{what}: {n} inputs but targets of shape {list(y.shape)}; expected one target per input")
    return x, (y if y.is_floating_point() else y.long())


def as_splits(data: Any, what: str = "data", spill_bytes: int = SPILL_BYTES) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (x, y), "test": (x, y)}`` in evaluation form (no shuffling, no augmentation) from what a user has.

    Args:
        data: A dict ``{"train": ..., "test": ...}`` or a pair ``(train, test)``, each an ``(inputs, targets)``
            tensor pair, a map-style dataset or a DataLoader; or a :class:`~swa.data.TrainData` (its
            evaluation batches).
        what: How to name it in errors.
        spill_bytes: A dataset or DataLoader past this size is gathered on disk, memory-mapped, instead of in
            memory (:mod:`swa.spill`); tensors are used as they are (a memory-mapped tensor stays mapped).

    Raises:
        UserError: Anything else.
    """
    if hasattr(data, "eval_batches"):
        parts = {s: data.eval_batches(s) for s in ("train", "test")}
    elif isinstance(data, dict) and set(data) >= {"train", "test"}:
        parts = {s: data[s] for s in ("train", "test")}
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not all(isinstance(t, torch.Tensor) for t in data):
        parts = dict(zip(("train", "test"), data))
    else:
        raise UserError(f"{what} is a {type(data).__name__}; expected (train, test) or {{'train': ..., 'test': ...}} "
                        "of tensor pairs, datasets or DataLoaders")
    return {s: _tensors_of(d, f"{what} ({s})", spill_bytes) for s, d in parts.items()}


def fingerprint(x: Any, y: torch.Tensor) -> dict:
    """Size, label counts and a SHA-1 of ``_SAMPLE`` evenly spaced rows.

    Every input tensor's rows as float32 (in the structure's order), the targets as int64 (class indices, tokens) or
    float64 (regression). Label counts for class-index targets ``[N]``; the target shape otherwise.
    """
    n = batch_size(x)
    idx = torch.from_numpy(np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).round().astype(np.int64)))
    h = hashlib.sha1()
    for t in tree_leaves(x):
        h.update(t[idx].detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    floating = y.is_floating_point()
    h.update(y[idx].detach().cpu().to(torch.float64 if floating else torch.int64).contiguous().numpy().tobytes())
    classes = y.dim() == 1 and not floating and bool((y >= 0).all())
    return {"n": int(n), "labels": torch.bincount(y.cpu().long()).tolist() if classes else list(y.shape[1:]),
            "sha1": h.hexdigest()}


def check_fingerprints(stored: dict | None, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], run: Any) -> None:
    """Refuse data whose fingerprint differs from the one stored with the run (runs without one pass).

    Raises:
        UserError: One line saying which split differs and how.
    """
    for split, want in (stored or {}).items():
        got = fingerprint(*splits[split])
        if got == want:
            continue
        if got["n"] != want["n"]:
            how = f"{got['n']} samples, the run was trained with {want['n']}"
        elif got["labels"] != want["labels"]:
            how = "other label counts"
        else:
            how = "other inputs or another order (pass the data unshuffled, in evaluation form)"
        raise UserError(f"the {split} data is not the data {run} was trained with: {how}")


def check_model(model: Any, what: str) -> nn.Module:
    """``model`` if it is an ``nn.Module``, else one clear error."""
    if not isinstance(model, nn.Module):
        raise UserError(f"{what} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
