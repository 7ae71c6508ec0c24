"""Batches gathered into one split without holding the split in memory: past a size, written to disk as they come.

:func:`gather` concatenates the ``(inputs, targets)`` batches of a dataset or a DataLoader along the sample
dimension. Up to ``spill_bytes`` it concatenates in memory; once the batches read pass it, every tensor of the
structure is written to its own file in ``where`` (the temporary directory by default) and read back as a
copy-on-write memory mapping of the file, which is unlinked at once: the data lives on disk for as long as the
tensors do, its pages are page cache the kernel reads in and drops as needed, and nothing is left behind. The
engine reads such a split a super-batch at a time (:func:`landscape.memory.place`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from landscape.errors import UserError

__all__ = ["SPILL_BYTES", "gather"]

SPILL_BYTES = 1 << 30
"""A split past this size (1 GiB) is written to disk instead of concatenated in memory."""


def _nbytes(leaves: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in leaves)


class _Files:
    """One growing file per tensor of the structure, its rows appended batch by batch."""

    def __init__(self, leaves: list[torch.Tensor], where: str | None):
        self.rows = [tuple(t.shape[1:]) for t in leaves]
        self.dtypes = [t.dtype for t in leaves]
        self.files = [tempfile.NamedTemporaryFile(dir=where, prefix="swa-landscape-split-", suffix=".bin",
                                                  delete=False) for _ in leaves]
        self.n = 0

    def write(self, leaves: list[torch.Tensor], what: str) -> None:
        if [tuple(t.shape[1:]) for t in leaves] != self.rows or [t.dtype for t in leaves] != self.dtypes:
            raise UserError(f"{what} yields batches of different shapes or dtypes")
        for f, t in zip(self.files, leaves):
            f.write(t.detach().cpu().contiguous().numpy().tobytes())
        self.n += leaves[0].shape[0]

    def mapped(self) -> list[torch.Tensor]:
        out = []
        for f, row, dtype in zip(self.files, self.rows, self.dtypes):
            f.close()
            arr = np.memmap(f.name, dtype=torch.empty(0, dtype=dtype).numpy().dtype, mode="c", shape=(self.n, *row))
            os.unlink(f.name)  # the mapping keeps the data; the disk space returns with the last tensor
            out.append(torch.from_numpy(arr))
        return out

    def discard(self) -> None:
        for f in self.files:
            f.close()
            if os.path.exists(f.name):
                os.unlink(f.name)


def gather(batches: Iterable[tuple[Any, torch.Tensor]], what: str, spill_bytes: int = SPILL_BYTES,
           where: str | None = None) -> tuple[Any, torch.Tensor]:
    """The batches' inputs and targets concatenated along the first dimension (see the module docstring).

    Args:
        batches: ``(inputs, targets)`` pairs of one structure (inputs a tensor, a tuple or a dict of tensors).
        what: How errors name the data.
        spill_bytes: Past this many bytes read, the split goes to disk.
        where: Directory of the files (default: the temporary directory).

    Raises:
        UserError: No batch, or batches of different structures, shapes or dtypes.
    """
    held: list[list[torch.Tensor]] = []
    spec, files, size = None, None, 0
    try:
        for x, y in batches:
            leaves, s = tree_flatten((x, y))
            if spec is None:
                spec = s
            elif s != spec:
                raise UserError(f"{what} yields batches of different structures")
            leaves = [t.detach().cpu() for t in leaves]
            if files is not None:
                files.write(leaves, what)
                continue
            held.append(leaves)
            size += _nbytes(leaves)
            if size > spill_bytes and all(t.dtype != torch.bfloat16 for t in leaves):
                files = _Files(leaves, where)
                for part in held:
                    files.write(part, what)
                held = []
        if spec is None:
            raise UserError(f"{what} is empty")
        if files is not None:
            columns = files.mapped()
        else:
            if any([tuple(t.shape[1:]) for t in p] != [tuple(t.shape[1:]) for t in held[0]] for p in held):
                raise UserError(f"{what} yields batches of different shapes")
            columns = [torch.cat(c) for c in zip(*held)]
    except BaseException:
        if files is not None:
            files.discard()
        raise
    return tree_unflatten(columns, spec)
