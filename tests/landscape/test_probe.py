"""The strategy choice: the plain plan is always a candidate, ties go to it, every plan is exact."""

from types import SimpleNamespace

import pytest
import torch

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.passes import Strategy
from landscape.points import PointSet
from landscape.probe import Plan, ProbeCache, run_probe
from tests.landscape.test_engine import BN_BATCH, _assert_matches_reference, _data, _model, _points


@pytest.mark.parametrize("cfg", [dict(), dict(workers=2), dict(workers=1), dict(superbatch=128),
                                 dict(memory_budget=1 << 20), dict(strategy="loop")])
@pytest.mark.parametrize("name", ["mlp", "convnet_bn"])
def test_plain_plan_is_always_the_first_candidate(name, cfg):
    model, data = _model(name), _data()
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, **cfg))
    cands = eng.planner.candidates(("train", "test"), (), True)
    plain = cands[0]
    assert plain.plain and plain.strategy is Strategy.LOOP and plain.width == 1
    assert plain.workers == cfg.get("workers", 1)
    assert sum(c.plain for c in cands) == 1
    if "superbatch" not in cfg and "memory_budget" not in cfg:  # the whole split (240 -> 4 groups of 64) per forward
        assert plain.superbatch == 256


def test_auto_probes_on_the_points_themselves_and_every_plan_is_exact():
    """40 points: the probe times every candidate on leading points and keeps their results; all equal the reference."""
    model, data = _model("convnet_bn", seed=40), _data(seed=41)
    pts = _points(model, 40, seed=42)
    calls = []
    eng = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH, probe_min_seconds=0),
                 cache=ProbeCache())
    res = eng.evaluate(PointSet.explicit(pts), on_chunk=lambda lo, hi, part: calls.append((lo, hi)))
    report = eng.explain()
    timed = [t for t in report.trials if t.points]
    assert len(timed) >= 2 and timed[0].plan.plain and report.choice in [t.plan for t in timed]
    assert {t.plan.strategy for t in timed} >= {Strategy.LOOP}
    text = str(report)
    for t in timed:  # the explanation lists what was timed, with its time
        assert str(t.plan) in text and f"{t.seconds:.3f}" in text
    assert "choice:" in text
    # chunks delivered in order, each point exactly once
    assert calls[0][0] == 0 and all(a[1] == b[0] for a, b in zip(calls, calls[1:])) and calls[-1][1] == 40
    _assert_matches_reference(model, res, pts, data)
    assert len(eng.cache) == 1
    eng.evaluate(PointSet.explicit(pts[:5]))
    assert eng.explain().cached and eng.explain().choice == report.choice
    eng.cache.clear()
    other = Engine(model, data, config=EngineConfig(dtype="float64"))
    assert len(eng.cache) == 0 and other.cache is not eng.cache  # each engine has its own unless given one


def test_few_points_use_the_plain_plan_unprobed():
    model, data = _model("mlp", seed=43), _data(seed=44)
    eng = Engine(model, data, config=EngineConfig(dtype="float64"))
    res = eng.evaluate(PointSet.explicit(_points(model, 3, seed=45)))
    assert eng.explain().choice.plain and eng.explain().trials == [] and "too few" in eng.explain().reason
    assert res.strategy == "loop" and len(eng.cache) == 0


def _fake(costs: dict[Plan, float], wrong: set[Plan] = frozenset()):
    """A run function whose plans take ``costs[plan]`` seconds per point on a simulated clock (no sleeping, no
    timing noise); ``wrong`` plans return other losses. Returns ``run, deliver, delivered, clock``."""
    now = [0.0]

    def run(plan, lo, hi):
        now[0] += costs[plan] * (hi - lo)
        off = 1.0 if plan in wrong else 0.0
        return SimpleNamespace(loss={"train": torch.arange(lo, hi, dtype=torch.float64) + off})
    delivered = []
    return run, (lambda lo, hi, part: delivered.append((lo, hi))), delivered, (lambda: now[0])


PLAIN = Plan(Strategy.LOOP, 256, 1, plain=True)
TWO = Plan(Strategy.LOOP, 128, 2)
VMAP = Plan(Strategy.VMAP, 128, 1, 4)


def test_probe_prefers_the_plain_plan_on_a_near_tie_and_a_clear_winner_otherwise():
    run, deliver, delivered, clock = _fake({PLAIN: 0.010, TWO: 0.0099, VMAP: 0.012})
    report, done = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=200, total_points=400, min_seconds=0.05,
                             clock=clock)
    assert report.choice == PLAIN and "no candidate beat" in report.reason
    assert delivered[0][0] == 0 and delivered[-1][1] == done and all(a[1] == b[0] for a, b in zip(delivered, delivered[1:]))
    run, deliver, _, clock = _fake({PLAIN: 0.010, TWO: 0.004, VMAP: 0.012})
    report, _ = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=200, total_points=400, min_seconds=0.05,
                             clock=clock)
    assert report.choice == TWO and report.trials[1].rate > 2 * report.trials[0].rate


def test_probe_rejects_a_disagreeing_vmap_and_skips_what_does_not_fit():
    run, deliver, delivered, clock = _fake({PLAIN: 0.002, TWO: 0.010, VMAP: 0.0001}, wrong={VMAP})
    with pytest.warns(UserWarning, match="disagree"):
        report, done = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=60, total_points=120, min_seconds=0.01,
                                 clock=clock)
    assert report.choice == PLAIN and "disagrees" in report.trials[2].note and report.trials[2].points == 0
    assert sum(hi - lo for lo, hi in delivered) == done  # the rejected vmap round was not delivered
    run, deliver, _, clock = _fake({PLAIN: 0.001, TWO: 0.001, VMAP: 0.001})
    report, done = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=6, total_points=12, clock=clock)
    assert "skipped" in report.trials[2].note and done <= 6


def test_short_evaluations_are_not_worth_probing():
    """The plain plan would finish 400 points in about 0.4 s: timing the others could not pay for itself."""
    run, deliver, _, clock = _fake({PLAIN: 0.001, TWO: 0.0001, VMAP: 0.0001})
    report, done = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=200, total_points=400,
                             min_total_seconds=3.0, min_seconds=0.02, clock=clock)
    assert report.choice == PLAIN and all("skipped" in t.note and t.points == 0 for t in report.trials[1:])
    run, deliver, _, clock = _fake({PLAIN: 0.001, TWO: 0.0001, VMAP: 0.0001})
    report, _ = run_probe([PLAIN, TWO, VMAP], run, deliver, max_points=200, total_points=400,
                          min_total_seconds=0.1, min_seconds=0.02, clock=clock)
    assert report.choice != PLAIN


def test_a_candidate_running_out_of_memory_is_skipped():
    run, deliver, _, clock = _fake({PLAIN: 0.001, TWO: 0.0005, VMAP: 0.0001})

    def tight(plan, lo, hi):
        if plan is TWO:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return run(plan, lo, hi)

    report, _ = run_probe([PLAIN, TWO, VMAP], tight, deliver, max_points=200, total_points=400, min_seconds=0.02,
                          clock=clock)
    assert report.trials[1].note == "out of memory" and report.trials[1].points == 0 and report.choice == VMAP
