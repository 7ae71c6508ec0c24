"""Reading the checkpoints researchers already have into a network: state_dicts, wrapped or in ``.safetensors``.

A file is a ``state_dict`` saved with ``torch.save``, a checkpoint dict holding one under ``"state_dict"`` (as
Lightning's ``.ckpt`` does), or a ``.safetensors`` file (needs the optional ``safetensors`` package). Keys under
a wrapper's prefix (DDP's ``module.``, Lightning's ``model.``, ``torch.compile``'s ``_orig_mod.``) are matched to
the network's own, with one notice. Every failure is one :class:`~landscape.errors.UserError` line.
"""

from __future__ import annotations

import glob
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from landscape.errors import UserError

__all__ = ["PREFIXES", "checkpoint_files", "load_into", "read_state", "without_prefix"]

PREFIXES = {"module.": "a DDP checkpoint", "model.": "a Lightning checkpoint", "_orig_mod.": "a torch.compile'd model"}
"""Prefixes that wrappers put before a model's own keys, and who puts them there."""


def checkpoint_files(pattern: str | None) -> list[Path]:
    """Files matching a glob, in natural order (``epoch_2`` before ``epoch_10``)."""
    if not pattern:
        return []
    files = [Path(p) for p in glob.glob(pattern)]
    if not files:
        raise UserError(f"no checkpoint matches {pattern!r}")
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    return sorted(files, key=key)


def _safetensors(path: Path, label: str) -> dict:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise UserError(f"{label} is a .safetensors file: install the safetensors package "
                        "(pip install 'swa-landscape[safetensors]')") from None
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{label} is not a readable .safetensors file ({type(e).__name__})") from None


def read_state(path: str | Path, label: str | None = None, device: torch.device | str = "cpu") -> dict:
    """The ``state_dict`` a checkpoint file holds (unwrapped from ``{"state_dict": ...}``).

    Args:
        path: The file (``.safetensors`` by its suffix, anything else through ``torch.load(weights_only=True)``).
        label: How errors name it (default ``"checkpoint PATH"``).
        device: Where its tensors are loaded.

    Raises:
        UserError: No such file, a file of another format, or no tensors in it.
    """
    path = Path(path)
    label = label or f"checkpoint {path}"
    if not path.is_file():
        raise UserError(f"{label}: no such file")
    if path.suffix == ".safetensors":
        return _safetensors(path, label)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds for a file of another format
        raise UserError(f"{label} is not a PyTorch state_dict file ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{label} holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def without_prefix(state: dict, model: nn.Module, label: str, notice: bool = True) -> dict:
    """``state`` with a wrapper's prefix removed where the model's own keys lie under it (said in one notice)."""
    own = set(model.state_dict())
    if set(state) & own:
        return state
    for prefix, who in PREFIXES.items():
        inner = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if inner and set(inner) & own:
            rest = len(state) - len(inner)
            extra = f"; {rest} other entries left out" if rest else ""
            if notice:
                warnings.warn(f"{label}: removed the prefix {prefix!r} ({who}){extra}", stacklevel=3)
            return inner
    return state


def load_into(model: nn.Module, path: str | Path, notice: bool = False, label: str | None = None,
              device: torch.device | str = "cpu") -> None:
    """Load a checkpoint file (:func:`read_state`) into ``model``, strictly, a wrapper's prefix removed.

    ``notice`` says when a prefix was removed (once per file: on the check before anything is written).

    Raises:
        UserError: As :func:`read_state`, or the state does not fit the model.
    """
    label = label or f"checkpoint {path}"
    state = without_prefix(read_state(path, label, device), model, label, notice)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"{label} does not fit the model (another architecture?): {str(e).splitlines()[0]}") from None
