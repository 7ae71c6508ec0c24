"""Finished chunks of an analysis, made durable at a cost proportional to the chunk.

Every finished chunk of evaluated points is written as its own small HDF5 file in a
journal directory beside the results file (``RESULTS.journal/``): written under a
temporary name, flushed to disk, then renamed, so a crash at any moment leaves every
finished chunk readable and nothing half-written. The results file itself is only
rewritten (atomically, by copy and replace) when the journal is merged into it: at
the start of an analysis (chunks left by a killed run, of any number of ranks) and
at its end. Making a chunk durable therefore never copies the results file, however
large it is (e.g. after the FGE analysis stored every proposal's probabilities).

Under ``torchrun`` every rank appends its own chunks; rank 0 alone merges.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import h5py
import numpy as np

from landscape.files import durable_replace

__all__ = ["Journal"]

_counter = itertools.count()


def _safe(group: str) -> str:
    return group.replace("/", "~")


class Journal:
    """The chunk journal of one results file.

    Args:
        results_path: The results file the chunks belong to.
    """

    def __init__(self, results_path: str | os.PathLike):
        p = Path(results_path)
        self.dir = p.with_name(f"{p.name}.journal")

    def append(self, group: str, config: str, index: np.ndarray, values: dict[str, np.ndarray], rank: int = 0) -> Path:
        """Make one chunk durable: the points ``index`` (flat indices of the group's arrays) and their values.

        Args:
            group: Group of the results file.
            config: The group's ``config`` attribute (chunks of another config are discarded at merge).
            index: Flat indices ``[k]``.
            values: Name to values ``[k, ...]``.
            rank: The writing rank (part of the file name, so ranks never collide).

        Returns:
            The chunk file.
        """
        self.dir.mkdir(exist_ok=True)
        name = f"{_safe(group)}.r{rank}.p{os.getpid()}.{next(_counter):08d}.h5"
        tmp, final = self.dir / f".{name}.tmp", self.dir / name
        with h5py.File(tmp, "w") as f:
            f.attrs["group"], f.attrs["config"] = group, config
            f.create_dataset("index", data=np.asarray(index))
            for k, v in values.items():
                f.create_dataset(k, data=np.asarray(v))
        durable_replace(tmp, final)
        return final

    def chunks(self, group: str) -> list[Path]:
        """The finished chunk files of ``group`` (temporary files of an interrupted write are not chunks)."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob(f"{_safe(group)}.r*.h5"))

    def points(self, group: str) -> int:
        """How many points the finished chunks of ``group`` hold."""
        n = 0
        for c in self.chunks(group):
            with h5py.File(c, "r") as f:
                n += f["index"].shape[0]
        return n

    def merge(self, results, group: str) -> int:
        """Fold the finished chunks of ``group`` into the results file (one atomic rewrite); returns points merged.

        Chunks recorded under another config of the group (a changed analysis) are discarded.
        A crash during the merge leaves the chunks in place; merging them again writes the same values.
        """
        chunks = self.chunks(group)
        if not chunks:
            return 0
        with results.read() as f:
            config = f[group].attrs.get("config")
        index, values = [], {}
        for c in chunks:
            with h5py.File(c, "r") as f:
                if f.attrs.get("config") != config:
                    continue
                index.append(f["index"][:])
                for k in f:
                    if k != "index":
                        values.setdefault(k, []).append(f[k][:])
        if index:
            results.write_points(group, np.concatenate(index), {k: np.concatenate(v) for k, v in values.items()})
        for c in chunks:
            c.unlink()
        for leftover in self.dir.glob(".*.tmp"):  # an interrupted write of a killed process (no rank writes now)
            leftover.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass  # other groups' chunks remain
        return int(sum(i.size for i in index))
