"""Transmission side of the steady-state studies: ANDES power flow on a MATPOWER case, with boundary-bus loads
set from the feeders.

Loads are constant power (:func:`hpcsim.transmission.andes_system.load`) so the power the feeders report is
exactly what the transmission network sees; a boundary load is set through ``PQ.p0`` / ``PQ.q0`` (per unit on the
system MVA base, :class:`~hpcsim.transmission.andes_system.BusLoads`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hpcsim.errors import CaseError, SolverError
from hpcsim.interface import mw_to_pu, pu_to_mw
from hpcsim.transmission.andes_system import BusLoads, load

log = logging.getLogger(__name__)


EQUIVALENT_PREFIX = "hpcsim_eq_"  # the Shunt that carries a boundary bus's voltage-dependent part
CONTINUATION_STEPS = 6  # halvings of the load step a failed power flow may take (down to 1/128 of the move)


class PowerFlowError(SolverError):
    """The transmission power flow did not converge; ``mismatch`` holds the per-bus residuals of its last
    iterate (:meth:`TransmissionNetwork.mismatch`)."""

    def __init__(self, message: str, mismatch: dict[str, np.ndarray]):
        super().__init__(message)
        self.mismatch = mismatch


class TransmissionNetwork:
    """A MATPOWER case in ANDES, with a set of boundary buses whose loads come from feeders.

    With ``equivalents`` every boundary bus also gets a Shunt (zero until set): :meth:`set_boundary_equivalents`
    then models the bus's load as constant power plus constant impedance, matched to the feeders' power and
    slope at the voltage they were solved at (the Newton-type coupling, :mod:`hpcsim.coupling`).
    A Shunt added before ``setup`` and changed through ``Shunt.set`` is picked up by the next power flow
    (measured: a Shunt g and the same g·V² added to the PQ load give the same voltage to 3e-11 pu).
    """

    def __init__(self, case_path: str | Path, boundary_buses: Sequence[int], equivalents: bool = False,
                 hold_voltages: Mapping[int, tuple[float, float]] | None = None):
        t0 = time.perf_counter()
        self.ss = load(case_path, setup=not equivalents)
        if equivalents:
            vn = dict(zip(self.ss.Bus.idx.v, self.ss.Bus.Vn.v))
            for b in boundary_buses:
                if b not in vn:
                    raise CaseError(f"boundary bus {b} is not a bus of {case_path}")
                self.ss.add("Shunt", {"idx": f"{EQUIVALENT_PREFIX}{b}", "name": f"{EQUIVALENT_PREFIX}{b}", "bus": b,
                                      "Sn": float(self.ss.config.mva), "Vn": float(vn[b]), "g": 0.0, "b": 0.0})
            self.ss.setup()
        self.equivalents = equivalents
        if hold_voltages is not None:
            self.hold_generator_voltages(hold_voltages)
        self.load_s = time.perf_counter() - t0
        self.s_base_mva = float(self.ss.config.mva)
        self.boundary_buses = [int(b) for b in boundary_buses]
        bus_pos = {int(b): i for i, b in enumerate(self.ss.Bus.idx.v)}
        unknown = [b for b in self.boundary_buses if b not in bus_pos]
        if unknown:
            raise CaseError(f"boundary bus {unknown[0]} is not a bus of {case_path}")
        self._bus_pos = np.array([bus_pos[b] for b in self.boundary_buses], dtype=int)
        self._loads = BusLoads(self.ss, self.boundary_buses, str(case_path))
        self.original_p_mw = {b: float(pu_to_mw(p, self.s_base_mva))
                              for b, p in zip(self.boundary_buses, self._loads.case_p_pu)}
        self.original_q_mvar = {b: float(pu_to_mw(q, self.s_base_mva))
                                for b, q in zip(self.boundary_buses, self._loads.case_q_pu)}
        n = len(self.boundary_buses)
        # what the boundary buses carry (pu on the system base): PQ p, q and (equivalents) Shunt g, b; the
        # target of the next solve and the last one a power flow converged with (continuation steps between)
        self._target = np.zeros((4, n))
        self._target[0] = [mw_to_pu(self.original_p_mw[b], self.s_base_mva) for b in self.boundary_buses]
        self._target[1] = [mw_to_pu(self.original_q_mvar[b], self.s_base_mva) for b in self.boundary_buses]
        self._converged_at = self._target.copy()  # the case's own loads: assumed to solve, the first step's start
        self._shunts = [f"{EQUIVALENT_PREFIX}{b}" for b in self.boundary_buses] if equivalents else []
        self._all_bus = list(self.ss.Bus.idx.v)
        self._case_start = (np.asarray(self.ss.Bus.v0.v, dtype=float).copy(),
                            np.asarray(self.ss.Bus.a0.v, dtype=float).copy())
        self._last_solution: tuple[np.ndarray, np.ndarray] | None = None
        self.pf_iterations: list[int] = []  # Newton iterations of each solve (continuation steps summed)
        self._iterations = 0  # of the solve under way
        self._reached = 0.0  # how far its continuation got

    def set_boundary_loads(self, p_mw: Mapping[int, float], q_mvar: Mapping[int, float]) -> None:
        """Replace each boundary bus load by the given totals (the first PQ at the bus carries it)."""
        self._target[0] = [mw_to_pu(p_mw[b], self.s_base_mva) for b in self.boundary_buses]
        self._target[1] = [mw_to_pu(q_mvar[b], self.s_base_mva) for b in self.boundary_buses]

    def set_boundary_equivalents(self, a_mva: Sequence[complex], b_mva: Sequence[complex]) -> None:
        """Each boundary bus's load as S(V) = A + B·V² (constant power + constant impedance; MW + j Mvar, B per
        pu², in ``boundary_buses`` order; :func:`hpcsim.coupling.zip_split`). The PQ load carries A, the Shunt
        B: g = B_P / S_base consumes g·V², b = −B_Q / S_base (ANDES's b injects reactive power)."""
        if not self.equivalents:
            raise SolverError("this network was loaded without boundary equivalents")
        b = np.asarray(b_mva, dtype=complex)
        self._target[2] = b.real / self.s_base_mva
        self._target[3] = -b.imag / self.s_base_mva
        a = np.asarray(a_mva, dtype=complex)
        self._target[0] = a.real / self.s_base_mva
        self._target[1] = a.imag / self.s_base_mva

    def _apply(self, loads: np.ndarray) -> None:
        """Write boundary loads (rows p, q, g, b in pu) into ANDES, one vectorized set per quantity."""
        self._loads.write(loads[0], loads[1])
        if self._shunts:
            self.ss.Shunt.set(src="g", idx=self._shunts, attr="v", value=loads[2])
            self.ss.Shunt.set(src="b", idx=self._shunts, attr="v", value=loads[3])

    def _start_from(self, v: np.ndarray, a: np.ndarray) -> None:
        """The next power flow's initial bus voltages (ANDES initializes Bus v, a from v0, a0)."""
        self.ss.Bus.set(src="v0", idx=self._all_bus, attr="v", value=v)
        self.ss.Bus.set(src="a0", idx=self._all_bus, attr="v", value=a)

    def _run(self, loads: np.ndarray, start: tuple[np.ndarray, np.ndarray]) -> bool:
        self._apply(loads)
        self._start_from(*start)
        andes_log = logging.getLogger("andes")
        level = andes_log.level
        andes_log.setLevel(logging.CRITICAL)  # a failed attempt is not the end: solve() reports the outcome
        try:
            self.ss.PFlow.run()
        finally:
            andes_log.setLevel(level)
        self._iterations += int(self.ss.PFlow.niter)
        return bool(self.ss.PFlow.converged)

    def hold_generator_voltages(self, solution: Mapping[int, tuple[float, float]]) -> None:
        """Every generator (PV, Slack) holds its bus's voltage of the given solution (bus -> (VM pu, VA deg)),
        the slack its angle too, instead of the case's setpoint VG (``gen_voltage = "solution"``).

        Published cases solved with remote voltage regulation or generator Q limits (PowerWorld's ACTIVSg cases)
        carry VG ≠ VM at the generator's own bus: on ACTIVSg2000 136 of 432 generators differ by more than
        0.005 pu, and ANDES's solution of the case lies up to 0.035 pu from the published VM. Held at the
        published VM, ANDES reproduces the published solution (measured: within 4.3e-5 pu on ACTIVSg2000)."""
        for model in (self.ss.PV, self.ss.Slack):
            for idx, bus in zip(list(model.idx.v), list(model.bus.v)):
                if int(bus) not in solution:
                    raise CaseError(f"generator {idx} is at bus {bus}, which the case's bus data lacks")
                model.set(src="v0", idx=idx, attr="v", value=float(solution[int(bus)][0]))
        for idx, bus in zip(list(self.ss.Slack.idx.v), list(self.ss.Slack.bus.v)):
            self.ss.Slack.set(src="a0", idx=idx, attr="v", value=float(np.deg2rad(solution[int(bus)][1])))

    def scale_other_loads(self, mult: float) -> None:
        """Multiply every non-boundary load by ``mult`` (relative to the case) — the QSTS load profile."""
        self._loads.scale_others(mult)

    def solve(self) -> float:
        """Run the power flow with the boundary loads set; returns its wall time in seconds.

        Robust by construction (:data:`CONTINUATION_STEPS`): it starts from the last converged solution (the
        case's voltages the first time); if Newton fails from there it tries again from the case's voltages,
        then walks the boundary loads from the last converged ones to the new ones in halving steps, each
        started from the step before. When all of that fails it raises :class:`PowerFlowError`, with the
        per-bus mismatch of the last attempt."""
        t0 = time.perf_counter()
        self._iterations = 0
        self._reached = 0.0
        target = self._target.copy()
        start = self._last_solution or self._case_start
        ok = self._run(target, start)
        if not ok and self._last_solution is not None:
            ok = self._run(target, self._case_start)
        if not ok:
            ok = self._continuation(self._converged_at, target)
        self.pf_iterations.append(self._iterations)
        if not ok:
            raise PowerFlowError("ANDES power flow did not converge with the boundary loads received "
                                 f"({self._iterations} Newton iterations; the continuation from the last "
                                 f"converged loads got {self._reached:.1%} of the way)", self.mismatch())
        self._converged_at = target
        self._last_solution = self._solution()
        return time.perf_counter() - t0

    def _solution(self) -> tuple[np.ndarray, np.ndarray]:
        """The bus voltages (|V| pu, angle rad) the last power flow ended at (copies)."""
        return (np.asarray(self.ss.Bus.v.v, dtype=float).copy(), np.asarray(self.ss.Bus.a.v, dtype=float).copy())

    def _continuation(self, frm: np.ndarray, to: np.ndarray) -> bool:
        """Boundary loads from ``frm`` (converged) to ``to`` in steps that halve on failure (at most
        :data:`CONTINUATION_STEPS` halvings), each power flow started from the previous step's solution."""
        lam, step = 0.0, 0.5
        solution = self._last_solution or self._case_start
        halvings = 0
        while lam < 1.0:
            self._reached = lam
            nxt = min(1.0, lam + step)
            if self._run(frm + nxt * (to - frm), solution):
                lam = nxt
                solution = self._solution()
                step = min(2 * step, 1.0 - lam) if lam < 1.0 else step
            else:
                halvings += 1
                if halvings > CONTINUATION_STEPS:
                    return False
                step /= 2
        return True

    def mismatch(self) -> dict[str, np.ndarray]:
        """Per bus, at the power flow's last iterate: id, |V| pu, angle deg, and the active and reactive power
        balance residuals (MW, Mvar; ANDES's equations of the bus's angle and voltage variables)."""
        return {"bus": np.asarray(self.ss.Bus.idx.v), "v_pu": np.asarray(self.ss.Bus.v.v, dtype=float).copy(),
                "angle_deg": np.rad2deg(np.asarray(self.ss.Bus.a.v, dtype=float)),
                "p_mismatch_mw": np.asarray(self.ss.Bus.a.e, dtype=float) * self.s_base_mva,
                "q_mismatch_mvar": np.asarray(self.ss.Bus.v.e, dtype=float) * self.s_base_mva}

    def boundary_voltages(self) -> tuple[np.ndarray, np.ndarray]:
        """(magnitude pu, angle degrees) at the boundary buses, in ``boundary_buses`` order."""
        v = np.asarray(self.ss.Bus.v.v)[self._bus_pos]
        a = np.rad2deg(np.asarray(self.ss.Bus.a.v)[self._bus_pos])
        return v.copy(), a.copy()
