"""Pure T&D interface math (equations (1)-(4) of the TDcoSim interface description)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcsim import interface as itf

pytestmark = pytest.mark.unit

RNG = np.random.default_rng(20261121)


def _random_complex(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape) + 1j * RNG.normal(size=shape)


# --- equation (1) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v_pos", [1.0 + 0j, 1.05 * np.exp(1j * np.deg2rad(-7.8)), 0.3 - 2.1j])
def test_positive_to_abc_is_balanced_120_degrees_apart(v_pos):
    abc = itf.positive_to_abc(v_pos)
    assert abc.shape == (3,)
    mag, ang = itf.complex_to_polar(abc)
    np.testing.assert_allclose(mag, abs(v_pos), rtol=1e-14)
    assert abc[0] == pytest.approx(v_pos, abs=1e-15)  # V_a = V+
    # V_b lags V_a by 120°, V_c leads it by 120° (V_b = V+ ∠-120°, V_c = V+ ∠120°)
    assert np.angle(abc[1] / abc[0], deg=True) == pytest.approx(-120.0, abs=1e-12)
    assert np.angle(abc[2] / abc[0], deg=True) == pytest.approx(120.0, abs=1e-12)
    assert abs(abc.sum()) == pytest.approx(0.0, abs=1e-14)


def test_positive_to_abc_batched():
    v = _random_complex(5)
    abc = itf.positive_to_abc(v)
    assert abc.shape == (5, 3)
    for k in range(5):
        np.testing.assert_allclose(abc[k], itf.positive_to_abc(v[k]), rtol=1e-15)


# --- equation (3) -------------------------------------------------------------------------------------------


def test_fortescue_matrices_are_inverse():
    np.testing.assert_allclose(itf.FORTESCUE @ itf.FORTESCUE_INV, np.eye(3), atol=1e-15)
    assert itf.A == pytest.approx(np.exp(1j * np.deg2rad(120)))
    assert itf.A**3 == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(3,), (7, 3), (2, 4, 3)])
def test_sequence_round_trip(shape):
    x = _random_complex(*shape)
    seq = itf.abc_to_sequence(x)
    assert seq.shape == shape
    np.testing.assert_allclose(itf.sequence_to_abc(seq), x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(itf.abc_to_sequence(itf.sequence_to_abc(x)), x, rtol=0, atol=1e-13)


def test_sequence_batched_matches_row_by_row():
    x = _random_complex(6, 3)
    seq = itf.abc_to_sequence(x)
    for k in range(6):
        np.testing.assert_allclose(seq[k], itf.FORTESCUE @ x[k], atol=1e-15)


def test_balanced_set_has_only_positive_sequence():
    v_pos = _random_complex(10)
    seq = itf.abc_to_sequence(itf.positive_to_abc(v_pos))
    np.testing.assert_allclose(seq[:, 0], 0, atol=1e-12)  # zero sequence
    np.testing.assert_allclose(seq[:, 2], 0, atol=1e-12)  # negative sequence
    np.testing.assert_allclose(seq[:, 1], v_pos, atol=1e-12)


def test_single_phase_current_by_hand():
    # I_a = 1, I_b = I_c = 0  ->  I_0 = I_+ = I_- = 1/3
    np.testing.assert_allclose(itf.abc_to_sequence([1, 0, 0]), [1 / 3, 1 / 3, 1 / 3], atol=1e-15)
    # I_b = 1 only -> (1/3, a/3, a²/3)
    a = itf.A
    np.testing.assert_allclose(itf.abc_to_sequence([0, 1, 0]), [1 / 3, a / 3, a * a / 3], atol=1e-15)


def test_negative_sequence_set_by_hand():
    # a balanced set in the negative phase order (a, c, b) is pure negative sequence
    v = np.array([1.0, itf.A, itf.A**2])
    np.testing.assert_allclose(itf.abc_to_sequence(v), [0, 0, 1], atol=1e-15)


def test_abc_to_sequence_rejects_wrong_shape():
    with pytest.raises(ValueError, match="three phases"):
        itf.abc_to_sequence(np.ones((3, 2)))


# --- equation (4) -------------------------------------------------------------------------------------------


def test_positive_sequence_power_equals_three_phase_power_when_balanced():
    v_abc = itf.positive_to_abc(7.2 * np.exp(1j * 0.1))  # kV
    i_abc = itf.positive_to_abc(310.0 * np.exp(-1j * 0.4))  # A
    s_pos = itf.positive_sequence_power(v_abc, i_abc)
    s_tot = itf.three_phase_power(v_abc, i_abc)
    assert s_pos == pytest.approx(s_tot, rel=1e-13)
    assert s_tot == pytest.approx(3 * 7.2 * 310.0 * np.exp(1j * 0.5), rel=1e-13)  # kVA


def test_positive_sequence_power_batched():
    v = itf.positive_to_abc(_random_complex(4))
    i = itf.positive_to_abc(_random_complex(4))
    np.testing.assert_allclose(itf.positive_sequence_power(v, i), itf.three_phase_power(v, i), rtol=1e-12)


def test_positive_sequence_power_differs_when_unbalanced():
    v_unbal = np.array([1.0, 0.9 * itf.A**2, 1.1 * itf.A])
    i_unbal = np.array([1.0, 0.5 * itf.A**2, 0.0])
    s_pos = itf.positive_sequence_power(v_unbal, i_unbal)
    s_tot = itf.three_phase_power(v_unbal, i_unbal)
    assert abs(s_pos - s_tot) > 1e-3
    # the difference is exactly the zero- and negative-sequence power
    v0, _, vn = itf.abc_to_sequence(v_unbal)
    i0, _, i_n = itf.abc_to_sequence(i_unbal)
    assert s_tot == pytest.approx(s_pos + 3 * v0 * np.conj(i0) + 3 * vn * np.conj(i_n), rel=1e-13)


def test_balanced_voltage_unbalanced_current_by_hand():
    # V balanced (V+ = 1), only phase a draws 1: I+ = 1/3, so S+ = 3 · 1 · 1/3 = 1 = Σ V_k I_k*.
    v_abc = itf.positive_to_abc(1.0 + 0j)
    i_abc = np.array([1.0, 0.0, 0.0])
    assert itf.three_phase_power(v_abc, i_abc) == pytest.approx(1.0)
    assert itf.positive_sequence_power(v_abc, i_abc) == pytest.approx(1.0)


# --- units and the boundary-map rule ------------------------------------------------------------------------


def test_mw_pu_round_trip():
    p = np.array([0.0, 23.74, -5.5, 1475.7])
    np.testing.assert_allclose(itf.mw_to_pu(p, 100.0), p / 100.0)
    np.testing.assert_allclose(itf.pu_to_mw(itf.mw_to_pu(p, 100.0), 100.0), p, rtol=1e-15)
    assert itf.mw_to_pu(23.74, 100.0) == pytest.approx(0.2374)
    assert itf.pu_to_mw(0.2374, 100.0) == pytest.approx(23.74)
    assert itf.kw_to_mw(10773.17) == pytest.approx(10.77317)


def test_polar_complex_round_trip():
    z = itf.polar_to_complex(1.0127, -7.834)
    mag, ang = itf.complex_to_polar(z)
    assert (mag, ang) == (pytest.approx(1.0127), pytest.approx(-7.834))


@pytest.mark.parametrize(
    ("pd", "p_feeder", "k"),
    [
        (21.546, 10.773, 2),  # an exact multiple: 2, not 3
        (3 * 10.773, 10.773, 3),
        (8 * 10.773, 10.773, 8),
        (10.773, 10.773, 1),
        (10.774, 10.773, 2),
        (23.74, 10.773, 3),  # ACTIVSg200 bus 8
        (0.5, 10.773, 1),
        (0.0, 10.773, 1),
    ],
)
def test_clones_needed(pd, p_feeder, k):
    assert itf.clones_needed(pd, p_feeder) == k


def test_clones_needed_exact_multiples_in_floating_point():
    for n in range(1, 200):
        for p_feeder in (10.773, 10.77317, 0.1, 3.0):
            assert itf.clones_needed(n * p_feeder, p_feeder) == n


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_clones_needed_and_scale_factor_reject_nonpositive_feeder(bad):
    with pytest.raises(ValueError):
        itf.clones_needed(10.0, bad)
    with pytest.raises(ValueError):
        itf.scale_factor(10.0, bad)


def test_is_boundary_bus():
    assert not itf.is_boundary_bus(10.773, 10.773)  # PD equal to P_feeder is NOT a boundary bus
    assert itf.is_boundary_bus(10.7731, 10.773)
    assert not itf.is_boundary_bus(0.0, 10.773)
    assert not itf.is_boundary_bus(-20.0, 10.773)


def test_scale_factor():
    assert itf.scale_factor(23.74, 10.773) == pytest.approx(23.74 / 10.773)
    assert itf.scale_factor(21.546, 10.773) == pytest.approx(2.0)
    assert itf.scale_factor(10.773, 10.773) == 1.0


# --- mismatch -----------------------------------------------------------------------------------------------


def test_voltage_mismatch_angle_wraps_around():
    v_new = itf.polar_to_complex(1.0, 359.0)
    v_old = itf.polar_to_complex(1.0, -1.0)
    assert itf.voltage_mismatch(v_new, v_old) == pytest.approx(0.0, abs=1e-12)
    # across ±180°: 179° vs -179° is 2° apart, not 358°
    d = itf.voltage_mismatch(itf.polar_to_complex(1.0, 179.0), itf.polar_to_complex(1.0, -179.0))
    assert d == pytest.approx(math.radians(2.0), rel=1e-9)


def test_voltage_mismatch_combines_magnitude_and_angle():
    v_old = itf.polar_to_complex(np.array([1.0, 1.02]), np.array([-5.0, -8.0]))
    v_new = itf.polar_to_complex(np.array([1.003, 1.02]), np.array([-5.0, -8.0 + math.degrees(0.004)]))
    assert itf.voltage_mismatch(v_new, v_old) == pytest.approx(0.005, rel=1e-9)  # sqrt(0.003² + 0.004²)
    assert itf.voltage_mismatch(v_old, v_old) == 0.0


def test_power_mismatch_per_feeder():
    s_old = np.array([12.0 + 1.4j, 12.0 + 1.4j])
    s_new = np.array([12.0 + 1.4j, 12.03 + 1.44j])
    np.testing.assert_allclose(itf.power_mismatch(s_new, s_old), [0.0, 0.0005], atol=1e-15)
