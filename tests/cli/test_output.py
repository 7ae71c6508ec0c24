"""What the command line prints where: one line per refusal, nothing on a closed pipe, no progress bars in files."""

import contextlib
import dataclasses
import io
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "swa_landscape"]


def _configs():
    from analyses.catalog import analyses
    from landscape.config import EngineConfig
    from swa.config import TrainConfig
    from swa_landscape import DemoConfig

    return [TrainConfig, EngineConfig, DemoConfig, *(a.config for a in analyses())]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_numeric_option_declares_its_range(cls):
    """A new numeric option cannot forget its check: each declares its bounds (or why any value is meaningful)."""
    for f in dataclasses.fields(cls):
        ann = str(f.type)
        numeric = ann.split("|")[0].strip() in ("int", "float")
        if numeric:
            assert "bounds" in f.metadata, f"{cls.__name__}.{f.name} declares no range (use landscape.errors.bounded)"


def test_bounds_are_checked_with_their_meaning():
    from landscape.errors import UserError
    from swa.config import TrainConfig

    with pytest.raises(UserError, match=r"momentum must be in \[0, 1\), got 1.5"):
        TrainConfig(momentum=1.5)
    with pytest.raises(UserError, match="lr must be positive, got nan"):
        TrainConfig(lr=float("nan"))
    assert TrainConfig(momentum=0.0, swa_start=None).momentum == 0.0  # the bounds themselves and None pass


def test_a_closed_pipe_ends_quietly(tiny_run):
    """``swa-landscape info RUN | head -1``: the reader went away; no traceback, exit 141 (128 + SIGPIPE)."""
    p = subprocess.Popen(CLI + ["info", tiny_run], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # closed before anything is written: the write must meet a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == "", err


def test_no_progress_bars_when_output_is_not_a_terminal(tiny_run, tmp_path):
    from swa_landscape import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["analyze", tiny_run, "segment", "--steps", "5", "--out", str(tmp_path / "r.h5")]) == 0
    assert "\r" not in err.getvalue() and "it/s" not in err.getvalue()
    assert "segment" in out.getvalue()
