"""The flat vector's named layout: each tensor's slice against unflatten."""

import torch
from torch import nn

from landscape.layout import flatten, param_layout, unflatten


def test_slices_cover_the_flat_vector_in_order_and_match_unflatten():
    model = nn.Sequential(nn.Conv1d(2, 3, 5), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(3 * 4, 7))
    layout = param_layout(model)
    vec = torch.randn(layout.size, generator=torch.Generator().manual_seed(3))
    slices = layout.slices
    assert list(slices) == list(layout.names)
    assert [s.start for s in slices.values()][0] == 0 and list(slices.values())[-1].stop == layout.size
    assert all(a.stop == b.start for a, b in zip(list(slices.values()), list(slices.values())[1:]))
    for name, t in unflatten(vec, layout).items():
        torch.testing.assert_close(vec[slices[name]].view(t.shape), t, rtol=0, atol=0)
    torch.testing.assert_close(flatten([vec[s] for s in slices.values()]), vec, rtol=0, atol=0)
