"""Streaming a split larger than memory: the same plane over a memory-mapped data set at two sizes (not a test).

Each size runs in its own process: the data is written to a ``.npy`` file in chunks, opened memory-mapped
(``np.load(mmap_mode="r")``, ``torch.from_numpy``), and a 3x3 plane of an MLP with BatchNorm is evaluated with a
memory budget of 128 MiB (BN recomputed at every point: two passes over the training split per point). A thread
samples the process's anonymous resident memory (``RssAnon`` in ``/proc/self/status``: what the process allocates;
file pages of the mapping are page cache the kernel can drop) every 5 ms; ``VmHWM`` (peak resident, file pages
included) is read at the end. On the smaller size the same data in memory is evaluated too and the numbers compared.

With ``--source dataset`` the training split is a DataLoader over a dataset that makes each sample from its index:
``swa.sources.as_splits`` gathers it on disk past 64 MiB (:mod:`swa.spill`) and the memory is sampled from the
start of the gathering.

Usage:
    python benchmarks/bench_streaming.py [--sizes 50000 1000000] [--features 128] [--dir /tmp] [--source dataset]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

BUDGET = 128 << 20


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Generated(torch.utils.data.Dataset):
    """A map-style dataset that makes each sample from its index (nothing held): the source of a split that is
    gathered from a DataLoader."""

    def __init__(self, n: int, features: int):
        self.n, self.features = n, features

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randn(self.features, generator=g), int(torch.randint(0, 10, (), generator=g))


def child(n: int, features: int, where: str, source: str) -> dict:
    from landscape.config import EngineConfig
    from landscape.engine import Engine
    from landscape.layout import flatten
    from landscape.points import PointSet
    from swa.sources import as_splits

    path = Path(where) / f"stream_{n}.npy"
    peak, stop = [_status("RssAnon")], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _status("RssAnon"))
            time.sleep(0.005)

    base = _status("RssAnon")
    threading.Thread(target=sample, daemon=True).start()
    gathered = 0.0
    if source == "dataset":  # a DataLoader's batches gathered on disk past 64 MiB (swa.spill), then mapped
        t = time.perf_counter()
        loader = torch.utils.data.DataLoader(Generated(n, features), batch_size=4096)
        x, y = as_splits({"train": loader, "test": (torch.zeros(1, features), torch.zeros(1, dtype=torch.long))},
                         spill_bytes=64 << 20)["train"]
        gathered = time.perf_counter() - t
    else:
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, features))
        rng = np.random.default_rng(0)
        for lo in range(0, n, 50_000):
            mm[lo:lo + 50_000] = rng.normal(size=(min(50_000, n - lo), features)).astype(np.float32)
        mm.flush()
        del mm
        y = torch.from_numpy(np.random.default_rng(1).integers(0, 10, n))
        x = torch.from_numpy(np.load(path, mmap_mode="r+"))
        base = peak[0] = _status("RssAnon")
    xt, yt = torch.randn(2000, features, generator=torch.Generator().manual_seed(2)), torch.randint(0, 10, (2000,))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(features, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    w = flatten(list(net.parameters()))
    pts = PointSet.affine(w, 0.05 * torch.randn(2, w.numel(), generator=torch.Generator().manual_seed(3)),
                          torch.cartesian_prod(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 3)))
    t0 = time.perf_counter()
    eng = Engine(net, {"train": (x, y), "test": (xt, yt)}, config=EngineConfig(memory_budget=BUDGET))
    res = eng.evaluate(pts)
    seconds = time.perf_counter() - t0
    stop.set()
    out = {"n": n, "source": source, "gathered_seconds": gathered, "gib": x.numel() * 4 / 2**30, "seconds": seconds, "anon_before_mib": base / 2**20,
           "anon_peak_mib": peak[0] / 2**20, "vmhwm_mib": _status("VmHWM") / 2**20,
           "choice": str(eng.explain().choice), "loss": res.loss["train"].tolist()}
    if n <= 200_000:  # the same data in memory, default budget
        mem = Engine(net, {"train": (torch.from_numpy(np.array(x.numpy())), y), "test": (xt, yt)}).evaluate(pts)
        out["max_rel_diff_in_memory"] = float(((mem.loss["train"] - res.loss["train"]).abs()
                                              / mem.loss["train"].abs()).max())
        out["test_error_equal"] = bool(torch.equal(mem.error("test"), res.error("test")))
    path.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000])
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--source", choices=("memmap", "dataset"), default="memmap",
                    help="memmap: a .npy file opened memory-mapped; dataset: a DataLoader gathered on disk")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.features, args.dir, args.source)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, memory budget {BUDGET >> 20} MiB")
    rows = []
    for n in args.sizes:
        r = subprocess.run([sys.executable, __file__, "--child", str(n), "--features", str(args.features), "--dir",
                            args.dir, "--source", args.source], capture_output=True, text=True, env={**os.environ},
                           check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"\nsource: {args.source}")
    print("\n| samples | data (GiB) | gathered in s | seconds | anonymous memory before -> peak (MiB) | peak resident incl. mapped "
          "file pages (MiB) | in memory: max rel. diff / test error equal | engine's choice |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        eq = (f"{r['max_rel_diff_in_memory']:.1e} / {r['test_error_equal']}" if "max_rel_diff_in_memory" in r
              else "-")
        print(f"| {r['n']} | {r['gib']:.2f} | {r['gathered_seconds']:.1f} | {r['seconds']:.1f} | {r['anon_before_mib']:.0f} -> "
              f"{r['anon_peak_mib']:.0f} | {r['vmhwm_mib']:.0f} | {eq} | {r['choice']} |")


if __name__ == "__main__":
    main()
