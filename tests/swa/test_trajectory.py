import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.errors import UserError
from swa import Trajectory, info, train
from swa.writer import TrajectoryWriter
from tests.factories import tiny_config

CLI = [sys.executable, "-m", "swa_landscape"]
QUIET = dict(progress=False, log=lambda s: None)


def test_round_trip_schema(tiny_run):
    with h5py.File(tiny_run, "r", libver="latest", swmr=True) as f:
        assert f.attrs["format"] == "swa-landscape/trajectory" and f.attrs["format_version"] == 1
        for k in ("model", "dataset", "config", "param_layout", "buffer_layout"):
            assert k in f.attrs
        n = int(f["snapshots/count"][()])
        for k in ("weights", "buffers", "epoch", "iteration", "lr", "branch", "captured",
                  "train_loss", "train_acc", "test_loss", "test_acc"):
            assert f[f"snapshots/{k}"].shape[0] == n
        p = f["snapshots/weights"].shape[1]
    with Trajectory(tiny_run) as t:
        assert t.param_layout.size == p and t.config["swa_schedule"] == "cyclic"
        assert t.model_spec == {"name": "convnet_bn", "kwargs": {"width": 8, "num_classes": 10}}
        w = t.weights([0, 2])
        assert w.shape == (2, p)
        torch.testing.assert_close(w[1], t.weights(2))
        with pytest.raises(UserError, match="out of range"):
            t.weights(n + 3)


def test_writer_commits_rows_and_refuses_overwrite(tmp_path):
    path = tmp_path / "w.h5"
    g = torch.Generator().manual_seed(5)
    rows = [torch.randn(7, generator=g) for _ in range(3)]
    with TrajectoryWriter.create(path, {"model": "{}"}, 7, 2) as w:
        for i, r in enumerate(rows):
            w.append(r, torch.randn(2, generator=g), epoch=i, iteration=i, lr=0.1, branch="sgd", captured=i == 1)
        w.save_checkpoint({"n_snapshots": 2, "x": torch.arange(3)})
        w.save_checkpoint({"n_snapshots": 3, "x": torch.arange(4)})
    with Trajectory(path) as t:
        torch.testing.assert_close(t.weights(), torch.stack(rows))
        assert list(t.meta("captured")) == [False, True, False]
        assert np.isnan(t.meta("test_acc")).all()
        torch.testing.assert_close(t.checkpoint()["x"], torch.arange(4))
    with pytest.raises(UserError, match="exists"):
        TrajectoryWriter.create(path, {}, 7, 2)


def _start_training(path, *extra):
    args = ["train", "--out", str(path), "--model", "convnet_bn", "--model-kwargs", '{"width": 8}', "--num-samples", "600",
            "--epochs", "8", "--swa-start", "4", "--swa-epochs", "4", "--swa-cycle", "0.5", "--batch-size", "16",
            "--device", "cpu", "--no-progress", *extra]
    return args


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ROOT = Path(__file__).resolve().parents[2]


def _killed_at(event: str, n: int, when: str, args: list[str]) -> subprocess.CompletedProcess:
    """``swa-landscape ARGS`` killed with SIGKILL at an event (:mod:`tests.killpoint`); ``n = 0`` only counts."""
    return subprocess.run([sys.executable, "-m", "tests.killpoint", event, str(n), when, "--", *args], env=ENV,
                          cwd=ROOT, capture_output=True, text=True)


