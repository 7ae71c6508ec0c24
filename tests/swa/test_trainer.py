import math

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from landscape.layout import unflatten
from swa import Trajectory, build_model, load_dataset, load_model, train
from swa.runs import build_run_model
from tests.factories import tiny_config


def test_swa_weights_are_mean_of_captured_snapshots(tiny_run):
    with Trajectory(tiny_run) as t:
        captured = np.flatnonzero(t.meta("captured"))
        # 7 batches per epoch, cycle 0.5 epoch -> c = round(3.5) = 4 iterations; 14 SWA iterations -> 3 cycle ends
        assert list(t.meta("iteration")[captured]) == [2 * 7 + 4, 2 * 7 + 8, 2 * 7 + 12]
        assert set(t.meta("branch")[captured]) == {"swa"}
        snaps = t.weights(captured)
        w_swa, _ = t.solution("swa")
        n_avg = t.solution_scalar("swa", "n_averaged")
        model = build_run_model(t)
        layout = t.param_layout
    assert n_avg == 3
    torch.testing.assert_close(w_swa, snaps.mean(0), rtol=1e-6, atol=1e-7)
    # independent: torch's AveragedModel fed the same models
    avg = AveragedModel(model)
    for w in snaps:
        m = build_model("convnet_bn", width=8, num_classes=10)
        m.load_state_dict({**m.state_dict(), **unflatten(w, layout)})
        avg.update_parameters(m)
    ref = torch.cat([p.detach().reshape(-1) for p in avg.module.parameters()])
    torch.testing.assert_close(w_swa, ref, rtol=1e-6, atol=1e-7)


def test_swa_bn_buffers_match_update_bn(tiny_run):
    swa = load_model(tiny_run, "swa")
    x, y = load_dataset(tiny_run, "train")
    fresh = load_model(tiny_run, "swa")
    for m in fresh.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-3, 3)  # scramble so the test cannot pass by accident
    update_bn([x[i : i + 64] for i in range(0, len(x), 64)], fresh)
    for a, b in zip(swa.buffers(), fresh.buffers()):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-6)


def test_solutions_metrics_and_sgd_is_end_of_conventional_run(tiny_run):
    with Trajectory(tiny_run) as t:
        br, it = t.meta("branch"), t.meta("iteration")
        last_sgd = np.flatnonzero(br == "sgd")[-1]
        torch.testing.assert_close(t.solution("sgd")[0], t.weights(int(last_sgd)))
        assert it[last_sgd] == 4 * 7  # 4 epochs of ceil(400/64)=7 batches
        first_swa = np.flatnonzero(br == "swa")[0]
        assert 2 * 7 < it[first_swa] <= 3 * 7  # SWA branch forks after epoch 2
        acc = t.solution_scalar("swa", "test_acc")
    x, y = load_dataset(tiny_run, "test")
    with torch.no_grad():
        ref = (load_model(tiny_run, "swa")(x).argmax(1) == y).double().mean().item()
    assert acc == pytest.approx(ref, abs=1e-9)


def test_captured_models_at_cycle_ends_have_lr_alpha2(tiny_run):
    with Trajectory(tiny_run) as t:
        cap = t.meta("captured")
        assert np.allclose(t.meta("lr")[cap], 0.005)
        assert np.isfinite(t.meta("test_acc")[cap]).all()


def test_ema_average(tmp_path):
    path = tmp_path / "ema.h5"
    train(tiny_config(average="ema", ema_decay=0.7), path, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        snaps = t.weights(np.flatnonzero(t.meta("captured")))
        w = t.solution("swa")[0]
    ref = snaps[0].clone()
    for s in snaps[1:]:
        ref = 0.7 * ref + 0.3 * s  # formula written out
    torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-6)


def test_constant_schedule_captures_every_epoch_and_snapshot_every(tiny_run_constant):
    with Trajectory(tiny_run_constant) as t:
        cap, ep, br = t.meta("captured"), t.meta("epoch"), t.meta("branch")
        assert np.allclose(ep[cap], [3.0, 4.0])
        assert np.allclose(t.meta("lr")[br == "swa"], 0.05)
        it = t.meta("iteration")
        assert set(it[~cap & (it > 0)] % 5) == {0}  # snapshots every 5 iterations
        torch.testing.assert_close(t.solution("swa")[0], t.weights(np.flatnonzero(cap)).mean(0), rtol=1e-6, atol=1e-7)


