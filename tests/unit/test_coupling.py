"""The coupling methods' pure parts (:mod:`hpcsim.coupling`): per-bus sums and the constant-power +
constant-impedance equivalent of the Newton method."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsim.coupling import METHODS, Anderson, bus_sums, carried, zip_split

pytestmark = pytest.mark.unit


def test_bus_sums_add_weighted_feeder_values_per_bus():
    pos = np.array([0, 0, 2, 1, 2])
    w = np.array([1.0, 1.0, 3.0, 1.0, 1.0])
    v = np.array([1 + 1j, 2 + 0j, 1 - 1j, 5 + 5j, 0 + 2j])
    np.testing.assert_allclose(bus_sums(pos, w, v, 4), [3 + 1j, 5 + 5j, 3 - 1j, 0])


def test_the_equivalent_matches_the_feeders_power_and_slope_at_their_voltage():
    rng = np.random.default_rng(3)
    s0 = rng.uniform(10, 50, 6) + 1j * rng.uniform(-5, 5, 6)
    j = rng.uniform(-30, 5, 6) + 1j * rng.uniform(-60, 10, 6)  # MW and Mvar per pu
    v0 = rng.uniform(0.95, 1.06, 6)
    a, b = zip_split(s0, j, v0)
    np.testing.assert_allclose(carried(a, b, v0), s0, rtol=1e-13)  # the fixed point: the feeders' power
    h = 1e-6
    slope = (carried(a, b, v0 + h) - carried(a, b, v0 - h)) / (2 * h)
    np.testing.assert_allclose(slope, j, rtol=1e-6)  # and their slope
    # no slope: plain constant power, as Gauss-Seidel
    a0, b0 = zip_split(s0, np.zeros(6), v0)
    np.testing.assert_allclose(a0, s0) and np.testing.assert_allclose(b0, 0)


def test_a_linear_feeder_is_reproduced_exactly_one_step_away():
    """A feeder whose power is linear in V is what the equivalent assumes to first order: at V0 ± 1 % the
    equivalent's error is the quadratic term only, B·(ΔV)²."""
    s0, j, v0 = 12 + 1.4j, -3.6 - 20j, 1.02
    a, b = zip_split(np.array([s0]), np.array([j]), np.array([v0]))
    for dv in (0.01, -0.01):
        exact = s0 + j * dv
        assert abs(carried(a, b, np.array([v0 + dv]))[0] - exact) == pytest.approx(abs(b[0]) * dv * dv, rel=1e-9)


def test_methods_are_named():
    assert METHODS == ("gauss-seidel", "newton")


def test_anderson_solves_a_linear_fixed_point_in_a_few_steps_where_plain_iteration_crawls():
    """x = A x + c with contraction 0.9: plain iteration needs ~150 steps to 1e-7, Anderson(m) on an n-dim
    linear map converges in about n + 1 steps (it is GMRES in disguise)."""
    rng = np.random.default_rng(5)
    n = 3
    q, _ = np.linalg.qr(rng.standard_normal((2 * n, 2 * n)))
    a = q @ np.diag(np.linspace(0.5, 0.9, 2 * n)) @ q.T
    c = rng.standard_normal(2 * n)
    fixed = np.linalg.solve(np.eye(2 * n) - a, c)

    def g(x):  # complex voltages <-> real pairs
        xr = np.concatenate([x.real, x.imag])
        y = a @ xr + c
        return y[:n] + 1j * y[n:]

    target = fixed[:n] + 1j * fixed[n:]
    aa, x = Anderson(m=2 * n), np.zeros(n, complex)
    for k in range(20):
        x = aa.step(x, g(x))
        if np.max(np.abs(x - target)) < 1e-7:
            break
    assert k + 1 <= 2 * n + 2
    plain, x = 0, np.zeros(n, complex)
    while np.max(np.abs(x - target)) >= 1e-7:
        x, plain = g(x), plain + 1
    assert plain > 100
