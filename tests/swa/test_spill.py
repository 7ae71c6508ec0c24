"""A dataset or DataLoader larger than the spill size is gathered on disk (memory-mapped), with the values of the
in-memory gathering, nothing left behind, and the engine's numbers unchanged."""

import os

import pytest
import torch
from torch import nn

from landscape.errors import UserError
from swa.sources import as_pair, as_splits
from swa.spill import gather


class Rows(torch.utils.data.Dataset):
    """Dict items in the style of HuggingFace datasets, generated from the index (random, reproducible)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x, self.m = torch.randn(n, 6, generator=g), torch.randint(0, 9, (n, 3), generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"signal": self.x[i], "side": self.m[i], "labels": self.y[i]}


def _mapped(t: torch.Tensor) -> bool:
    return not t.untyped_storage().resizable()  # a NumPy memory map's storage; a tensor of torch.cat's is resizable


def test_a_large_dataset_is_gathered_on_disk_with_the_same_values(tmp_path):
    loader = torch.utils.data.DataLoader(Rows(1000, 0), batch_size=64)
    kept = gather((as_pair(b) for b in loader), "rows", spill_bytes=1 << 30)
    spilled = gather((as_pair(b) for b in loader), "rows", spill_bytes=4096, where=str(tmp_path))
    assert os.listdir(tmp_path) == []  # the files are unlinked at once: the mappings hold the data
    (xk, yk), (xs, ys) = kept, spilled
    assert not _mapped(xk["signal"]) and _mapped(xs["signal"]) and _mapped(xs["side"]) and _mapped(ys)
    for k in ("signal", "side"):
        assert torch.equal(xk[k], xs[k]) and xs[k].dtype == xk[k].dtype
    assert torch.equal(yk, ys)
    xs["signal"][0, 0] = 123.0  # copy-on-write: the tensor is writable, nothing reaches a file


def test_as_splits_spills_both_splits_and_the_engine_reads_them(tmp_path):
    from landscape.config import EngineConfig
    from landscape.engine import Engine
    from landscape.layout import flatten
    from landscape.points import PointSet

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lin, self.bn, self.out = nn.Embedding(9, 4), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(12, 4)

        def forward(self, signal, side):
            return self.out(torch.cat([torch.relu(self.bn(self.lin(signal))), self.emb(side).mean(1)], 1))

    data = (Rows(900, 1), Rows(300, 2))
    small, big = as_splits(data, spill_bytes=2048), as_splits(data)
    assert _mapped(small["train"][0]["signal"]) and not _mapped(big["train"][0]["signal"])
    torch.manual_seed(0)
    net = TwoInputs()
    w = flatten(list(net.parameters()))
    pts = PointSet.affine(w, 0.1 * torch.randn(2, w.numel()), torch.randn(4, 2))
    cfg = EngineConfig(dtype="float64", bn_batch_size=50)
    a, b = Engine(net, small, config=cfg).evaluate(pts), Engine(net, big, config=cfg).evaluate(pts)
    for split in ("train", "test"):
        torch.testing.assert_close(a.loss[split], b.loss[split], rtol=1e-12, atol=0)
        assert torch.equal(a.error(split), b.error(split))


def test_batches_that_change_shape_are_refused_and_leave_nothing(tmp_path):
    batches = [(torch.randn(40, 3), torch.zeros(40)), (torch.randn(40, 4), torch.zeros(40))]
    for spill in (1 << 30, 100):
        with pytest.raises(UserError, match="batches of different shapes"):
            gather(iter(batches), "odd", spill_bytes=spill, where=str(tmp_path))
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserError, match="is empty"):
        gather(iter([]), "nothing")
