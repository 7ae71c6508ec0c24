"""Checks on the files a command reads and writes, so that bad paths give one clear error line.

HDF5 files cut short (a full disk, an unfinished copy) are detected from the
superblock's end-of-file address before h5py opens them: in SWMR mode HDF5 retries
metadata reads with bad checksums for a long time instead of failing.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import h5py

from .errors import UserError

__all__ = ["default_results_path", "durable_replace", "fsync_path", "hdf5_problem", "open_hdf5", "output_path",
           "toolkit_version"]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def output_path(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` as a :class:`Path` if a file can be created there.

    Raises:
        UserError: Its directory does not exist, or ``path`` is a directory.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{what} {p}: directory {parent} does not exist")
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory")
    return p


def fsync_path(path: str | os.PathLike) -> None:
    """Make a file's or a directory's contents durable (``fsync`` through a read-only descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a complete file ``tmp`` to ``final`` so that a crash or a power loss leaves the old or the new file.

    The file is synced before the rename (its contents reach the disk first) and its directory after it (the
    rename itself reaches the disk before this returns).
    """
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(Path(final).parent)


def hdf5_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a complete HDF5 file (missing, not HDF5, cut short), or None."""
    p = Path(path)
    if not p.exists():
        return f"{p}: no such file"
    if p.is_dir():
        return f"{p} is a directory, not an HDF5 file"
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(96)
    if not head.startswith(_SIGNATURE):
        return f"{p} is not a readable HDF5 file (no HDF5 signature)"
    version = head[8] if len(head) > 8 else -1
    if version in (2, 3) and len(head) >= 12:
        o = head[9]
        at = 12
    elif version in (0, 1) and len(head) >= 15:
        o = head[13]
        at = 24 if version == 0 else 28
    else:
        return f"{p} is cut short (incomplete HDF5 superblock)"
    fmt = {2: "<H", 4: "<I", 8: "<Q"}.get(o)
    if fmt is None or len(head) < at + 3 * o:
        return f"{p} is cut short (incomplete HDF5 superblock)"
    base = struct.unpack_from(fmt, head, at)[0]
    eof = struct.unpack_from(fmt, head, at + 2 * o)[0]
    if base + eof > size:
        return f"{p} is cut short: {size} bytes of {base + eof} (an unfinished copy or a full disk?)"
    return None


def open_hdf5(path: str | os.PathLike, swmr: bool = False) -> h5py.File:
    """Open an HDF5 file read-only, or raise one clear :class:`UserError` (never hangs on a truncated file).

    Args:
        path: The file.
        swmr: Open for single-writer/multiple-reader reading (falls back to a plain open for files
            not written in the latest format).
    """
    problem = hdf5_problem(path)
    for _ in range(5):  # a file being extended by a writer right now catches up within moments
        if problem is None or "cut short" not in problem:
            break
        time.sleep(0.2)
        problem = hdf5_problem(path)
    if problem:
        raise UserError(problem)
    if swmr:
        try:
            return h5py.File(path, "r", libver="latest", swmr=True)
        except OSError:
            pass
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({str(e).splitlines()[0]})") from None


def default_results_path(run: str | os.PathLike, view: str | None = None) -> Path:
    """The results file of a run by default.

    ``RUN.landscape.h5`` next to ``RUN.h5`` (``RUN.VIEW.landscape.h5`` for a view of the run, e.g. ``null``: the
    null control's pair).
    """
    p = Path(run)
    return p.with_name(p.name.removesuffix(".h5") + (f".{view}" if view else "") + ".landscape.h5")


def toolkit_version() -> str:
    """The installed swa-landscape version (recorded in every file the toolkit writes)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swa-landscape")
    except PackageNotFoundError:
        return "0+unknown"
