"""The three federate roles of a dynamic study: transmission TDS (ANDES), DER feeder (OpenDSS) and AGC.

Time: HELICS time = simulated seconds + 1 (so nothing happens at HELICS time 0). The transmission federate is
uninterruptible and steps the control intervals (0.5 s); the others are event driven and answer at the time of
the values they are woken by. Each control interval k:

- transmission, granted k: reads what has arrived for k (feeder loads and VSM limits of the previous exchange,
  AGC set points of the previous interval), applies the exogenous series, publishes frequency, ACE and unit
  status (every interval) and the bus voltages and DER powers (every exchange), then integrates to k+1 while the
  others work;
- a feeder, woken at exchange e: asks HELICS (asynchronously) for the time just before the next exchange,
  solves meanwhile with the voltage, DER powers and load multiplier of e, and once granted publishes its gross
  load (eq. 4) and, every ``headroom_s``, its DERs' VSM limits — so its work overlaps the whole transmission
  period (the transmission side also integrates while its own time request is pending);
- the AGC, woken every interval: records frequency and ACE; every ``agc_s`` runs its PI and publishes set points.

So the feeders' loads of exchange e act on the transmission side from the next exchange (the load multiplier
sample e moves every load at e + exchange_s), VSM limits likewise, and AGC set points act one control interval
after they are computed (loose coupling, as in the paper). Rows are buffered and written as Parquet every
``headroom_s`` of simulated time.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from hpcsim.dynamics import agc, der
from hpcsim.distribution.der_feeder import DerFeeder
from hpcsim.dynamics.headroom import max_der_power, sensitivity, warm_up
from hpcsim.transmission.dynamic import DerGroup, DynamicGrid, json_case
from hpcsim.dynamics.configs import CONFIGS, TIME_OFFSET, AgcConfig, DerFeederConfig, TdsConfig
from hpcsim.dynamics.wiring import handles
from hpcsim.federation.role_config import parse_role
from hpcsim.output.parquet import StepWriter

log = logging.getLogger(__name__)

FIDVR_TABLES = ("bus_voltage", "motor", "fidvr_event")
ANSWER_LEAD_S = 1e-6  # a feeder answers this long before the next exchange (so it is read at the exchange)


class Role:
    """Common parts: the typed config, Parquet writers, HELICS registration helpers, per-interval timing rows."""

    tables: tuple[str, ...] = ()

    def __init__(self, document: dict):
        self.document = document  # the role settings as read (HELICS interfaces are labelled from them)
        self.name = document["name"]
        self.cfg = parse_role(CONFIGS, document)
        out = Path(self.cfg.run_dir) / "outputs"
        self.writers = {t: StepWriter(out, t, self.name) for t in (*self.tables, "steps")}
        self.flush_every = self.cfg.flush_ticks
        self.chunk = 0
        self.compute_s = 0.0

    def register(self, pubs: dict, subs: dict) -> None:
        """Take the handles HELICS registered from the config, by the labels of :func:`wiring`."""
        self.pubs, self.subs = handles(self.document, pubs, subs)

    def timing(self, t_s: float, compute_s: float, exchange_s: float, rss_mb: float) -> None:
        self.writers["steps"].add(time_s=t_s, iterations=1, dv_pu=math.nan, ds_pu=math.nan, compute_s=compute_s,
                                  exchange_s=exchange_s, peak_rss_mb=rss_mb)

    def maybe_flush(self, tick: int, last: bool = False) -> None:
        if last or (tick > 0 and tick % self.flush_every == 0):
            for w in self.writers.values():
                w.flush(self.chunk)
            self.chunk += 1


class TdsRole(Role):
    """ANDES time-domain simulation with DERs (see module docstring)."""

    tables = ("frequency", "der")

    cfg: TdsConfig

    def __init__(self, document: dict):
        super().__init__(document)
        cfg = self.cfg
        self.feeders = cfg.feeders
        self.groups = [DerGroup(f.bus, f.der_names, cfg.der_kva, cfg.der_kw) for f in self.feeders]
        self.mppt = np.asarray(cfg.mppt_mw, dtype=float).reshape(len(cfg.mppt_mw), -1)
        self.n_der = sum(len(g.names) for g in self.groups)
        self.p_cap = np.full(self.n_der, cfg.der_kva / 1000.0)
        self.p_vsm = self.p_cap.copy()
        self.grid = DynamicGrid(
            str(json_case(cfg.case)), ders=self.groups, bus_loads={f.bus: (f.p0_mw, f.q0_mvar) for f in self.feeders},
            droop_gain_pu=cfg.droop_gain_pu, deadband_hz=cfg.pfr_deadband_hz, pmx_mw=self._limit(0.0),
            balance_gen=cfg.balance_gen, trip_gen=cfg.trip_gen, trip_s=cfg.trip_s,
            tds_step_s=cfg.tds_step_s, governors=[g.idx for g in cfg.governors], fidvr=cfg.fidvr)
        log.info("%s: ANDES case with %d DERs ready in %.1f s", self.name, self.n_der, self.grid.load_s)
        if cfg.fidvr is not None:  # a fault: every step's bus voltages, the motors, the motor and DER events
            out = Path(cfg.run_dir) / "outputs"
            self.writers.update({t: StepWriter(out, t, self.name) for t in FIDVR_TABLES})
        self.gov_r = np.array([g.r_pu for g in cfg.governors])
        self.gov_sn = np.array([g.sn_mva for g in cfg.governors])
        self.der_bus = [g.bus for g in self.groups for _ in g.names]
        self.load_mult = 1.0
        self.subs: dict = {}
        self.pubs: dict = {}

    def _limit(self, t_s: float) -> np.ndarray:
        """Eq. (14)'s limit for the interval from ``t_s`` (P_mppt is a 1-s series); remembered for the records."""
        self.mppt_now = self.mppt[min(int(t_s + 1e-9), self.mppt.shape[0] - 1)] if self.n_der else np.zeros(0)
        self.vsm_now = self.p_vsm.copy()
        return der.limit_mw(self.mppt_now, self.p_cap, self.vsm_now)

    def receive(self, tick: int) -> None:
        """Apply what the feeders and the AGC answered in the previous interval."""
        import helics as h

        updated = {k: s for k, s in self.subs.items() if h.helicsInputIsUpdated(s)}
        loads = {}
        for f in self.feeders:
            b = f.bus
            if ("load", b) in updated:
                s = complex(h.helicsInputGetComplex(updated[("load", b)]))
                loads[b] = (f.scale * s.real, f.scale * s.imag)
            if ("vsm", b) in updated:
                at = [i for i, bb in enumerate(self.der_bus) if bb == b]
                self.p_vsm[at] = h.helicsInputGetVector(updated[("vsm", b)])
        if loads:
            self.grid.set_bus_loads(loads)
            k = tick // self.cfg.exchange_ticks - 1  # the exchange these loads answer
            self.load_mult = float(self.cfg.load_mult[k])
            self.grid.scale_other_loads(self.load_mult)
        if "thermal" in updated:
            p_mw = np.asarray(h.helicsInputGetVector(updated["thermal"]))
            self.grid.set_governor_paux(agc.governor_paux(p_mw, self.gov_r, self.gov_sn))
        if "der" in updated:
            self.grid.set_der_agc(np.asarray(h.helicsInputGetVector(updated["der"])))

    def publish(self, tick: int, t_s: float) -> None:
        import helics as h

        self.grid.set_der_limits(self._limit(t_s))
        f_hz = self.grid.frequency_hz()
        h.helicsPublicationPublishDouble(self.pubs["f"], f_hz)
        h.helicsPublicationPublishDouble(self.pubs["ace"], float(self._ace(f_hz)))
        h.helicsPublicationPublishVector(self.pubs["online"], self.grid.online().tolist())
        if tick % self.cfg.exchange_ticks == 0:
            p = self.grid.der_state_mw()["p"]
            for f in self.feeders:
                b = f.bus
                h.helicsPublicationPublishComplex(self.pubs[("v", b)], self.grid.bus_voltage(b))
                h.helicsPublicationPublishVector(self.pubs[("der", b)],
                                                 [float(x) for x, bb in zip(p, self.der_bus) if bb == b])

    def _ace(self, f_hz):
        return agc.ace_mw(f_hz, f0_hz=self.cfg.f0_hz, bias_mw_per_01hz=self.cfg.bias_mw_per_01hz)

    def record(self, t_s: float) -> None:
        """Frequency at every TDS step since the last call; every DER's state now, with the limits in force."""
        times, f = self.grid.new_frequency_samples()
        if t_s == 0.0:
            times, f = np.array([0.0]), np.array([self.grid.frequency_hz()])
        if times.size:
            n = times.size
            self.writers["frequency"].extend({"time_s": times.tolist(), "f_hz": f.tolist(),
                                              "ace_mw": self._ace(f).tolist(), "load_mult": [self.load_mult] * n})
        if self.n_der:
            st = self.grid.der_state_mw()
            self.writers["der"].extend({
                "time_s": [t_s] * self.n_der, "der": self.grid.der_names,
                "feeder": [self.cfg.feeder_of_bus[str(b)] for b in self.der_bus], "bus": self.der_bus,
                "p_base_mw": st["p_base"].tolist(), "p_pfr_mw": st["p_pfr"].tolist(),
                "p_sfr_mw": st["p_sfr"].tolist(), "p_mppt_mw": self.mppt_now.tolist(),
                "p_vsm_mw": self.vsm_now.tolist(), "p_cap_mw": self.p_cap.tolist(),
                "p_limit_mw": st["p_limit"].tolist(), "p_mw": st["p"].tolist()})

        if self.grid.fidvr is not None:
            for table, rows in self.grid.fidvr.take().items():
                if rows["time_s"]:
                    self.writers[table].extend(rows)

    def advance(self, t_s: float) -> float:
        return self.grid.advance(t_s)


