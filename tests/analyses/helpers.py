"""What the analyses' tests share: engine settings and the slow, obviously-correct references."""

import hashlib

from landscape.config import EngineConfig
from landscape.reference import reference_point
from swa import Trajectory, load_dataset
from swa.runs import build_run_model

ENG = EngineConfig(dtype="float64", bn_batch_size=64, workers=1)
QUIET = dict(progress=False)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def reference(run, w):
    """Metrics at w with BN recomputed, the slow way, in float64."""
    with Trajectory(run) as t:
        model = build_run_model(t).double()
    data = {s: (x.double(), y) for s, (x, y) in ((s, load_dataset(run, s)) for s in ("train", "test"))}
    ref, _ = reference_point(model, w.double(), data, data["train"][0], 64)
    return ref


def reference_with(run, w, b):
    """Metrics at w with the given BN buffers (no recomputation), the slow way, in float64."""
    with Trajectory(run) as t:
        model = build_run_model(t).double()
    data = {s: (x.double(), y) for s, (x, y) in ((s, load_dataset(run, s)) for s in ("train", "test"))}
    return reference_point(model, w.double(), data, None, 64, buffers=b.double())[0]
