import shutil
import subprocess
import sys

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from analyses import FGEConfig, PlaneConfig, RaysConfig, SegmentConfig, fge, plane, rays, segment
from figures import plots
from figures.data import read_results, read_run
from figures.report import make_figures
from landscape.engine import EngineConfig

ENG = EngineConfig(bn_batch_size=64, workers=1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def results(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "res.h5"
    rays(tiny_run, out, RaysConfig(directions=3, steps=5, t_max=3.0), ENG, progress=False)
    segment(tiny_run, out, SegmentConfig(-0.5, 1.5, 6), ENG, progress=False)
    plane(tiny_run, out, PlaneConfig(grid=(5, 4)), ENG, progress=False)
    fge(tiny_run, out, FGEConfig(scales=(1.0, 0.5)), ENG, progress=False)
    return str(out)


def _check_png(path):
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("name", ["schedule", "plane", "rays", "segment", "fge"])
def test_each_figure_renders(tiny_run, results, tmp_path, name):
    run, res = read_run(tiny_run), read_results(results)
    fig = plots.schedule_figure(run) if name == "schedule" else getattr(plots, f"{name}_figure")(res[name])
    fig.savefig(tmp_path / "f.png")
    _check_png(tmp_path / "f.png")
    if hasattr(plots, f"{name}_plotly"):
        pf = getattr(plots, f"{name}_plotly")(run if name == "schedule" else res[name])
        assert len(pf.data) >= 2 and all(len(t.x) > 0 for t in pf.data if getattr(t, "x", None) is not None)


def test_divergent_points_are_clipped_and_marked(results, tmp_path):
    res = read_results(results)
    p = res["plane"]
    p["train_loss"][1, 2] = np.inf
    p["test_error"][0, 0] = np.nan
    r = res["rays"]
    r["swa"]["train_loss"][0, -1] = np.nan
    for fig in (plots.plane_figure(p), plots.rays_figure(r)):
        fig.savefig(tmp_path / "d.png")
        _check_png(tmp_path / "d.png")
    contours = [t for t in plots.plane_plotly(p).data if t.type in ("contour", "surface")]
    assert len(contours) == 3 and all(np.isfinite(np.asarray(t.z, dtype=float)).all() for t in contours)
    clipped, bad = plots.clip_finite(np.array([1.0, np.inf, 3.0, np.nan]))
    np.testing.assert_array_equal(clipped, [1.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(bad, [False, True, False, True])


def test_report_files(tiny_run, results, tmp_path):
    index = make_figures(tiny_run, results, tmp_path / "rep")
    names = ("schedule", "plane", "rays", "segment", "fge")
    for n in names:
        _check_png(tmp_path / "rep" / f"{n}.png")
        assert (tmp_path / "rep" / f"{n}.pdf").stat().st_size > 1000
    html = index.read_text()
    assert "SWA test accuracy" in html and "paper 0.126" in html
    assert "<script src=" not in html and 'src="http' not in html  # plotly.js embedded, nothing loaded remotely
    # a run without results still gets its schedule figure
    only = make_figures(tiny_run, None, tmp_path / "only")
    assert "no analysis results yet" in only.read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_offline(tiny_run, results, tmp_path):
    index = make_figures(tiny_run, results, tmp_path / "rep")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=15000", "--dump-dom", index.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    attrs = dict(a.split("=") for a in body.replace('"', "").split()[1:])
    assert attrs["data-js-errors"] == "0"
    assert attrs["data-network"] == "0"
    assert attrs["data-images"] == "5"  # every figure's PNG loaded
    assert int(attrs["data-plotly"]) >= 4  # the interactive figures were drawn by the embedded plotly.js


def test_figures_cli_and_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "demo", "--out", str(out), "--epochs", "6", "--num-samples",
                        "500", "--grid", "3", "--directions", "2", "--ray-steps", "3", "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert str(out / "index.html") in r.stdout.splitlines()[-1]
    for n in ("schedule", "plane", "rays", "segment", "fge"):
        _check_png(out / f"{n}.png")
    with h5py.File(out / "run.landscape.h5", "r") as f:
        assert set(f) == {"rays", "segment", "plane", "fge"}
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "figures", str(out / "run.h5"), "--out", str(tmp_path / "f")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "f" / "plane.png").exists()
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "figures", str(tmp_path / "nope.h5"), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr
