import shutil
import subprocess
import sys

import h5py
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from analyses import (
    FGEConfig,
    HessianConfig,
    PCAConfig,
    PlaneConfig,
    RaysConfig,
    SegmentConfig,
    SharpnessConfig,
    fge,
    hessian,
    pca,
    plane,
    predictions,
    rays,
    segment,
    sharpness,
)
from analyses.hessian_plane import EigenPlaneConfig, eigen_plane
from analyses.surface import SurfaceConfig, surface
from figures import planes, plots
from landscape.config import EngineConfig
from swa_landscape.notebook import sections
from swa_landscape.reading import read_results, read_run
from swa_landscape.report import make_figures

ENG = EngineConfig(bn_batch_size=64, workers=1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def results(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "res.h5"
    rays(tiny_run, out, RaysConfig(directions=3, steps=5, t_max=3.0), ENG, progress=False)
    predictions(tiny_run, out, None, ENG, progress=False)
    segment(tiny_run, out, SegmentConfig(-0.5, 1.5, 6), ENG, progress=False)
    plane(tiny_run, out, PlaneConfig(grid=(5, 4)), ENG, progress=False)
    plane(tiny_run, out, PlaneConfig(("paper-fig1",), grid=(5, 4)), ENG, progress=False)
    fge(tiny_run, out, FGEConfig(scales=(1.0, 0.5)), ENG, progress=False)
    hessian(tiny_run, out, HessianConfig(points=("swa", "sgd", "captured"), top_k=2, trace_probes=4, density_runs=1,
                                         density_steps=6, blocks=True), ENG, progress=False)
    eigen_plane(tiny_run, out, EigenPlaneConfig(grid=(4, 4)), ENG, progress=False)
    pca(tiny_run, out, PCAConfig(grid=(4, 4)), ENG, progress=False)
    sharpness(tiny_run, out, SharpnessConfig(rhos=(0.05, 0.2), samples=3, report_rho=0.2, steps=2, m=100,
                                            batches=2), ENG, progress=False)
    surface(tiny_run, out, SurfaceConfig(grid=5, extent=0.5), ENG, progress=False)
    return str(out)


FIGURES = ("plane_fig1", "schedule", "plane", "rays", "segment", "fge", "hessian", "hessian_density", "hessian_blocks",
           "hessian_trajectory", "plane_hessian",
           "pca", "sharpness", "surface")  # the report's order


def _draw(name, run, res):
    """The report's own drawing of a section (the run's schedule or a registered analysis')."""
    return {sec.key: sec for sec in sections(run, res)}[name].draw()


def text_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty text labels of a matplotlib figure whose rendered extents overlap.

    Tick labels count only for ticks inside their axis's view interval: matplotlib keeps label objects
    for ticks outside it (not drawn, with stale positions).
    """
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ticks, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(abs(lo), abs(hi), 1e-30)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if label.get_visible() and lo - eps <= tick.get_loc() <= hi + eps:
                        drawn.append(label)
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible()] + drawn
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts if t.get_text().strip()]
    boxes = [(s, b) for s, b in boxes if b.width > 0 and b.height > 0]
    return [(a, c) for i, (a, b) in enumerate(boxes) for c, d in boxes[i + 1:] if b.overlaps(d)]


def _check_png(path):
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_renders_without_overlapping_text(tiny_run, results, tmp_path, name):
    fig, pf = _draw(name, read_run(tiny_run), read_results(results))
    assert text_overlaps(fig) == []
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    _check_png(tmp_path / "f.png")
    assert len(pf.data) >= 2 and all(len(t.x) > 0 for t in pf.data if getattr(t, "x", None) is not None)


def test_text_overlap_check_catches_overlaps():
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "label one")
    ax.text(0.51, 0.5, "label two")
    assert text_overlaps(fig) == [("label one", "label two")]


def test_schedule_draws_the_lr_of_every_step(tiny_run):
    run = read_run(tiny_run)
    fig = plots.schedule_figure(run)
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "SWA branch")
    captures = int((run.captured & (run.branch == "swa")).sum())
    assert len(set(np.round(line.get_ydata(), 12))) > captures  # the cycles show, not only the captured points
    assert fig.axes[1].get_yscale() == "log"


def test_planes_have_equal_scales_and_hold_the_swa_branch(results):
    res = read_results(results)
    for name in ("plane", "plane_fig1", "pca"):
        p = res[name]
        ax = planes.plane_figure(p).axes[0]
        assert ax.get_aspect() == 1.0
        swa = p["projected_branch"].astype(str) == "swa"
        xy = np.concatenate([p["projection_xy"][swa], p["solutions_xy"]])
        assert (xy[:, 0] >= p["x"][0]).all() and (xy[:, 0] <= p["x"][-1]).all()
        assert (xy[:, 1] >= p["y"][0]).all() and (xy[:, 1] <= p["y"][-1]).all()
        pf = planes.plane_plotly(p)
        assert pf.layout.yaxis.scaleanchor == "x" and pf.layout.yaxis2.scaleanchor == "x2"
    clipped, out = planes.clip_to_grid(np.array([[0.5, 0.5], [9.0, -9.0]]), np.linspace(0, 1, 3), np.linspace(0, 1, 3))
    np.testing.assert_array_equal(clipped, [[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(out, [False, True])


def _filled_levels(fig):
    return [tuple(c.levels) for ax in fig.axes for c in ax.collections if hasattr(c, "levels") and c.filled]


def test_eigen_and_pca_planes_are_drawn_as_the_surface_is(tiny_run, results):
    """One figure for every plane around a point: the eigen-planes at SWA and SGD share one colour scale, as the
    random surface's centres do, and the trajectory's projection is drawn where the group has it."""
    run, res = read_run(tiny_run), read_results(results)
    for key, panels in (("plane_hessian", 2), ("surface", 2), ("pca", 1)):
        fig, pf = _draw(key, run, res)
        levels = _filled_levels(fig)
        assert len(levels) == panels and len(set(levels)) == 1  # one colour scale over the panels
        assert {t.type for t in pf.data} >= {"contour", "surface"}
        plt.close(fig)
    fig, _ = _draw("plane_hessian", run, res)
    swa = fig.axes[0]
    branch = [ln for ln in swa.lines if ln.get_label() == "SWA-branch snapshots"]
    p = res["plane_hessian_swa"]
    xy = p["projection_xy"][p["projected_branch"].astype(str) == "swa"]
    assert len(branch) == 1 and len(branch[0].get_xdata()) == len(xy)
    assert swa.get_xlabel() == "eigenvector 1 (parameter-space L2)"
    plt.close(fig)
    fig, _ = _draw("pca", run, res)
    assert fig.axes[0].get_xlabel().startswith("PC 1 (")
    plt.close(fig)


def test_divergent_points_are_clipped_and_marked(results, tmp_path):
    res = read_results(results)
    p = res["plane"]
    p["train_loss"][1, 2] = np.inf
    p["test_error"][0, 0] = np.nan
    r = res["rays"]
    r["swa"]["train_loss"][0, -1] = np.nan
    for fig in (planes.plane_figure(p), plots.rays_figure(r)):
        fig.savefig(tmp_path / "d.png")
        _check_png(tmp_path / "d.png")
    contours = [t for t in planes.plane_plotly(p).data if t.type in ("contour", "surface")]
    assert len(contours) == 3 and all(np.isfinite(np.asarray(t.z, dtype=float)).all() for t in contours)
    clipped, bad = plots.clip_finite(np.array([1.0, np.inf, 3.0, np.nan]))
    np.testing.assert_array_equal(clipped, [1.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(bad, [False, True, False, True])


@pytest.fixture(scope="module")
def report(tiny_run, results, tmp_path_factory):
    """The report of the tiny run with every analysis (made once; the tests read it, the browser a probed copy)."""
    return make_figures(tiny_run, results, tmp_path_factory.mktemp("report") / "rep")


def test_report_files(tiny_run, report, tmp_path):
    index, rep = report, report.parent
    for n in FIGURES:
        _check_png(rep / f"{n}.png")
        assert (rep / f"{n}.pdf").stat().st_size > 1000
        assert (rep / f"{n}.html").stat().st_size > 100_000  # interactive, plotly.js embedded
    html = index.read_text()
    assert "SWA test accuracy" in html and "The paper's findings on this run" in html
    positions = [html.index(f'<section id="{n}">') for n in FIGURES]
    assert positions == sorted(positions) and html.index("Summary") < positions[0]
    for finding in ("SWA generalises better", "SWA is wider", "SGD lies at the edge", "SWA approximates"):
        assert finding in html
    summary = html[html.index("<h2>Summary</h2>"):positions[0]]  # one run: within-run tests, no nan, no '± 0'
    assert "Within this run" in summary and "McNemar" in summary and "one run: no interval" in summary
    assert "nan" not in summary.lower() and "± 0" not in summary
    assert "<script src=" not in html and 'src="http' not in html  # plotly.js embedded, nothing loaded remotely
    assert html.count("Plotly.newPlot") >= len(FIGURES) and html.count("plotly.js v") <= 2
    # a run without results still gets its schedule figure
    only = make_figures(tiny_run, None, tmp_path / "only")
    assert "no analysis results yet" in only.read_text()


# Records JavaScript errors, non-local resource requests, rendered plotly plots and, for the contour plots, the
# smallest fraction of a plot area the contour covers (plotly's axis ranges against the trace) on <body>.
PROBE = """<script>window.__errs=[];window.addEventListener('error',function(e){window.__errs.push(String(e.message));});
window.addEventListener('load',function(){var r=performance.getEntriesByType('resource').map(function(e){return e.name;})
.filter(function(n){return !(n.startsWith('file:')||n.startsWith('data:')||n.startsWith('blob:'));});
document.body.setAttribute('data-js-errors',String(window.__errs.length));
document.body.setAttribute('data-network',String(r.length));
document.body.setAttribute('data-plotly',String(document.querySelectorAll('.js-plotly-plot .main-svg').length));
document.body.setAttribute('data-images',String(Array.prototype.filter.call(document.images,function(i){return i.complete&&i.naturalWidth>0;}).length));
var fill=1;document.querySelectorAll('.js-plotly-plot').forEach(function(gd){(gd._fullData||[]).forEach(function(t){
if(t.type!=='contour')return;var L=gd._fullLayout,ax=L['xaxis'+(t.xaxis||'x').slice(1)],ay=L['yaxis'+(t.yaxis||'y').slice(1)];
function f(v,a){var lo=Math.min.apply(null,v),hi=Math.max.apply(null,v),r0=Math.min(a.range[0],a.range[1]),r1=Math.max(a.range[0],a.range[1]);
return Math.max(0,Math.min(hi,r1)-Math.max(lo,r0))/(r1-r0);}fill=Math.min(fill,f(t.x,ax)*f(t.y,ay));});});
document.body.setAttribute('data-contour-fill',fill.toFixed(3));});</script>"""


def _probed(index):
    """A copy of the report beside it with the test's probe as the first script of the page (the generated
    report carries no test code)."""
    page = index.read_text(encoding="utf-8")
    at = page.index('<meta charset="utf-8">') + len('<meta charset="utf-8">')
    probed = index.with_name("probed.html")
    probed.write_text(page[:at] + PROBE + page[at:], encoding="utf-8")
    return probed


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_offline(report, tmp_path):
    index = _probed(report)
    assert "data-js-errors" not in report.read_text()  # the probe is the test's own
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=15000", "--dump-dom", index.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    shown = dom[dom.index("<h2>Summary</h2>"):dom.index("<section")]  # the verdicts as the browser has them
    assert "Within this run" in shown and "nan" not in shown.lower() and "± 0" not in shown
    attrs = dict(a.split("=") for a in body.replace('"', "").split()[1:])
    assert attrs["data-js-errors"] == "0"
    assert attrs["data-network"] == "0"
    assert attrs["data-images"] == str(len(FIGURES))  # every figure's PNG loaded
    assert int(attrs["data-plotly"]) >= len(FIGURES)  # the interactive figures were drawn by the embedded plotly.js
    assert float(attrs["data-contour-fill"]) > 0.95  # each plane's contour fills its plot area
    shot = tmp_path / "report.png"
    subprocess.run([*cmd[:-2], "--window-size=1400,2400", f"--screenshot={shot}", index.as_uri()],
                   capture_output=True, timeout=180)
    _check_png(shot)


def test_figures_cli_and_demo_end_to_end(tmp_path, capsys):
    """The demo as a newcomer runs it (a process), on a config small enough to finish in well under a minute."""
    from swa_landscape import main

    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "swa_landscape", "demo", "--out", str(out), "--epochs", "6", "--num-samples",
                        "600", "--grid", "3", "--directions", "2", "--ray-steps", "3", "--seeds", "2", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert str(out / "index.html") in r.stdout.splitlines()[-1]
    for n in ("schedule", "plane", "plane_fig1", "rays", "rays_filter", "segment", "fge"):
        _check_png(out / f"{n}.png")
    with h5py.File(out / "run.landscape.h5", "r") as f:
        assert set(f) == {"rays", "rays_filter", "predictions", "segment", "plane", "plane_fig1", "fge"}
    with h5py.File(out / "seeds" / "seed1" / "run.landscape.h5", "r") as f:  # the second seed: what the findings use
        assert set(f) == {"rays", "rays_filter", "predictions", "segment", "fge"}
    verdicts = r.stdout[r.stdout.index("findings over 2 run(s)"):]  # the last lines: verdicts with their intervals
    assert verdicts.count("95% t-interval [") == 9 and "SWA approximates the FGE ensemble:" in verdicts
    assert verdicts.count("2 runs: the signed-rank interval needs 6") + verdicts.count("no spread over the runs") == 3
    assert "nan" not in verdicts  # the segment's signed-rank claims: no interval from 2 runs, said in words
    run, res = read_run(out / "run.h5"), read_results(out / "run.landscape.h5")
    for name in ("plane_fig1", "schedule", "plane", "rays", "segment", "fge"):  # the demo's figures, looked at
        fig = _draw(name, run, res)[0]
        assert text_overlaps(fig) == [], name
        plt.close(fig)
    assert main(["figures", str(out / "run.h5"), "--out", str(tmp_path / "f")]) == 0  # the command, in-process
    assert (tmp_path / "f" / "plane.png").exists()
    assert main(["figures", str(tmp_path / "nope.h5"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_sharpness_over_runs_draws_each_run_and_the_mean_with_its_band():
    from figures.sharpness import sharpness_runs_figure

    rng = np.random.default_rng(8)
    rhos = np.array([0.02, 0.05, 0.1, 0.2])
    runs = [{"sharpness": {o: {"rhos": rhos, "adaptive_mean": rng.uniform(0.01, 0.1, 4),
                               "raw_mean": rng.uniform(0.001, 0.01, 4)} for o in ("swa", "sgd")}} for _ in range(3)]
    fig = sharpness_runs_figure(runs)
    for ax, kind in zip(fig.axes[:2], ("adaptive", "raw")):
        curves = np.stack([r["sharpness"]["swa"][f"{kind}_mean"] for r in runs])
        mean_line = next(line for line in ax.lines if str(line.get_label()).startswith("SWA: mean of 3 runs"))
        np.testing.assert_allclose(mean_line.get_ydata(), curves.mean(0), rtol=1e-12)
        band = ax.collections[0].get_paths()[0].vertices[:, 1]  # the SWA band: mean ± std (ddof 1)
        lo, hi = curves.mean(0) - curves.std(0, ddof=1), curves.mean(0) + curves.std(0, ddof=1)
        assert band.min() == pytest.approx(lo.min(), rel=1e-9) and band.max() == pytest.approx(hi.max(), rel=1e-9)
    assert text_overlaps(fig) == []
    plt.close(fig)
