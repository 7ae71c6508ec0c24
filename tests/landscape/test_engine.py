"""The engine against the slow reference path (landscape.reference) on fresh random inputs."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.errors import UserError
from landscape.layout import flatten
from landscape.points import PointSet
from landscape.reference import load_point, reference_point
from swa.models import build_model
from tests.conftest import DEVICES

BN_BATCH = 64  # 240 training samples -> 3 full batches + a partial one of 48


def _data(seed=0, n_train=240, n_test=70, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, 40, generator=g, dtype=dtype) * 1.5 + 0.3
    xt = torch.randn(n_test, 40, generator=g, dtype=dtype) * 1.5 + 0.3
    return {"train": (x, torch.randint(0, 10, (n_train,), generator=g)),
            "test": (xt, torch.randint(0, 10, (n_test,), generator=g))}


def _model(name, seed=0):
    torch.manual_seed(seed)
    kw = {"width": 6} if name.startswith("conv") else {"width": 12}
    return build_model(name, **kw).double()


def _points(model, k, seed=1, scale=0.3):
    w0 = flatten(list(model.parameters()), torch.float64)
    g = torch.Generator().manual_seed(seed)
    return w0 + scale * torch.randn(k, w0.numel(), generator=g, dtype=torch.float64) * w0.abs().mean()


def _assert_matches_reference(model, res, pts, data, weighting="batch", buffers=None, bn=True, idx=None):
    for i in range(len(pts)) if idx is None else idx:
        ref, ref_buf = reference_point(model, pts[i], data, data["train"][0] if bn else None, BN_BATCH, weighting,
                                       buffers=None if buffers is None else buffers[i])
        for split in data:
            torch.testing.assert_close(res.loss[split][i].item(), ref[split].loss, rtol=1e-10, atol=0)
            assert res.acc[split][i].item() == pytest.approx(ref[split].acc, abs=1e-12)
        torch.testing.assert_close(res.buffers[i].double(), ref_buf, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["mlp", "mlp_bn", "convnet", "convnet_bn"])
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_fast_path_equals_reference(name, strategy, chunk):
    model, data = _model(name), _data()
    pts = _points(model, 7)
    cfg = EngineConfig(dtype="float64", strategy=strategy, chunk_size=chunk, bn_batch_size=BN_BATCH,
                       superbatch=2 * BN_BATCH, workers=1)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
    assert res.strategy == strategy and res.loss["train"].shape == (7,)
    _assert_matches_reference(model, res, pts, data)
    assert torch.isfinite(res.loss["train"]).all()


@pytest.mark.parametrize("weighting", ["batch", "sample"])
@pytest.mark.parametrize("workers", [1, 2])
def test_bn_weightings_and_worker_threads(weighting, workers):
    model, data = _model("convnet_bn", seed=3), _data(seed=4)
    pts = _points(model, 5, seed=5)
    cfg = EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, bn_weighting=weighting, workers=workers, chunk_size=4)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts))
    _assert_matches_reference(model, res, pts, data, weighting)


def test_bn_subset_of_batches():
    model, data = _model("mlp_bn", seed=6), _data(seed=7)
    pts = _points(model, 3, seed=8)
    res = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, bn_batches=2)).evaluate(
        PointSet.explicit(pts))
    for i in range(3):
        m = load_point(model, pts[i])
        from torch.optim.swa_utils import update_bn

        update_bn([data["train"][0][j * BN_BATCH:(j + 1) * BN_BATCH] for j in range(2)], m)
        ref_buf = flatten(list(m.buffers()), torch.float64)
        torch.testing.assert_close(res.buffers[i], ref_buf, rtol=0, atol=1e-10)


def test_float32_default_close_to_float64_reference():
    model, data = _model("convnet_bn", seed=9), _data(seed=10, dtype=torch.float32)
    pts = _points(model, 4, seed=11)
    res = Engine(model.float(), data, config=EngineConfig(bn_batch_size=BN_BATCH)).evaluate(PointSet.explicit(pts.float()))
    data64 = {k: (x.double(), y) for k, (x, y) in data.items()}
    for i in range(4):
        ref, _ = reference_point(model.double(), pts[i], data64, data64["train"][0], BN_BATCH)
        torch.testing.assert_close(res.loss["test"][i].item(), ref["test"].loss, rtol=1e-4, atol=0)


def test_affine_points_equal_explicit_and_origin():
    model, data = _model("convnet_bn", seed=12), _data(seed=13)
    w0 = flatten(list(model.parameters()), torch.float64)
    g = torch.Generator().manual_seed(14)
    basis = torch.randn(2, w0.numel(), generator=g, dtype=torch.float64) * 0.05
    coords = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 0.25], [0.3, 3.0], [0.5, 0.5]], dtype=torch.float64)
    explicit = w0 + coords @ basis  # written out
    cfg = EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, chunk_size=2)
    eng = Engine(model, data, config=cfg)
    a = eng.evaluate(PointSet.affine(w0, basis, coords))
    e = eng.evaluate(PointSet.explicit(explicit))
    for split in data:
        torch.testing.assert_close(a.loss[split], e.loss[split], rtol=1e-12, atol=0)
    origin = eng.evaluate(PointSet.explicit(w0[None]))
    torch.testing.assert_close(a.loss["train"][0], origin.loss["train"][0], rtol=1e-12, atol=0)
    torch.testing.assert_close(PointSet.affine(w0, basis, coords).chunk(1, 4, dtype=torch.float64), explicit[1:4])


def test_stored_and_interpolated_buffers():
    model, data = _model("convnet_bn", seed=15), _data(seed=16)
    pts = _points(model, 4, seed=17)
    g = torch.Generator().manual_seed(18)
    q = sum(b.numel() for b in model.buffers())
    bufs = flatten(list(model.buffers()), torch.float64).repeat(4, 1)
    noise = torch.rand(4, q, generator=g, dtype=torch.float64) * 0.5  # positive variances stay positive
    from landscape.layout import buffer_layout

    lay = buffer_layout(model)
    offs = np.cumsum((0,) + lay.numels)
    for i, n in enumerate(lay.names):
        if n.endswith("num_batches_tracked"):  # an integer counter, not a statistic
            noise[:, offs[i]:offs[i + 1]] = 0
    bufs += noise
    cfg = EngineConfig(dtype="float64", bn_mode="stored", bn_batch_size=BN_BATCH)
    res = Engine(model, data, config=cfg).evaluate(PointSet.explicit(pts, bufs))
    _assert_matches_reference(model, res, pts, data, buffers=bufs, bn=False)
    # interpolated: buffers = b0 + coords @ B, evaluated as if stored
    w0 = pts[0]
    basis = (pts[1:3] - w0)
    coords = torch.tensor([[0.5, 0.25], [1.0, 0.0]], dtype=torch.float64)
    bbasis = bufs[1:3] - bufs[0]
    ps = PointSet.affine(w0, basis, coords, buffer_origin=bufs[0], buffer_basis=bbasis)
    res2 = Engine(model, data, config=EngineConfig(dtype="float64", bn_mode="interpolate")).evaluate(ps)
    _assert_matches_reference(model, res2, w0 + coords @ basis, data, buffers=bufs[0] + coords @ bbasis, bn=False)


def test_probabilities_in_memory_and_streamed_to_hdf5(tmp_path):
    model, data = _model("convnet_bn", seed=19), _data(seed=20)
    pts = _points(model, 5, seed=21)
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, chunk_size=2))
    res = eng.evaluate(PointSet.explicit(pts), probs=("test",))
    assert res.probs["test"].shape == (5, 70, 10)
    for i in (0, 4):
        m = load_point(model, pts[i])
        from landscape.bn import recompute_bn

        recompute_bn(m, [data["train"][0][j:j + BN_BATCH] for j in range(0, 240, BN_BATCH)])
        with torch.no_grad():
            ref = torch.softmax(m.eval()(data["test"][0]), -1)
        torch.testing.assert_close(res.probs["test"][i].double(), ref, rtol=1e-5, atol=1e-6)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        d = f.create_dataset("probs", (5, 70, 10), dtype="f4")
        res2 = eng.evaluate(PointSet.explicit(pts), probs=("test",),
                            prob_sink=lambda split, lo, p: d.__setitem__(slice(lo, lo + p.shape[0]), p.numpy()))
        assert res2.probs == {}
        np.testing.assert_array_equal(d[:], res.probs["test"].numpy())


def test_l2_term():
    model, data = _model("mlp", seed=22), _data(seed=23)
    pts = _points(model, 3, seed=24)
    res = Engine(model, data, config=EngineConfig(dtype="float64", weight_decay=3e-4)).evaluate(PointSet.explicit(pts))
    torch.testing.assert_close(res.l2, 0.5 * 3e-4 * (pts**2).sum(1))


class _NoVmap(nn.Module):
    """Data-dependent Python control flow: cannot run under vmap."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        out = self.fc(x)
        if out.sum().item() > -1e30:
            return out
        return -out


