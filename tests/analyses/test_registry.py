"""Adding an analysis is one file: a toy analysis in a package outside ``analyses/``, installed through an entry point
(a ``.dist-info`` folder on the path, as pip would leave it), appears in ``analyze --help`` with its own flags, in
``all``, in ``compare``'s table and verdicts and in the report, resumes and writes through the same machinery as the
built-ins, and no file of the toolkit names it. Registration from user code and its refusals are tested too."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import textwrap
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

from analyses import catalog
from analyses.compare import compare
from analyses.metrics import SWA_ACC, Claim, Finding, Metric
from analyses.registry import Analysis, check_analysis, register, registered
from landscape.errors import UserError
from swa_landscape import build_parser, main

TOY_PLUGIN = '''
"""A toy analysis shipped by another package: the train loss at multiples of w_SWA."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from analyses.common import VALUES, evaluate_missing
from analyses.metrics import SWA_ACC, Claim, Finding, Metric
from analyses.registry import Analysis, Section
from landscape.errors import bounded, check_bounds
from landscape.points import PointSet


@dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy analysis.

    Attributes:
        scales: Factors on w_SWA where the toy evaluates the loss.
        label: Any word, stored with the result.
    """

    scales: tuple[float, ...] = (0.5, 1.0, 1.5)
    label: str = "toy"

    def __post_init__(self) -> None:
        check_bounds(self)


def compute(ctx, results, config, progress):
    w, b = ctx.traj.solution("swa")
    scales = np.asarray(config.scales, dtype=float)
    points = PointSet.explicit(torch.stack([s * w.double() for s in scales]), b.expand(len(scales), -1))
    cfg = {**asdict(config), "engine": ctx.engine_dict()}
    done = results.prepare("toy", cfg, {k: ((len(scales),), "f8", np.nan) for k in VALUES}, {"scale": scales})
    computed = evaluate_missing(ctx, results, "toy", points, done, progress, "toy")  # resumable, sharded over ranks
    with results.read() as f:
        loss = f["toy/train_loss"][:]
    results.write("toy", {}, {"label": config.label})
    return {"train_loss": loss, "computed": computed}


def read_min(f):
    return float(np.min(f["toy/train_loss"][:])) if "toy/train_loss" in f else float("nan")


def report(res):
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    def draw():
        fig, ax = plt.subplots()
        ax.plot(res["toy"]["scale"], res["toy"]["train_loss"])
        return fig, go.Figure(go.Scatter(x=res["toy"]["scale"], y=res["toy"]["train_loss"]))

    return [Section("toy", "The toy's loss", "One line.", 7.5, draw)] if "toy" in res else []


MIN_LOSS = Metric("toy_min_loss", "toy: least train loss over the scales", read_min)
ANALYSIS = Analysis(
    name="toy", help="train loss at multiples of w_SWA (a plug-in's toy)", config=ToyConfig, compute=compute,
    describe=lambda s: f"toy: least train loss {np.min(s['train_loss']):.4f} ({s['computed']} points computed now)",
    order=35, paper=(("toy", ToyConfig()),), metrics=(MIN_LOSS,), report=report,
    findings=(Finding("toy", "The toy's loss stays below SWA's accuracy", "toy", (
        Claim("below", "SWA accuracy minus the toy's least loss", (SWA_ACC, MIN_LOSS), lambda a, m: a - m),),
        optional=True),))
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """The toy package and its installed metadata on the path; the toolkit finds it by its entry point."""
    site = tmp_path / "site"
    (site / "toy_plugin").mkdir(parents=True)
    (site / "toy_plugin" / "__init__.py").write_text(textwrap.dedent(TOY_PLUGIN))
    info = site / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{catalog.ENTRY_POINT_GROUP}]\ntoy = toy_plugin:ANALYSIS\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield importlib.import_module("toy_plugin")
    sys.modules.pop("toy_plugin", None)


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


def _run(*argv: str) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main(list(argv)) == 0
    return stdout.getvalue()


def test_an_installed_plugin_reaches_the_command_line_all_compare_and_the_report(toy_plugin, tiny_run, tmp_path):
    from swa_landscape.report import make_figures

    assert [a.name for a in catalog.analyses()][:5] == ["rays", "predictions", "segment", "plane", "toy"]  # by its order, 35
    assert "train loss at multiples" in _help("analyze", "RUN")
    own = _help("analyze", "RUN", "toy")
    assert "--scales SCALES" in own and "Factors on w_SWA" in own and "--bn-mode" in own and "--directions" not in own
    assert "--toy.scales" in _help("analyze", "RUN", "all")
    assert ("toy", toy_plugin.ToyConfig()) in catalog.paper() and toy_plugin.ANALYSIS not in [
        catalog.by_config(type(c)) for _, c in catalog.judged()]

    out = tmp_path / "r.h5"
    common = ["--out", str(out), "--dtype", "float64", "--no-progress"]
    said = _run("analyze", tiny_run, "toy", "--scales", "0.5,1,2", *common)
    assert "(3 points computed now)" in said
    assert "(0 points computed now)" in _run("analyze", tiny_run, "toy", "--scales", "0.5,1,2", *common)  # resumed
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["toy/scale"][:], [0.5, 1.0, 2.0])
        assert f["toy/done"][:].all() and f["toy"].attrs["label"] == "toy"
        least = float(np.min(f["toy/train_loss"][:]))
    direct = toy_plugin.ANALYSIS(tiny_run, tmp_path / "direct.h5", toy_plugin.ToyConfig((0.5, 1.0, 2.0)),
                                 progress=False)  # the Python API of every analysis
    assert np.min(direct["train_loss"]) == pytest.approx(least, rel=1e-5)  # float32 by default

    said = _run("analyze", tiny_run, "all", "--rays.directions", "1", "--rays.steps", "3", "--rays.t-max", "1",
                "--segment.steps", "3", "--plane.grid", "3", "3", "--toy.scales", "1,3", *common)
    assert "toy: least train loss" in said and "rays (random directions)" in said
    c = compare([(tiny_run, out)])
    with h5py.File(out, "r") as f:
        assert c.values["toy_min_loss"][0] == float(np.min(f["toy/train_loss"][:]))
        np.testing.assert_array_equal(f["toy/scale"][:], [1.0, 3.0])
    table = c.format_table()
    assert "toy: least train loss over the scales" in table and "The toy's loss stays below" in table
    page = make_figures(tiny_run, out, tmp_path / "rep").read_text()
    assert '<section id="toy">' in page and (tmp_path / "rep" / "toy.png").exists()
    assert page.index('<section id="rays">') < page.index('<section id="toy">')  # figure 4 before 7.5


def test_a_broken_plugin_is_one_line(tmp_path, monkeypatch, tiny_run, capsys):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{catalog.ENTRY_POINT_GROUP}]\nbroken = no_such_module:ANALYSIS\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with pytest.raises(UserError, match="plug-in analysis broken .no_such_module:ANALYSIS. cannot be used"):
        catalog.analyses()


@dataclass(frozen=True)
class OwnConfig:
    """Settings of an analysis registered from user code.

    Attributes:
        scale: Factor on w_SWA.
    """

    scale: float = 1.0


def _own(**fields) -> Analysis:
    return Analysis(**{"name": "own", "help": "own", "config": OwnConfig, "compute": lambda *a: {},
                       "describe": str, "order": 99, **fields})


def test_registration_from_user_code_and_its_refusals():
    own = _own()
    with registered(own):
        assert catalog.get("own") is own and catalog.by_config(OwnConfig) is own
        assert catalog.analyses()[-1] is own
        with pytest.raises(ValueError, match="already registered"):
            register(_own(help="again"))
        with pytest.raises(ValueError, match="OwnConfig already belongs"):
            register(_own(name="own2"))
    with pytest.raises(UserError, match="no analysis named 'own'"):
        catalog.get("own")
    with pytest.raises(TypeError):
        Analysis("own", "positional", OwnConfig, lambda *a: {}, str, 99)  # keyword fields only
    stray = Metric("stray", "a metric no analysis declares")
    with pytest.raises(ValueError, match="uses metric 'stray', which own does not declare"):
        check_analysis(_own(findings=(Finding("f", "f", "own", (Claim("c", "c", (stray, SWA_ACC), np.subtract),)),)))
    with pytest.raises(ValueError, match="paper entry 'x' has a RaysConfig"):
        from analyses import RaysConfig

        check_analysis(_own(paper=(("x", RaysConfig()),)))
    with registered(_own(paper=(("rays", OwnConfig()),))), pytest.raises(UserError, match="share the results key"):
        catalog.analyses()  # a results key of `all` that another analysis writes
    with pytest.raises(ValueError, match="config must be a dataclass"):
        check_analysis(_own(config=type("Plain", (), {})))


def test_every_builtin_analysis_declares_what_the_toolkit_needs():
    """The built-in ones: a documented config with defaults, a description, a report section or metrics; every
    claim's metrics declared; the paper's analyses and the judged ones derived from the declarations."""
    from swa_landscape.fields import field_help

    names = [a.name for a in catalog.analyses()]
    assert names == ["rays", "predictions", "segment", "plane", "fge", "hessian", "hessian-plane", "surface", "pca",
                     "sharpness"]
    for a in catalog.analyses():
        check_analysis(a)
        a.config()  # every field has a default
        assert set(field_help(a.config)) >= set(a.config.__dataclass_fields__), a.name
        assert a.help and (a.report or a.metrics), a.name
    assert [k for k, _ in catalog.paper()] == ["rays", "rays_filter", "predictions", "segment", "plane", "plane_fig1",
                                               "fge"]
    assert [k for k, _ in catalog.judged()] == ["rays", "rays_filter", "predictions", "segment", "fge"]
    assert [f.key for f in catalog.findings()] == ["accuracy", "width", "segment", "fge", "averaging", "sharpness"]
    keys = [m.key for m in catalog.metrics()]
    assert len(keys) == len(set(keys))
    for f in catalog.findings():
        assert set(f.metrics) <= set(catalog.metrics()), f.key
