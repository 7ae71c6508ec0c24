"""The Lightning callback records a real ``Trainer.fit`` into a run file that the analyses accept, under DDP on one
rank, and a fit resumed from Lightning's checkpoint continues the run file as if it had never stopped."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swa import Trajectory

pl = pytest.importorskip("pytorch_lightning")


from tests.swa.lightning_fit import Module as _Module  # noqa: E402

SCRIPT = Path(__file__).with_name("lightning_fit.py")


def test_lightning_fit_is_recorded_and_analysable(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from analyses import segment
    from swa.lightning import SWALandscape
    from tests.user_factories import load_data

    torch.manual_seed(0)
    (x, y), test = load_data()
    module = _Module()
    cb = SWALandscape(tmp_path / "pl.h5", ((x, y), test), swa_epoch_start=2, bn_batch_size=30)
    trainer = pl.Trainer(max_epochs=5, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True))
    with Trajectory(tmp_path / "pl.h5") as t:
        assert t.status == "complete" and list(t.meta("branch")) == ["sgd"] * 2 + ["swa"] * 3
        captured = t.weights(list(range(2, 5)))
        torch.testing.assert_close(t.solution("swa")[0], captured.mean(0), rtol=1e-5, atol=1e-6)  # equal average
        assert t.solution_scalar("swa", "n_averaged") == 3
    s = segment(tmp_path / "pl.h5", model=_Module(), data=((x, y), test), progress=False)
    assert s["t"][0] < 0 < 1 < s["t"][-1]


def _ddp_fit(out: Path, epochs: int, resume: bool = False) -> str:
    r = subprocess.run([sys.executable, str(SCRIPT), str(out), str(epochs), "2", *(["--resume"] if resume else [])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout + r.stderr


def test_ddp_fit_records_on_rank_0_and_a_resumed_fit_continues_the_run(tmp_path):
    """Two real processes (gloo): an uninterrupted 5-epoch fit, and a 3-epoch fit continued to 5 from its
    checkpoint; the resumed run file equals the uninterrupted one."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    log = _ddp_fit(whole, 5)
    assert "GLOBAL_RANK: 1" in log and "MEMBER: 2/2" in log  # really two ranks
    _ddp_fit(parts, 3)
    with Trajectory(parts / "pl.h5") as t:
        assert t.n == 3 and t.status == "complete" and t.solution_scalar("swa", "n_averaged") == 1
        first = t.weights()
    assert "Restored all states" in _ddp_fit(parts, 5, resume=True)
    with Trajectory(whole / "pl.h5") as a, Trajectory(parts / "pl.h5") as b:
        assert b.status == "complete" and list(b.meta("branch")) == ["sgd"] * 2 + ["swa"] * 3
        torch.testing.assert_close(b.weights()[:3], first, rtol=0, atol=0)  # kept as recorded
        torch.testing.assert_close(b.weights(), a.weights(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(b.meta("epoch"), a.meta("epoch"))
        for name in ("sgd", "swa"):
            torch.testing.assert_close(b.solution(name)[0], a.solution(name)[0], rtol=1e-6, atol=1e-7)
        assert b.solution_scalar("swa", "n_averaged") == 3  # the running average came back from the checkpoint
        torch.testing.assert_close(b.solution("swa")[0], b.weights([2, 3, 4]).mean(0), rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in parts.iterdir()) == ["last.ckpt", "pl.h5"]  # no second rank's or temporary file