class FeederRole(Role):
    """One feeder with its DERs; answers every exchange, runs the headroom LP every ``headroom_s``."""

    tables = ("feeder_voltage",)

    cfg: DerFeederConfig

    def __init__(self, document: dict):
        super().__init__(document)
        cfg = self.cfg
        self.bus = cfg.bus
        self.feeder = DerFeeder(cfg.feeder, list(cfg.der_buses), list(cfg.der_names), cfg.der_kva, cfg.der_kw,
                                cfg.settings)
        self.p_cap = np.full(len(cfg.der_names), cfg.der_kva / 1000.0)
        self.subs: dict = {}
        self.pubs: dict = {}
        if cfg.der_names and cfg.headroom:
            warm_up()  # before the run starts, not at the first headroom exchange

    def respond(self, fed, tick: int, t_s: float) -> float:
        """Solve exchange ``tick`` and answer just before the next one; returns the seconds spent waiting."""
        import helics as h

        c = self.cfg
        k = tick // c.exchange_ticks
        v = complex(h.helicsInputGetComplex(self.subs["v"]))
        p_der = np.asarray(h.helicsInputGetVector(self.subs["der"]), dtype=float) if c.der_names else np.zeros(0)
        answer = tick < c.ticks  # nobody reads an answer to the last exchange
        due = t_s + c.exchange_s - ANSWER_LEAD_S + TIME_OFFSET
        if answer:
            h.helicsFederateRequestTimeAsync(fed, due)
        v_src = self.feeder.source_pu(abs(v), c.feeder_head)
        st = self.feeder.solve_with_ders(v_src, float(np.degrees(np.angle(v))), p_der, float(c.load_mult[k]))
        hr = None
        if "vsm" in self.pubs and tick % c.headroom_ticks == 0:
            with self.feeder.vsm_solver() as solve:
                sens = sensitivity(solve, p_der, c.vsm_dp_kw / 1000.0)
            hr = max_der_power(sens, p_cap_mw=self.p_cap, v_min_pu=c.v_min_pu, v_max_pu=c.v_max_pu)
            log.debug("%s t=%g: headroom %.3f MW (%d LP rows)", self.name, t_s, hr.headroom_mw, hr.rows)
        self.writers["feeder_voltage"].add(
            time_s=t_s, feeder=self.feeder.name, bus=self.bus, v_source_pu=v_src, v_min_pu=st.v_min_pu,
            v_mean_pu=st.v_mean_pu, v_std_pu=st.v_std_pu, v_max_pu=st.v_max_pu, p_net_mw=st.p_net_mw,
            q_net_mvar=st.q_net_mvar, p_der_mw=st.p_der_mw, p_gross_mw=st.s_gross_mva.real, scale=c.scale,
            headroom_mw=hr.headroom_mw if hr else float("nan"), solve_s=st.solve_s,
            vsm_s=sens.solve_s if hr else float("nan"), lp_s=hr.lp_s if hr else float("nan"))
        if not answer:
            return 0.0
        t0 = time.perf_counter()
        granted = h.helicsFederateRequestTimeComplete(fed)
        while granted < due - 1e-9:  # woken early by an unexpected value: keep waiting for the answer time
            granted = h.helicsFederateRequestTime(fed, due)
        waited_s = time.perf_counter() - t0
        h.helicsPublicationPublishComplex(self.pubs["load"], st.s_gross_mva)
        if hr is not None:
            h.helicsPublicationPublishVector(self.pubs["vsm"], hr.p_vsm_mw.tolist())
        return waited_s