def test_vmap_incompatible_model_falls_back_to_loop_with_one_warning():
    torch.manual_seed(25)
    model, data = _NoVmap().double(), _data(seed=26)
    pts = _points(model, 4, seed=27)
    with pytest.warns(UserWarning, match="cannot run under torch.func.vmap") as rec:
        res = Engine(model, data, config=EngineConfig(dtype="float64", strategy="vmap", superbatch=64)).evaluate(
            PointSet.explicit(pts))
    assert len([w for w in rec if "vmap" in str(w.message)]) == 1
    assert res.strategy == "loop"
    _assert_matches_reference(model, res, pts, data, bn=False)


def test_overflowing_points_are_reported_not_raised():
    model, data = _model("mlp", seed=28), _data(seed=29)
    pts = _points(model, 3, seed=30).float()
    pts[1] *= 1e25  # three layers: logits ~1e75 overflow float32 to inf -> loss inf/nan
    data = {k: (x.float(), y) for k, (x, y) in data.items()}
    res = Engine(model.float(), data).evaluate(PointSet.explicit(pts))
    assert not torch.isfinite(res.loss["train"][1])
    assert torch.isfinite(res.loss["train"][[0, 2]]).all()


def test_bad_input_errors():
    model, data = _model("convnet_bn", seed=31), _data(seed=32)
    eng = Engine(model, data, config=EngineConfig(dtype="float64"))
    p = sum(t.numel() for t in model.parameters())
    with pytest.raises(UserError, match=f"length {p + 1}.*{p} parameters"):
        eng.evaluate(PointSet.explicit(torch.zeros(2, p + 1, dtype=torch.float64)))
    with pytest.raises(UserError, match="basis has 5 columns"):
        PointSet.affine(torch.ones(p, dtype=torch.float64), torch.ones(2, 5, dtype=torch.float64), torch.ones(3, 2))
    bad = _points(model, 2)
    bad[1, 3] = float("nan")
    with pytest.raises(UserError, match="weights contains NaN"):
        PointSet.explicit(bad)
    with pytest.raises(UserError, match="split 'test' is empty"):
        Engine(model, {**data, "test": (data["test"][0][:0], data["test"][1][:0])})
    with pytest.raises(UserError, match="needs buffers"):
        Engine(model, data, config=EngineConfig(bn_mode="stored")).evaluate(PointSet.explicit(_points(model, 1).float()))
    with pytest.raises(UserError, match="bn_mode must be one of"):
        EngineConfig(bn_mode="magic")


