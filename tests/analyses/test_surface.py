"""The classic surface (Li et al. 2018) at SWA and SGD: filter normalisation against the formula written out, the
grid's centre against a plain evaluation, one pair of directions for every centre (stored, read back), a corner
against the reference path, resume, the report's section."""

import h5py
import numpy as np
import pytest
import torch

from analyses.surface import SurfaceConfig, surface, surface_directions
from landscape.errors import UserError
from landscape.layout import Layout
from swa import Trajectory
from tests.analyses.helpers import ENG, QUIET, reference


def test_filter_normalisation_written_out():
    """Every filter (row of a weight of two or more dimensions) of each direction has the norm of the centre's filter;
    1-D parameters are zero, or the centre's own values with ``include_1d``; without filter normalisation each
    direction has the norm of the centre."""
    layout = Layout(("conv.weight", "conv.bias", "fc.weight", "bn.weight"), ((4, 3, 5), (4,), (2, 8), (8,)),
                    ("torch.float32",) * 4)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(layout.size, generator=g, dtype=torch.float64) * 2 + 0.5
    base = torch.randn(2, layout.size, generator=g, dtype=torch.float64)
    d = surface_directions(base, w, layout, filter_wise=True, include_1d=False)
    at = 0
    for shape, n in zip(layout.shapes, layout.numels):
        dd, ww = d[:, at:at + n], w[at:at + n]
        if len(shape) >= 2:
            for k in range(2):
                rows_d, rows_w = dd[k].reshape(shape[0], -1), ww.reshape(shape[0], -1)
                torch.testing.assert_close(rows_d.norm(dim=1), rows_w.norm(dim=1), rtol=1e-12, atol=0)
                cos = (rows_d * base[k, at:at + n].reshape(shape[0], -1)).sum(1) / (
                    rows_d.norm(dim=1) * base[k, at:at + n].reshape(shape[0], -1).norm(dim=1))
                torch.testing.assert_close(cos, torch.ones_like(cos), rtol=1e-12, atol=1e-12)  # only rescaled
        else:
            assert torch.equal(dd, torch.zeros_like(dd))
        at += n
    d1 = surface_directions(base, w, layout, filter_wise=True, include_1d=True)
    torch.testing.assert_close(d1[:, 60:64], w[60:64].expand(2, -1))  # conv.bias: the centre's own values
    plain = surface_directions(base, w, layout, filter_wise=False, include_1d=False)
    torch.testing.assert_close(plain.norm(dim=1), w.norm().expand(2), rtol=1e-12, atol=0)
    with pytest.raises(UserError, match="no weight of two or more dimensions"):
        surface_directions(base[:, :4], w[:4], Layout(("b",), ((4,),), ("torch.float32",)), True, False)


def test_surface_at_swa_and_sgd_matches_the_reference_and_resumes(tiny_run, tmp_path):
    cfg = SurfaceConfig(grid=3, extent=0.5, seed=7)
    out = tmp_path / "res.h5"
    s = surface(tiny_run, out, cfg, ENG, **QUIET)
    assert list(s) == ["swa", "sgd"] and s["swa"]["computed"] == 9
    with h5py.File(out, "r") as f, Trajectory(tiny_run) as t:
        base = torch.from_numpy(f["surface/directions"][:]).double()
        g = torch.Generator().manual_seed(7)
        drawn = torch.randn(2, t.param_layout.size, generator=g)
        torch.testing.assert_close(base, (drawn / drawn.norm(dim=1, keepdim=True)).double(), rtol=0, atol=1e-7)
        for center in ("swa", "sgd"):
            w = t.solution(center)[0].double()
            grid = f[f"surface/{center}"]
            x = grid["x"][:]
            np.testing.assert_allclose(x, [-0.5, 0.0, 0.5])
            dirs = surface_directions(base, w, t.param_layout, True, False)
            np.testing.assert_allclose(grid["direction_norms"][:], dirs.norm(dim=1).numpy(), rtol=1e-6)
            ref = reference(tiny_run, w)  # the centre: the model's own loss and error, evaluated plainly
            np.testing.assert_allclose(grid["train_loss"][1, 1], ref["train"].loss, rtol=1e-10)
            np.testing.assert_allclose(grid["test_error"][1, 1], ref["test"].error, rtol=1e-10)
            corner = reference(tiny_run, w + 0.5 * dirs[0] - 0.5 * dirs[1])
            np.testing.assert_allclose(grid["train_loss"][2, 0], corner["train"].loss, rtol=1e-7)
    again = surface(tiny_run, out, cfg, ENG, **QUIET)
    assert again["swa"]["computed"] == 0 and again["sgd"]["computed"] == 0
    np.testing.assert_array_equal(again["sgd"]["train_loss"], s["sgd"]["train_loss"])


