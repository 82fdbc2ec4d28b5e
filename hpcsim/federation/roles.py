"""The two federate roles: the transmission network (ANDES) and a group of feeders (OpenDSS).

Each role reads its inputs, solves, publishes and buffers its output rows;
:mod:`hpcsim.federation.federate` owns time and iterations, :mod:`hpcsim.coupling` the coupling methods.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from hpcsim.cases import case_solution, resolve_feeder, resolve_transmission_case
from hpcsim.console import to_json
from hpcsim.distribution import (COARSE_TOLERANCE, FINE_BELOW_DV_PU, FINE_TOLERANCE, CloneState, ControlState,
                                 FeederEngine, FeederResult, SharedEngine, SolvedState, WarmStarts)
from hpcsim.coupling import ANDERSON_DEPTH, Anderson, bus_sums, carried, zip_split
from hpcsim.errors import ConvergenceError, FederateError
from hpcsim.federation.configs import CONFIGS, FeederGroupConfig, SteadyCommon, TransmissionConfig
from hpcsim.federation.layout import power_key, slope_key, voltage_key
from hpcsim.federation.role_config import parse_role
from hpcsim.interface import complex_to_polar, polar_to_complex, power_mismatch, voltage_mismatch
from hpcsim.output.parquet import StepWriter
from hpcsim.transmission import PowerFlowError, TransmissionNetwork

log = logging.getLogger(__name__)


# A clone's first solve starts from its bus's start solve (start "solved") only if the voltage it receives is
# within this of the case voltage that solve was at: farther, its regulators would have to move several taps
# (each an OpenDSS control iteration) in each of the K clones, and one solve per bus at the voltage received
# (WarmStarts) is cheaper. (Solving that one from the start solve instead of the compiled state was tried on
# ACTIVSg2000: its first exchange 38 s faster, but its regulators settled elsewhere in their bands and the
# second exchange took 150 s longer.)
START_REUSE_BELOW_DV_PU = 0.005
START_LOG_EVERY_S = 60.0  # progress of the start solves in the group's log, this often


def _out_dir(cfg: SteadyCommon) -> Path:
    return Path(cfg.run_dir) / "outputs"


def _steps_row(cfg: SteadyCommon, step: int, iterations: int, dv_pu: float, ds_pu: float, compute_s: float,
               exchange_s: float, rss: float, startup_s: float = math.nan, start_solves: tuple[int, float] = (0, math.nan)
               ) -> dict:
    return {"time_s": cfg.times_s[step], "iterations": iterations, "dv_pu": dv_pu, "ds_pu": ds_pu,
            "compute_s": compute_s, "exchange_s": exchange_s, "peak_rss_mb": rss, "startup_s": startup_s,
            "start_solves": start_solves[0], "start_solve_s": start_solves[1]}


class _Startup:
    """A role's start-up time (:func:`hpcsim.federation.federate.serve` sets ``startup_s``: from the start of
    its federate's life to executing mode — solver load, compile, start solves, connecting), written once, in
    the ``steps`` row of the first step it ends."""

    startup_s: float = math.nan

    def take_startup(self) -> float:
        value, self.startup_s = self.startup_s, math.nan
        return value


class TransmissionRole(_Startup):
    """ANDES power flow; boundary loads from Σ (weight × feeder power) (and, Newton, Σ weight × slope); publishes
    boundary voltages."""

    cfg: TransmissionConfig

    def __init__(self, document: dict):
        cfg = self.cfg = parse_role(CONFIGS, document)
        self.name = document["name"]
        self.newton = cfg.method == "newton"
        self.anderson = Anderson(ANDERSON_DEPTH) if cfg.acceleration == "anderson" else None
        self.net = TransmissionNetwork(resolve_transmission_case(cfg.case), cfg.buses, equivalents=self.newton,
                                       hold_voltages=case_solution(cfg.case) if cfg.gen_voltage == "solution" else None)
        self.buses = list(cfg.buses)
        self.clones = {int(b): k for b, k in cfg.clones.items()}
        self.feeders = cfg.feeders
        self.bus_pos = np.array([self.buses.index(f.bus) for f in self.feeders], dtype=int)
        self.weight = np.array([f.weight for f in self.feeders], dtype=float)
        self.s_mva = np.array([complex(f.p0_mw, f.q0_mvar) for f in self.feeders])
        self.ds_dv = np.zeros(len(self.feeders), dtype=complex)  # MVA per pu; none known before the first answer
        self.await_start = cfg.start == "solved"  # the feeder groups send the first loads (initialize)
        # residual_load: per bus, (case PD + jQD − the feeders' draw at the case voltage) per unit of the load
        # profile, a constant-power load beside the feeders (set from the start solve, or carried on resume)
        self.residual_on = cfg.residual_load
        self.residual_ref = np.zeros(len(self.buses), dtype=complex)
        self.pubs: list = []
        self.subs: list = []
        self.slope_subs: list = []
        self.v: np.ndarray | None = None
        self.v_next: np.ndarray | None = None  # what publish() sends: v, or Anderson's mix of the history
        self.v_published: np.ndarray | None = None
        self.profile_applied: float | None = None
        out = _out_dir(cfg)
        self.rows = StepWriter(out, "transmission", self.name)
        self.steps = StepWriter(out, "steps", self.name)
        self.progress = Path(cfg.run_dir) / "progress.json"
        if cfg.resume:  # carried out of the last completed step (hpcsim.federation.resume)
            carried = cfg.resume["feeders"]
            self.s_mva = np.array([complex(carried[f.name]["p_mw"], carried[f.name]["q_mvar"])
                                   for f in self.feeders])
            v_of = {}
            for f in self.feeders:
                st = carried[f.name]
                v_of.setdefault(f.bus, complex(polar_to_complex(np.array([st["v_pu"]]),
                                                                        np.array([st["angle_deg"]]))[0]))
            self.v_published = np.array([v_of[b] for b in self.buses])
            self.ds_dv = np.array([complex(carried[f.name].get("ds_dv_mva_re") or 0.0,
                                           carried[f.name].get("ds_dv_mva_im") or 0.0) for f in self.feeders])
            self.await_start = False
            if self.residual_on:
                res = cfg.resume.get("residual") or {}  # as carried in step from_step − 1
                mult = cfg.profile[int(cfg.resume["from_step"]) - 1]
                self.residual_ref = np.array([complex(*res.get(str(b), (math.nan, math.nan))) for b in self.buses])
                self.residual_ref /= mult
                if not np.all(np.isfinite(self.residual_ref)):
                    raise FederateError(f"{self.name}: the resumed run carries no residual load for some buses")

    def register(self, pubs: dict, subs: dict) -> None:
        """Take the handles of the interfaces HELICS registered from the config (declared in
        :func:`hpcsim.federation.layout.interfaces`)."""
        self.pubs = [pubs[voltage_key(b)] for b in self.buses]
        self.subs = [subs[power_key(f.name)] for f in self.feeders]
        if self.newton:
            self.slope_subs = [subs[slope_key(f.name)] for f in self.feeders]

    def bus_totals(self, values: np.ndarray | None = None) -> np.ndarray:
        """Σ weight × S over the feeders of each boundary bus (MW + j Mvar), or of ``values``."""
        return bus_sums(self.bus_pos, self.weight, self.s_mva if values is None else values, len(self.buses))

    def solve(self, step: int, iteration: int, ds_pu: float = math.nan) -> float:
        """Power flow with the current feeder powers; returns the ANL voltage mismatch against what the feeders
        last received, sqrt(Σ ΔVm² + ΔVa²) (``dv_pu``). ``ds_pu``: the feeders' power mismatch those powers came
        with (recorded beside it; NaN when none were received in this step)."""
        mult = self.cfg.profile[step]
        if mult != self.profile_applied:
            self.net.scale_other_loads(mult)
            self.profile_applied = mult
        if self.await_start:
            self.s_mva = self.start_powers()
            self.await_start = False
            if self.residual_on:
                self.residual_ref = self.residual_from(self.bus_totals(), self.cfg.profile[0])
        residual = self.residual_ref * mult
        s_bus = self.bus_totals()
        if self.newton and self.v_published is not None:  # the feeders answered at |v_published|
            a, b = zip_split(s_bus, self.bus_totals(self.ds_dv), np.abs(self.v_published))
            self.net.set_boundary_equivalents(a + residual, b)
        else:
            a = b = None
            total = s_bus + residual
            self.net.set_boundary_loads(dict(zip(self.buses, total.real)), dict(zip(self.buses, total.imag)))
        try:
            solve_s = self.net.solve()
        except PowerFlowError as exc:
            raise self._power_flow_failed(exc, step, iteration) from None
        v_pu, angle_deg = self.net.boundary_voltages()
        if a is not None:
            s_bus = carried(a, b, v_pu)  # what the feeders' part drew in this solve (= the feeders' at convergence)
        self.v = polar_to_complex(v_pu, angle_deg)
        dv_pu = math.inf if self.v_published is None else voltage_mismatch(self.v, self.v_published)
        self.v_next = self.v
        if self.anderson is not None:
            if iteration == 0:
                self.anderson.reset()  # a new step: the map changed
            elif self.v_published is not None:
                self.v_next = self.anderson.step(self.v_published, self.v)
        t = self.cfg.times_s[step]
        for i, b in enumerate(self.buses):
            self.rows.add(time_s=t, iteration=iteration, bus=b, clones=self.clones[b], v_pu=float(v_pu[i]),
                          angle_deg=float(angle_deg[i]), p_mw=float(s_bus[i].real), q_mvar=float(s_bus[i].imag),
                          residual_p_mw=float(residual[i].real), residual_q_mvar=float(residual[i].imag),
                          solve_s=solve_s, dv_pu=dv_pu, ds_pu=ds_pu)
        return dv_pu

    def _power_flow_failed(self, exc: PowerFlowError, step: int, iteration: int) -> ConvergenceError:
        """Write the per-bus mismatch of the failed power flow (``<run>/errors/pf_mismatch.csv``, worst first)
        and return the error that ends the run (exit 4)."""
        m = exc.mismatch
        worst = np.hypot(m["p_mismatch_mw"], m["q_mismatch_mvar"])
        order = np.argsort(-worst)
        folder = Path(self.cfg.run_dir) / "errors"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "pf_mismatch.csv"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write("bus,v_pu,angle_deg,p_mismatch_mw,q_mismatch_mvar\n")
            for i in order:
                f.write(f"{m['bus'][i]},{m['v_pu'][i]:.6f},{m['angle_deg'][i]:.4f},{m['p_mismatch_mw'][i]:.6g},"
                        f"{m['q_mismatch_mvar'][i]:.6g}\n")
        os.replace(tmp, path)
        i = int(order[0]) if len(order) else 0
        where = f"worst at bus {m['bus'][i]}: {m['p_mismatch_mw'][i]:.3g} MW, {m['q_mismatch_mvar'][i]:.3g} Mvar" \
            if len(order) else "no buses"
        return ConvergenceError(f"step {step} (t = {self.cfg.times_s[step]:g} s) iteration {iteration}: {exc}; "
                                f"{where}; per-bus mismatch in {path}")

    def residual_from(self, feeders_mva: np.ndarray, mult0: float) -> np.ndarray:
        """Per bus, per unit of the load profile: (PD + jQD)·m0 − the feeders' start draw (solved at the case
        voltage and multiplier m0), divided by m0 — so at the case voltage the bus draws its case load."""
        if not mult0 > 0:
            raise FederateError(f"{self.name}: residual_load needs a positive first load multiplier, not {mult0}")
        case = np.array([complex(self.net.original_p_mw[b], self.net.original_q_mvar[b]) for b in self.buses])
        ref = (case * mult0 - feeders_mva) / mult0
        log.info("%s: residual load at %d boundary buses: %.1f MW + j%.1f Mvar (feeders at the case voltage: %.1f "
                 "MW + j%.1f Mvar)", self.name, len(self.buses), ref.real.sum() * mult0, ref.imag.sum() * mult0,
                 feeders_mva.real.sum(), feeders_mva.imag.sum())
        return ref

    def start_powers(self) -> np.ndarray:
        """The draws the feeder groups published in initializing mode (start "solved"), one per feeder."""
        import helics as h

        missing = [f.name for f, sub in zip(self.feeders, self.subs) if not h.helicsInputIsUpdated(sub)]
        if missing:
            raise FederateError(f"{self.name}: no start power from {len(missing)} feeder(s), first {missing[0]!r} "
                                "(its group did not publish in initializing mode)")
        return np.array([complex(h.helicsInputGetComplex(sub)) for sub in self.subs])

    def publish(self) -> None:
        import helics as h

        for pub, vb in zip(self.pubs, self.v_next):
            h.helicsPublicationPublishComplex(pub, complex(vb))
        self.v_published = self.v_next

    def receive(self, first: bool = False) -> float:
        """Read every feeder's power (and, Newton, the slopes the feeders sent anew: all at the ``first``
        exchange of a step, later those of feeders whose controls moved); returns the ANL distribution mismatch
        max |ΔS| / 100 MVA (``ds_pu``)."""
        import helics as h

        if self.newton:
            for k, sub in enumerate(self.slope_subs):
                if first or h.helicsInputIsUpdated(sub):
                    self.ds_dv[k] = complex(h.helicsInputGetComplex(sub))
        new = np.array([complex(h.helicsInputGetComplex(sub)) for sub in self.subs])
        mismatch = float(np.max(power_mismatch(new, self.s_mva))) if len(new) else 0.0
        self.s_mva = new
        return mismatch

    def report_progress(self, steps_done: int, iterations: int, dv_pu: float, ds_pu: float) -> None:
        """``<run>/progress.json``: finished steps, and the iterations and mismatches of the step under way (or
        just finished) — the local runner's progress reads it."""
        tmp = self.progress.with_suffix(".tmp")
        tmp.write_text(to_json({"step": steps_done, "steps": len(self.cfg.times_s), "iterations": iterations,
                                "dv_pu": dv_pu, "ds_pu": ds_pu}, indent=None))
        os.replace(tmp, self.progress)

    def end_step(self, step: int, iterations: int, dv_pu: float, ds_pu: float, compute_s: float,
                 exchange_s: float, rss: float) -> None:
        self.rows.flush(step)
        self.steps.add(**_steps_row(self.cfg, step, iterations, dv_pu, ds_pu, compute_s, exchange_s, rss,
                                    self.take_startup()))
        self.steps.flush(step)
        self.report_progress(step + 1, iterations, dv_pu, ds_pu)
        log.info("step %d/%d t=%g s: %d iterations, dV %.3g pu, dS %.3g pu", step + 1, len(self.cfg.times_s),
                 self.cfg.times_s[step], iterations, dv_pu, ds_pu)


