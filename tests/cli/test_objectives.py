"""The command line end to end for a regression network and a causal transformer language model: train with
``--objective`` -> ``analyze all`` -> ``figures`` -> ``compare``, each figure labelled with the objective's metric,
the objective rebuilt from the run file alone; and the bad objectives and data that get one line and exit 2."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import pytest
import torch

from landscape.layout import flatten
from landscape.objective import LanguageModel, Regression
from landscape.reference import reference_point
from swa import Trajectory, load_model
from swa_landscape.notebook import figure
from tests.user_factories import load_regression, load_tokens

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--epochs", "3", "--swa-epochs", "2", "--batch-size", "30", "--lr", "0.05", "--swa-lr", "0.05", "--swa-cycle",
         "0.5", "--no-progress"]
CASES = {
    "regression": (["--model", "tests.user_factories:make_regressor", "--dataset", "tests.user_factories:load_regression",
                    "--objective", "regression"], "MSE", Regression(), load_regression),
    "language-model": (["--model", "tests.user_factories:CausalLM", "--dataset", "tests.user_factories:load_tokens",
                        "--objective", "language-model", "--objective-kwargs", '{"ignore_index": -100}'],
                       "token error", LanguageModel(), load_tokens),
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "swa_landscape", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("task", list(CASES))
def test_train_analyze_figures_compare(task, tmp_path):
    args, error_name, objective, load = CASES[task]
    r = _cli("train", *args, *SMALL, "--out", "run.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"test {error_name}:" in r.stdout  # the summary speaks of the objective's error
    r = _cli("analyze", "run.h5", "all", "--rays.directions", "2", "--rays.steps", "3", "--plane.grid", "3", "3",
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if task == "regression":  # FGE is defined for distributions: skipped with its reason
        assert "fge skipped: fge compares predicted distributions" in r.stdout
        assert "predictions skipped: predictions compares predicted labels sample by sample; the regression " \
               "objective's predictions are not labels" in r.stdout
    # the engine's numbers are the objective's, rebuilt from the file alone: w_SWA's segment point against a plain
    # evaluation of the SWA model
    (train, test) = load()
    with Trajectory(tmp_path / "run.h5") as t:
        assert t.config["objective"] == task
        err = t.solution_scalar("swa", "test_error")
    net = load_model(tmp_path / "run.h5", "swa")
    ref, _ = reference_point(net, flatten(list(net.parameters())), {"test": test}, None, objective=objective,
                             buffers=flatten(list(net.buffers())))
    with h5py.File(tmp_path / "run.landscape.h5", "r") as f:
        seg = f["segment"]
        i = int(abs(seg["t"][:]).argmin())
        assert seg["t"][i] == 0.0
        torch.testing.assert_close(float(seg["test_error"][i]), ref["test"].error, rtol=1e-5, atol=1e-7)
    assert ref["test"].error == pytest.approx(err, rel=1e-5)  # the trainer stored the same error
    r = _cli("figures", "run.h5", "--out", "figs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("schedule", "rays", "segment", "plane"):
        assert (tmp_path / "figs" / f"{name}.png").exists()
    fig, interactive = figure(tmp_path / "run.h5", tmp_path / "run.landscape.h5", "rays")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any(lab.startswith(f"test {error_name}") for lab in labels) and "test error" not in " ".join(labels)
    plt.close(fig)
    r = _cli("compare", "run.h5", "--out", "cmp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SWA is wider" in r.stdout


def test_bad_objectives_and_data_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    base = ["train", "--model", "tests.user_factories:make_regressor", "--dataset",
            "tests.user_factories:load_regression", *SMALL, "--out", str(tmp_path / "never.h5")]
    cases = [
        (["--objective", "nowhere.module:make"], "objective 'nowhere.module:make' cannot be imported"),
        (["--objective", "huber"], "unknown objective 'huber'"),
        (["--objective", "tests.landscape.test_objective:make_scalar_loss"],
         "per_sample returned loss of shape (1,), expected one value per point and sample"),
        (["--objective", "classification"], "classification needs class indices [N] (integers)"),
        (["--objective", "regression", "--dataset", "tests.user_factories:load_data"],
         "regression needs floating-point targets shaped like the predictions"),
        (["--objective", "regression", "--dataset", "tests.user_factories:bad_data"], "expected (train, test)"),
        (["--objective", "language-model", "--dataset", "tests.user_factories:dicts_without_targets"],
         "yields dict batches without targets; put them under one of labels"),
    ]
    from swa_landscape.cli import main

    for extra, message in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main([*base, *extra])
        lines = err.getvalue().strip().splitlines()
        assert rc == 2 and len(lines) == 1 and message in lines[0], (extra, err.getvalue())
        assert not (tmp_path / "never.h5").exists()
