"""Bad input to every command: one error line, exit code 2, no traceback, no hang, nothing changed on disk."""

import argparse
import contextlib
import hashlib
import io
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import pytest
import torch

CLI = [sys.executable, "-m", "swa_landscape"]
TIMEOUT = 10.0  # seconds each command may take to refuse


@pytest.fixture(scope="module")
def files(tiny_run, tmp_path_factory):
    """A directory of bad and good inputs; returns name -> path."""
    d = tmp_path_factory.mktemp("bad")
    f = {"run": d / "run.h5", "dir": d}
    shutil.copyfile(tiny_run, f["run"])
    f["text"] = d / "text.h5"
    f["text"].write_text("hello, not HDF5\n")
    f["truncated"] = d / "truncated.h5"
    f["truncated"].write_bytes(Path(tiny_run).read_bytes()[:5000])
    f["foreign"] = d / "foreign.h5"
    with h5py.File(f["foreign"], "w") as h:
        h.attrs["format"] = "something-else"
    f["not_state_dict"] = d / "list.pt"
    torch.save([torch.ones(3), 2], f["not_state_dict"])
    f["wrong_type"] = d / "wrong_type.toml"
    f["wrong_type"].write_text('epochs = "ten"\n')
    f["unknown_key"] = d / "unknown.toml"
    f["unknown_key"].write_text("epochz = 3\n")
    f["not_toml"] = d / "not.toml"
    f["not_toml"].write_text("epochs = = 3\n")
    f["existing_file"] = d / "a-file"
    f["existing_file"].write_text("x")
    # a user's run whose data file changed after training (its fingerprint no longer matches)
    from swa import import_run
    from tests.user_factories import load_data, make_net, other_net

    torch.save(load_data(), d / "data.pt")
    torch.save(make_net().state_dict(), d / "net.pt")
    torch.save(other_net().state_dict(), d / "other_arch.pt")
    f["user_run"] = import_run(d / "user.h5", model="tests.user_factories:make_net", data="tests.user_factories:load_file",
                               data_kwargs={"path": str(d / "data.pt")}, sgd=str(d / "net.pt"), swa=str(d / "net.pt"))
    torch.save(load_data(seed=5), d / "data.pt")
    return f