class AgcRole(Role):
    """Area AGC: ACE with a deadband, PI every ``agc_s``, participation factors (thermal units and DERs)."""

    tables = ("ace",)

    cfg: AgcConfig

    def __init__(self, document: dict):
        super().__init__(document)
        cfg = self.cfg
        self.pi = agc.PIController(cfg.agc_kp, cfg.agc_ki, cfg.agc_s, cfg.agc_limit_mw)
        self.n_thermal = len(cfg.governors)
        self.split = (np.zeros(self.n_thermal), np.zeros(cfg.n_der))
        self.samples: list[float] = []  # ACE (after the deadband) since the last AGC action
        self.subs: dict = {}
        self.pubs: dict = {}

    def respond(self, fed, tick: int, t_s: float) -> float:  # noqa: ARG002 - same signature as the feeder's
        import helics as h

        c = self.cfg
        f_hz = float(h.helicsInputGetDouble(self.subs["f"]))
        ace = float(h.helicsInputGetDouble(self.subs["ace"]))
        ace_ctrl = agc.ace_in_deadband(f_hz, ace, f0_hz=c.f0_hz, deadband_hz=c.agc_deadband_hz)
        self.samples.append(ace_ctrl)
        if tick % c.agc_ticks == 0:
            t0 = time.perf_counter()
            online = np.asarray(h.helicsInputGetVector(self.subs["online"]), dtype=bool)
            acs = self.pi.step(float(np.mean(self.samples))) if c.agc else 0.0
            self.samples = []
            beta_thermal, beta_der = agc.participation(online, c.n_der, c.der_agc_share)
            self.split = (beta_thermal * acs, beta_der * acs)
            h.helicsPublicationPublishVector(self.pubs["thermal"], self.split[0].tolist())
            if "der" in self.pubs:
                h.helicsPublicationPublishVector(self.pubs["der"], self.split[1].tolist())
            self.compute_s += time.perf_counter() - t0
        self.writers["ace"].add(time_s=t_s, f_hz=f_hz, ace_mw=ace, ace_ctrl_mw=ace_ctrl, acs_mw=self.pi.output_mw,
                                p_thermal_mw=float(self.split[0].sum()), p_der_mw=float(self.split[1].sum()))
        return 0.0
