"""The transmission side of a dynamic study: an ANDES time-domain simulation stepped in control intervals.

:class:`DynamicGrid` loads an ANDES case (constant-power loads), adds per feeder bus a static generator, a bus
frequency measurement and one ``DERFR`` per DER (:mod:`~hpcsim.transmission.der_model`), lowers the balancing generator by the total
DER dispatch, optionally schedules a machine trip (ANDES ``Toggle``), solves the power flow and initializes the
TDS with a fixed step (two cycles). It is then advanced by raising ``TDS.config.tf``; between advances the
feeder loads (``PQ.Ppf/Qpf``), the DER limits (``pmx``), the DER AGC set points (``Pext0``) and the governors'
AGC inputs (``TGOV1.paux0``) are written in place.

ANDES's rotor-angle stability criterion is switched off: after a trip the tripped machine's angle is no longer
meaningful and would stop the run. Events a case ships (ANDES ``Toggle`` rows, e.g. NPCC's line trip and reclose
at 1.0/1.1 s) are switched off: a study's events are the ones its file names. The machines are every
synchronous generator of the case, GENROU and classical GENCLS (NPCC's external-area equivalents), for the
centre-of-inertia frequency, the governors and the trip.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcsim.dynamics.configs import FidvrConfig
from hpcsim.errors import CaseError, DynamicsError
from hpcsim.transmission import andes_system, der_model
from hpcsim.transmission.fidvr import FidvrEvent

log = logging.getLogger(__name__)

MACHINE_MODELS = ("GENROU", "GENCLS")  # synchronous machines hpcsim reads (COI, governors, trips)


def machine_values(ss, attr: str) -> list:
    """One attribute (``idx``, ``Sn``, ``M``, ``u``, ...) of every synchronous machine, in MACHINE_MODELS order."""
    return [x for name in MACHINE_MODELS for x in getattr(getattr(ss, name), attr).v]


def machine_model(ss, idx: str) -> str:
    """The ANDES model name of machine ``idx``."""
    for name in MACHINE_MODELS:
        if idx in getattr(ss, name).idx.v:
            return name
    raise CaseError(f"machine {idx!r} is not a synchronous machine of the case")


def _load(case: str | Path, setup: bool = False):
    """The case with the DER model's code (:mod:`~hpcsim.transmission.der_model`) and ANDES's default power-flow
    tolerance."""
    return andes_system.load(case, pycode_path=der_model.PYCODE_PATH, setup=setup, pf_tolerance_pu=None)


def json_case(case: str | Path) -> Path:
    """The case as ANDES JSON (:func:`hpcsim.transmission.andes_system.json_case`), converted in a process that
    holds the DER model's code."""
    return andes_system.json_case(case, der_model.PYCODE_PATH)


@dataclass(frozen=True)
class DerGroup:
    """The DERs at one transmission bus (one feeder)."""

    bus: int
    names: tuple[str, ...]
    kva: float
    kw: float


def read_case(case: str) -> dict:
    """What a plan needs from the case, without DERs: bus loads and voltages (power flow), governors, static
    generator dispatch."""
    der_model.prepare()
    ss = _load(json_case(case), setup=True)
    if not ss.PFlow.run():
        raise DynamicsError(f"ANDES power flow of {case} did not converge")
    sb = float(ss.config.mva)
    loads: dict[int, list[float]] = {}
    for bus, p, q in zip(ss.PQ.bus.v, ss.PQ.p0.v, ss.PQ.q0.v):
        acc = loads.setdefault(int(bus), [0.0, 0.0])
        acc[0] += float(p) * sb
        acc[1] += float(q) * sb
    syn_sn = dict(zip(machine_values(ss, "idx"), machine_values(ss, "Sn")))
    # R on the machine's base as the case gives it (ANDES holds TGOV1.R.v on the system base, R·S_b/S_n)
    governors = [{"idx": i, "syn": s, "r_pu": float(r), "sn_mva": float(syn_sn[s])}
                 for i, s, r in zip(ss.TGOV1.idx.v, ss.TGOV1.syn.v, ss.TGOV1.R.vin) if s in syn_sn]
    statics = {str(i): float(p) * sb for i, p in zip(ss.PV.idx.v, ss.PV.p0.v)}
    return {"s_base_mva": sb, "loads": loads, "governors": governors, "static_gen_mw": statics,
            "machines": [str(i) for i in machine_values(ss, "idx")], "f0_hz": float(ss.config.freq),
            "v_pu": {int(b): float(v) for b, v in zip(ss.Bus.idx.v, ss.Bus.v.v)}}


