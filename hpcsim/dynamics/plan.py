"""From a dynamic study to one JSON config per federate: the plan.

Everything a run needs is computed here, once, from the case and the feeder models — never typed in:

- per feeder: the DER buses (named by the study, or :func:`hpcsim.distribution.der_feeder.place_ders`), its gross load at
  the first exchange's operating point (source voltage as the run will set it, DERs at dispatch, load multiplier
  1), and the scale ``P_bus / P_feeder,gross`` that makes the feeder's load equal the case's load at its bus
  (eq. 4: the feeder's DERs are modelled in ANDES, so the transmission side sees the gross load);
- the AGC frequency bias ``B = -(Σ S_n/R + Σ D_dn S_n) / f0 / 10`` (MW / 0.1 Hz) from the governors and DER droops;
- the seeded series: load multiplier (one per second for every load) and P_mppt (one per second per DER);
- with ``coordinate_voltage``: the transmission federate's start-up previewed (:func:`_transmission_preview`:
  the first operating point and, with a trip, the bus-voltage dip after it), and each feeder's voltage
  coordination for the run's extremes (:mod:`hpcsim.coordination`, cached).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcsim import cache
from hpcsim.cases import case_file, resolve_feeder
from hpcsim.coordination import DEFAULT, CoordinationSettings
from hpcsim.coordination.cachekey import KIND as COORDINATION_CACHE
from hpcsim.coordination.cachekey import feeder_cache_key
from hpcsim.distribution import FeederEngine
from hpcsim.dynamics import agc, der, droop
from hpcsim.dynamics.configs import AgcConfig, DerFeederConfig, FidvrConfig, Governor, MotorBus, TdsConfig, TdsFeeder
from hpcsim.distribution.der_feeder import DerFeeder, base_envelope, place_ders
from hpcsim.transmission.dynamic import DerGroup, DynamicGrid, json_case, read_case
from hpcsim.errors import StudyError
from hpcsim.federation.helics_config import RUN_DIR_FROM_CONFIG
from hpcsim.federation.layout import federate_document
from hpcsim.federation.role_config import to_dict
from hpcsim.study import Study
from hpcsim.studyfile.dynamics import DynamicsSpec

log = logging.getLogger(__name__)

TRANSMISSION, AGC = "transmission", "agc"
TRIP_PREVIEW_S = 10.0  # how long after a trip the plan previews the bus voltages (the dip is over in ~3 s)


def feeder_federate(bus: int) -> str:
    return f"feeder_{bus}"


def der_names(bus: int, n: int) -> list[str]:
    return [f"DER_{bus}_{j + 1:02d}" for j in range(n)]


@dataclass(frozen=True)
class FeederPlan:
    bus: int
    feeder: str
    der_buses: list[str]
    der_names: list[str]
    v_source0_pu: float
    p_gross0_mw: float
    q_gross0_mvar: float
    p_bus_mw: float
    scale: float
    base_v_min_pu: float  # the published feeder (no DERs) at the same source voltage
    base_v_max_pu: float
    settings: tuple[str, ...] = ()  # OpenDSS commands of the voltage coordination (empty: the published feeder)
    coordination: dict | None = None  # Coordination.describe() without the commands


@dataclass(frozen=True)
class Plan:
    study: Study
    spec: DynamicsSpec
    case_path: str
    feeders: tuple[FeederPlan, ...]
    governors: list[dict]
    bias_mw_per_01hz: float
    f0_hz: float
    load_mult: np.ndarray
    mppt_mw: np.ndarray  # (seconds + 1, n_der)
    balance: dict  # the generator lowered by the DER dispatch: gen, p_before_mw, p_after_mw
    fidvr: FidvrConfig | None = None  # the fault, motors and DER ride-through (a study with fault_bus)

    @property
    def federate_names(self) -> list[str]:
        return [TRANSMISSION, *(feeder_federate(f.bus) for f in self.feeders), AGC]

    @property
    def n_der(self) -> int:
        return sum(len(f.der_names) for f in self.feeders)

    def describe(self) -> dict:
        """The plan's computed quantities, for the summary and the docs."""
        return {"case": self.case_path, "bias_mw_per_01hz": self.bias_mw_per_01hz, "f0_hz": self.f0_hz,
                "n_der": self.n_der, "governors": [g["idx"] for g in self.governors], "balance": self.balance,
                "feeders": [{"bus": f.bus, "feeder": f.feeder, "scale": f.scale, "p_bus_mw": f.p_bus_mw,
                             "p_gross0_mw": f.p_gross0_mw, "q_gross0_mvar": f.q_gross0_mvar,
                             "v_source0_pu": f.v_source0_pu, "der_buses": f.der_buses,
                             "base_v_min_pu": f.base_v_min_pu, "base_v_max_pu": f.base_v_max_pu,
                             "coordination": f.coordination, "settings": list(f.settings)}
                            for f in self.feeders]}


