"""The refined surface: its pieces against formulas written out, and on a run against the full grid."""

import numpy as np
import pytest

from analyses.refine import cells_to_refine, coarse_mask, fill, step_chain
from analyses.surface import SurfaceConfig, surface
from landscape.errors import UserError
from tests.analyses.helpers import ENG, QUIET


def test_step_chains():
    assert step_chain(50) == [10, 5, 1] and step_chain(20) == [5, 1] and step_chain(16) == [4, 2, 1]
    assert step_chain(2) == [1] and step_chain(7) == [1]  # a prime: no coarser level


def test_fill_reproduces_a_bilinear_function_and_keeps_evaluated_values():
    g = 21
    i, j = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    f = 2.0 + 0.3 * i - 0.1 * j + 0.01 * i * j  # bilinear in each cell: interpolation is exact
    steps = step_chain(g - 1)
    sparse = np.where(coarse_mask(g, steps[0]), f, np.nan)
    np.testing.assert_allclose(fill(sparse, steps), f, rtol=1e-12)
    rng = np.random.default_rng(3)
    noisy = f + rng.uniform(0.1, 0.2, f.shape)  # every point evaluated: nothing is interpolated
    np.testing.assert_array_equal(fill(noisy, steps), noisy)


def test_cells_to_refine_follows_the_second_difference():
    """A bowl in log space: the estimated interpolation error of a cell is an eighth of the largest second difference
    at its corners, so cells are refined where the bowl bends more than the tolerance allows."""
    g, s = 21, 5
    x = np.linspace(-1, 1, g)
    k = np.array([0.5 if xi < 0 else 4.0 for xi in x])  # flat on the left, steep on the right
    v = np.exp(np.outer(k * x ** 2, np.ones(g)))
    want = cells_to_refine(v, s, 1, tolerance=0.05)
    h = x[s] - x[0]
    assert want[15:, :].all() and not want[:5, :].any()  # the steep part is refined, the flat part is not
    assert 2 * 0.5 * h ** 2 / 8 < 0.05 < 2 * 4.0 * h ** 2 / 8  # the formula that decides it
    assert cells_to_refine(np.full((g, g), np.inf), s, 1, 0.01).all()  # non-finite corners always refine


def test_a_refined_surface_is_exact_where_evaluated_and_close_elsewhere(tiny_run, tmp_path):
    full = surface(tiny_run, tmp_path / "full.h5", SurfaceConfig(grid=9, extent=1.0), ENG, **QUIET)
    cfg = SurfaceConfig(grid=9, extent=1.0, refine=True, refine_tolerance=0.002)
    ref = surface(tiny_run, tmp_path / "ref.h5", cfg, ENG, **QUIET)
    for c in ("swa", "sgd"):
        done = ref[c]["done"].reshape(9, 9)
        assert done[::2, ::2].all() and ref[c]["computed"] == done.sum() <= 81
        np.testing.assert_allclose(ref[c]["train_loss"][done], full[c]["train_loss"][done], rtol=1e-10)
        assert np.isnan(ref[c]["train_loss"][~done]).all()  # not evaluated: not pretended
        a, b = full[c]["train_loss_l2"], ref[c]["train_loss_l2_interpolated"]
        assert np.max(np.abs(np.log(a) - np.log(b))) < 0.05
    again = surface(tiny_run, tmp_path / "ref.h5", cfg, ENG, **QUIET)
    assert again["swa"]["computed"] == 0
    with pytest.raises(UserError, match="a refined surface needs an odd grid"):
        SurfaceConfig(grid=10, refine=True)