def _cases(f):
    run, text, trunc, missing = str(f["run"]), str(f["text"]), str(f["truncated"]), str(f["dir"] / "missing.h5")
    nodir = str(f["dir"] / "no" / "such" / "dir" / "x.h5")
    new = str(f["dir"] / "new.h5")  # never created by a refused command
    small = ["--num-samples", "100", "--epochs", "4"]
    train = ["train", "--out", new, *small]
    cases = [
        (train + ["--model", "resnet9000"], "unknown model"),
        (train + ["--lr", "-0.1"], "lr must be positive"),
        (train + ["--swa-start", "50", "--epochs", "10"], "outside the budget"),
        (train + ["--controls", "--swa-start", "4"], "controls need swa_start below the budget"),
        (train + ["--controls", "--init", str(f["not_state_dict"])], "controls need the conventional run"),
        (train + ["--test-samples", "5"], "test_samples must be"),
        (train + ["--swa-cycle", "0"], "swa_cycle"),
        (train + ["--swa-schedule", "triangle"], "invalid choice: 'triangle' (choose from 'constant', 'cyclic', 'swalr')"),
        (train + ["--dataset", "cifar10", "--data-dir", "/nonexistent"], "data_batch_1"),
        (train + ["--device", "tpu9"], "device"),
        (["train", "--out", nodir, *small], "does not exist"),
        (["train", "--out", new, "--config", str(f["wrong_type"])], "epochs must be an integer"),
        (["train", "--out", new, "--config", str(f["unknown_key"])], "unknown keys epochz"),
        (["train", "--out", new, "--config", str(f["not_toml"])], "not valid TOML"),
        (["train", "--out", new, "--config", str(f["dir"] / "missing.toml")], "cannot read config"),
        (train + ["--model-kwargs", '{"width": -3}'], "rejects model_kwargs"),
        (train + ["--model-kwargs", '{"depthh": 3}'], "bad arguments for model"),
        (train + ["--model-kwargs", "{bad"], "not valid JSON"),
        (train + ["--model-kwargs", "[1, 2]"], "expected a JSON object"),
        (train + ["--init", str(f["not_state_dict"])], "not a state_dict"),
        (train + ["--init", text], "not a PyTorch state_dict file"),
        (train + ["--init", str(f["dir"] / "missing.pt")], "no such file"),
        (train + ["--epochs", "ten"], "invalid int value"),
        (["train", "--out", run, *small], "exists"),
        (["train", "--resume", "--out", text], "not a readable HDF5 file"),
        (["train", "--resume", "--out", run], "already complete"),
        (["train", "--resume", "--out", missing], "no such file"),
        (["train", "--resume", "--out", trunc], "cut short"),
        (train + ["--batch-size", "0"], "batch_size must be at least 1"),
        (train + ["--optimizer", "rmsprop"], "optimizer must be sgd or adam"),
        (train + ["--snapshot-dtype", "int8"], "snapshot dtype"),
        (train + ["--weight-decay", "-1"], "weight_decay must be non-negative"),
        (["train", *small], "required: --out"),
        (train + ["--no-such-flag"], "unrecognized arguments"),
        (["info", missing], "no such file"),
        (["info", text], "not a readable HDF5 file"),
        (["info", trunc], "cut short"),
        (["info", str(f["foreign"])], "not a swa-landscape trajectory file"),
        (["info", str(f["dir"])], "is a directory"),
        (["analyze", missing, "plane"], "no such file"),
        (["analyze", trunc, "plane"], "cut short"),
        (["analyze", text, "all"], "not a readable HDF5 file"),
        (["analyze", run, "plane", "--out", nodir], "does not exist"),
        (["analyze", run, "plane", "--anchors", "0,1,999"], "out of range"),
        (["analyze", run, "bogus"], "invalid choice"),
        (["analyze", run, "plane", "--out", run], "must not be the run file"),
        (["analyze", run, "plane", "--out", text], "not a readable HDF5 file"),
        (["analyze", run, "rays", "--directions", "0"], "directions must be at least 1"),
        (["analyze", run, "plane", "--dtype", "float16"], "invalid choice"),
        (["analyze", run, "rays", "--directions", "many"], "invalid int value: 'many'"),
        (["analyze", run, "rays", "--hessian", "--out", str(f["dir"] / "nohess.h5")],
         "run 'swa-landscape analyze RUN hessian' first"),
        (["analyze", run, "hessian", "--points", "swa,w7"], "hessian point 'w7'"),
        (["analyze", run, "hessian", "--top-k", "0", "--trace-probes", "0"], "top_k >= 1, trace_probes >= 2, density_runs >= 1 or negative"),
        (["analyze", run, "pca", "--bn-mode", "interpolate"], "pca cannot use bn_mode 'interpolate'"),
        (["compare", missing], "no such file"),
        (["compare", run, "--out", str(f["existing_file"])], "is a file"),
        (["figures", text, "--out", str(f["dir"] / "figs")], "not a readable HDF5 file"),
        (["figures", missing, "--out", str(f["dir"] / "figs")], "no such file"),
        (["figures", trunc, "--out", str(f["dir"] / "figs")], "cut short"),
        (["figures", run, "--out", str(f["existing_file"])], "is a file"),
        (["figures", run, "--results", text, "--out", str(f["dir"] / "figs")], "not a readable HDF5 file"),
        (["figures", run, "--results", missing, "--out", str(f["dir"] / "figs")], "no such file"),
        (["demo", "--epochs", "0", "--out", str(f["dir"] / "demo")], "epochs must be at least 1"),
        # every numeric option is checked against its meaning, for every command (issue: hardening, round 2)
        (["analyze", run, "segment", "--memory-budget", "0"], "memory_budget must be positive"),
        (["analyze", run, "segment", "--memory-budget", "2 parsecs"], "expected a size such as 2GiB"),
        (["analyze", run, "rays", "--margin-error", "-0.1"], "margin_error must be positive"),
        (["analyze", run, "rays", "--margin-loss", "0"], "margin_loss must be positive"),
        (["analyze", run, "hessian", "--tol", "-1"], "tol must be non-negative"),
        (["analyze", run, "rays", "--steps", "1"], "steps must be at least 2"),
        (["analyze", run, "rays", "--t-max", "-2"], "t_max must be positive"),
        (["analyze", run, "segment", "--steps", "1"], "steps must be at least 2"),
        (["analyze", run, "segment", "--t-min", "2", "--t-max", "1"], "t_min < t_max"),
        (["analyze", run, "plane", "--grid", "1", "5"], "at least 2 points per axis"),
        (["analyze", run, "plane", "--margin", "-0.5"], "margin must be non-negative"),
        (["analyze", run, "pca", "--margin", "-1"], "margin must be non-negative"),
        (["analyze", run, "plane", "--chunk-size", "0"], "chunk_size must be at least 1"),
        (["analyze", run, "plane", "--bn-batches", "-3"], "bn_batches must be at least 1"),
        (["analyze", run, "hessian", "--top-k", "-1"], "top_k must be non-negative"),
        (["analyze", run, "hessian", "--trace-probes", "1"], "at least 2 probes"),
        (["analyze", run, "hessian", "--points", ","], "at least one point"),
        (["analyze", run, "hessian-plane", "--extent", "0"], "extent must be positive"),
        (["analyze", run, "all", "--segment.steps", "0"], "steps must be at least 2"),  # before any analysis ran
        (["analyze", run, "pca", "--snapshots", "some"], "snapshots must be 'swa' or 'all'"),
        (["analyze", run, "plane", "--anchors", "sgd,swa"], "exactly three anchors"),
        (["analyze", run, "plane", "--anchors", "sgd,swa,w"], "neither 'sgd', 'swa' nor a snapshot index"),
        (["analyze", run, "plane", "--explain", "--strategy", "fast"], "invalid choice"),
        (train + ["--momentum", "1.5"], "momentum must be in [0, 1)"),
        (train + ["--momentum", "-0.1"], "momentum must be in [0, 1)"),
        (train + ["--ema-decay", "1"], "ema_decay must be in (0, 1)"),
        (train + ["--swa-lr-min", "1"], "swa_lr_min must be in (0, swa_lr]"),
        (train + ["--swa-anneal-epochs", "0"], "swa_anneal_epochs must be at least 1"),
        (train + ["--snapshot-every", "-1"], "snapshot_every must be non-negative"),
        (train + ["--num-samples", "5"], "num_samples must be at least 10"),
        (train + ["--divergence-factor", "0.5"], "divergence_factor must be above 1"),
        (train + ["--swa-epochs", "0"], "swa_epochs must be at least 1"),
        (train + ["--swa-start", "-1"], "swa_start must be non-negative"),
        (["compare", run, "--out", str(f["dir"] / "cmp")], "has no results file"),
        (["demo", "--out", str(f["existing_file"])], "is a file"),
        (["demo", "--grid", "1", "--out", str(f["dir"] / "demo")], "grid must be at least 2"),
        (["demo", "--directions", "0", "--out", str(f["dir"] / "demo")], "directions must be at least 1"),
        (["demo", "--num-samples", "3", "--out", str(f["dir"] / "demo")], "num_samples must be at least 10"),
        (["info"], "required: run"),
        # a user's own network and data by import path, and checkpoints (issue: your own network)
        (train + ["--model", "nosuchpkg.models:make"], "cannot import nosuchpkg.models"),
        (train + ["--model", "tests.user_factories:missing"], "has no attribute 'missing'"),
        (train + ["--model", "tests.user_factories:not_a_model"], "returned a dict, not a torch.nn.Module"),
        (train + ["--model", "tests.user_factories:broken"], "raised ValueError: the user's factory failed"),
        (train + ["--model", "tests.user_factories:make_net", "--dataset", "tests.user_factories:bad_data"],
         "expected (train, test)"),
        (train + ["--model", "tests.user_factories:make_net", "--dataset", "tests.user_factories:broken"],
         "data factory 'tests.user_factories:broken' raised ValueError"),
        (["analyze", str(f["user_run"]), "segment"], "is not the data"),
        (_imp(f) + ["--sgd", str(f["dir"] / "other_arch.pt")], "does not fit the model"),
        (_imp(f) + ["--sgd", text], "not a PyTorch state_dict file"),
        (_imp(f) + ["--snapshots", str(f["dir"] / "nothing_*.pt")], "no checkpoint matches"),
        (_imp(f), "nothing to import"),
        (_imp(f) + ["--sgd", str(f["dir"] / "net.pt"), "--weight-decay", "-1"], "weight_decay must be non-negative"),
        (["import", "--model", "tests.user_factories:make_net", "--dataset", "mnist1d", "--out", new],
         "not an import path"),
        (_imp(f) + ["--sgd", str(f["dir"] / "net.pt"), "--out", str(f["existing_file"])], "exists"),
    ]
    if not torch.cuda.is_available():
        cases += [(train + ["--device", "cuda"], "CUDA is not available"),
                  (["analyze", run, "plane", "--device", "cuda"], "CUDA is not available")]
    return cases