def test_init_runs_only_swa_branch(tmp_path):
    m = build_model("convnet_bn", width=8, num_classes=10)
    torch.save(m.state_dict(), tmp_path / "pre.pt")
    path = tmp_path / "init.h5"
    train(tiny_config(init=str(tmp_path / "pre.pt"), swa_epochs=1), path, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        assert set(t.meta("branch")) == {"sgd", "swa"}
        assert (t.meta("branch") == "sgd").sum() == 1
        w_sgd = t.solution("sgd")[0]
    torch.testing.assert_close(w_sgd, torch.cat([p.reshape(-1) for p in m.parameters()]))


def test_user_model_and_loaders(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from swa import TrainData

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 5, generator=g), torch.randint(0, 3, (96,), generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    data = TrainData.from_loaders(DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                                             generator=torch.Generator().manual_seed(1)),
                                  DataLoader(TensorDataset(x, y), batch_size=32))
    path = tmp_path / "user.h5"
    train(tiny_config(epochs=2, swa_start=1, swa_epochs=1), path, model=net, data=data, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        assert t.model_spec["name"] is None and t.n >= 3
    loaded = load_model(path, "swa", model=torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))
    assert loaded(x).shape == (96, 3)


def test_divergence_stops_with_consistent_file(tmp_path):
    from swa import TrainingDiverged

    path = tmp_path / "nan.h5"
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train(tiny_config(model="mlp", lr=1e6, momentum=0.0), path, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        assert t.status == "diverged" and "iteration" in t.message
        assert t.n >= 1 and torch.isfinite(t.weights(0)).all()


def test_a_loss_that_explodes_without_nan_stops_the_run(tmp_path):
    """A finite loss 100x its start is divergence too: the run stops with TrainingDiverged, the file stays readable."""
    from swa import TrainingDiverged

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 10))  # a linear model: no NaN, only growth
    path = tmp_path / "explode.h5"
    with pytest.raises(TrainingDiverged, match=r"the loss reached [0-9.e+]+, over 100 x max\(1, first batch loss"):
        train(tiny_config(lr=1000.0, momentum=0.9), path, model=net, progress=False, log=lambda s: None)
    with Trajectory(path) as t:
        assert t.status == "diverged" and "reached" in t.message
        assert t.n >= 1 and torch.isfinite(t.weights(0)).all()
    # the same run with a factor above what it reaches trains on
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 10))
    train(tiny_config(lr=1000.0, momentum=0.9, divergence_factor=1e9, epochs=2, swa_start=1, swa_epochs=1),
          tmp_path / "on.h5", model=net, progress=False, log=lambda s: None)


def test_float16_snapshots(tmp_path):
    path = tmp_path / "f16.h5"
    train(tiny_config(snapshot_dtype="float16", epochs=2, swa_start=1, swa_epochs=1), path, progress=False,
          log=lambda s: None)
    with Trajectory(path) as t:
        assert t._f["snapshots/weights"].dtype == np.float16
        assert t.weights(0).dtype == torch.float32 and t.solution("swa")[0].dtype == torch.float32
        assert math.isfinite(t.solution_scalar("swa", "test_acc"))


def test_snapshot_points_evaluate_like_the_logged_metrics(tiny_run):
    from landscape.config import EngineConfig
    from landscape.engine import Engine
    from swa.runs import snapshot_points

    with Trajectory(tiny_run) as t:
        idx = np.flatnonzero(np.isfinite(t.meta("test_acc")))[-4:]
        logged = t.meta("test_acc")[idx]
        model = build_run_model(t)
    pts = snapshot_points(tiny_run, idx)
    assert pts.points.shape[0] == 4 and pts.buffers.shape[0] == 4
    data = {s: load_dataset(tiny_run, s) for s in ("train", "test")}
    res = Engine(model, data, config=EngineConfig(bn_mode="stored", dtype="float64")).evaluate(pts)
    np.testing.assert_allclose(res.acc["test"].numpy(), logged, atol=1e-12)
    from landscape.errors import UserError

    with pytest.raises(UserError, match="out of range"):
        snapshot_points(tiny_run, [0, 10**6])