WRITER = "swa.writer:TrajectoryWriter.__init__"  # the run file is at its path, open in SWMR mode
CHECKPOINT = "swa.writer:TrajectoryWriter.save_checkpoint"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run without a kill, and how many HDF5 writes it made after its file appeared."""
    full = tmp_path_factory.mktemp("resume") / "full.h5"
    r = _killed_at(WRITER, 0, "after", _start_training(full))
    assert r.returncode == 0, r.stderr
    return full, int(r.stdout.rsplit("writes=", 1)[1])


@pytest.mark.parametrize("kill_after", [3, 10])  # inside the conventional run, inside the SWA branch
def test_kill9_then_resume_equals_uninterrupted(tmp_path, uninterrupted, kill_after):
    (full, _), cut = uninterrupted, tmp_path / "cut.h5"
    r = _killed_at(CHECKPOINT, kill_after, "during:5", _start_training(cut))  # inside the next epoch's writes
    assert r.returncode == -signal.SIGKILL, r.stderr
    # the killed file opens, with every committed snapshot intact
    summary = subprocess.run(CLI + ["info", str(cut)], env=ENV, capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    assert "status: running" in summary.stdout
    with Trajectory(cut) as t, Trajectory(full) as f:
        n_cut = t.n
        assert n_cut >= kill_after and t.checkpoint()["plan_index"] == kill_after
        torch.testing.assert_close(t.weights(), f.weights(slice(0, n_cut)), rtol=0, atol=0)
    _resume_equals(cut, full)


def _resume_equals(cut, full) -> str:
    """``train --resume`` the killed run ``cut``; it must end bitwise equal to the uninterrupted ``full``."""
    r = subprocess.run(CLI + ["train", "--resume", "--out", str(cut), "--no-progress"], env=ENV, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    with Trajectory(cut) as t, Trajectory(full) as f:
        assert t.status == "complete" and t.n == f.n
        for name in ("sgd", "swa"):
            torch.testing.assert_close(t.solution(name)[0], f.solution(name)[0], rtol=0, atol=0)
            torch.testing.assert_close(t.solution(name)[1], f.solution(name)[1], rtol=0, atol=0)
        torch.testing.assert_close(t.weights(), f.weights(), rtol=0, atol=0)
        assert list(t.meta("captured")) == list(f.meta("captured"))
    return r.stdout


def test_interrupt_leaves_readable_file(tmp_path):
    path = tmp_path / "int.h5"
    calls = []

    def log(line):
        calls.append(line)
        if len(calls) == 3:  # header + 2 epochs
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), path, progress=False, log=log)
    with Trajectory(path) as t:
        assert t.status == "interrupted" and t.n >= 2
    assert "interrupted" in info(path)


def _cli(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["--lr", "-0.1"], "lr must be positive"),
        (["--swa-start", "50", "--epochs", "10"], "swa_start 50 lies outside the budget"),
        (["--swa-cycle", "0"], "swa_cycle must be positive"),
        (["--swa-schedule", "triangle"], "invalid choice: 'triangle'"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "lacks data_batch_1"),
    ],
)
def test_bad_hyper_parameters_one_line_error(tmp_path, args, msg):
    out = tmp_path / "x.h5"
    r = _cli("train", "--out", str(out), "--num-samples", "100", "--epochs", "4", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_refuses_to_overwrite_and_rejects_foreign_files(tmp_path, tiny_run, capsys):
    """The refusal as a process (one error line, exit code 2), then the other bad files through the same ``main``
    in this process."""
    from swa_landscape import main

    before = os.path.getmtime(tiny_run)
    r = _cli("train", "--out", tiny_run, "--epochs", "2")
    assert r.returncode == 2 and "exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.path.getmtime(tiny_run) == before

    def refused(*args: str) -> str:
        assert main(list(args)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        return err[0]

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    for cmd in (["info", str(other)], ["train", "--resume", "--out", str(other)]):
        assert "not a swa-landscape trajectory file" in refused(*cmd)
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "swa-landscape/trajectory"
        f.attrs["format_version"] = 99
    assert "version 99" in refused("info", str(other))
    text = tmp_path / "t.h5"
    text.write_text("hello")
    assert "not a readable HDF5 file" in refused("info", str(text))


def test_toml_config_and_flag_override(tmp_path):
    from swa_landscape import build_parser
    from swa_landscape.train_cli import train_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nepochs = 12\nlr = 0.2\nmodel_kwargs = { width = 4 }\nswa_schedule = "swalr"\n')
    args = build_parser().parse_args(["train", "--config", str(cfg), "--out", "x.h5", "--lr", "0.3"])
    c = train_config(args)
    assert (c.epochs, c.lr, c.model_kwargs, c.swa_schedule.value) == (12, 0.3, {"width": 4}, "swalr")
    cfg.write_text("epochz = 3\n")
    r = _cli("train", "--config", str(cfg), "--out", str(tmp_path / "y.h5"))
    assert r.returncode == 2 and "unknown keys epochz" in r.stderr


def test_kill9_before_the_first_checkpoint_then_resume_starts_over(tmp_path, uninterrupted):
    cut = tmp_path / "early.h5"
    r = _killed_at(WRITER, 1, "after", _start_training(cut))  # the file exists; no epoch has ended
    assert r.returncode == -signal.SIGKILL, r.stderr
    with Trajectory(cut) as t:
        assert t.checkpoint() is None and t.status == "running"
    stdout = _resume_equals(cut, uninterrupted[0])
    assert "no checkpoint yet" in stdout and "starting the run over" in stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_at_a_random_moment_then_resume_equals_uninterrupted(tmp_path, uninterrupted, seed):
    """Killed inside the M-th HDF5 write of the run, M drawn uniformly over all its writes (appends, count
    increments, checkpoint slots and their pointer, solutions)."""
    full, writes = uninterrupted
    m = int(np.random.default_rng(seed).integers(1, writes))
    cut = tmp_path / "cut.h5"
    r = _killed_at(WRITER, 1, f"during:{m}", _start_training(cut))
    assert r.returncode == -signal.SIGKILL, f"write {m} of {writes}: {r.stderr}"
    _resume_equals(cut, full)


def test_rows_read_only_what_is_asked_and_in_the_order_asked(tiny_run):
    with Trajectory(tiny_run) as t, h5py.File(tiny_run, "r", libver="latest", swmr=True) as f:
        full = torch.from_numpy(f["snapshots/weights"][: t.n].astype(np.float32))
        torch.testing.assert_close(t.weights(slice(2, 5)), full[2:5], rtol=0, atol=0)
        torch.testing.assert_close(t.weights(slice(None, None, 2)), full[::2], rtol=0, atol=0)
        torch.testing.assert_close(t.weights(slice(-3, None)), full[-3:], rtol=0, atol=0)
        torch.testing.assert_close(t.weights([4, 1, 4, 0]), full[[4, 1, 4, 0]], rtol=0, atol=0)
        assert t.weights(slice(5, 2)).shape == (0, full.shape[1])


def test_rows_of_a_model_without_buffers(tmp_path):
    """A network without BN stores zero-width buffer rows; selecting some of them gives [k, 0] (it used to fail)."""
    run = tmp_path / "mlp.h5"
    train(tiny_config(model="mlp", model_kwargs={"width": 8}), run, progress=False, log=lambda s: None)
    with Trajectory(run) as t:
        assert t.buffer_layout.size == 0
        assert t.buffers([3, 0, 3]).shape == (3, 0) and t.buffers(slice(1, 4)).shape == (3, 0)
        assert t.weights([3, 0]).shape == (2, t.param_layout.size)
