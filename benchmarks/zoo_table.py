"""The exactness table of ``docs/exactness.md``: the engine on the test zoo against the plain reference.

For every network of :mod:`tests.landscape.zoo` (structures no one here wrote), the engine evaluates four
points of a random plane with BN recomputed per point (loop and vmap, float32 and float64) and the largest
relative difference from the plain reference of ``tests/landscape/test_zoo.py`` is reported over losses
(both splits) and BN statistics, with what the guard did; refused networks show the refusal.

Usage:
    python benchmarks/zoo_table.py            # prints the Markdown table
"""

from __future__ import annotations

import sys
import warnings
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for the tests' zoo

from landscape.config import EngineConfig  # noqa: E402
from landscape.engine import Engine  # noqa: E402
from landscape.errors import UserError  # noqa: E402
from landscape.points import PointSet  # noqa: E402
from tests.landscape.test_zoo import BN_BATCH, _setup, plain_reference  # noqa: E402
from tests.landscape.zoo import ZOO  # noqa: E402


def max_difference(entry, dtype: torch.dtype, strategy: str) -> tuple[str, str]:
    """``(largest relative difference or the refusal, what the guard did)`` for one configuration."""
    model, data, pts = _setup(entry, dtype, seed=zlib.crc32(entry.name.encode()) % 1000)
    cfg = EngineConfig(dtype=str(dtype).removeprefix("torch."), strategy=strategy, bn_batch_size=BN_BATCH,
                       superbatch=2 * BN_BATCH, workers=1)
    try:
        eng = Engine(model, data, config=cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = eng.evaluate(PointSet.explicit(pts))
    except UserError as e:
        return f"refused: {str(e).split(';')[0]}", "-"
    worst = 0.0
    for i in range(len(pts)):
        ref_loss, ref_buf = plain_reference(model, pts[i], data)
        for split in data:
            worst = max(worst, abs(res.loss[split][i].item() - ref_loss[split]) / abs(ref_loss[split]))
        if ref_buf.numel():
            scale = ref_buf.abs().max().clamp_min(1e-12)
            worst = max(worst, float((res.buffers[i].double() - ref_buf).abs().max() / scale))
    g = eng.guard_report
    guard = "no BN" if g is None else ("kept the fast path" if g.culprit is None else
                                       f"fast path off by {g.first_difference:.1e} at {g.culprit}: {g.action}")
    return f"{worst:.1e}", guard


def main() -> None:
    print(f"torch {torch.__version__}; 4 points of a random plane, BN recomputed per point over batches of "
          f"{BN_BATCH}, 64 training and 32 test samples\n")
    print("| network | structure | float32 loop | float32 vmap | float64 loop | float64 vmap | guard (float64) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for entry in ZOO:
        cells, guard = [], ""
        for dtype in (torch.float32, torch.float64):
            for strategy in ("loop", "vmap"):
                cell, guard = max_difference(entry, dtype, strategy)
                cells.append(cell)
        print(f"| `{entry.name}` | {entry.structure} | " + " | ".join(cells) + f" | {guard} |")


if __name__ == "__main__":
    main()
