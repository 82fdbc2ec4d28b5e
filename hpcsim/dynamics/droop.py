"""Primary frequency response (PFR) of a DER: frequency droop outside a deadband — the paper's eq. (5).

::

    P_drp = D_dn · S_n · ((f0 - db_UF) - f) / f0     for f < f0 - db_UF   (under-frequency: more power)
    P_drp = D_dn · S_n · ((f0 + db_OF) - f) / f0     for f > f0 + db_OF   (over-frequency: less power)
    P_drp = 0                                         otherwise

``D_dn`` is the per-unit power change (on the DER rating ``S_n``) for a 1 pu frequency change, i.e. 1 / droop:
``D_dn = 20`` is a 5 % droop. The same equation is inside the ANDES model :mod:`hpcsim.transmission.der_model`
(with ``f`` from a bus frequency measurement); this module is its reference for tests and reports.
"""

from __future__ import annotations

import numpy as np


def droop_mw(f_hz: np.ndarray | float, *, f0_hz: float, db_uf_hz: float, db_of_hz: float, ddn_pu: float,
             s_rated_mva: np.ndarray | float) -> np.ndarray:
    """Eq. (5): the droop power (MW) of DERs rated ``s_rated_mva`` at frequency ``f_hz``."""
    if db_uf_hz < 0 or db_of_hz < 0:
        raise ValueError(f"deadbands must be non-negative, got {db_uf_hz} / {db_of_hz} Hz")
    f = np.asarray(f_hz, dtype=float)
    under = np.where(f < f0_hz - db_uf_hz, (f0_hz - db_uf_hz) - f, 0.0)
    over = np.where(f > f0_hz + db_of_hz, (f0_hz + db_of_hz) - f, 0.0)
    return ddn_pu * np.asarray(s_rated_mva, dtype=float) * (under + over) / f0_hz


def droop_slope_mw_per_hz(*, ddn_pu: float, s_rated_mva: np.ndarray | float, f0_hz: float) -> float:
    """Total MW per Hz of the droops outside their deadbands (for the frequency bias)."""
    return float(np.sum(ddn_pu * np.asarray(s_rated_mva, dtype=float)) / f0_hz)


def governor_slope_mw_per_hz(s_rated_mva: np.ndarray, droop_r_pu: np.ndarray, f0_hz: float) -> float:
    """Σ S_n / R / f0: MW per Hz of turbine governors with droops ``R`` (pu) on ratings ``S_n``."""
    s = np.asarray(s_rated_mva, dtype=float)
    r = np.asarray(droop_r_pu, dtype=float)
    if np.any(r <= 0):
        raise ValueError("governor droops R must be positive")
    return float(np.sum(s / r) / f0_hz)
