import numpy as np
import pytest

from swa import Trajectory, train
from swa.schedules import conventional_lr, cyclic_lr, is_cycle_end, lr_trace
from tests.factories import tiny_config


@pytest.mark.parametrize("budget,lr", [(100, 0.1), (40, 0.05), (7, 0.37)])
def test_conventional_breakpoints(budget, lr):
    # paper A.1: alpha1 on [0, 0.5B], linear to 0.01 alpha1 on [0.5B, 0.9B], constant after
    assert conventional_lr(0, budget, lr) == lr
    assert conventional_lr(0.5 * budget, budget, lr) == pytest.approx(lr)
    assert conventional_lr(0.7 * budget, budget, lr) == pytest.approx(lr * (1 + 0.01) / 2)
    assert conventional_lr(0.9 * budget, budget, lr) == pytest.approx(0.01 * lr)
    assert conventional_lr(0.95 * budget, budget, lr) == pytest.approx(0.01 * lr)
    assert conventional_lr(budget, budget, lr) == pytest.approx(0.01 * lr)
    # monotone non-increasing
    xs = [conventional_lr(budget * k / 200, budget, lr) for k in range(201)]
    assert all(a >= b - 1e-15 for a, b in zip(xs, xs[1:]))


@pytest.mark.parametrize("c,a1,a2", [(5, 0.05, 0.001), (1, 0.001, 1e-5), (7, 0.1, 0.02)])
def test_cyclic_formula(c, a1, a2):
    for i in range(1, 4 * c + 1):
        t = ((i - 1) % c + 1) / c  # paper 3.1, written out
        assert cyclic_lr(i, c, a1, a2) == pytest.approx((1 - t) * a1 + t * a2)
    assert cyclic_lr(c, c, a1, a2) == pytest.approx(a2)  # cycle ends at alpha2
    if c > 1:
        assert cyclic_lr(c + 1, c, a1, a2) > cyclic_lr(c, c, a1, a2)  # discontinuous jump back
        assert cyclic_lr(1, c, a1, a2) == pytest.approx(a1 - (a1 - a2) / c)
    assert [i for i in range(1, 3 * c + 1) if is_cycle_end(i, c)] == [c, 2 * c, 3 * c]


@pytest.mark.parametrize("schedule", ["cyclic", "constant", "swalr"])
def test_lr_trace_equals_the_lr_the_trainer_used_at_every_step(tmp_path, schedule):
    """A run snapshotted after every step records the lr of every step; the trace from its config must match."""
    kw = {"swa_cycle": 1} if schedule != "cyclic" else {"swa_cycle": 0.5}
    run = tmp_path / "r.h5"
    train(tiny_config(swa_schedule=schedule, snapshot_every=1, swa_lr=0.07, **kw), run, progress=False,
          log=lambda s: None)
    with Trajectory(run) as t:
        it, lr, br = t.meta("iteration"), t.meta("lr"), t.meta("branch").astype(str)
        trace = lr_trace(t.config, batches_per_epoch=7)  # 400 samples / batch 64
    for b in ("sgd", "swa"):
        steps = dict(zip(*trace[b]))
        m = (br == b) & (it > 0)  # iteration 0 is the initial point, before any step
        assert m.sum() >= 14
        np.testing.assert_allclose([steps[int(i)] for i in it[m]], lr[m], rtol=1e-12, atol=0)
    assert len(set(trace["swa"][1])) > 1 if schedule != "constant" else len(set(trace["swa"][1])) == 1
