"""Pure physics of a fault-induced delayed voltage recovery (FIDVR) study: the WECC "motor D" air-conditioner
state machine, the DERs' under-voltage trip, and the recovery measures of the summary. No ANDES here: the
adapter (:mod:`hpcsim.transmission.fidvr`) feeds these machines the solved bus voltage of every TDS step and
writes their outputs back.

Motor D (an algebraic performance model of single-phase residential compressors; WECC composite load model,
parameters from NREL PyDSS ``MotorStallSettings``, docs/research/fidvr/FINDINGS.md)::

    running:  P = P_m, Q = P_m tan(acos pf)              (constant power; constant current below 0.7 pu)
    stall:    V < v_stall held for t_stall               -> Y = S_m / (r_stall + j x_stall), S_m = P_m / pf
              (P = G V^2, Q = -B V^2 with Y = G + jB on the system base)
    trip:     t_trip after the stall (thermal relay)     -> Y = 0
    restart:  (blocks marked to restart) V > v_restart held for t_restart -> running again

DER ride-through (IEEE 1547 Category I-like): ``"trip"`` ceases for the rest of the run once V < v_trip has
lasted longer than t_trip; ``"ride"`` stays on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RUN, STALL, OFF = "run", "stall", "off"
RECOVERED_PU = 0.9  # the recovery threshold of the tests and the summary (issue #20)


@dataclass(frozen=True)
class MotorParams:
    """Motor-D data (per unit on the motor's own MVA base for the stall impedance)."""

    v_stall_pu: float = 0.55
    t_stall_s: float = 0.032
    r_stall_pu: float = 0.10
    x_stall_pu: float = 0.10
    pf: float = 0.939
    v_restart_pu: float = 0.95
    t_restart_s: float = 0.3

    def q_over_p(self) -> float:
        """Q/P of a running motor at its power factor."""
        return math.tan(math.acos(self.pf))

    def stall_admittance_pu(self, p_mw: float, s_base_mva: float) -> complex:
        """The stalled block's admittance on the system base: ``(P_m / pf) / S_base / (r + jx)``."""
        return (p_mw / self.pf / s_base_mva) / complex(self.r_stall_pu, self.x_stall_pu)


@dataclass
class MotorBlock:
    """One block of motors at a bus (a bus's motor share is split into blocks with their own thermal-trip
    delays). ``update`` is the state machine; it returns the event that happened at ``t_s`` or ``None``."""

    bus: int
    name: str
    p_mw: float
    t_trip_s: float
    restart: bool = False
    state: str = RUN
    low_since_s: float | None = None
    high_since_s: float | None = None
    stalled_at_s: float | None = None
    tripped_at_s: float | None = None

    def update(self, t_s: float, v_pu: float, m: MotorParams) -> str | None:
        if self.state == RUN:
            if v_pu < m.v_stall_pu:
                self.low_since_s = t_s if self.low_since_s is None else self.low_since_s
                if t_s - self.low_since_s >= m.t_stall_s - 1e-9:
                    self.state, self.stalled_at_s = STALL, t_s
                    return "stall"
            else:
                self.low_since_s = None
        elif self.state == STALL:
            if t_s - self.stalled_at_s >= self.t_trip_s - 1e-9:
                self.state, self.tripped_at_s, self.high_since_s = OFF, t_s, None
                return "thermal trip"
        elif self.restart:
            if v_pu > m.v_restart_pu:
                self.high_since_s = t_s if self.high_since_s is None else self.high_since_s
                if t_s - self.high_since_s >= m.t_restart_s - 1e-9:
                    self.state, self.low_since_s, self.high_since_s = RUN, None, None
                    return "restart"
            else:
                self.high_since_s = None
        return None


def motor_blocks(bus: int, p_mw: float, trip_s: tuple[float, ...], restart_share: float) -> list[MotorBlock]:
    """A bus's motor load split into ``len(trip_s)`` equal blocks, one per thermal-trip delay; the first
    ``round(restart_share · n)`` of them restart."""
    n = len(trip_s)
    n_restart = int(round(restart_share * n))
    return [MotorBlock(bus, f"MD_{bus}_{k + 1}", p_mw / n, t, restart=k < n_restart) for k, t in enumerate(trip_s)]


@dataclass
class RideThrough:
    """One DER's under-voltage trip: off for good once V < v_trip has lasted more than t_trip."""

    name: str
    bus: int
    mode: str  # "ride" | "trip"
    v_trip_pu: float
    t_trip_s: float
    low_since_s: float | None = None
    tripped_at_s: float | None = None

    @property
    def online(self) -> bool:
        return self.tripped_at_s is None

    def update(self, t_s: float, v_pu: float) -> str | None:
        if self.mode != "trip" or not self.online:
            return None
        if v_pu < self.v_trip_pu:
            self.low_since_s = t_s if self.low_since_s is None else self.low_since_s
            if t_s - self.low_since_s > self.t_trip_s:
                self.tripped_at_s = t_s
                return "der trip"
        else:
            self.low_since_s = None
        return None


# --- recovery measures (summary.json -> voltage_recovery) ----------------------------------------------------


def recovery(t_s: np.ndarray, v_pu: np.ndarray, clear_s: float, threshold_pu: float = RECOVERED_PU) -> dict:
    """Of one bus's voltage series after the fault is cleared at ``clear_s``:

    - ``recovery_s``: from clearing to the last sample below ``threshold_pu`` followed by one at or above it
      (the voltage stays at or above from then on); 0 if no sample after clearing is below; ``inf`` if the run
      ends below;
    - ``time_below_s``: total time below (each sample holds until the next);
    - ``nadir_pu`` / ``nadir_s`` after clearing, ``final_pu`` (last sample)."""
    t_s, v_pu = np.asarray(t_s, dtype=float), np.asarray(v_pu, dtype=float)
    post = t_s > clear_s + 1e-9
    tp, vp = t_s[post], v_pu[post]
    if tp.size == 0:
        return {"recovery_s": math.nan, "time_below_s": math.nan, "nadir_pu": math.nan, "nadir_s": math.nan,
                "final_pu": float(v_pu[-1]) if v_pu.size else math.nan}
    below = vp < threshold_pu
    if not below.any():
        rec = 0.0
    elif below[-1]:
        rec = math.inf
    else:
        last = int(np.nonzero(below)[0][-1])
        rec = float(tp[last + 1] - clear_s)
    hold = np.diff(tp, append=tp[-1])
    k = int(np.argmin(vp))
    return {"recovery_s": rec, "time_below_s": float(hold[below].sum()), "nadir_pu": float(vp[k]),
            "nadir_s": float(tp[k]), "final_pu": float(vp[-1])}
