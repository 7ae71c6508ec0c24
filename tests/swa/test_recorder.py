"""Runs recorded from a hand-written training loop, and runs imported from state_dicts."""

import copy

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from landscape.errors import UserError
from landscape.layout import flatten
from swa import Recorder, Trajectory, import_run
from tests.user_factories import load_data, make_net, other_net


def _loop(rec: Recorder | None, net, opt, x, y, steps: int = 6):
    """A plain loop: SGD epochs; the last three are captured. Returns the reference AveragedModel."""
    avg = AveragedModel(net)
    for epoch in range(steps):
        net.train()
        for i in range(0, len(x), 30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i:i + 30]), y[i:i + 30]).backward()
            opt.step()
        if epoch < 3:
            if rec:
                rec.snapshot(lr=0.1, epoch=epoch + 1)
            if epoch == 2 and rec:
                rec.solution("sgd")
        else:
            avg.update_parameters(net)
            if rec:
                rec.capture(lr=0.1, epoch=epoch + 1)
    return avg


def test_recorder_swa_equals_averaged_model_on_the_same_steps(tmp_path):
    torch.manual_seed(0)
    net = make_net()
    twin = copy.deepcopy(net)
    (x, y), test = load_data()
    path = tmp_path / "loop.h5"
    with Recorder(path, net, ((x, y), test), weight_decay=1e-4, bn_batch_size=30) as rec:
        _loop(rec, net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), x, y)
    ref = _loop(None, twin, torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9), x, y)
    ref.module.train()
    update_bn([x[i:i + 30] for i in range(0, len(x), 30)], ref.module)  # no dropout here: update_bn's own semantics
    with Trajectory(path) as t:
        w, b = t.solution("swa")
        torch.testing.assert_close(w, flatten(list(ref.module.parameters())), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(b, flatten(list(ref.module.buffers())), rtol=1e-5, atol=1e-6)
        assert t.status == "complete" and t.source == "recorder" and t.solution_scalar("swa", "n_averaged") == 3
        assert list(t.meta("branch")) == ["sgd"] * 3 + ["swa"] * 3 and t.meta("captured").sum() == 3
        torch.testing.assert_close(t.weights(5), flatten(list(twin.parameters())))  # the last captured model


def test_a_recorded_run_goes_through_analyze_all_and_figures(tmp_path):
    from analyses import analyze_all
    from swa_landscape.report import make_figures

    torch.manual_seed(1)
    net = make_net()
    (x, y), test = load_data()
    path = tmp_path / "loop.h5"
    with Recorder(path, net, ((x, y), test), bn_batch_size=30) as rec:
        _loop(rec, net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), x, y)
    done = analyze_all(path, model=make_net(), data=((x, y), test), progress=False, log=lambda s: None)
    assert set(done) == {"rays", "rays_filter", "predictions", "segment", "plane", "fge"}  # paper-fig1 needs the fork, which a loop may not have
    assert make_figures(path, tmp_path / "loop.landscape.h5", tmp_path / "figs").exists()
    # the same analyses refuse the wrong data or network, and write nothing
    with pytest.raises(UserError, match="not the data .* was trained with"):
        analyze_all(path, tmp_path / "other.h5", model=make_net(), data=load_data(seed=2), progress=False)
    with pytest.raises(UserError, match="does not match the parameter layout"):
        analyze_all(path, tmp_path / "other.h5", model=other_net(), data=((x, y), test), progress=False)
    with pytest.raises(UserError, match="pass model="):
        analyze_all(path, tmp_path / "other.h5", data=((x, y), test), progress=False)
    assert not (tmp_path / "other.h5").exists()


def test_an_exception_in_the_loop_marks_the_run_interrupted(tmp_path):
    net = make_net()
    with pytest.raises(RuntimeError):
        with Recorder(tmp_path / "r.h5", net, load_data()) as rec:
            rec.snapshot()
            raise RuntimeError("the loop broke")
    with Trajectory(tmp_path / "r.h5") as t:
        assert t.status == "interrupted" and "the loop broke" in t.message and t.n == 1


def test_import_from_state_dicts(tmp_path):
    torch.manual_seed(3)
    net = make_net()
    torch.save(net.state_dict(), tmp_path / "sgd.pt")
    states = []
    for k in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        states.append(copy.deepcopy(net.state_dict()))
        torch.save(net.state_dict(), tmp_path / f"swa_{k + 8}.pt")  # natural order: 8, 9, 10
    path = import_run(tmp_path / "imp.h5", model="tests.user_factories:make_net", data="tests.user_factories:load_data",
                      sgd=str(tmp_path / "sgd.pt"), snapshots=str(tmp_path / "swa_*.pt"), bn_batch_size=30)
    (x, _), _ = load_data()
    avg = make_net()
    with torch.no_grad():  # the average of the three checkpoints, written out
        for name, p in avg.named_parameters():
            p.copy_(sum(s[name] for s in states) / 3)
    avg.train()
    update_bn([x[i:i + 30] for i in range(0, len(x), 30)], avg)
    with Trajectory(path) as t:
        assert t.source == "import" and t.status == "complete" and t.n == 3
        for k in range(3):
            torch.testing.assert_close(t.weights(k), flatten([states[k][n] for n, _ in net.named_parameters()]))
        torch.testing.assert_close(t.solution("swa")[0], flatten(list(avg.parameters())), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(t.solution("swa")[1], flatten(list(avg.buffers())), rtol=1e-5, atol=1e-6)
        assert t.dataset_spec["name"] == "tests.user_factories:load_data"
    # the analyses and every figure on it (the schedule figure says the lr was not recorded)
    from analyses import analyze_all
    from swa_landscape.report import make_figures

    analyze_all(path, progress=False, log=lambda s: None)
    index = make_figures(path, tmp_path / "imp.landscape.h5", tmp_path / "figs")
    assert (tmp_path / "figs" / "schedule.png").exists() and "plane" in index.read_text()
    # an import without w_SGD: the analyses that need it say what to add
    import_run(tmp_path / "nosgd.h5", model="tests.user_factories:make_net", data="tests.user_factories:load_data",
               snapshots=str(tmp_path / "swa_*.pt"))
    from analyses import segment

    with pytest.raises(UserError, match="import it with --sgd"):
        segment(tmp_path / "nosgd.h5", progress=False)