class DynamicGrid:
    """An ANDES TDS with DERs at the feeder buses (see module docstring)."""

    def __init__(self, case: str, *, ders: list[DerGroup], bus_loads: dict[int, tuple[float, float]],
                 droop_gain_pu: float, deadband_hz: float, pmx_mw: np.ndarray, balance_gen: str,
                 trip_gen: str, trip_s: float, tds_step_s: float, governors: list[str],
                 fidvr: FidvrConfig | None = None):
        t0 = time.perf_counter()
        der_model.prepare()
        andes_system.check_model_code(der_model.PYCODE_PATH)
        ss = self.ss = _load(case)
        self.ders = ders
        self.der_names = [n for g in ders for n in g.names]
        self._add_ders(ss, ders, droop_gain_pu, deadband_hz, pmx_mw)
        shipped = list(ss.Toggle.idx.v)
        if trip_gen:
            ss.add("Toggle", {"idx": "hpcsim_trip", "model": machine_model(ss, trip_gen), "dev": trip_gen,
                              "t": float(trip_s)})
        self.fidvr = FidvrEvent(fidvr, list(bus_loads)) if fidvr is not None else None  # fault, motors, PQLV
        if self.fidvr is not None:
            self.fidvr.add_devices(ss)
        ss.setup()
        if shipped:
            log.info("events shipped with %s switched off (Toggle %s)", case, ", ".join(map(str, shipped)))
            for i in shipped:
                ss.Toggle.u.v[list(ss.Toggle.idx.v).index(i)] = 0
        self.sb = float(ss.config.mva)
        self._redispatch(ss, balance_gen, sum(len(g.names) * g.kw for g in ders) / 1000.0)
        self._loads = andes_system.BusLoads(ss, list(bus_loads), str(case), label="feeder bus",
                                            exclude=self.fidvr.motor_pqs if self.fidvr is not None else ())
        self.set_bus_loads(bus_loads, pflow=True)
        self._solve_pf_unity_der(ss)
        self.load_s = time.perf_counter() - t0
        tds = ss.TDS.config
        tds.tstep, tds.fixt, tds.criteria, tds.no_tqdm, tds.tf = tds_step_s, 1, 0, 1, 0.0
        # plain Newton: ANDES 2's backtracking line search costs ~7 % per step here and never engages (scenarios 1
        # and 2 give the same trajectories to 1e-11 Hz with and without it)
        tds.linesearch = 0
        ss.TDS.init()
        if not ss.TDS.initialized:
            raise DynamicsError(f"ANDES TDS of {case} did not initialize with the DERs added")
        if self.fidvr is not None:  # loads are PQLV in the TDS; the motors and DER ride-through every step
            self._loads.retarget(der_model.LOAD_MODEL, der_model.lv_load_idx, {"Ppf": "p0", "Qpf": "q0"})
            self.fidvr.start(ss, self.der_names, [g.bus for g in ders for _ in g.names])
        self.gov_pos = [list(ss.TGOV1.idx.v).index(g) for g in governors]
        self._machine_idx = machine_values(ss, "idx")
        self._m = np.array(machine_values(ss, "M")) * np.array(machine_values(ss, "Sn"))
        self._omega_addr = np.concatenate([getattr(ss, name).omega.a for name in MACHINE_MODELS]).astype(int)
        self._t_read = 0.0
        self.cpu_s = 0.0  # CPU time of the integrating thread in advance(): wall minus this is time preempted
        self.f0_hz = float(ss.config.freq)

    @staticmethod
    def _add_ders(ss, ders: list[DerGroup], ddn: float, db_hz: float, pmx_mw: np.ndarray) -> None:
        vn = dict(zip(ss.Bus.idx.v, ss.Bus.Vn.v))
        busf = {int(b): i for i, b in zip(ss.BusFreq.idx.v, ss.BusFreq.bus.v)}
        k = 0
        for g in ders:
            n = len(g.names)
            if not n:
                continue
            p_mw = n * g.kw / 1000.0
            ss.add("PV", {"idx": f"DERG_{g.bus}", "name": f"DERG_{g.bus}", "bus": g.bus, "Sn": n * g.kva / 1000.0,
                          "Vn": vn[g.bus], "p0": p_mw / ss.config.mva, "q0": 0.0, "pmax": 1.0, "pmin": 0.0,
                          "qmax": 1.0, "qmin": -1.0, "v0": 1.0})
            if g.bus not in busf:
                busf[g.bus] = f"BusFreq_der_{g.bus}"
                ss.add("BusFreq", {"idx": busf[g.bus], "bus": g.bus, "Tf": 0.02, "Tw": 0.02})
            for name in g.names:
                ss.add(der_model.MODEL, {"idx": name, "name": name, "bus": g.bus, "gen": f"DERG_{g.bus}",
                                         "fn": float(ss.config.freq),
                                         "Sn": g.kva / 1000.0, "busf": busf[g.bus], "gammap": 1.0 / n,
                                         "gammaq": 1.0 / n, "ddn": ddn, "dbuf": db_hz, "dbof": db_hz,
                                         "pmx": pmx_mw[k] / (g.kva / 1000.0)})
                k += 1

    def _redispatch(self, ss, balance_gen: str, der_mw: float) -> None:
        """Lower the balancing generator by the DER dispatch (the paper: Gen 5, 35 -> 25 MW); its governor's
        lower limit follows if the new dispatch is below it."""
        self.balance = {}
        if der_mw <= 0:
            return
        ids = [str(i) for i in ss.PV.idx.v]
        if balance_gen not in ids:
            raise CaseError(f"balance_gen {balance_gen!r} is not a PV generator of the case (have {', '.join(ids)})")
        pos = ids.index(balance_gen)
        before = float(ss.PV.p0.v[pos]) * self.sb
        ss.PV.p0.v[pos] = (before - der_mw) / self.sb
        self.balance = {"gen": balance_gen, "p_before_mw": before, "p_after_mw": before - der_mw}
        syn = {i for i, g in zip(machine_values(ss, "idx"), machine_values(ss, "gen")) if str(g) == balance_gen}
        for i, s in enumerate(ss.TGOV1.syn.v):
            if s in syn:
                pu = (before - der_mw) / self.sb  # TGOV1.VMIN.v is on the system base (ANDES converts it)
                ss.TGOV1.VMIN.v[i] = min(float(ss.TGOV1.VMIN.v[i]), pu)
        log.info("generator %s redispatched %.1f -> %.1f MW for %.1f MW of DERs", balance_gen, before,
                 before - der_mw, der_mw)

    def _solve_pf_unity_der(self, ss) -> None:
        """Power flow; the DERs' static generators get the voltage set point at which they make no reactive
        power (Newton on v0 with a finite-difference slope per generator), so DERs start at unity power factor.
        Where that diagonal Newton fails (generators electrically close, as ten feeder buses in NPCC's NEPOOL,
        whose reactive powers move each other's), it is redone from the start with the full finite-difference
        Jacobian ``dQ_i/dv0_j`` (one extra power flow per generator and iteration)."""
        if not ss.PFlow.run():
            raise DynamicsError("ANDES power flow of the dynamic case did not converge")
        gens = [i for i, idx in enumerate(ss.PV.idx.v) if str(idx).startswith("DERG_")]
        if not gens:
            return
        start = np.asarray(ss.PV.v0.v)[gens].copy()
        for _ in range(6):
            q = np.asarray(ss.PV.q.v)[gens].copy()
            if np.max(np.abs(q)) < 1e-6:
                break
            ss.PV.v0.v[gens] += 1e-3
            ss.PFlow.run()
            slope = (np.asarray(ss.PV.q.v)[gens] - q) / 1e-3
            ss.PV.v0.v[gens] -= 1e-3 + q / slope
            ss.PFlow.run()
        if not ss.PFlow.converged:
            self._unity_der_full_newton(ss, gens, start)

    @staticmethod
    def _unity_der_full_newton(ss, gens: list[int], start: np.ndarray, dv: float = 1e-4) -> None:
        v0 = start.copy()

        def q_of(v: np.ndarray) -> np.ndarray:
            ss.PV.v0.v[gens] = v
            if not ss.PFlow.run():
                raise DynamicsError("ANDES power flow with the DERs at unity power factor did not converge")
            return np.asarray(ss.PV.q.v)[gens].copy()

        q = q_of(v0)
        for _ in range(8):
            if np.max(np.abs(q)) < 1e-6:
                return
            jac = np.column_stack([(q_of(v0 + dv * np.eye(len(gens))[j]) - q) / dv for j in range(len(gens))])
            v0 = v0 - np.linalg.solve(jac, q)
            q = q_of(v0)
        if np.max(np.abs(q)) >= 1e-4:
            raise DynamicsError(f"the DERs' static generators did not reach unity power factor (largest "
                                f"{np.max(np.abs(q)) * float(ss.config.mva):.3f} Mvar)")

    # --- written between advances -------------------------------------------------------------------------
    def set_bus_loads(self, loads_mw: dict[int, tuple[float, float]], pflow: bool = False) -> None:
        """Total (P MW, Q Mvar) at each feeder bus; the bus's first PQ carries it (power flow: p0/q0; TDS: Ppf/Qpf;
        with a fault: less the bus's motor share, into the PQLV in the TDS)."""
        if self.fidvr is not None:
            loads_mw = self.fidvr.carve(loads_mw)
        self._loads.write_mw(loads_mw, self.sb, ("p0", "q0") if pflow else ("Ppf", "Qpf"))

    def scale_other_loads(self, mult: float) -> None:
        """Every load that is not a feeder follows the load multiplier."""
        self._loads.scale_others(mult, ("Ppf", "Qpf"))

    def set_der_limits(self, pmx_mw: np.ndarray) -> None:
        if self.der_names:
            self.ss.DERFR.pmx.v[:] = np.asarray(pmx_mw) / self.sb
            if self.fidvr is not None:  # a tripped DER stays off
                self.ss.DERFR.pmx.v[:] *= self.fidvr.der_online()

    def set_der_agc(self, p_mw: np.ndarray) -> None:
        if self.der_names:
            self.ss.DERFR.Pext0.v[:] = np.asarray(p_mw) / self.sb

    def set_governor_paux(self, paux_pu: np.ndarray) -> None:
        self.ss.TGOV1.paux0.v[self.gov_pos] = paux_pu

    # --- advance and read ------------------------------------------------------------------------------------
    def _on_step(self, t_s: float) -> float:
        """The time ANDES reaches from where it is in whole fixed steps, summed as ANDES sums them, nearest to
        ``t_s``. Asked for ``t_s`` itself, ANDES ends an interval an ulp short (fifteen float additions of 1/30 s
        rarely make 0.5 s exactly) and takes an extra full Newton step of ~1e-16 s to close the gap — one step
        in twenty wasted. Falls back to ``t_s`` if the steps do not land within 1e-9 s of it."""
        h = float(self.ss.TDS.config.tstep)
        t = float(self.ss.dae.t)
        n = int(round((t_s - t) / h))
        for _ in range(n):
            t += h
        return t if n > 0 and abs(t - t_s) < 1e-9 else t_s

    def advance(self, t_s: float) -> float:
        """Integrate to ``t_s`` (to the step that lands on it: :meth:`_on_step`); returns the wall time."""
        t0, c0 = time.perf_counter(), time.thread_time()
        self.ss.TDS.config.tf = self._on_step(t_s)
        self.ss.TDS.run()
        self.cpu_s += time.thread_time() - c0
        if self.ss.dae.t + 1e-9 < t_s or self.ss.exit_code != 0:
            raise DynamicsError(f"ANDES TDS stopped at t = {float(self.ss.dae.t):.4f} s before {t_s:g} s")
        return time.perf_counter() - t0

    def coi_hz(self, omega: np.ndarray) -> float:
        """Centre-of-inertia frequency of the online machines (weights M · S_n)."""
        w = self._m * self._status()
        return float(self.f0_hz * np.dot(w, omega) / w.sum())

    def new_frequency_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, COI frequency in Hz) of every TDS step since the last call."""
        ts = self.ss.dae.ts  # the history since the last call, as arrays (unpacked by every TDS.run())
        # one sample per step time: when the summed steps fall an ulp short of an interval's end, ANDES takes an
        # extra, near-zero step onto it; the later sample of the same (rounded) time is kept
        by_time = {round(float(t), 6): k for k, t in enumerate(ts.t) if t > self._t_read + 1e-6}
        if self.fidvr is not None:
            self.fidvr.read_voltages(list(by_time), [ts.y[k] for k in by_time.values()])
        andes_system.drop_history(self.ss)  # keep it to one interval
        if not by_time:
            return np.zeros(0), np.zeros(0)
        self._t_read = max(by_time)
        f = [self.coi_hz(ts.x[k][self._omega_addr]) for k in by_time.values()]
        return np.asarray(list(by_time)), np.asarray(f)

    def _status(self) -> np.ndarray:
        return np.concatenate([getattr(self.ss, name).u.v for name in MACHINE_MODELS]).astype(float)

    def frequency_hz(self) -> float:
        return self.coi_hz(np.asarray(self.ss.dae.x[self._omega_addr]))

    def online(self) -> np.ndarray:
        """Status (1/0) of each governor's machine, in ``governors`` order."""
        status = dict(zip(self._machine_idx, self._status()))
        return np.array([status[self.ss.TGOV1.syn.v[i]] for i in self.gov_pos], dtype=float)

    def bus_voltage(self, bus: int) -> complex:
        pos = list(self.ss.Bus.idx.v).index(bus)
        return complex(self.ss.Bus.v.v[pos] * np.exp(1j * self.ss.Bus.a.v[pos]))

    def der_state_mw(self) -> dict[str, np.ndarray]:
        """Per DER (MW): base set point, droop (PFR), AGC (SFR), limit and output."""
        if not self.der_names:
            return {k: np.zeros(0) for k in ("p_base", "p_pfr", "p_sfr", "p_limit", "p")}
        d = self.ss.DERFR
        return {"p_base": d.pref0.v * self.sb, "p_pfr": d.DB_y.v * self.sb, "p_sfr": d.Pext0.v * self.sb,
                "p_limit": d.pmx.v * self.sb, "p": d.Pout_y.v * self.sb}
