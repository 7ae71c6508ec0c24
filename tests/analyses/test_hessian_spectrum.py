"""The Hessian analysis beyond its top eigenvalues, against the dense float64 Hessian: the most negative eigenvalue,
each layer's block, the spectral density's nodes and weights, and curvature at every captured snapshot equal to a
per-point recomputation; the report's curvature sections."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from analyses import HessianConfig, hessian
from analyses.hessian import layer_blocks
from landscape.errors import UserError
from swa import Trajectory
from tests.analyses.test_hessian_pca import ENG, _dense_hessian, small_run  # noqa: F401 - the fixture


def test_negative_curvature_blocks_and_density_match_the_dense_hessian(small_run, tmp_path):  # noqa: F811
    res = tmp_path / "r.h5"
    cfg = HessianConfig(points=("swa",), top_k=1, trace_probes=40, trace_deflate=5, tol=0.0, seed=2, vectors=6,
                        density_runs=3, density_steps=25, negative=True, blocks=True)
    s = hessian(small_run, res, cfg, ENG, progress=False)["swa"]
    with Trajectory(small_run) as t:
        w = t.solution("swa")[0].double()
        layout = t.param_layout
    h, _ = _dense_hessian(small_run, w)
    eig = torch.linalg.eigvalsh(h).numpy()
    assert s["min_eigenvalue"] == pytest.approx(eig.min(), rel=1e-6, abs=1e-9 * eig.max())
    nodes, weights = s["density_nodes"], s["density_weights"]
    ok = np.isfinite(nodes)
    assert nodes[ok].min() >= eig.min() - 1e-6 * eig.max() and nodes[ok].max() <= eig.max() * (1 + 1e-6)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-10)
    assert np.trapezoid(s["density"], s["density_grid"]) == pytest.approx(1.0, abs=5e-3)
    names = [b.decode() for b in s["block_names"]]
    assert names == list(dict.fromkeys(n.rsplit(".", 1)[0] for n in layout.names))  # one block per layer
    assert int(s["block_parameters"].sum()) == layout.size
    lo = 0
    for i, size in enumerate(s["block_parameters"]):
        sub = h[lo:lo + size, lo:lo + size]
        top = float(torch.linalg.eigvalsh(sub)[-1])
        assert s["block_top_eigenvalue"][i] == pytest.approx(top, rel=1e-6, abs=1e-9 * eig.max())
        assert top <= eig.max() * (1 + 1e-9)  # Cauchy interlacing: a block's top is at most the whole's
        assert abs(s["block_trace"][i] - float(torch.trace(sub))) <= 4 * s["block_trace_se"][i] + 1e-9 * eig.max()
        lo += size


def test_curvature_at_every_captured_snapshot_equals_a_per_point_run(small_run, tmp_path):  # noqa: F811
    cfg = HessianConfig(points=("swa", "sgd", "captured"), top_k=1, trace_probes=12, trace_rtol=0.0, tol=0.0,
                        trace_deflate=2, vectors=6)
    out = hessian(small_run, tmp_path / "a.h5", cfg, ENG, progress=False)
    with Trajectory(small_run) as t:
        captured = [str(i) for i in np.flatnonzero(t.meta("captured") & (t.meta("branch") == "swa"))]
    assert len(captured) >= 2 and list(out) == ["swa", "sgd", *captured]
    one = hessian(small_run, tmp_path / "b.h5", HessianConfig(points=(captured[1],), top_k=1, trace_probes=12,
                                                               trace_rtol=0.0, tol=0.0, trace_deflate=2, vectors=6),
                  ENG, progress=False)[captured[1]]
    np.testing.assert_allclose(out[captured[1]]["eigenvalues"], one["eigenvalues"], rtol=1e-10)
    assert out[captured[1]]["trace"] == pytest.approx(one["trace"], rel=1e-10)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert set(f["hessian"]) == {"swa", "sgd", *captured}
    with pytest.raises(UserError, match="needs top_k >= 1, trace_probes >= 2, density_runs >= 1 or negative"):
        HessianConfig(top_k=0, trace_probes=0)
    with pytest.raises(UserError, match="hessian point 'somewhere'"):
        HessianConfig(points=("captured", "somewhere"))


def test_the_report_draws_the_curvature_sections(small_run, tmp_path):  # noqa: F811
    from swa_landscape.report import make_figures

    res = tmp_path / "r.h5"
    hessian(small_run, res, HessianConfig(points=("swa", "sgd", "captured"), top_k=1, trace_probes=4,
                                          trace_deflate=1, density_runs=1, density_steps=8, blocks=True), ENG,
            progress=False)
    page = make_figures(small_run, res, tmp_path / "rep").read_text()
    for key in ("hessian", "hessian_density", "hessian_blocks", "hessian_trajectory"):
        assert f'<section id="{key}">' in page and (tmp_path / "rep" / f"{key}.png").stat().st_size > 10_000


def test_chosen_blocks_are_the_dense_hessians_blocks_and_an_unknown_name_is_refused(small_run, tmp_path):  # noqa: F811
    """A layer and a single parameter, asked in that order: each block's top eigenvalue and trace equal those of the
    dense Hessian's diagonal block of its parameters; a name the network lacks is one line and exit 2."""
    with Trajectory(small_run) as t:
        w = t.solution("swa")[0].double()
        layout = t.param_layout
    layers = layer_blocks(layout)
    chosen = (layout.names[-1], layers[0][0])  # the last parameter alone, then the first layer
    cfg = HessianConfig(points=("swa",), top_k=1, trace_probes=60, trace_deflate=5, tol=0.0, seed=3, vectors=6,
                        blocks=True, block_names=chosen)
    s = hessian(small_run, tmp_path / "r.h5", cfg, ENG, progress=False)["swa"]
    assert [b.decode() for b in s["block_names"]] == list(chosen)
    h, _ = _dense_hessian(small_run, w)
    offsets = np.cumsum((0,) + layout.numels)
    spans = [(int(offsets[-2]), int(offsets[-1])), layers[0][1:]]
    for i, (lo, hi) in enumerate(spans):
        sub = h[lo:hi, lo:hi]
        assert s["block_parameters"][i] == hi - lo
        assert s["block_top_eigenvalue"][i] == pytest.approx(float(torch.linalg.eigvalsh(sub)[-1]), rel=1e-6,
                                                             abs=1e-9)
        assert abs(s["block_trace"][i] - float(torch.trace(sub))) <= 4 * s["block_trace_se"][i] + 1e-9
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "analyze", small_run, "hessian", "--blocks",
                        "--block-names", "nope", "--out", str(tmp_path / "n.h5")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no layer or parameter named 'nope'" in r.stderr
    assert not (tmp_path / "n.h5").exists()
