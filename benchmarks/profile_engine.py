"""Where the engine's time goes, per model (not a test): the plain plan (one worker) under cProfile.

Buckets, as fractions of the evaluation's wall time:
  forwards      the network's own ops (conv, linear, relu, pooling) in every pass
  BN stats      the grouped train-mode statistics of the BN recomputation pass (``grouped_batch_norm``)
  loss/acc      cross-entropy (logsumexp, gather) and accuracy (argmax) per point
  points        materialising points (``PointSet.chunk``) and copying them into the model
  Python/other  the rest: module dispatch, functional bookkeeping, result assembly

Usage:
    python benchmarks/profile_engine.py --models mlp convnet_bn
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_matrix import MODELS, data_for, grid_points  # noqa: E402

from landscape.config import EngineConfig  # noqa: E402
from landscape.engine import Engine  # noqa: E402
from landscape.probe import ProbeCache  # noqa: E402
from swa.models import build_model  # noqa: E402

_FORWARD = ("linear", "conv1d", "conv2d", "relu", "max_pool", "avg_pool", "adaptive_avg_pool", "flatten",
            "_conv_forward", "dropout")


def buckets(stats: pstats.Stats, wall: float) -> dict[str, float]:
    out = {"forwards": 0.0, "BN stats": 0.0, "loss/acc": 0.0, "points": 0.0}
    for (file, _line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        if func == "grouped_batch_norm":
            out["BN stats"] += ct
        elif func in ("chunk", "load") and ("points.py" in file or "grouped_bn.py" in file):
            out["points"] += ct
        elif func == "loss_and_correct":
            out["loss/acc"] += ct
        elif file == "~" and any(k in func for k in _FORWARD):
            out["forwards"] += tt
    # forward ops called inside the BN statistics are already in "BN stats"
    out["Python/other"] = max(0.0, wall - sum(out.values()))
    return {k: v / wall for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "mlp_bn", "convnet", "convnet_bn"])
    ap.add_argument("--points", type=int, default=24)
    args = ap.parse_args()
    print("| model | ms/point | " + " | ".join(("forwards", "BN stats", "loss/acc", "points", "Python/other")) + " |")
    print("| --- | --- |" + " --- |" * 5)
    for name in args.models:
        kind, kw = MODELS[name]
        train, test, extra = data_for(kind, 2000, 500)
        model = build_model(name, **kw, **extra)
        pts = grid_points(model, 5 if kind == "mnist1d" else 2)
        from landscape.points import PointSet

        pts = PointSet.explicit(pts.chunk(0, min(args.points, len(pts))))
        eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(strategy="loop", workers=1),
                     cache=ProbeCache())
        eng.evaluate(pts)  # warm
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        eng.evaluate(pts)
        prof.disable()
        wall = time.perf_counter() - t
        b = buckets(pstats.Stats(prof), wall)
        print(f"| {name} | {1e3 * wall / len(pts):.1f} | " + " | ".join(f"{100 * v:.0f}%" for v in b.values()) + " |")


if __name__ == "__main__":
    main()