class FeederGroupRole(_Startup):
    """A group of feeders, one OpenDSS engine each; sources set from the boundary voltages received."""

    cfg: FeederGroupConfig

    def __init__(self, document: dict):
        cfg = self.cfg = parse_role(CONFIGS, document)
        self.name = document["name"]
        self.model = resolve_feeder(cfg.feeder_model)
        self.clones = [CloneState(f.name, f.bus, f.load_mult) for f in cfg.feeders]
        self.base_mult = [c.load_mult for c in self.clones]
        # a bus's warm-start multiplier: its clones' (before diversity: their mean, the same wherever they run)
        self.bus_mult = {int(b): m for b, m in cfg.bus_mult.items()} or \
            {c.bus: c.load_mult for c in self.clones}
        t0 = time.perf_counter()
        self.shared = cfg.engine_mode == "shared"
        if self.shared:
            engine = SharedEngine(self.model)
            self.engines = {c.name: engine for c in self.clones}
        else:
            self.engines = {c.name: FeederEngine(self.model) for c in self.clones}
        log.info("%s: %d %s feeders on %s engine(s), compiled in %.1f s", self.name, len(self.clones),
                 self.model.name, "one shared" if self.shared else "separate", time.perf_counter() - t0)
        self.buses = sorted({c.bus for c in self.clones})
        self.subs: dict[int, object] = {}
        self.pubs: dict[str, object] = {}
        self.last_s: dict[str, complex] = {}
        self.last_results: dict[str, FeederResult] = {}
        self.ds_pu = math.inf
        out = _out_dir(cfg)
        self.rows = StepWriter(out, "feeders", self.name)
        self.steps = StepWriter(out, "steps", self.name)
        self.nodes = StepWriter(out, "node_voltages", self.name) if cfg.node_voltages else None
        self.newton = cfg.method == "newton"
        self.slope_pubs: dict[str, object] = {}
        self.slope_control: dict[str, object] = {}  # the control state each clone's last slope was taken at
        first = next(iter(self.engines.values())).solver(self.clones[0].name) if self.clones else None
        self.warm = WarmStarts(first) if cfg.warm_start and first is not None else None
        self.solved: set[str] = set()
        self.case_v = {int(b): (float(v[0]), float(v[1])) for b, v in (cfg.case_v or {}).items()}
        self.start_states: dict[int, SolvedState] = {}  # per bus: the model solved at its case voltage (start "solved")
        self.start_s: dict[int, float] = {}  # and how long that solve took
        self.start_draw: dict[int, complex] = {}  # and what it drew (published in initializing mode)
        self.start_solves: tuple[int, float] = (0, math.nan)  # (buses, seconds) of the start solves, for the record
        # resumed (hpcsim.federation.resume): each clone's state out of the last completed step
        self.carried: dict[str, dict] = dict((cfg.resume or {}).get("feeders", {}))
        self.carried_v = {name: st["v_pu"] for name, st in self.carried.items()}
        for name, st in self.carried.items():
            self.last_s[name] = complex(st["p_mw"], st["q_mvar"])
            self.solved.add(name)

    def register(self, pubs: dict, subs: dict) -> None:
        self.subs = {b: subs[voltage_key(b)] for b in self.buses}
        self.pubs = {c.name: pubs[power_key(c.name)] for c in self.clones}
        if self.newton:
            self.slope_pubs = {c.name: pubs[slope_key(c.name)] for c in self.clones}

    def prepare(self) -> None:
        """Start "solved", before the federate connects (so it overlaps the transmission's start-up): solve the
        feeder model once per boundary bus at the bus's case voltage and first load multiplier, from the
        compiled state; :meth:`initialize` publishes the draws. A solved state also starts its clones' first
        solves if their first voltage is near (:data:`START_REUSE_BELOW_DV_PU`; it depends on the bus alone, not
        on the grouping)."""
        if not self.case_v or not self.clones or self.carried:
            return
        t0 = time.perf_counter()
        mult = self.cfg.profile[0]
        warm = self.warm or WarmStarts(next(iter(self.engines.values())).solver(self.clones[0].name))
        draw: dict[int, complex] = {}
        first_clone = {}
        for c in self.clones:
            first_clone.setdefault(c.bus, c.name)
        shown = t0
        for i, b in enumerate(self.buses):
            if time.perf_counter() - shown >= START_LOG_EVERY_S:  # a 70k start runs for half an hour: say so
                shown = time.perf_counter()
                rate = i / (shown - t0)
                log.info("%s: start solves %d/%d buses (%.1f/s, ≈ %.0f s left)", self.name, i, len(self.buses),
                         rate, (len(self.buses) - i) / rate)
            v_pu, angle_deg = self.case_v[b]
            engine = self.engines[first_clone[b]].solver(first_clone[b])
            t1 = time.perf_counter()
            res = warm.solve_from_compiled(engine, CloneState("start", b, self.bus_mult[b] * mult, v_pu, angle_deg))
            self.start_states[b] = engine.state()
            self.start_s[b] = time.perf_counter() - t1  # counted in the solve time of the bus's first clone
            draw[b] = complex(res.p_mw, res.q_mvar)
        self.start_draw = draw
        self.start_solves = (len(self.buses), sum(self.start_s.values()))
        log.info("%s: start solved for %d buses at their case voltages in %.1f s", self.name, len(self.buses),
                 time.perf_counter() - t0)

    def initialize(self) -> None:
        """HELICS initializing mode, before the first power flow: publish each clone's start draw (its bus's,
        :meth:`prepare`) — the transmission's first boundary loads."""
        import helics as h

        if not self.start_draw:
            return
        for c in self.clones:
            h.helicsPublicationPublishComplex(self.pubs[c.name], self.start_draw[c.bus])

    def respond(self, step: int, iteration: int) -> None:
        """Solve every feeder at the boundary voltages received and publish its positive-sequence power (Newton:
        also its slope dS/d|V|, one solve with the controls held, at the first exchange of each step and again
        whenever its regulators or capacitors moved since — the slope of the new control state)."""
        import helics as h

        volts = {}
        for b, sub in self.subs.items():
            mag, ang = complex_to_polar(complex(h.helicsInputGetComplex(sub)))
            volts[b] = (float(mag), float(ang))
        mult = self.cfg.profile[step]
        t = self.cfg.times_s[step]
        changes = []
        want_nodes = self.nodes is not None
        for c, base in zip(self.clones, self.base_mult):
            c.v_pu, c.angle_deg = volts[c.bus]
            c.load_mult = base * mult
            start, warm_s = None, 0.0
            carried = self.carried.pop(c.name, None)
            if carried is not None:  # resumed: the model solved where this clone left off, with its controls
                t0 = time.perf_counter()
                engine = self.engines[c.name].solver(c.name)
                base = (self.warm or WarmStarts(engine)).state_for(engine, carried["v_pu"], carried["angle_deg"],
                                                                   carried["load_mult"])
                start = SolvedState(base.voltages, ControlState(tuple(carried["reg_taps"]),
                                                                tuple(carried["cap_states"])))
                warm_s = time.perf_counter() - t0
            elif self.warm is not None and c.name not in self.solved:
                # its first solve: from the model solved at its bus's case voltage (start "solved") or at its
                # bus's first voltage received (once per bus and multiplier)
                t0 = time.perf_counter()
                start = self.start_states.get(c.bus)
                if start is None or abs(c.v_pu - self.case_v[c.bus][0]) >= START_REUSE_BELOW_DV_PU:
                    start = self.warm.state_for(self.engines[c.name].solver(c.name), c.v_pu, c.angle_deg,
                                                self.bus_mult[c.bus] * mult)
                warm_s = time.perf_counter() - t0 + self.start_s.pop(c.bus, 0.0)
                self.solved.add(c.name)
            prev = self.last_results.get(c.name)
            prev_v = prev.v_source_pu if prev is not None else self.carried_v.get(c.name)
            fine = prev_v is not None and abs(c.v_pu - prev_v) < FINE_BELOW_DV_PU
            res = self.engines[c.name].solve(c, node_voltages=want_nodes, start=start,
                                             tolerance=FINE_TOLERANCE if fine else COARSE_TOLERANCE)
            sent = None
            if self.newton:
                res, sent = self._slope(c, res, iteration == 0)
            self.last_results[c.name] = res
            s = complex(res.p_mw, res.q_mvar)
            h.helicsPublicationPublishComplex(self.pubs[c.name], s)
            last = self.last_s.get(c.name)
            changes.append(math.inf if last is None else float(power_mismatch(s, last)))
            self.last_s[c.name] = s
            self.rows.add(time_s=t, iteration=iteration, feeder=c.name, bus=c.bus, model=self.model.name,
                          load_mult=c.load_mult, v_source_pu=res.v_source_pu, angle_deg=res.angle_deg,
                          p_mw=res.p_mw, q_mvar=res.q_mvar, p_total_mw=res.p_total_mw,
                          q_total_mvar=res.q_total_mvar, min_v_pu=res.min_v_pu, mean_v_pu=res.mean_v_pu,
                          max_v_pu=res.max_v_pu, solve_s=res.solve_s + res.slope_s + warm_s,
                          reg_taps=list(res.control.reg_taps),
                          cap_states=list(res.control.cap_states),
                          ds_dv_p_mw_per_pu=math.nan if sent is None else sent.real,
                          ds_dv_q_mvar_per_pu=math.nan if sent is None else sent.imag)
        self.ds_pu = max(changes) if changes else 0.0

    def _slope(self, c: CloneState, res: FeederResult, first: bool) -> tuple[FeederResult, complex | None]:
        """Newton: publish the clone's slope dS/d|V| with its controls held (:meth:`FeederEngine.power_slope`,
        one more solve on the solution just found), at the first exchange of a step and whenever its regulators
        or capacitors moved; otherwise the transmission keeps the slope it has. Returns the result and the slope
        sent (None if none)."""
        import helics as h

        if first or res.control != self.slope_control.get(c.name):
            res = self.engines[c.name].solver(c.name).with_slope(c, res)  # the engine still holds the solution
            self.slope_control[c.name] = res.control
            h.helicsPublicationPublishComplex(self.slope_pubs[c.name], complex(res.ds_dv_mva))
            return res, complex(res.ds_dv_mva)
        return res, None

    def end_step(self, step: int, iterations: int, compute_s: float, exchange_s: float, rss: float) -> None:
        self.rows.flush(step)
        self.steps.add(**_steps_row(self.cfg, step, iterations, math.nan, self.ds_pu, compute_s, exchange_s, rss,
                                    self.take_startup(), self.start_solves))
        self.start_solves = (0, math.nan)
        self.steps.flush(step)
        if self.nodes is not None:
            t = self.cfg.times_s[step]
            for name, res in self.last_results.items():
                names = self.engines[name].node_names()
                self.nodes.extend({"time_s": [t] * len(names), "feeder": [name] * len(names), "node": names,
                                   "v_pu": res.node_v_pu.astype(np.float32).tolist()})
            self.nodes.flush(step)
