"""``swa-landscape surface`` around one checkpoint: the grid, the figures, DDP and Lightning checkpoints, and the bad
checkpoints that get one line and exit code 2."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import h5py
import numpy as np
import torch

from landscape.layout import flatten
from landscape.reference import reference_point
from tests.user_factories import load_data, make_net, other_net

ARGS = ["--model", "tests.user_factories:make_net", "--dataset", "tests.user_factories:load_data", "--grid", "3",
        "--extent", "0.5", "--batch-size", "32", "--dtype", "float64", "--no-progress"]


def _main(*argv: str) -> tuple[int, str, str]:
    from swa_landscape.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_surface_around_a_checkpoint_and_its_centre(tmp_path):
    torch.manual_seed(3)
    net = make_net()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    rc, out, _ = _main("surface", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "s"), *ARGS)
    assert rc == 0 and "surface around model.pt: 3x3 grid" in out
    assert all((tmp_path / "s" / f"surface.{ext}").exists() for ext in ("png", "pdf", "html"))
    (train, test) = load_data()
    ref, _ = reference_point(net.double(), flatten(list(net.parameters())).double(),
                             {"train": (train[0].double(), train[1]), "test": (test[0].double(), test[1])},
                             train[0].double(), 32)
    with h5py.File(tmp_path / "s" / "checkpoint.landscape.h5", "r") as f:
        g = f["surface/sgd"]
        np.testing.assert_allclose(g["train_loss"][1, 1], ref["train"].loss, rtol=1e-10)
        np.testing.assert_allclose(g["test_error"][1, 1], ref["test"].error, rtol=1e-10)


def test_ddp_lightning_and_safetensors_checkpoints_are_read_with_one_notice(tmp_path):
    torch.manual_seed(4)
    state = make_net().state_dict()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "lightning.ckpt")
    cases = [("ddp.pt", "module."), ("lightning.ckpt", "model.")]
    with contextlib.suppress(ImportError):  # the optional extra: tested where installed (the test extra has it)
        from safetensors.torch import save_file

        save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, tmp_path / "ddp.safetensors")
        cases.append(("ddp.safetensors", "module."))
    surfaces = {}
    for name, prefix in [("plain.pt", None), *cases]:
        rc, out, err = _main("surface", "--checkpoint", str(tmp_path / name), "--out", str(tmp_path / name[:5]), *ARGS)
        assert rc == 0, err
        if prefix:
            assert f"removed the prefix '{prefix}'" in err and len(err.strip().splitlines()) == 1
        with h5py.File(tmp_path / name[:5] / "checkpoint.landscape.h5", "r") as f:
            surfaces[name] = f["surface/sgd/train_loss"][:]
    for name in surfaces:  # the same weights whatever the wrapping: the same surface
        np.testing.assert_array_equal(surfaces[name], surfaces["plain.pt"])


def test_safetensors_without_the_package_is_one_line(tmp_path, monkeypatch):
    import builtins

    from landscape.errors import UserError
    from swa.checkpoints import read_state

    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda n, *a, **k: (_ for _ in ()).throw(ImportError(n))
                        if n.startswith("safetensors") else real(n, *a, **k))
    try:
        read_state(tmp_path / "w.safetensors")
    except UserError as e:
        assert "install the safetensors package" in str(e)
    else:
        raise AssertionError("no refusal")


def test_bad_checkpoints_are_one_line_and_exit_2(tmp_path):
    """The first case as a process (the exit status and stderr a shell sees), the others through ``main``."""
    torch.save(other_net().state_dict(), tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x12" * 40)
    cases = [("other.pt", "does not fit the model (another architecture?)"), ("missing.pt", "no such file"),
             ("notes.txt", "is not a PyTorch state_dict file"), ("list.pt", "holds a list, not a state_dict"),
             ("bad.safetensors", "not a readable .safetensors file")]
    for i, (name, message) in enumerate(cases):
        argv = ["surface", "--checkpoint", str(tmp_path / name), "--out", str(tmp_path / "o"), *ARGS]
        if i == 0:
            r = subprocess.run([sys.executable, "-m", "swa_landscape", *argv], capture_output=True, text=True)
            rc, err = r.returncode, r.stderr
        else:
            rc, _, err = _main(*argv)
        assert rc == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith("swa-landscape: error:"), lines
        assert not (tmp_path / "o" / "checkpoint.h5").exists()  # nothing written