def _plan_feeder(spec: DynamicsSpec, bus: int, feeder: str, case: dict, v_bus_pu: float | None = None,
                 load_range: tuple[float, float] = (1.0, 1.0), first: FeederPlan | None = None,
                 envelope: bool = True, v_dip_pu: float | None = None) -> FeederPlan:
    """One feeder at its bus voltage (the case's power flow unless ``v_bus_pu`` is given). ``first``: this
    feeder's plan from the first pass; given, the feeder is coordinated for the load multipliers of
    ``load_range`` (its DER placement and, with ``feeder_head = "model"``, its source voltage are kept).
    ``envelope=False``: no published-feeder envelope (NaN; a first pass that only needs the gross load);
    ``v_dip_pu``: the bus voltage after the study's trip (:func:`_transmission_preview`), an extreme the
    coordination must also hold."""
    if bus not in case["loads"] or case["loads"][bus][0] <= 0:
        raise StudyError(f"feeder bus {bus} has no positive load in the case to scale the feeder to")
    n = spec.ders_per_feeder
    buses = (first.der_buses if first else None) or spec.buses_for(bus) or place_ders(
        FeederEngine(resolve_feeder(feeder)), n, spec.span_for(bus))
    names = der_names(bus, n)
    v_bus = case["v_pu"][bus] if v_bus_pu is None else v_bus_pu
    p_der = np.full(n, spec.der_kw / 1000.0)
    settings: tuple[str, ...] = ()
    coordination = None
    if first is not None:
        # the source voltage a feeder federate will set at its first exchange (DerFeeder.source_pu): the model's
        # own setting (kept from the first pass) or the bus voltage; no compile needed to know it
        v_source = first.v_source0_pu if spec.feeder_head == "model" else v_bus
        extremes = tuple((m, v_source * (1 + sign * spec.source_swing_pu))
                         for m in sorted(set(load_range)) for sign in (-1, 1))
        if v_dip_pu is not None:  # the same substation ratio as at the first exchange
            extremes += tuple((m, v_dip_pu * v_source / v_bus) for m in sorted(set(load_range)))
        settings, coordination, base = _coordinated_settings(
            lambda: DerFeeder(feeder, buses, names, spec.der_kva, spec.der_kw), feeder, buses, spec, v_source,
            p_der, extremes)
        if coordination["margin_pu"] < 0:
            log.warning("bus %d: %s cannot be coordinated inside %.3f–%.3f pu (worst node %.4f pu outside)", bus,
                        feeder, spec.v_min_pu, spec.v_max_pu, -coordination["margin_pu"])
        f = DerFeeder(feeder, buses, names, spec.der_kva, spec.der_kw, settings)  # as the feeder federate will
    else:
        f = DerFeeder(feeder, buses, names, spec.der_kva, spec.der_kw)
        v_source = f.source_pu(v_bus, spec.feeder_head)
        base = base_envelope(feeder, v_source) if envelope else (float("nan"), float("nan"))
    st = f.solve_with_ders(v_source, 0.0, p_der, 1.0)
    p_bus = case["loads"][bus][0]
    gross = st.s_gross_mva
    if gross.real <= 0:
        raise StudyError(f"feeder {feeder} at bus {bus} has no positive gross load ({gross.real:.3f} MW)")
    plan = FeederPlan(bus, feeder, buses, names, v_source, gross.real, gross.imag, p_bus, p_bus / gross.real,
                      base[0], base[1], settings, coordination)
    log.info("bus %d: %s gross %.3f MW -> scale %.3f to %.1f MW; DERs at %s", bus, feeder, gross.real,
             plan.scale, p_bus, ", ".join(buses))
    return plan


READ_COORDINATION_CACHE = True


