"""Adding an analysis is one module: a toy analysis defined here, registered for the test, appears in the command
line (with its own flags), in ``all`` when listed, in ``compare``'s table and in the report, and nothing outside
this file knows it."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import h5py
import pytest

import analyses.batch
from analyses import RaysConfig
from analyses.compare import compare
from analyses.registry import REGISTRY, Analysis, Section, by_config, get, register, registered
from landscape.errors import UserError, bounded, check_bounds
from landscape.points import PointSet
from swa_landscape import build_parser, main


@dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy analysis.

    Attributes:
        scale: Factor on w_SWA where the toy evaluates the loss.
        label: Any word, stored with the result.
    """

    scale: float = bounded(1.0, gt=0)
    label: str = "toy"

    def __post_init__(self) -> None:
        check_bounds(self)


def _compute(ctx, results, config: ToyConfig, progress: bool) -> dict:
    w, b = ctx.traj.solution("swa")
    r = ctx.engine.evaluate(PointSet.explicit((config.scale * w.double())[None].float(), b[None]), splits=("train",))
    loss = float(r.loss["train"][0])
    results.write("toy", {"train_loss": loss, "scale": config.scale}, {"label": config.label})
    return {"train_loss": loss, "scale": config.scale}


def _report(res: dict) -> list[Section]:
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    def draw():
        fig, ax = plt.subplots()
        ax.bar([0], [float(res["toy"]["train_loss"])])
        return fig, go.Figure(go.Bar(y=[float(res["toy"]["train_loss"])]))

    return [Section("toy", "The toy's loss", "One bar.", 7.5, draw)] if "toy" in res else []


TOY = Analysis("toy", "train loss at a multiple of w_SWA (a test's toy)", ToyConfig, _compute,
               lambda s: f"toy: train loss {s['train_loss']:.4f} at scale {s['scale']}",
               metrics=lambda f: {"toy_loss": float(f["toy/train_loss"][()])} if "toy" in f else {},
               labels={"toy_loss": "toy: train loss at scale"}, report=_report)


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


def test_a_registered_analysis_is_a_subcommand_with_its_own_flags(tiny_run, tmp_path):
    assert "toy" not in _help("analyze", "RUN")
    with registered(TOY):
        assert "toy" in _help("analyze", "RUN") and "train loss at a multiple" in _help("analyze", "RUN")
        own = _help("analyze", "RUN", "toy")
        assert "--scale SCALE" in own and "Factor on w_SWA" in own and "--bn-mode" in own
        assert "--directions" not in own and "--grid" not in own  # other analyses' flags are theirs
        assert "--scale" not in _help("analyze", "RUN", "rays")
        out = tmp_path / "r.h5"
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(["analyze", tiny_run, "toy", "--scale", "0.5", "--label", "half", "--out", str(out),
                         "--dtype", "float64", "--no-progress"]) == 0
        assert "toy: train loss" in stdout.getvalue() and "at scale 0.5" in stdout.getvalue()
        with h5py.File(out, "r") as f:
            assert f["toy/scale"][()] == 0.5 and f["toy"].attrs["label"] == "half"
            stored = float(f["toy/train_loss"][()])
        direct = TOY(tiny_run, tmp_path / "direct.h5", ToyConfig(0.5), progress=False)  # the Python API
        assert direct["train_loss"] == pytest.approx(stored, rel=1e-5)
        # a bad value is refused by the config, as for every analysis
        assert main(["analyze", tiny_run, "toy", "--scale", "-1", "--out", str(out)]) == 2
    assert "toy" not in REGISTRY  # registered for the block only


def test_a_listed_analysis_runs_in_all_and_reaches_compare_and_the_report(tiny_run, tmp_path, monkeypatch):
    from figures.report import make_figures

    paper = (("rays", RaysConfig(directions=1, steps=3, t_max=1.0)), ("toy", ToyConfig(2.0)))
    monkeypatch.setattr(analyses.batch, "PAPER", paper)
    with registered(TOY):
        assert "--toy.scale" in _help("analyze", "RUN", "all")
        out = tmp_path / "r.h5"
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            assert main(["analyze", tiny_run, "all", "--toy.scale", "3", "--out", str(out), "--dtype", "float64",
                         "--no-progress"]) == 0
        assert "at scale 3.0" in stdout.getvalue() and "rays (random directions)" in stdout.getvalue()
        c = compare([(tiny_run, out)])
        with h5py.File(out, "r") as f:
            assert c.values["toy_loss"][0] == float(f["toy/train_loss"][()])
        assert "toy: train loss at scale" in c.format_table()
        page = make_figures(tiny_run, out, tmp_path / "rep").read_text()
        assert '<section id="toy">' in page and (tmp_path / "rep" / "toy.png").exists()
        # ordered by the paper's figure numbers: rays (4) before the toy (7.5)
        assert page.index('<section id="rays">') < page.index('<section id="toy">')


def test_registry_refuses_a_second_owner():
    with registered(TOY):
        with pytest.raises(ValueError, match="already registered"):
            register(Analysis("toy", "again", ToyConfig, _compute, str))
        with pytest.raises(ValueError, match="ToyConfig already belongs"):
            register(Analysis("toy2", "again", ToyConfig, _compute, str))
        assert by_config(ToyConfig) is TOY and get("toy") is TOY
    with pytest.raises(UserError, match="no analysis named 'toy'"):
        get("toy")


def test_every_registered_analysis_declares_what_the_toolkit_needs():
    """The built-in ones: a documented config with defaults, a description, and a report section or metrics."""
    from landscape.cli_fields import field_help

    assert list(REGISTRY) == ["rays", "segment", "plane", "fge", "hessian", "hessian-plane", "pca", "sharpness"]
    for a in REGISTRY.values():
        a.config()  # every field has a default
        assert set(field_help(a.config)) >= {f for f in a.config.__dataclass_fields__}, a.name
        assert a.help and (a.report or a.metrics), a.name
    assert {by_config(type(c)).name for _, c in analyses.batch.PAPER} == {"rays", "segment", "plane", "fge"}
