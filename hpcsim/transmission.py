"""Transmission side: ANDES power flow on a MATPOWER case, with boundary-bus loads set from the feeders.

Loads are made constant power for co-simulation (``PQ.config.p2p = q2q = 1``, ``p2z = q2z = 0``) so the
power the feeders report is exactly what the transmission network sees. During a power flow a load is set
through ``PQ.p0`` / ``PQ.q0`` (per unit on the system MVA base).

ANDES generates code into a cache folder; hpcsim keeps it inside the Python environment
(``<prefix>/share/hpcsim/andes-pycode``), never in ``~/.andes``. ``hpcsim prepare`` fills it once.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hpcsim.errors import CaseError, SolverError
from hpcsim.interface import mw_to_pu, pu_to_mw

log = logging.getLogger(__name__)

PYCODE_PATH = Path(sys.prefix) / "share" / "hpcsim" / "andes-pycode"


def andes_options() -> dict:
    return {"pycode_path": str(PYCODE_PATH), "default_config": True, "no_output": True}


def _quiet_andes():
    import andes  # noqa: PLC0415 - heavy import kept at the edge

    # file=False: no DEBUG log file. log_path given: otherwise ANDES mkdtemp()s an unused <tmp>/andes-XXXXXXXX
    # folder on every call (and, with file=True, a log in it), never removed.
    andes.config_logger(stream_level=logging.ERROR, file=False, log_path=tempfile.gettempdir())
    # and nothing below a warning through hpcsim's own handlers either (a power flow logs ~10 lines per solve)
    logging.getLogger("andes").setLevel(logging.WARNING)
    return andes


def prepare(force: bool = False) -> Path:
    """Generate ANDES' model code once per environment."""
    andes = _quiet_andes()
    if force or not (PYCODE_PATH / "__init__.py").is_file():
        PYCODE_PATH.mkdir(parents=True, exist_ok=True)
        andes.prepare(quick=True, pycode_path=str(PYCODE_PATH), nomp=True)
    return PYCODE_PATH


def load_system(case: str | Path, setup: bool = True, constant_power: bool = True):
    """``andes.load`` with hpcsim's options; loads made constant power before set-up."""
    andes = _quiet_andes()
    try:
        ss = andes.load(str(case), setup=False, **andes_options())
    except Exception as exc:  # ANDES raises plain exceptions for unreadable files
        raise CaseError(f"ANDES cannot read case {case}: {exc}") from None
    if ss is None:
        raise CaseError(f"ANDES cannot read case {case}")
    if constant_power:
        ss.PQ.config.p2p = 1.0
        ss.PQ.config.q2q = 1.0
        ss.PQ.config.p2z = 0.0
        ss.PQ.config.q2z = 0.0
    if setup:
        ss.setup()
    return ss


EQUIVALENT_PREFIX = "hpcsim_eq_"  # the Shunt that carries a boundary bus's voltage-dependent part


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
        self.ss = load_system(case_path, setup=not equivalents)
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
        bus_ids = list(self.ss.Bus.idx.v)
        unknown = [b for b in self.boundary_buses if b not in bus_ids]
        if unknown:
            raise CaseError(f"boundary bus {unknown[0]} is not a bus of {case_path}")
        self._bus_pos = np.array([bus_ids.index(b) for b in self.boundary_buses], dtype=int)
        pq_bus = list(self.ss.PQ.bus.v)
        pq_idx = list(self.ss.PQ.idx.v)
        self._pq_at: dict[int, list] = {}
        for b in self.boundary_buses:
            at = [pq_idx[i] for i, pb in enumerate(pq_bus) if pb == b]
            if not at:
                raise CaseError(f"boundary bus {b} has no load (PQ) in {case_path}")
            self._pq_at[b] = at
        p0 = dict(zip(pq_idx, self.ss.PQ.p0.v))
        q0 = dict(zip(pq_idx, self.ss.PQ.q0.v))
        boundary_pq = {i for at in self._pq_at.values() for i in at}
        self._other_pq = [(i, p, q) for i, p, q in zip(pq_idx, self.ss.PQ.p0.v, self.ss.PQ.q0.v) if i not in boundary_pq]
        self.original_p_mw = {b: float(pu_to_mw(sum(p0[i] for i in at), self.s_base_mva)) for b, at in self._pq_at.items()}
        self.original_q_mvar = {b: float(pu_to_mw(sum(q0[i] for i in at), self.s_base_mva)) for b, at in self._pq_at.items()}

    def set_boundary_loads(self, p_mw: Mapping[int, float], q_mvar: Mapping[int, float]) -> None:
        """Replace each boundary bus load by the given totals (the first PQ at the bus carries it)."""
        for b in self.boundary_buses:
            first, *rest = self._pq_at[b]
            self.ss.PQ.set(src="p0", idx=first, attr="v", value=float(mw_to_pu(p_mw[b], self.s_base_mva)))
            self.ss.PQ.set(src="q0", idx=first, attr="v", value=float(mw_to_pu(q_mvar[b], self.s_base_mva)))
            for other in rest:
                self.ss.PQ.set(src="p0", idx=other, attr="v", value=0.0)
                self.ss.PQ.set(src="q0", idx=other, attr="v", value=0.0)

    def set_boundary_equivalents(self, a_mva: Sequence[complex], b_mva: Sequence[complex]) -> None:
        """Each boundary bus's load as S(V) = A + B·V² (constant power + constant impedance; MW + j Mvar, B per
        pu², in ``boundary_buses`` order; :func:`hpcsim.coupling.zip_split`). The PQ load carries A, the Shunt
        B: g = B_P / S_base consumes g·V², b = −B_Q / S_base (ANDES's b injects reactive power)."""
        if not self.equivalents:
            raise SolverError("this network was loaded without boundary equivalents")
        for bus, b in zip(self.boundary_buses, b_mva):
            idx = f"{EQUIVALENT_PREFIX}{bus}"
            self.ss.Shunt.set(src="g", idx=idx, attr="v", value=float(b.real) / self.s_base_mva)
            self.ss.Shunt.set(src="b", idx=idx, attr="v", value=-float(b.imag) / self.s_base_mva)
        self.set_boundary_loads({bus: float(a.real) for bus, a in zip(self.boundary_buses, a_mva)},
                                {bus: float(a.imag) for bus, a in zip(self.boundary_buses, a_mva)})

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
        for i, p0, q0 in self._other_pq:
            self.ss.PQ.set(src="p0", idx=i, attr="v", value=float(p0 * mult))
            self.ss.PQ.set(src="q0", idx=i, attr="v", value=float(q0 * mult))

    def solve(self) -> float:
        """Run the power flow; returns its wall time in seconds."""
        t0 = time.perf_counter()
        self.ss.PFlow.run()
        elapsed = time.perf_counter() - t0
        if not self.ss.PFlow.converged:
            raise SolverError("ANDES power flow did not converge with the boundary loads received")
        return elapsed

    def boundary_voltages(self) -> tuple[np.ndarray, np.ndarray]:
        """(magnitude pu, angle degrees) at the boundary buses, in ``boundary_buses`` order."""
        v = np.asarray(self.ss.Bus.v.v)[self._bus_pos]
        a = np.rad2deg(np.asarray(self.ss.Bus.a.v)[self._bus_pos])
        return v.copy(), a.copy()
