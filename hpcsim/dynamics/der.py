"""DER power limits (the paper's eq. 14) and the seeded exogenous time series (P_mppt, load multiplier).

Eq. (14)::

    P_DER = min(P_base + P_PFR + P_SFR,  P_mppt,  P_cap,  P_base + P_headroom)

with the VSM limit taken per DER as ``P_VSM = P_now + ΔP*`` from the headroom LP (:mod:`headroom`), so the last
term is ``P_VSM``. Output is never negative.

P_mppt (solar intermittency, "near 0.8 MW per DER"): one AR(1) series per DER, sampled every second,

    x_k = ρ x_{k-1} + σ √(1-ρ²) ε_k,   P_mppt,k = clip(μ + x_k, 0, P_cap)

(stationary standard deviation σ, lag-1 correlation ρ), from ``numpy.random.default_rng(seed)``.
The load multiplier is ``1 + σ_L ε_k`` (ε standard normal, clipped to [0.5, 1.5]), with ``m_0 = 1`` so a run
starts from the case's steady state.
"""

from __future__ import annotations

import numpy as np

MPPT_RHO = 0.8
"""Lag-1 (1 s) correlation of the P_mppt series: intermittency with a few seconds of memory."""


def limit_mw(p_mppt_mw: np.ndarray, p_cap_mw: np.ndarray, p_vsm_mw: np.ndarray) -> np.ndarray:
    """The run-time upper limit of eq. (14): min(P_mppt, P_cap, P_VSM), never below zero."""
    return np.maximum(np.minimum(np.minimum(p_mppt_mw, p_cap_mw), p_vsm_mw), 0.0)


def output_mw(p_base_mw: np.ndarray, p_pfr_mw: np.ndarray, p_sfr_mw: np.ndarray, p_mppt_mw: np.ndarray,
              p_cap_mw: np.ndarray, p_vsm_mw: np.ndarray) -> np.ndarray:
    """Eq. (14): the DER power in steady state (the ANDES model adds a short inverter lag)."""
    wanted = np.asarray(p_base_mw) + np.asarray(p_pfr_mw) + np.asarray(p_sfr_mw)
    return np.clip(wanted, 0.0, limit_mw(p_mppt_mw, p_cap_mw, p_vsm_mw))


def mppt_series(n_der: int, n_seconds: int, *, mean_mw: float, std_mw: float, p_cap_mw: float, seed: int,
                rho: float = MPPT_RHO) -> np.ndarray:
    """Available power (n_seconds + 1, n_der) in MW, sample k valid over [k, k+1) s."""
    if not 0 <= rho < 1:
        raise ValueError(f"AR(1) correlation must be in [0, 1), got {rho}")
    rng = np.random.default_rng([seed, 1])
    eps = rng.standard_normal((n_seconds + 1, n_der))
    x = np.empty_like(eps)
    x[0] = std_mw * eps[0]
    gain = std_mw * np.sqrt(1.0 - rho**2)
    for k in range(1, n_seconds + 1):
        x[k] = rho * x[k - 1] + gain * eps[k]
    return np.clip(mean_mw + x, 0.0, p_cap_mw)


def load_multiplier_series(n_seconds: int, *, std: float, seed: int) -> np.ndarray:
    """Load multiplier (n_seconds + 1,), sample k from k s; the first sample is 1 (the case's load)."""
    rng = np.random.default_rng([seed, 2])
    m = np.clip(1.0 + std * rng.standard_normal(n_seconds + 1), 0.5, 1.5)
    m[0] = 1.0
    return m
