"""Secondary frequency response (SFR): area control error, a PI controller and participation factors (Fig. 5).

ACE, the paper's eq. (6) with one area, no interchange and no metering error (NERC BAL-001)::

    ACE = -10 · B · (f - f0)        B: frequency bias in MW / 0.1 Hz (negative), ACE in MW

so a frequency below ``f0`` gives a negative ACE (a generation deficit). The AGC acts on ACE only when the
frequency error is outside its deadband ``f_db``; a PI controller turns it into the area control signal
(MW, positive = raise generation)::

    ACS_k = -(K_p · ĀCE_k + K_i · Σ_{j≤k} ĀCE_j · Δt)      every Δt (4 s)

where ĀCE_k is the mean of the ACE samples received (every 0.5 s) during the AGC interval — the usual ACE
filtering; acting on a single sample would feed one instant of load noise back for 4 s.

and unit i receives ``β_i · ACS`` (participation factors, Σ β = 1). The integral stops (conditional
integration) while the signal is at its limit, so it does not wind up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def bias_mw_per_01hz(slope_mw_per_hz: float) -> float:
    """Frequency bias B (MW / 0.1 Hz, negative by NERC convention) from the area's natural response β (MW/Hz)."""
    if slope_mw_per_hz <= 0:
        raise ValueError(f"the area's frequency response must be positive, got {slope_mw_per_hz} MW/Hz")
    return -slope_mw_per_hz / 10.0


def ace_mw(f_hz: np.ndarray | float, *, f0_hz: float, bias_mw_per_01hz: float) -> np.ndarray:
    """Eq. (6): ACE = -10 B (f - f0), MW."""
    return -10.0 * bias_mw_per_01hz * (np.asarray(f_hz, dtype=float) - f0_hz)


def ace_in_deadband(f_hz: float, ace: float, *, f0_hz: float, deadband_hz: float) -> float:
    """The ACE the controller acts on: zero while |f - f0| is within the AGC deadband."""
    return 0.0 if abs(f_hz - f0_hz) <= deadband_hz else float(ace)


@dataclass
class PIController:
    """Discrete PI on ACE, sampled every ``dt_s``; output (MW) limited to ±``limit_mw``."""

    kp: float
    ki_per_s: float
    dt_s: float
    limit_mw: float = float("inf")
    integral_mw_s: float = field(default=0.0)
    output_mw: float = field(default=0.0)

    def step(self, ace: float) -> float:
        """One AGC interval: returns the area control signal (MW, positive = more generation)."""
        candidate = self.integral_mw_s + ace * self.dt_s
        out = -(self.kp * ace + self.ki_per_s * candidate)
        if abs(out) <= self.limit_mw:
            self.integral_mw_s = candidate  # conditional integration: no wind-up at the limit
        else:
            out = float(np.clip(out, -self.limit_mw, self.limit_mw))
        self.output_mw = out
        return out


def participation(online: np.ndarray, n_der: int, der_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Participation factors (thermal units, DERs): the DERs share ``der_share`` equally (0.10 / 20 = 0.5 % each),
    the online thermal units share the rest equally; offline units get nothing. Σ = 1 when anything is online."""
    online = np.asarray(online, dtype=bool)
    if not 0.0 <= der_share <= 1.0:
        raise ValueError(f"DER share of AGC must be in [0, 1], got {der_share}")
    der = np.full(n_der, der_share / n_der) if n_der else np.zeros(0)
    n_on = int(online.sum())
    thermal_share = 1.0 - (der_share if n_der else 0.0)
    thermal = np.where(online, thermal_share / n_on, 0.0) if n_on else np.zeros(online.shape)
    return thermal, der


def governor_paux(p_mw: np.ndarray, droop_r_pu: np.ndarray, s_rated_mva: np.ndarray) -> np.ndarray:
    """TGOV1's auxiliary input (enters before its 1/R gain) that raises mechanical power by ``p_mw``:
    paux = ΔP / S_n · R (machine-base per unit)."""
    return np.asarray(p_mw, dtype=float) / np.asarray(s_rated_mva, dtype=float) * np.asarray(droop_r_pu, dtype=float)
