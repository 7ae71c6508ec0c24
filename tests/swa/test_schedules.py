import pytest

from swa.schedules import conventional_lr, cyclic_lr, is_cycle_end


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