@pytest.mark.parametrize("device", DEVICES)
def test_device_float32_matches_cpu_float64(device):
    model, data = _model("convnet_bn", seed=33), _data(seed=34)
    pts = _points(model, 6, seed=35, scale=0.05)
    res = Engine(model.float(), {k: (x.float(), y) for k, (x, y) in data.items()},
                 config=EngineConfig(device=device, bn_batch_size=BN_BATCH)).evaluate(PointSet.explicit(pts.float()))
    ref = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH)).evaluate(PointSet.explicit(pts))
    torch.testing.assert_close(res.loss["train"], ref.loss["train"], rtol=1e-4, atol=0)


def test_out_of_memory_halves_the_chunk_instead_of_failing(monkeypatch):
    model, data = _model("mlp_bn", seed=36), _data(seed=37)
    pts = _points(model, 8, seed=38)
    eng = Engine(model, data, config=EngineConfig(dtype="float64", chunk_size=8, workers=1, bn_batch_size=BN_BATCH,
                                                  guard=False))  # chunks from point 0 (the guard delivers one)
    real = Engine._parallel_chunk
    sizes = []

    def flaky(self, pool, req):
        sizes.append(req.hi - req.lo)
        if req.hi - req.lo > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, pool, req)

    monkeypatch.setattr(Engine, "_parallel_chunk", flaky)
    res = eng.evaluate(PointSet.explicit(pts))
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}
    _assert_matches_reference(model, res, pts, data, idx=[0, 7])
    monkeypatch.setattr(Engine, "_parallel_chunk", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):
        eng.evaluate(PointSet.explicit(pts))
