"""CPU worker threads and the process-wide settings the engine may change.

Process-wide effects, all explicit:

* :func:`tune_cpu_allocator` changes glibc's ``malloc`` thresholds for the whole
  process (called once by the command line, or by an engine with ``EngineConfig(tune_allocator=True)``).
* :func:`tf32_allowed` sets PyTorch's TF32 switches for the duration of an evaluation on a GPU and
  restores them after (strict float32 unless ``EngineConfig(tf32=True)``).
* :class:`WorkerPools` sets each worker thread's intra-op thread count
  (``torch.set_num_threads`` is per thread for OpenMP); the calling thread's count
  is never changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["tune_cpu_allocator", "tf32_allowed", "WorkerPools", "split_range"]


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of unmapping large blocks.

    By default every activation above 128 KiB is a fresh ``mmap`` whose pages fault
    in on first touch; on a 2-core CPU that doubled the time of an evaluation pass
    of the MNIST-1D conv net (measured, see docs/performance.md). This is what the usual advice
    of preloading jemalloc/tcmalloc for PyTorch on CPU achieves. Process-wide; freed
    memory stays with the process. Returns True if glibc accepted the settings.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    # one arena: worker threads otherwise get their own arenas, which trim and fault pages again
    ok = [libc.mallopt(m_mmap_threshold, 1 << 30), libc.mallopt(m_trim_threshold, 2 << 30), libc.mallopt(m_arena_max, 1)]
    return all(ok)


@contextmanager
def tf32_allowed(device: torch.device, allow: bool) -> Iterator[None]:
    """Within the block, TF32 matrix products and cuDNN convolutions on or off (CUDA only), restored after."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """``lo:hi`` as up to ``parts`` consecutive non-empty ranges of near-equal length."""
    bounds = np.linspace(lo, hi, min(parts, hi - lo) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds, bounds[1:]) if b > a]


class WorkerPools:
    """Thread pools by worker count, each thread with ``threads // workers`` intra-op threads.

    Use as a context manager; pools are created on first use and shut down on exit.

    Args:
        threads: Intra-op threads to share out (default: ``torch.get_num_threads()`` of the caller).
    """

    def __init__(self, threads: int | None = None):
        self.threads = threads or torch.get_num_threads()
        self._pools: dict[int, ThreadPoolExecutor] = {}

    def get(self, workers: int) -> ThreadPoolExecutor:
        """The pool of ``workers`` threads (made on first use, each with its share of intra-op threads)."""
        if workers not in self._pools:
            per = max(1, self.threads // workers)
            self._pools[workers] = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(per,))
        return self._pools[workers]

    def __enter__(self) -> WorkerPools:
        return self

    def __exit__(self, *exc) -> None:
        for p in self._pools.values():
            p.shutdown()
        self._pools.clear()