def test_surface_refusals(tiny_run, tmp_path):
    with pytest.raises(UserError, match="surface centre 'middle'"):
        SurfaceConfig(centers=("middle",))
    with pytest.raises(UserError, match="grid must be"):
        SurfaceConfig(grid=1)
    from analyses.catalog import get
    from landscape.config import EngineConfig

    with pytest.raises(UserError, match="surface cannot use bn_mode 'interpolate'"):
        get("surface").check_bn_mode(EngineConfig(bn_mode="interpolate"))


def test_the_report_shows_both_centres_on_one_scale(tiny_run, tmp_path):
    from swa_landscape.report import make_figures

    out = tmp_path / "res.h5"
    surface(tiny_run, out, SurfaceConfig(grid=3, centers=("swa", "sgd", "t=0.5")), ENG, **QUIET)
    page = make_figures(tiny_run, out, tmp_path / "rep").read_text()
    assert '<section id="surface">' in page and (tmp_path / "rep" / "surface.png").exists()
    assert "around t=0.5" in page  # every centre in the interactive panels


def test_the_grids_carry_their_coordinates_for_xarray_and_export_as_csv(tiny_run, tmp_path):
    """HDF5 dimension scales on every grid: xarray (through h5netcdf) opens a surface, a plane and the segment with
    labelled coordinates; the report writes each centre's grid as CSV, one row per point."""
    import xarray as xr

    from analyses import PlaneConfig, SegmentConfig, plane, segment
    from swa_landscape.report import make_figures

    out = tmp_path / "res.h5"
    surface(tiny_run, out, SurfaceConfig(grid=3, extent=0.5), ENG, **QUIET)
    plane(tiny_run, out, PlaneConfig(grid=(4, 3)), ENG, **QUIET)
    segment(tiny_run, out, SegmentConfig(-0.5, 1.5, 5), ENG, **QUIET)
    with xr.open_dataset(out, group="surface/swa", engine="h5netcdf", phony_dims="access") as ds:
        assert ds["train_loss"].dims == ("x", "y") and list(ds["x"].values) == [-0.5, 0.0, 0.5]
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(ds["test_error"].sel(x=0.0, y=0.5).item(), f["surface/swa/test_error"][1, 2])
    with xr.open_dataset(out, group="plane", engine="h5netcdf", phony_dims="access") as ds:
        assert ds["train_loss"].dims == ("x", "y") and ds.sizes["x"] == 4 and ds.sizes["y"] == 3
    with xr.open_dataset(out, group="segment", engine="h5netcdf", phony_dims="access") as ds:
        assert ds["test_error"].dims == ("t",) and float(ds["t"].min()) == -0.5
    from analyses import SharpnessConfig, sharpness

    sharpness(tiny_run, out, SharpnessConfig(points=("swa",), rhos=(0.05, 0.2), samples=2, report_rho=0.2,
                                             worst_rho=0), ENG, **QUIET)
    with xr.open_dataset(out, group="sharpness/swa", engine="h5netcdf", phony_dims="access") as ds:
        assert ds["adaptive_mean"].dims == ("rhos",) and ds["raw_se"].dims == ("rhos",)
        assert float(ds["raw_mean"].sel(rhos=0.2)) == float(ds["raw_mean"][1])
    page = make_figures(tiny_run, out, tmp_path / "rep").read_text()
    assert 'href="surface_swa.csv"' in page
    rows = np.loadtxt(tmp_path / "rep" / "surface_sgd.csv", delimiter=",", skiprows=1)
    header = (tmp_path / "rep" / "surface_sgd.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["a", "b", "train_loss"] and rows.shape == (9, len(header))
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(rows[:, 2], f["surface/sgd/train_loss"][:].ravel(), rtol=1e-9)
