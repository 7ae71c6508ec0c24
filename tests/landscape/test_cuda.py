"""The CUDA paths against the reference, on a GPU only (``pytest -m cuda``; ``benchmarks/gpu_check.py`` runs them).

Skipped on machines without CUDA (CI has none). Each test compares the fast paths on the GPU with the slow
reference path (and, where it applies, with the same computation on the CPU) on fresh random inputs.
"""

import pytest
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.curvature import HessianOperator
from landscape.engine import Engine
from landscape.layout import buffer_layout, flatten
from landscape.points import PointSet
from landscape.reference import reference_point
from swa.models import build_model
from tests.landscape.test_zoo import BN_BATCH, plain_reference
from tests.landscape.zoo import ZOO, data_for

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")]


def _images(seed: int, n_train: int = 256, n_test: int = 96, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 3, 32, 32, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return {"train": (x[:n_train], y[:n_train]), "test": (x[n_train:], y[n_train:])}


def _points(model, k, seed, scale=0.2):
    w0 = flatten(list(model.parameters()), torch.float64)
    g = torch.Generator().manual_seed(seed)
    return w0 + scale * torch.randn(k, w0.numel(), generator=g, dtype=torch.float64) * w0.abs().mean()


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_preresnet_engine_on_cuda_equals_the_reference(strategy, dtype):
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    model = build_model("preresnet", depth=8, width=0.25, num_classes=10).to(dt)
    data = {k: (x.to(dt), y) for k, (x, y) in _images(1, dtype=dt).items()}
    pts = _points(model, 5, seed=2).to(dt)
    cfg = EngineConfig(device="cuda", dtype=dtype, strategy=strategy, bn_batch_size=64, chunk_size=2)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
    tol = 1e-10 if dtype == "float64" else 1e-4
    for i in range(len(pts)):
        ref, buf = reference_point(model, pts[i], data, data["train"][0], 64)  # on the CPU
        for split in data:
            torch.testing.assert_close(res.loss[split][i].item(), ref[split].loss, rtol=tol, atol=0)
        torch.testing.assert_close(res.buffers[i].double(), buf, rtol=tol, atol=tol)


@pytest.mark.parametrize("entry", [e for e in ZOO if not e.refusal], ids=lambda e: e.name)
def test_zoo_on_cuda(entry):
    torch.manual_seed(3)
    model = entry.build().double()
    data = data_for(entry, 4, torch.float64)
    w0 = flatten(list(model.parameters()), torch.float64)
    pts = w0 + 0.05 * torch.randn(3, w0.numel(), dtype=torch.float64) * w0.abs().mean()
    cfg = EngineConfig(device="cuda", dtype="float64", bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
    for i in range(3):
        ref_loss, ref_buf = plain_reference(model, pts[i], data)
        for split in data:
            torch.testing.assert_close(res.loss[split][i].item(), ref_loss[split], rtol=1e-10, atol=0)
        torch.testing.assert_close(res.buffers[i].double(), ref_buf, rtol=1e-10, atol=1e-10)


def test_out_of_memory_halves_the_chunk():
    torch.manual_seed(5)
    model = build_model("preresnet", depth=8, width=0.5, num_classes=10)
    data = _images(6, n_train=512, n_test=128)
    pts = _points(model, 6, seed=7).float()
    ref = Engine(model, data, config=EngineConfig(device="cuda", bn_batch_size=64, strategy="vmap", chunk_size=6))
    expected = ref.evaluate(PointSet.explicit(pts))
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    used = torch.cuda.memory_allocated()
    # a cap a little above what is held now: the 6-point vmap chunk cannot fit, single points can
    torch.cuda.set_per_process_memory_fraction(min(1.0, (used + (400 << 20)) / total))
    try:
        eng = Engine(model, data, config=EngineConfig(device="cuda", bn_batch_size=64, strategy="vmap", chunk_size=6,
                                                      memory_budget=64 << 30))
        res = eng.evaluate(PointSet.explicit(pts))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    torch.testing.assert_close(res.loss["test"], expected.loss["test"], rtol=1e-5, atol=0)


def test_hessian_products_on_cuda_equal_the_cpu():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 4)).double().eval()
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(200, 10, generator=g, dtype=torch.float64), torch.randint(0, 4, (200,), generator=g)
    w = flatten(list(model.parameters()), torch.float64)
    b = flatten(list(model.buffers()), torch.float64)
    v = torch.randn(3, w.numel(), generator=g, dtype=torch.float64)
    on = {d: HessianOperator(model, w, b, x, y, d, torch.float64, memory_budget=1 << 20, vectors=2).matmat(v).cpu()
          for d in ("cpu", "cuda")}
    torch.testing.assert_close(on["cuda"], on["cpu"], rtol=1e-10, atol=1e-12)
    assert buffer_layout(model).size == b.numel()


def test_short_training_run_on_cuda(tmp_path):
    from swa import Trajectory, train
    from tests.factories import tiny_config

    path = tmp_path / "cuda.h5"
    train(tiny_config(device="cuda", epochs=2, swa_start=1, swa_epochs=1), path, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        assert t.status == "complete" and torch.isfinite(t.solution("swa")[0]).all()
