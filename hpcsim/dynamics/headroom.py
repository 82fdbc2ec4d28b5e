"""DER headroom from a voltage-sensitivity matrix and a linear program — the paper's eqs. (9)–(13).

Sensitivities (VSM, eq. 10): around the current solution, perturb one DER's active power by ``dp`` at a time,
re-solve, and divide the change of every node voltage magnitude (pu) — and of every line's loading (% of its
normal rating, the same linearization applied to currents, eq. 12) — by ``dp``::

    J_V[:, i] = (V(P + dp e_i) - V(P)) / dp,      J_I[:, i] = (I%(P + dp e_i) - I%(P)) / dp

LP (eqs. 9, 11, 12), with x = ΔP ≥ 0 the increase above the current outputs P::

    max 1ᵀx   s.t.   V_lo ≤ V + J_V x ≤ V_hi,   I% + J_I x ≤ I_hi,   0 ≤ x ≤ P_cap - P

V_lo = min(V_min, V), V_hi = max(V_max, V), I_hi = max(100 %, I%): a node or line that already violates its
limit at the current state (the IEEE feeders have some) may not get worse, rather than making the LP
infeasible. Rows that cannot bind anywhere in the box of x are dropped before the solve (exact). The result is
each DER's VSM limit ``P + x*`` and the headroom ``Σ x*`` (eq. 13: max Σ P − Σ P at the current step), solved
with SciPy's HiGHS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpcsim.errors import DynamicsError

SolveFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""DER powers (MW) -> (node voltage magnitudes in pu, line loadings in % of normal rating)."""


@dataclass(frozen=True)
class Sensitivity:
    p_mw: np.ndarray  # (m,) DER powers of the linearization point
    v_pu: np.ndarray  # (n,) node voltages there
    loading_pct: np.ndarray  # (l,) line loadings there
    dv_dp: np.ndarray  # (n, m) pu per MW
    dloading_dp: np.ndarray  # (l, m) % per MW
    solve_s: float  # wall time of the perturbation solves


@dataclass(frozen=True)
class Headroom:
    p_vsm_mw: np.ndarray  # (m,) each DER's VSM limit P + x*
    headroom_mw: float  # Σ x* (eq. 13)
    rows: int  # constraints left after dropping those that cannot bind
    lp_s: float


def sensitivity(solve: SolveFn, p_mw: np.ndarray, dp_mw: float) -> Sensitivity:
    """Eq. (10): one base solve plus one solve per DER with its power raised by ``dp_mw``."""
    if dp_mw <= 0:
        raise ValueError(f"perturbation must be positive, got {dp_mw} MW")
    t0 = time.perf_counter()
    p = np.asarray(p_mw, dtype=float)
    v0, i0 = solve(p)
    dv = np.empty((v0.size, p.size))
    di = np.empty((i0.size, p.size))
    for k in range(p.size):
        pk = p.copy()
        pk[k] += dp_mw
        vk, ik = solve(pk)
        dv[:, k] = (vk - v0) / dp_mw
        di[:, k] = (ik - i0) / dp_mw
    solve(p)  # leave the circuit at the linearization point
    return Sensitivity(p, v0, i0, dv, di, time.perf_counter() - t0)


def warm_up() -> None:
    """Load SciPy's HiGHS now: importing ``scipy.optimize`` and the first solve take ~0.3 s, which at the first
    headroom exchange would hold the whole federation (a feeder federate calls this before the run starts)."""
    from scipy.optimize import linprog

    linprog([-1.0], bounds=[(0.0, 1.0)], method="highs")


def _binding_rows(a: np.ndarray, b: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Rows of ``a x ≤ b`` that some x in [0, ub] can violate (the others are redundant)."""
    worst = np.clip(a, 0.0, None) @ ub
    return worst > b


def max_der_power(s: Sensitivity, *, p_cap_mw: np.ndarray, v_min_pu: float, v_max_pu: float,
                  loading_max_pct: float = 100.0) -> Headroom:
    """Eqs. (9), (11)–(13): the DER powers that maximize their sum within voltage and line limits."""
    from scipy.optimize import linprog

    t0 = time.perf_counter()
    ub = np.clip(np.asarray(p_cap_mw, dtype=float) - s.p_mw, 0.0, None)
    v_hi = np.maximum(v_max_pu, s.v_pu)
    v_lo = np.minimum(v_min_pu, s.v_pu)
    i_hi = np.maximum(loading_max_pct, s.loading_pct)
    a = np.vstack([s.dv_dp, -s.dv_dp, s.dloading_dp])
    b = np.concatenate([v_hi - s.v_pu, s.v_pu - v_lo, i_hi - s.loading_pct])
    keep = _binding_rows(a, b, ub)
    if not keep.any():
        x = ub
    else:
        res = linprog(-np.ones(ub.size), A_ub=a[keep], b_ub=b[keep], bounds=list(zip(np.zeros(ub.size), ub)),
                      method="highs")
        if res.status != 0:
            raise DynamicsError(f"headroom LP failed: {res.message} ({int(keep.sum())} rows)")
        x = np.clip(res.x, 0.0, ub)
    return Headroom(s.p_mw + x, float(x.sum()), int(keep.sum()), time.perf_counter() - t0)
