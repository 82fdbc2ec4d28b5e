"""Voltage coordination, pure parts: the zone model, the per-zone enumeration and the MILP round against brute
force on small synthetic feeders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse

from hpcsim.dynamics import coordination as co

pytestmark = pytest.mark.unit

V_MIN, V_MAX = 0.95, 1.05


def test_zone_model_sensitivity_is_weight_times_voltage_times_relative_step():
    levers = [co.Lever("reg", 2, 1.025, 0.00625, -20, 12, "creg"), co.Lever("xfm", 1, 1.0, 0.025, -2, 2)]
    v = np.array([1.0, 0.98, 0.96])
    weights = [{}, {0: 1.0}, {0: 1.0, 1: -1.0}]
    s = co.sensitivity(v, weights, levers).toarray()
    np.testing.assert_allclose(s[0], [0.0, 0.0])
    np.testing.assert_allclose(s[1], [0.98 * 0.00625 / 1.025, 0.0])
    np.testing.assert_allclose(s[2], [0.96 * 0.00625 / 1.025, -0.96 * 0.025])


def test_zone_step_centres_its_nodes_and_prefers_the_smallest_move():
    # nodes 0.93..0.95: one step of +0.025 gives 0.955..0.975 (clearance 0.005), two give 0.98..1.0 (0.03)
    v = np.array([0.93, 0.95])
    y, c = co.zone_steps(v, np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.01)
    assert (y, c) == (2, pytest.approx(0.01))  # capped at the margin, reached only with two steps
    y, c = co.zone_steps(v, np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.004)
    assert (y, c) == (1, pytest.approx(0.004))  # one step already reaches the (smaller) margin
    y, _ = co.zone_steps(np.array([0.99, 1.0]), np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.01)
    assert y == 0


def _brute_force(p: co.StepProblem) -> float:
    """The best clearance over every integer combination of all levers (network and zone)."""
    s = p.s.toarray()
    best = -np.inf
    ranges = [range(int(lo), int(hi) + 1) for lo, hi in zip(p.lo_steps, p.hi_steps)]
    for x in itertools.product(*ranges):
        best = max(best, min(co.clearance_pu(p.v_pu + s @ np.array(x), V_MIN, V_MAX), p.margin_pu))
    return best


def _feeder(seed: int) -> co.StepProblem:
    """A synthetic feeder: a regulator zone (all nodes), a second regulator on half of them, two service
    transformer zones of two nodes each; voltages spread so that nothing fits without moving taps."""
    rng = np.random.default_rng(seed)
    n = 12
    v = np.concatenate([rng.uniform(0.96, 1.06, 8), [0.925, 0.93], [1.055, 1.06]])
    s = np.zeros((n, 4))
    s[:, 0] = 0.0066 * v
    s[4:, 1] = 0.0066 * v[4:] * rng.uniform(1.0, 1.4, n - 4)  # measured: the far end moves more
    s[8:10, 2] = -0.025 * v[8:10]
    s[10:12, 3] = -0.025 * v[10:12]
    return co.StepProblem(v, sparse.csc_matrix(s), np.array([-4, -4, -2, -2]), np.array([4, 4, 2, 2]), 2,
                          [np.array([8, 9]), np.array([10, 11])], V_MIN, V_MAX, 0.01)


@pytest.mark.parametrize("seed", range(5))
def test_a_round_finds_the_brute_force_clearance(seed, monkeypatch):
    p = _feeder(seed)
    monkeypatch.setattr(co, "EXACT_MILP_COLUMNS", 0)  # exercise the relaxed-zone path on a small problem
    x, predicted = co.choose_steps(p)
    got = min(co.clearance_pu(p.v_pu + p.s @ x, V_MIN, V_MAX), p.margin_pu)
    assert predicted == pytest.approx(got, abs=1e-9)
    best = _brute_force(p)
    assert got >= best - 2 * co.TRIM_TOLERANCE_PU - 1e-9, (got, best)
    assert (p.lo_steps <= x).all() and (x <= p.hi_steps).all()


def test_the_exact_milp_matches_brute_force():
    p = _feeder(11)
    x, predicted = co.choose_steps(p)  # 4 columns: solved with every lever integer
    assert predicted == pytest.approx(_brute_force(p), abs=1e-7)
