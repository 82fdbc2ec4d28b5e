"""Pure T&D interface math: positive sequence (transmission) <-> three phases (distribution).

Equations (1)-(4) of the TDcoSim interface description:

(1) balanced phase voltages from the positive-sequence voltage:
    V_a = V+,  V_b = V+ * 1∠-120°,  V_c = V+ * 1∠120°
(3) sequence components with the Fortescue matrix, a = 1∠120°:
    [X_0, X_+, X_-]^T = 1/3 [[1, 1, 1], [1, a, a²], [1, a², a]] [X_a, X_b, X_c]^T
(4) positive-sequence complex power. With per-phase phasors the three-phase positive-sequence power is
    S_+ = 3 · V_+ · conj(I_+)    (equal to V_a·I_a* + V_b·I_b* + V_c·I_c* for a balanced set).

Everything here is numpy on arrays; units are in the names.
"""

from __future__ import annotations

import math

import numpy as np

A = np.exp(2j * np.pi / 3)
"""The Fortescue operator a = 1∠120°."""

FORTESCUE = np.array([[1, 1, 1], [1, A, A**2], [1, A**2, A]], dtype=complex) / 3.0
"""abc -> (0, +, -): ``FORTESCUE @ x_abc``."""

FORTESCUE_INV = np.array([[1, 1, 1], [1, A**2, A], [1, A, A**2]], dtype=complex)
"""(0, +, -) -> abc."""


def polar_to_complex(v_pu: np.ndarray | float, angle_deg: np.ndarray | float) -> np.ndarray:
    """Magnitude and angle (degrees) -> complex phasor."""
    return np.asarray(v_pu) * np.exp(1j * np.deg2rad(angle_deg))


def complex_to_polar(x: np.ndarray | complex) -> tuple[np.ndarray, np.ndarray]:
    """Complex phasor -> (magnitude, angle in degrees)."""
    return np.abs(x), np.rad2deg(np.angle(x))


def positive_to_abc(v_pos: complex | np.ndarray) -> np.ndarray:
    """Equation (1): a positive-sequence phasor -> the balanced phase phasors, shape (..., 3)."""
    return np.asarray(v_pos)[..., None] * np.array([1.0, A**2, A])


def abc_to_sequence(x_abc: np.ndarray) -> np.ndarray:
    """Equation (3): phase phasors (..., 3) -> sequence phasors (..., 3) ordered (zero, positive, negative)."""
    x_abc = np.asarray(x_abc, dtype=complex)
    if x_abc.shape[-1] != 3:
        raise ValueError(f"expected three phases in the last axis, got shape {x_abc.shape}")
    return x_abc @ FORTESCUE.T


def sequence_to_abc(x_seq: np.ndarray) -> np.ndarray:
    """Inverse of :func:`abc_to_sequence`."""
    return np.asarray(x_seq, dtype=complex) @ FORTESCUE_INV.T


def positive_sequence_power(v_abc: np.ndarray, i_abc: np.ndarray) -> complex | np.ndarray:
    """Equation (4): three-phase positive-sequence complex power S_+ = 3 V_+ conj(I_+).

    ``v_abc`` and ``i_abc`` are per-phase (line-to-neutral) phasors in consistent units, e.g. kV and A give kVA.
    """
    v_pos = abc_to_sequence(v_abc)[..., 1]
    i_pos = abc_to_sequence(i_abc)[..., 1]
    return 3.0 * v_pos * np.conj(i_pos)


def three_phase_power(v_abc: np.ndarray, i_abc: np.ndarray) -> complex | np.ndarray:
    """Total complex power Σ V_k conj(I_k) over the three phases."""
    return np.sum(np.asarray(v_abc) * np.conj(np.asarray(i_abc)), axis=-1)


def mw_to_pu(p_mw: np.ndarray | float, s_base_mva: float) -> np.ndarray | float:
    """MW (or Mvar) -> per unit on ``s_base_mva``."""
    return np.asarray(p_mw) / s_base_mva


def pu_to_mw(p_pu: np.ndarray | float, s_base_mva: float) -> np.ndarray | float:
    """Per unit on ``s_base_mva`` -> MW (or Mvar)."""
    return np.asarray(p_pu) * s_base_mva


def kw_to_mw(p_kw: np.ndarray | float) -> np.ndarray | float:
    return np.asarray(p_kw) / 1000.0


def clones_needed(bus_pd_mw: float, feeder_p_mw: float) -> int:
    """K = ceil(PD / P_feeder): how many cloned feeders serve a bus (ANL boundary-map rule)."""
    if feeder_p_mw <= 0:
        raise ValueError(f"feeder power must be positive, got {feeder_p_mw} MW")
    return max(1, math.ceil(bus_pd_mw / feeder_p_mw - 1e-12))


def is_boundary_bus(bus_pd_mw: float, feeder_p_mw: float) -> bool:
    """A bus becomes a boundary bus when its load is larger than one feeder's: PD > P_feeder."""
    return bus_pd_mw > feeder_p_mw


def scale_factor(bus_pd_mw: float, feeder_p_mw: float) -> float:
    """Scale-mode factor (TDcoSim / ANDES-tutorial style): one feeder's power multiplied up to the bus load."""
    if feeder_p_mw <= 0:
        raise ValueError(f"feeder power must be positive, got {feeder_p_mw} MW")
    return bus_pd_mw / feeder_p_mw


def voltage_mismatch(v_new: np.ndarray, v_old: np.ndarray) -> float:
    """Transmission-side mismatch: sqrt(Σ (ΔV_m² + ΔV_a²)) over boundary buses (pu, rad) — ANL convention.

    Inputs are complex per-unit phasors.
    """
    dm = np.abs(v_new) - np.abs(v_old)
    da = np.angle(v_new) - np.angle(v_old)
    da = (da + np.pi) % (2 * np.pi) - np.pi
    return float(np.sqrt(np.sum(dm**2 + da**2)))


def power_mismatch(s_new_mva: np.ndarray, s_old_mva: np.ndarray, s_base_mva: float = 100.0) -> np.ndarray:
    """Distribution-side mismatch per feeder: sqrt((ΔP/S_base)² + (ΔQ/S_base)²) — ANL convention."""
    d = (np.asarray(s_new_mva) - np.asarray(s_old_mva)) / s_base_mva
    return np.abs(d)