def _coordinated_settings(make_feeder: Callable[[], DerFeeder], feeder: str, buses: list[str], spec: DynamicsSpec,
                          v_source: float, p_der: np.ndarray, extremes: tuple[tuple[float, float], ...],
                          settings: CoordinationSettings = DEFAULT
                          ) -> tuple[tuple[str, ...], dict, tuple[float, float]]:
    """The voltage coordination of a feeder at its first operating point for the run's ``extremes``, and the
    published feeder's envelope there (no DERs), cached in a folder of its own (``hpcsim.cache``, kind
    ``coordination``) by everything they depend on (:func:`hpcsim.coordination.cachekey.feeder_cache_key`: feeder
    files, engine and solve settings, package versions, the coordination code and the DER feeder's, the settings,
    DERs, source voltage, extremes, limits) — the coordination takes ~20–30 s for the IEEE 8500 and every run of a
    study needs the same one; on a hit no feeder is compiled here."""
    inputs = {"ders": buses, "kw": spec.der_kw, "kva": spec.der_kva, "v_source_pu": round(v_source, 6),
              "limits": [spec.v_min_pu, spec.v_max_pu, spec.voltage_margin_pu],
              "extremes": [[round(m, 6), round(v, 6)] for m, v in extremes]}
    code = [Path(inspect.getfile(c)) for c in DerFeeder.__mro__ if c.__module__.startswith("hpcsim.")]  # its solves
    entry = feeder_cache_key(resolve_feeder(feeder), inputs, settings, code)
    path = cache.cache_dir(COORDINATION_CACHE) / f"{entry}.json"
    # Read since the feeder solve resets its controls (issue #19): before, a hit written by an earlier run gave a
    # first exchange 0.0024 pu beyond its recorded clearance, as the fresh coordination had run on a feeder whose
    # regulators remembered earlier solves; a hit now gives the same run to the bit (checked on load_variation).
    data = (cache.load(COORDINATION_CACHE, entry) if READ_COORDINATION_CACHE else None) or {}
    if "commands" in data and "base_envelope" in data:
        log.info("%s: voltage coordination from %s", feeder, path)
    else:
        c = make_feeder().coordinate(v_source, p_der, v_min_pu=spec.v_min_pu, v_max_pu=spec.v_max_pu,
                                     margin_pu=spec.voltage_margin_pu, extremes=extremes, settings=settings)
        describe = {**{k: v for k, v in c.describe().items() if k not in ("commands", "steps")},
                    "extremes": [list(e) for e in extremes]}
        data = {"commands": c.commands, "describe": describe, "base_envelope": base_envelope(feeder, v_source)}
        cache.store(COORDINATION_CACHE, entry, data)
    return tuple(data["commands"]), data["describe"], tuple(data["base_envelope"])


def _transmission_preview(study: Study, spec: DynamicsSpec, feeders: tuple[FeederPlan, ...], governors: list[dict],
                          mppt0_mw: np.ndarray, f0_hz: float) -> tuple[dict[int, float], dict[int, float]]:
    """The transmission federate's start-up, previewed: (bus voltages of the run's first power flow — DERs,
    redispatch, feeder loads —, the lowest voltage of each feeder bus at the exchanges after the study's trip).

    With a trip, the TDS runs alone — feeders as the plan's constant loads, DER droop on, no AGC — from 0 to
    ``TRIP_PREVIEW_S`` after the trip, and each feeder bus's voltage is read at every exchange instant after it:
    the dip the feeders will see (quasi-static feeders see the bus voltage at the exchanges only), which the voltage
    coordination must ride through. Without a trip the second dict is empty."""
    p_cap = np.full(mppt0_mw.size, spec.der_kva / 1000.0)
    grid = DynamicGrid(
        str(json_case(str(case_file(study.case)))),
        ders=[DerGroup(f.bus, tuple(f.der_names), spec.der_kva, spec.der_kw) for f in feeders],
        bus_loads={f.bus: (f.scale * f.p_gross0_mw, f.scale * f.q_gross0_mvar) for f in feeders},
        droop_gain_pu=spec.droop_gain_pu, deadband_hz=spec.pfr_deadband_hz,
        pmx_mw=der.limit_mw(mppt0_mw, p_cap, p_cap), balance_gen=spec.balance_gen, trip_gen=spec.trip_gen,
        trip_s=spec.trip_s, tds_step_s=spec.tds_step_s(f0_hz), governors=[g["idx"] for g in governors])
    v = dict(zip((int(b) for b in grid.ss.Bus.idx.v), (float(x) for x in grid.ss.Bus.v.v)))
    log.info("first operating point: %s", ", ".join(f"bus {f.bus} {v[f.bus]:.4f} pu" for f in feeders))
    dip: dict[int, float] = {}
    if spec.trip_gen:
        end_s = min(spec.stop_s, spec.trip_s + TRIP_PREVIEW_S)
        for k in range(1, int(end_s / spec.exchange_s + 1e-9) + 1):
            t_s = k * spec.exchange_s
            grid.advance(t_s)
            grid.new_frequency_samples()  # drops the stored steps
            if t_s > spec.trip_s:
                for f in feeders:
                    dip[f.bus] = min(dip.get(f.bus, np.inf), abs(grid.bus_voltage(f.bus)))
        log.info("trip of %s at %g s previewed: %s at the exchanges after it", spec.trip_gen, spec.trip_s,
                 ", ".join(f"bus {b} down to {x:.4f} pu" for b, x in dip.items()))
    return v, dip