def _imp(f) -> list[str]:
    """``swa-landscape import`` of the test factories into a file that must never be created."""
    return ["import", "--model", "tests.user_factories:make_net", "--dataset", "tests.user_factories:load_file",
            "--dataset-kwargs", f'{{"path": "{f["dir"] / "data.pt"}"}}', "--out", str(f["dir"] / "never.h5")]


def _tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _run(args):
    """The command as its own process: exit code, stderr, seconds."""
    t = time.perf_counter()
    try:
        r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=TIMEOUT + 20)
    except subprocess.TimeoutExpired:
        return None, "", time.perf_counter() - t
    return r.returncode, r.stderr, time.perf_counter() - t


def _run_here(args):
    """The command through ``swa_landscape.main`` in this process (what the console script calls): exit code,
    stderr, seconds. An exception escaping ``main`` is what a user would see as a traceback."""
    from swa_landscape import main

    err, t = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as e:  # argparse's own refusals
            rc = e.code
        except BaseException:  # noqa: BLE001
            rc = None
            err.write(traceback.format_exc())
    return rc, err.getvalue(), time.perf_counter() - t


# one case per command also runs as a real process (exit code, stderr and start-up as a user gets them)
_AS_PROCESS = ("train", "info", "analyze", "compare", "figures", "demo")


