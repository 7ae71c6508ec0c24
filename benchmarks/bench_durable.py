"""Time to make one finished chunk durable, with a results file holding 100 MB of other arrays (not a test).

Before: every chunk was written into the results file by copy, edit, atomic replace
(``ResultsFile.write_points``, still what a merge does once per analysis), so its cost
grew with the file. After: every chunk is its own small file in the journal
(``Journal.append``: write, fsync, rename), whatever the size of the results file.

Usage:
    python benchmarks/bench_durable.py [--other-mb 100] [--chunk 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from analyses.journal import Journal
from analyses.results import ResultsFile
from swa import TrainConfig, train


def best_of(fn, reps: int = 5) -> float:
    times = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other-mb", type=float, default=100)
    ap.add_argument("--chunk", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run.h5"
        train(TrainConfig(model="mlp", num_samples=200, epochs=2, swa_epochs=1, model_kwargs={"width": 8}), run,
              progress=False, log=lambda s: None)
        res = ResultsFile(Path(d) / "run.landscape.h5", run)
        n_other = int(args.other_mb * 2**20 / 4)
        res.write("fge", {"probs_proposals": np.random.default_rng(0).random(n_other, dtype=np.float32)})
        shape = (21, 21)
        names = ("train_loss", "train_error", "test_loss", "test_error")
        res.prepare("plane", {"grid": shape}, {k: (shape, "f8", np.nan) for k in names})
        with res.read() as f:
            config = f["plane"].attrs["config"]
        size = res.path.stat().st_size
        k = args.chunk
        values = {n: np.random.default_rng(1).random(k) for n in names}
        before = best_of(lambda i: res.write_points("plane", np.arange(i * k, (i + 1) * k), values))
        journal = Journal(res.path)
        after = best_of(lambda i: journal.append("plane", config, np.arange(i * k, (i + 1) * k), values))
        t = time.perf_counter()
        journal.merge(res, "plane")
        merge = time.perf_counter() - t
    print(json.dumps({"results_file_mb": round(size / 2**20, 1), "chunk_points": k}))
    print(f"one chunk durable, before (copy + replace the results file): {1e3 * before:8.2f} ms")
    print(f"one chunk durable, after (journal file: write + fsync + rename): {1e3 * after:8.2f} ms")
    print(f"ratio before / after: {before / after:.0f}x; merging 5 chunks at the end of the analysis: "
          f"{1e3 * merge:.0f} ms (once per analysis)")


if __name__ == "__main__":
    main()