def fidvr_config(spec: DynamicsSpec, case: dict, where: str) -> FidvrConfig | None:
    """The fault event of a study with ``fault_bus`` (None without): clearing time from the case's frequency,
    each motor bus's motor load ``share × P_bus`` from the case's power flow."""
    if not spec.fault_bus:
        return None
    if spec.fault_bus not in case["v_pu"]:
        raise StudyError(f"{where}: [dynamics] fault_bus {spec.fault_bus} is not a bus of the case")
    clear_s = spec.clear_s(case["f0_hz"])
    if clear_s >= spec.stop_s:
        raise StudyError(f"{where}: [dynamics] the fault is cleared at {clear_s:g} s, after stop_s {spec.stop_s}")
    k = math.ceil(spec.fault_s / spec.exchange_s - 1e-9)
    if k * spec.exchange_s <= clear_s + 1e-6:  # feeders would solve at the bolted fault's ~0 pu
        raise StudyError(f"{where}: [dynamics] the fault ({spec.fault_s:g}-{clear_s:.4f} s) holds the exchange at "
                         f"{k * spec.exchange_s:g} s; move fault_s between exchanges (every {spec.exchange_s:g} s)")
    motors = []
    for bus, share in spec.motor_share:
        p_bus = case["loads"].get(bus, (0.0, 0.0))[0]
        if p_bus <= 0:
            raise StudyError(f"{where}: [dynamics] motor_share.{bus}: bus {bus} has no load in the case")
        motors.append(MotorBus(bus, share * p_bus))
    return FidvrConfig(
        fault_bus=spec.fault_bus, fault_s=spec.fault_s, clear_s=clear_s, fault_x_pu=spec.fault_x_pu,
        load_break_pu=spec.load_break_pu, motors=tuple(motors), motor_v_stall_pu=spec.motor_v_stall_pu,
        motor_t_stall_s=spec.motor_t_stall_s, motor_r_stall_pu=spec.motor_r_stall_pu,
        motor_x_stall_pu=spec.motor_x_stall_pu, motor_pf=spec.motor_pf, motor_trip_s=spec.motor_trip_s,
        motor_restart_share=spec.motor_restart_share, motor_v_restart_pu=spec.motor_v_restart_pu,
        motor_t_restart_s=spec.motor_t_restart_s, der_ride_through=spec.der_ride_through,
        der_trip_v_pu=spec.der_trip_v_pu, der_trip_s=spec.der_trip_s)


def build_plan(study: Study) -> Plan:
    spec = study.dynamics
    if spec is None:
        raise StudyError(f"study {study.name} has no [dynamics] section")
    case = read_case(study.case)
    spec.check_step(case["f0_hz"], str(study.source or study.name))
    fidvr = fidvr_config(spec, case, str(study.source or study.name))
    machines = set(case["machines"])
    if spec.trip_gen and spec.trip_gen not in machines:
        have = ", ".join(sorted(machines))
        raise StudyError(f"trip_gen {spec.trip_gen!r} is not a machine of the case (have {have})")
    n_der = spec.ders_per_feeder * len(spec.feeders)
    if n_der and spec.balance_gen not in case["static_gen_mw"]:
        raise StudyError(f"balance_gen {spec.balance_gen!r} is not a PV generator of the case "
                            f"(have {', '.join(case['static_gen_mw'])})")
    feeders = tuple(_plan_feeder(spec, bus, name, case, envelope=not spec.coordinate_voltage)
                    for bus, name in spec.feeders)
    seconds = int(np.ceil(spec.stop_s)) + 1
    mppt = der.mppt_series(n_der, seconds, mean_mw=spec.mppt_mean_kw / 1000,
                           std_mw=spec.mppt_std_kw / 1000, p_cap_mw=spec.der_kva / 1000, seed=spec.seed)
    load_mult = der.load_multiplier_series(seconds, std=spec.load_std, seed=spec.seed)
    if spec.coordinate_voltage:  # coordinate at the run's first operating point: DERs on, generator redispatched
        v_run, v_dip = _transmission_preview(study, spec, feeders, case["governors"], mppt[0], case["f0_hz"])
        exchanged = load_mult[:spec.exchanges]
        feeders = tuple(_plan_feeder(spec, f.bus, f.feeder, case, v_run[f.bus],
                                     load_range=(float(exchanged.min()), float(exchanged.max())), first=f,
                                     v_dip_pu=v_dip.get(f.bus))
                        for f in feeders)
    f0 = case["f0_hz"]
    governors = case["governors"]
    slope = droop.governor_slope_mw_per_hz(np.array([g["sn_mva"] for g in governors]),
                                           np.array([g["r_pu"] for g in governors]), f0)
    slope += droop.droop_slope_mw_per_hz(ddn_pu=spec.droop_gain_pu, s_rated_mva=np.full(n_der, spec.der_kva / 1000),
                                         f0_hz=f0)
    balance = {}
    if n_der:
        before = case["static_gen_mw"][spec.balance_gen]
        balance = {"gen": spec.balance_gen, "p_before_mw": before, "p_after_mw": before - n_der * spec.der_kw / 1000}
    return Plan(
        study=study, spec=spec, case_path=str(case_file(study.case)), feeders=feeders, governors=governors,
        bias_mw_per_01hz=agc.bias_mw_per_01hz(slope), f0_hz=f0,
        load_mult=load_mult,
        mppt_mw=mppt,
        balance=balance,
        fidvr=fidvr,
    )


