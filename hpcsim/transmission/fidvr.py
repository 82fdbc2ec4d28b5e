"""The ANDES side of a FIDVR study: a bolted three-phase fault, loads that hold up through it, stalling
air-conditioner motors and the DERs' ride-through — a thin adapter around the pure machines of
:mod:`hpcsim.dynamics.fidvr`.

Before ``setup()`` (:meth:`FidvrEvent.add_devices`):

- ANDES ``Fault`` at the faulted bus (shunt ``1/(j x_f)``, on at ``t_f``, off at ``t_c``);
- per motor bus, the motor share ``P_m`` split into blocks (one per thermal-trip delay): each a ``PQ`` (running
  motor, ``P_m/n`` at the motor power factor) and a ``Shunt`` (the stalled motor, 0 until it stalls); the share
  is carved out of the bus's own load (at a feeder bus, out of what the feeder draws: :meth:`carve`);
- a ``PQLV`` (:mod:`~hpcsim.transmission.der_model`) replacing every PQ in the TDS: constant power, constant
  current below 0.7 pu. ANDES's constant-power PQ stops the TDS at a bolted fault; the other studies keep it.

Every TDS step (``TDS.callpert``, called before each step; :meth:`on_step`) the machines get the solved voltage of
the step before (``t - h``; the step that ends at the clearing time is skipped: there ANDES overwrites the
voltages with the pre-fault ones as the next Newton start) and their outputs are written back: a stalled block's
PQLV to 0 and its Shunt to ``Y``; a tripped block's Shunt to 0; a tripped DER's power limit to 0.

From the first step after the fault is applied, ANDES's (nonmonotone backtracking) Newton line search is on;
hpcsim's other studies keep it off (it costs ~7 % per step and never engages there). Without it the Newton of
the clearing step, started from the restored pre-fault voltages, lands on a spurious solution with bus 14 at
V = 0 (a bus whose every injection vanishes with its voltage — lines, constant-current loads — satisfies its
equations at V = 0); measured with the 10 DERs of dyn_ieee14_fidvr_nomotor: V14 = 0 for the rest of the run
without, recovery in 0.066 s with. On from t = 0 it stops the TDS at the fault instant, hence from after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from hpcsim.dynamics.configs import FidvrConfig
from hpcsim.dynamics.fidvr import OFF, RUN, STALL, MotorBlock, MotorParams, RideThrough, motor_blocks
from hpcsim.errors import CaseError
from hpcsim.transmission.der_model import LOAD_MODEL, lv_load_idx

log = logging.getLogger(__name__)

FAULT_IDX = "hpcsim_fault"


def motor_params(cfg: FidvrConfig) -> MotorParams:
    return MotorParams(v_stall_pu=cfg.motor_v_stall_pu, t_stall_s=cfg.motor_t_stall_s,
                       r_stall_pu=cfg.motor_r_stall_pu, x_stall_pu=cfg.motor_x_stall_pu, pf=cfg.motor_pf,
                       v_restart_pu=cfg.motor_v_restart_pu, t_restart_s=cfg.motor_t_restart_s)


class FidvrEvent:
    """The fault, the motor blocks and the DER ride-through of one TDS (see module docstring)."""

    def __init__(self, cfg: FidvrConfig, feeder_buses: Sequence[int]):
        self.cfg = cfg
        self.params = motor_params(cfg)
        self.feeder_buses = {int(b) for b in feeder_buses}
        self.blocks: list[MotorBlock] = [blk for m in cfg.motors for blk in motor_blocks(
            m.bus, m.p_mw, cfg.motor_trip_s, cfg.motor_restart_share)]
        self.motor_mw = {m.bus: m.p_mw for m in cfg.motors}
        self.ders: list[RideThrough] = []
        self.events: list[tuple[float, str, int, str]] = []  # (time_s, device, bus, event)
        self.motor_rows: dict[str, list] = {k: [] for k in ("time_s", "bus", "v_pu", "p_mw", "q_mvar",
                                                              "p_running_mw", "stalled", "tripped")}
        self._voltages: dict[str, list] = {"time_s": [], "bus": [], "v_pu": []}
        self._last_t = -1.0

    @property
    def motor_pqs(self) -> set[str]:
        return {b.name for b in self.blocks}

    # --- before setup ----------------------------------------------------------------------------------------
    def add_devices(self, ss) -> None:
        cfg = self.cfg
        buses = [int(b) for b in ss.Bus.idx.v]
        vn = dict(zip(buses, ss.Bus.Vn.v))
        sb = float(ss.config.mva)
        if cfg.fault_bus not in vn:
            raise CaseError(f"fault_bus {cfg.fault_bus} is not a bus of the case")
        ss.add("Fault", {"idx": FAULT_IDX, "bus": cfg.fault_bus, "tf": cfg.fault_s, "tc": cfg.clear_s,
                         "xf": cfg.fault_x_pu, "rf": 0.0})
        pq_idx, pq_bus = list(ss.PQ.idx.v), [int(b) for b in ss.PQ.bus.v]
        qp = self.params.q_over_p()
        for bus, p_mw in self.motor_mw.items():
            at = [i for i, b in enumerate(pq_bus) if b == bus]
            p_bus = sum(float(ss.PQ.p0.v[i]) for i in at) * sb
            if not at or p_bus <= 0 or p_mw > p_bus + 1e-9:
                raise CaseError(f"motor bus {bus}: needs a load of at least {p_mw:.3f} MW in the case")
            if bus not in self.feeder_buses:  # the share comes out of the case's load at the bus, pro rata
                for i in at:
                    w = float(ss.PQ.p0.v[i]) * sb / p_bus
                    ss.PQ.p0.v[i] -= w * p_mw / sb
                    ss.PQ.q0.v[i] -= w * p_mw * qp / sb
        for blk in self.blocks:
            ss.add("PQ", {"idx": blk.name, "name": blk.name, "bus": blk.bus, "Vn": vn[blk.bus],
                          "p0": blk.p_mw / sb, "q0": blk.p_mw * qp / sb})
            ss.add("Shunt", {"idx": f"{blk.name}_Y", "bus": blk.bus, "Vn": vn[blk.bus], "Sn": sb, "g": 0.0,
                             "b": 0.0})
        for idx in [*pq_idx, *(b.name for b in self.blocks)]:
            ss.add(LOAD_MODEL, {"idx": lv_load_idx(idx), "pq": idx, "vb": cfg.load_break_pu})
        log.info("fault at bus %d, %g-%g s; %d motor blocks (%.1f MW) at buses %s; DERs %s", cfg.fault_bus,
                 cfg.fault_s, cfg.clear_s, len(self.blocks), sum(self.motor_mw.values()),
                 sorted(self.motor_mw), cfg.der_ride_through)

    def carve(self, loads_mw: dict[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
        """Feeder-bus loads (P MW, Q Mvar) less their motor share (the feeder stands for the whole bus; P not
        below 0)."""
        qp = self.params.q_over_p()
        return {b: (max(p - self.motor_mw.get(b, 0.0), 0.0), q - self.motor_mw.get(b, 0.0) * qp)
                for b, (p, q) in loads_mw.items()}

    # --- after the TDS initialized -----------------------------------------------------------------------------
    def start(self, ss, der_names: Sequence[str], der_buses: Sequence[int]) -> None:
        """Hook the per-step machines into the TDS."""
        self.ss = ss
        self.sb = float(ss.config.mva)
        cfg = self.cfg
        self.ders = [RideThrough(n, int(b), cfg.der_ride_through, cfg.der_trip_v_pu, cfg.der_trip_s)
                     for n, b in zip(der_names, der_buses)]
        uid = {int(b): k for k, b in enumerate(ss.Bus.idx.v)}
        self.watch = sorted({cfg.fault_bus, *self.feeder_buses, *self.motor_mw})
        self._v_addr = {b: int(ss.Bus.v.a[uid[b]]) for b in {*self.watch, *(d.bus for d in self.ders)}}
        self._lv = {b.name: ss.PQLV.idx2uid(lv_load_idx(b.name)) for b in self.blocks}
        self._sh = {b.name: ss.Shunt.idx2uid(f"{b.name}_Y") for b in self.blocks}
        self._y = {b.name: self.params.stall_admittance_pu(b.p_mw, self.sb) for b in self.blocks}
        ss.TDS.callpert = self.on_step

    def der_online(self) -> np.ndarray:
        return np.array([d.online for d in self.ders], dtype=float)

    def on_step(self, t, ss) -> None:
        """One TDS step's machines (``TDS.callpert``): the state solved at ``t - h``."""
        t_s = round(float(t) - float(ss.TDS.h), 9)
        if t_s <= self._last_t + 1e-9 or abs(t_s - self.cfg.clear_s) < 1e-7:
            return
        self._last_t = t_s
        if t_s > self.cfg.fault_s + 1e-6:
            ss.TDS.config.linesearch = 1  # see the module docstring
        y = ss.dae.y
        for blk in self.blocks:
            event = blk.update(t_s, float(y[self._v_addr[blk.bus]]), self.params)
            if event is None:
                continue
            self.events.append((t_s, blk.name, blk.bus, event))
            lv, sh, adm = self._lv[blk.name], self._sh[blk.name], self._y[blk.name]
            running = blk.state == RUN
            ss.PQLV.p0.v[lv] = blk.p_mw / self.sb if running else 0.0
            ss.PQLV.q0.v[lv] = blk.p_mw * self.params.q_over_p() / self.sb if running else 0.0
            stalled = blk.state == STALL
            ss.Shunt.g.v[sh], ss.Shunt.b.v[sh] = (adm.real, adm.imag) if stalled else (0.0, 0.0)
        for k, der in enumerate(self.ders):
            if der.update(t_s, float(y[self._v_addr[der.bus]])) is not None:
                self.events.append((t_s, der.name, der.bus, "der trip"))
                ss.DERFR.pmx.v[k] = 0.0
        self._record_motors(t_s, y)

    def _record_motors(self, t_s: float, y: np.ndarray) -> None:
        """Per motor bus: the motors' P and Q as ANDES evaluates them (the PQLV and Shunt equations' values)."""
        ss, r = self.ss, self.motor_rows
        for bus in self.motor_mw:
            blks = [b for b in self.blocks if b.bus == bus]
            lv = [self._lv[b.name] for b in blks]
            sh = [self._sh[b.name] for b in blks]
            r["time_s"].append(t_s)
            r["bus"].append(bus)
            r["v_pu"].append(float(y[self._v_addr[bus]]))
            r["p_mw"].append(float(np.sum(ss.PQLV.a.e[lv]) + np.sum(ss.Shunt.a.e[sh])) * self.sb)
            r["q_mvar"].append(float(np.sum(ss.PQLV.v.e[lv]) + np.sum(ss.Shunt.v.e[sh])) * self.sb)
            r["p_running_mw"].append(sum(b.p_mw for b in blks if b.state == RUN))
            r["stalled"].append(sum(b.state == STALL for b in blks))
            r["tripped"].append(sum(b.state == OFF for b in blks))

    # --- outputs -----------------------------------------------------------------------------------------------
    def read_voltages(self, times: Sequence[float], rows: Sequence[np.ndarray]) -> None:
        """The watched buses' voltages of the solved steps (``dae.ts`` rows of ``y``)."""
        for t, row in zip(times, rows):
            for b in self.watch:
                self._voltages["time_s"].append(float(t))
                self._voltages["bus"].append(b)
                self._voltages["v_pu"].append(float(row[self._v_addr[b]]))

    def take(self) -> dict[str, dict[str, list]]:
        """The rows gathered since the last call, per output table (``bus_voltage``, ``motor``, ``fidvr_event``)."""
        ev = {"time_s": [e[0] for e in self.events], "device": [e[1] for e in self.events],
              "bus": [e[2] for e in self.events], "event": [e[3] for e in self.events]}
        out = {"bus_voltage": self._voltages, "motor": self.motor_rows, "fidvr_event": ev}
        self._voltages = {k: [] for k in self._voltages}
        self.motor_rows = {k: [] for k in self.motor_rows}
        self.events = []
        return out