def test_every_bad_input_gives_one_line_and_exit_2(files, tiny_run):
    cases = _cases(files)
    assert len(cases) >= 80
    before, run_before = _tree(files["dir"]), hashlib.sha256(Path(tiny_run).read_bytes()).hexdigest()
    procs = {next(i for i, (a, _) in enumerate(cases) if a[0] == cmd) for cmd in _AS_PROCESS}
    with ThreadPoolExecutor(2) as pool:
        spawned = {i: pool.submit(_run, cases[i][0]) for i in procs}
        results = [spawned[i].result() if i in procs else _run_here(c[0]) for i, c in enumerate(cases)]
    failures = []
    for (args, msg), (rc, err, secs) in zip(cases, results):
        lines = err.strip().splitlines()
        ok = (rc == 2 and len(lines) == 1 and lines[0].startswith("swa-landscape: error:") and msg in lines[0]
              and "Traceback" not in err and secs < TIMEOUT)
        if not ok:
            failures.append(f"{' '.join(args[:4])}...: rc={rc}, {secs:.1f} s, stderr={err[-400:]!r}")
    assert not failures, "\n".join(failures)
    assert _tree(files["dir"]) == before  # nothing written, nothing changed
    assert hashlib.sha256(Path(tiny_run).read_bytes()).hexdigest() == run_before


def test_every_flag_has_a_meaning():
    from swa_landscape import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    parsers = list(sub.choices.items())
    while parsers:  # the commands and their subcommands (analyze RUN rays ...)
        name, p = parsers.pop()
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help and not action.help.startswith("(default"), f"{name} {action.option_strings}"
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(f"{name} {n}", q) for n, q in action.choices.items()]
    train = sub.choices["train"]
    args = train.parse_args(["--out", "x.h5", "--include-start"])
    assert args.include_start is True  # a switch, not a flag that takes a value
    assert train.parse_args(["--out", "x.h5", "--no-include-start"]).include_start is False