def role_configs(plan: Plan) -> dict[str, dict]:
    """The role settings of every federate (transmission, one per feeder, AGC): the ``hpcsim`` section of its
    config, typed by :mod:`hpcsim.dynamics.configs`. The case is named as the study loader resolved it (a shipped or ANDES name, or an absolute path;
    each federate finds its file with :func:`hpcsim.cases.case_file`); the run folder is relative to the config
    file."""
    s = plan.spec
    every = s.every
    common = {
        "study": plan.study.name, "run_dir": RUN_DIR_FROM_CONFIG, "control_s": s.control_s,
        "ticks": s.ticks, "exchange_s": s.exchange_s, "exchange_ticks": every(s.exchange_s),
        "agc_ticks": every(s.agc_s),
        "headroom_ticks": every(s.headroom_s), "flush_ticks": every(s.headroom_s), "der_kva": s.der_kva,
        "der_kw": s.der_kw, "headroom": s.headroom, "f0_hz": plan.f0_hz,
        "governors": tuple(Governor(**g) for g in plan.governors),
        # the 1-s load series at each exchange (the same samples when exchange_s = 1 s)
        "load_mult": tuple(plan.load_mult[np.minimum((np.arange(s.exchanges) * s.exchange_s + 1e-9).astype(int),
                                                     plan.load_mult.size - 1)].tolist()),
    }
    configs = {TRANSMISSION: TdsConfig(
        **common, role="tds",
        case=plan.study.case, tds_step_s=s.tds_step_s(plan.f0_hz), droop_gain_pu=s.droop_gain_pu,
        pfr_deadband_hz=s.pfr_deadband_hz, balance_gen=s.balance_gen, trip_gen=s.trip_gen,
        trip_s=s.trip_s, bias_mw_per_01hz=plan.bias_mw_per_01hz,
        mppt_mw=tuple(tuple(row) for row in plan.mppt_mw.tolist()),
        feeder_of_bus={str(f.bus): f.feeder for f in plan.feeders},
        feeders=tuple(TdsFeeder(f.bus, tuple(f.der_names), f.scale, f.scale * f.p_gross0_mw, f.scale * f.q_gross0_mvar)
                      for f in plan.feeders),
        fidvr=plan.fidvr,
    )}
    for f in plan.feeders:
        configs[feeder_federate(f.bus)] = DerFeederConfig(
            **common, role="dfeeder", bus=f.bus,
            feeder=f.feeder, der_buses=tuple(f.der_buses), der_names=tuple(f.der_names), scale=f.scale,
            feeder_head=s.feeder_head, v_min_pu=s.v_min_pu, v_max_pu=s.v_max_pu, vsm_dp_kw=s.vsm_dp_kw,
            settings=tuple(f.settings),
        )
    configs[AGC] = AgcConfig(
        **common, role="agc", agc=s.agc, agc_s=s.agc_s,
        agc_kp=s.agc_kp, agc_ki=s.agc_ki, agc_deadband_hz=s.agc_deadband_hz,
        agc_limit_mw=s.agc_limit_mw, der_agc_share=s.der_agc_share, n_der=plan.n_der,
    )
    return {name: to_dict(c) for name, c in configs.items()}


def federate_configs(plan: Plan, broker_of: dict[str, str], network: str = "local") -> dict[str, dict]:
    """Every federate's config file: HELICS federate config (interfaces from :func:`wiring`) + role settings."""
    return {name: federate_document(name, role, broker_of[name], network)
            for name, role in role_configs(plan).items()}
