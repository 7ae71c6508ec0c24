"""A split larger than the memory budget is streamed: a memory-mapped split stays on disk (not copied, not cast as a
whole) and is read a super-batch at a time, with the numbers of the same data in memory."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape.config import EngineConfig
from landscape.curvature import HessianOperator
from landscape.engine import Engine
from landscape.layout import flatten
from landscape.points import PointSet


def _mapped(path, a: np.ndarray) -> torch.Tensor:
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=a.dtype, shape=a.shape)
    mm[:] = a
    mm.flush()
    return torch.from_numpy(np.load(path, mmap_mode="r+"))  # backed by the file, not by memory


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_memory_mapped_split_is_streamed_with_the_in_memory_numbers(tmp_path, dtype):
    rng = np.random.default_rng(3)
    x, xt = rng.normal(size=(600, 24)).astype(np.float32), rng.normal(size=(200, 24)).astype(np.float32)
    y, yt = rng.integers(0, 5, 600), rng.integers(0, 5, 200)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(24, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5))
    w = flatten(list(net.parameters()))
    pts = PointSet.affine(w, 0.05 * torch.randn(2, w.numel()), torch.cartesian_prod(torch.linspace(-1, 1, 3),
                                                                                   torch.linspace(-1, 1, 3)))
    mx, mxt = _mapped(tmp_path / "x.npy", x), _mapped(tmp_path / "xt.npy", xt)
    small = 16 << 10  # 16 KiB: the 57 KiB training inputs are over a quarter of it
    streamed = Engine(net, {"train": (mx, torch.from_numpy(y)), "test": (mxt, torch.from_numpy(yt))},
                      config=EngineConfig(memory_budget=small, dtype=dtype, bn_batch_size=50, guard=False))
    assert streamed.splits["train"][0].data_ptr() == mx.data_ptr()  # the mapping itself: no copy, no cast
    s = streamed.evaluate(pts)
    ref = Engine(net, {"train": (torch.from_numpy(x.copy()), torch.from_numpy(y)),
                       "test": (torch.from_numpy(xt.copy()), torch.from_numpy(yt))},
                 config=EngineConfig(dtype=dtype, bn_batch_size=50, guard=False)).evaluate(pts)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for split in ("train", "test"):
        torch.testing.assert_close(s.loss[split], ref.loss[split], rtol=tol, atol=tol)
        torch.testing.assert_close(s.error(split), ref.error(split), rtol=0, atol=0)
    torch.testing.assert_close(s.buffers, ref.buffers, rtol=tol, atol=tol)


def test_the_hessian_reads_a_large_split_a_chunk_at_a_time(tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 12)).astype(np.float32), torch.from_numpy(rng.integers(0, 3, 300))
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    w, b = flatten(list(net.parameters()), torch.float64), torch.zeros(0, dtype=torch.float64)
    mx = _mapped(tmp_path / "x.npy", x)
    op = HessianOperator(net, w, b, mx, y, dtype=torch.float64, memory_budget=8 << 10, activation_bytes=64)
    assert op.x.data_ptr() == mx.data_ptr() and op.samples < 300  # streamed in chunks, the mapping not copied
    dense = HessianOperator(net, w, b, torch.from_numpy(x.copy()), y, dtype=torch.float64)
    v = torch.randn(3, w.numel(), dtype=torch.float64)
    torch.testing.assert_close(op.matmat(v), dense.matmat(v), rtol=1e-10, atol=1e-12)