def _solutions(path) -> dict:
    with Trajectory(path) as t:
        return {n: t.solution(n) for n in ("sgd", "swa", "sgd_budget", "sgd_null") if t.has_solution(n)}


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for n in a:
        for x, y in zip(a[n], b[n]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.fixture(scope="module")
def controlled(tmp_path_factory):
    """A tiny run with its controls: 4 conventional epochs, SWA from epoch 2 for 2, null 2, budget-matched 4."""
    path = tmp_path_factory.mktemp("controls") / "ctl.h5"
    train(tiny_config(controls=True), path, progress=False, log=lambda s: None)
    return path


def test_controls_are_the_runs_they_stand_for(controlled, tmp_path):
    """The budget-matched SGD is exactly the conventional run of a run whose budget is the SWA branch's end; the main
    run is untouched by its controls; the null SGD is the SGD branch again with another data order."""
    sol = _solutions(controlled)
    plain = tmp_path / "plain.h5"
    train(tiny_config(), plain, progress=False, log=lambda s: None)
    _same({n: sol[n] for n in ("sgd", "swa")}, _solutions(plain))
    with Trajectory(controlled) as t, Trajectory(plain) as p:
        torch.testing.assert_close(t.weights(), p.weights(), rtol=0, atol=0)  # controls leave no snapshots
        assert set(t.meta("branch")) == {"sgd", "swa"}
    longer = tmp_path / "longer.h5"  # budget 4 (= swa_start 2 + swa_epochs 2): its SGD is the budget-matched control
    train(tiny_config(epochs=4, swa_start=2, swa_epochs=1), longer, progress=False, log=lambda s: None)
    short = tmp_path / "short.h5"
    train(tiny_config(epochs=3, swa_start=2, swa_epochs=2, controls=True), short, progress=False, log=lambda s: None)
    with Trajectory(short) as t, Trajectory(longer) as g:  # budget 3, SWA to epoch 4: the control runs 4 epochs
        for x, y in zip(t.solution("sgd_budget"), g.solution("sgd")):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert not torch.equal(t.solution("sgd_budget")[0], t.solution("sgd")[0])
    w_null, w_sgd = sol["sgd_null"][0], sol["sgd"][0]
    assert not torch.equal(w_null, w_sgd)  # another data order
    with Trajectory(controlled) as t:
        w_fork = t.fork()["model"]
    # both continue from the fork: the null lies as close to SGD as SGD's own last epochs moved it
    moved = (w_sgd - torch.cat([v.reshape(-1) for k, v in w_fork.items() if "running" not in k and "num_batches" not in k])).norm()
    assert (w_null - w_sgd).norm() < 2 * moved


@pytest.mark.parametrize("stop_after", [6, 9])  # at the end of the SWA branch (a boundary), inside the budget run
def test_a_run_with_controls_resumes_to_the_same_file(controlled, tmp_path, stop_after):
    from swa import resume

    cut = tmp_path / "cut.h5"
    lines = []

    def log(line):
        lines.append(line)
        if len(lines) == stop_after + 1:  # the header, then one line per epoch (after its checkpoint)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(controls=True), cut, progress=False, log=log)
    with Trajectory(cut) as t:
        assert t.status == "interrupted" and t.checkpoint()["plan_index"] == stop_after
    resume(cut, progress=False, log=lambda s: None)
    _same(_solutions(cut), _solutions(controlled))


def test_both_writers_satisfy_the_run_writer_protocol(tmp_path):
    """The loop writes through :class:`swa.writer.RunWriter`; rank 0's writer and the other ranks' stand-in both
    have every method it calls, with the same signatures."""
    import inspect

    from swa.distributed import RankWriter
    from swa.writer import RunWriter, TrajectoryWriter

    assert isinstance(RankWriter(tmp_path / "x.h5"), RunWriter)
    for name, proto in inspect.getmembers(RunWriter, inspect.isfunction):
        if name.startswith("_"):
            continue
        for cls in (TrajectoryWriter, RankWriter):
            assert inspect.signature(getattr(cls, name)) == inspect.signature(proto), (cls.__name__, name)
    stand_in = RankWriter(tmp_path / "x.h5", count=3)
    assert stand_in.append(None, None, epoch=1) == 3 and stand_in.count == 4
