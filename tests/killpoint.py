"""Run ``swa-landscape`` in this process and ``kill -9`` it at an event, not after a delay.

``python -m tests.killpoint EVENT N WHEN -- ARGS...`` runs ``swa-landscape ARGS`` and sends itself SIGKILL at the
``N``-th call of ``EVENT`` (``package.module:Class.method`` or ``package.module:function``): ``before`` the call
runs, ``after`` it returned, or ``during:M``: at the ``M``-th HDF5 dataset write (``h5py.Dataset.__setitem__``)
after the ``N``-th call returned, inside whatever the program writes then. With ``N`` = 0 it only counts: it
prints ``calls=C writes=W`` at exit (the events there are to choose from). The kill tests draw ``N`` and ``M`` from
a seeded generator: every moment is reproducible, nothing waits on a clock.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys

import h5py


def _resolve(event: str):
    module, _, path = event.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    return owner, name


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(event: str, n: int, when: str, argv: list[str]) -> int:
    owner, name = _resolve(event)
    original = getattr(owner, name)
    calls, writes = [0], [0]
    armed = [False]
    after_writes = int(when.split(":")[1]) if when.startswith("during:") else None

    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == n and when == "before":
            _kill()
        out = original(*a, **k)
        if calls[0] == n and when == "after":
            _kill()
        if calls[0] == n and after_writes is not None:
            armed[0] = True
        return out

    setattr(owner, name, wrapped)
    write = h5py.Dataset.__setitem__

    def counted(self, key, value):
        writes[0] += 1
        if armed[0]:
            armed.append(None)
            if len(armed) - 1 >= after_writes:
                _kill()
        return write(self, key, value)

    h5py.Dataset.__setitem__ = counted
    if n == 0:
        atexit.register(lambda: print(f"calls={calls[0]} writes={writes[0]}", flush=True))
    import swa_landscape

    return swa_landscape.main(argv)


if __name__ == "__main__":
    sep = sys.argv.index("--")
    event, n, when = sys.argv[1:sep]
    sys.exit(main(event, int(n), when, sys.argv[sep + 1:]))
