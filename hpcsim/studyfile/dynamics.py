"""The ``[dynamics]`` section of a study file: a dynamic T&D frequency study (ANDES TDS + OpenDSS feeders + AGC).

With a ``[dynamics]`` section the study runs the dynamic federation (:mod:`hpcsim.dynamics`); its feeders are
given per transmission bus here::

    [dynamics]
    stop_s = 60.0
    feeders = { 4 = "ieee34", 9 = "ieee8500" }   # bus -> feeder (name or .dss path)
    ders_per_feeder = 10                          # 0: no DERs (the tutorial case)
    ...

Every key is declared once below (unit, default, help; docs/study-keys.md lists them); times must be multiples
of the control interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from hpcsim.errors import StudyError
from hpcsim.studyfile.keys import Context, feeder_value, key, values

SECTION = "dynamics"
DEFAULT_SPAN = (0.1, 1.0)
FEEDERS_EXAMPLE = 'feeders = { 4 = "ieee34" }'
dyn = partial(key, SECTION)


def _feeders(table: dict[str, Any], ctx: Context) -> tuple[tuple[int, str], ...]:
    if not table:
        raise StudyError(f"{ctx.where}: [dynamics] feeders names no feeder, e.g. {FEEDERS_EXAMPLE}")
    out = []
    for bus, name in table.items():
        try:
            bus_id = int(bus)
        except ValueError:
            raise StudyError(f"{ctx.where}: [dynamics] feeders key {bus!r} is not a bus number") from None
        if not isinstance(name, str):
            raise StudyError(f"{ctx.where}: [dynamics] feeders.{bus} = {name!r} must be a feeder name or .dss path")
        out.append((bus_id, feeder_value(name, ctx)))
    return tuple(out)


def _der_span(spans: list | dict, ctx: Context) -> tuple[tuple[int | None, float, float], ...]:
    """Per bus (lo, hi); a bare [lo, hi] (bus ``None``) applies to every feeder (expanded by :func:`parse`)."""
    out = []
    for bus, span in (spans.items() if isinstance(spans, dict) else [(None, spans)]):
        if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(x, int | float) for x in span)
                or not 0 <= span[0] < span[1] <= 1 or not (bus is None or str(bus).isdigit())):
            raise StudyError(f"{ctx.where}: [dynamics] der_span {span!r} must be [lo, hi] with 0 <= lo < hi <= 1 "
                             f"(or a table bus -> [lo, hi])")
        out.append((None if bus is None else int(bus), float(span[0]), float(span[1])))
    return tuple(out)


def _der_buses(table: dict[str, Any], ctx: Context) -> tuple[tuple[int, tuple[str, ...]], ...]:
    out = []
    for bus, names in table.items():
        if not str(bus).isdigit() or not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
            raise StudyError(f"{ctx.where}: [dynamics] der_buses.{bus} must be a list of feeder bus names under a "
                             f"transmission bus number, e.g. der_buses = {{ 4 = [\"800\", \"890\"] }}")
        out.append((int(bus), tuple(names)))
    return tuple(out)


def _motor_share(value: float | dict, ctx: Context) -> tuple[tuple[int | None, float], ...]:
    """Per bus (bus, share); a bare number (bus ``None``) applies to every feeder bus (expanded by :func:`parse`)."""
    out = []
    for bus, share in (value.items() if isinstance(value, dict) else [(None, value)]):
        if (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
                or not (bus is None or str(bus).isdigit())):
            raise StudyError(f"{ctx.where}: [dynamics] motor_share {value!r} must be a share in [0, 1] of each "
                             f"feeder bus's load, or a table bus -> share, e.g. motor_share = {{ 9 = 0.5 }}")
        out.append((None if bus is None else int(bus), float(share)))
    return tuple(out)


def _delays(value: list, ctx: Context) -> tuple[float, ...]:
    if not value or not all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in value):
        raise StudyError(f"{ctx.where}: [dynamics] motor_trip_s {value!r} must be a non-empty list of positive "
                         f"seconds, e.g. [3.0, 5.0, 8.0]")
    return tuple(float(x) for x in value)


@dataclass(frozen=True)
class DynamicsSpec:
    """A validated ``[dynamics]`` section (units in the names; defaults are the paper's where it gives them)."""

    feeders: tuple[tuple[int, str], ...] = dyn(
        accepts=(dict,), convert=_feeders, example=FEEDERS_EXAMPLE,
        help="transmission bus -> feeder model (ieee8500, ieee34, ieee13 or a .dss path relative to the study "
             "file); each feeder is a federate of its own, scaled to its bus's load")
    stop_s: float = dyn(60.0, unit="s", help="length of the run; a multiple of control_s")
    tds_step_cycles: int = dyn(2, unit="cycles", help="transmission (ANDES TDS) step in cycles of the case's "
                               "frequency (2: 1/30 s at 60 Hz); control_s must hold whole steps")
    exchange_s: float = dyn(1.0, unit="s", help="T <-> D exchange interval (bus voltages and DER powers down, "
                            "feeder loads up); a multiple of control_s")
    control_s: float = dyn(0.5, unit="s", help="control interval: frequency and ACE to the controllers")
    agc_s: float = dyn(4.0, unit="s", help="AGC cycle: set points back to the units and DERs; a multiple of "
                       "control_s")
    headroom_s: float = dyn(10.0, unit="s", help="VSM + headroom LP in every feeder; a multiple of control_s and "
                            "of exchange_s")
    ders_per_feeder: int = dyn(10, help="DERs (PV) per feeder; 0: none")
    der_kva: float = dyn(900.0, unit="kVA", help="each DER's rating")
    der_kw: float = dyn(500.0, unit="kW", help="each DER's dispatch, 0 < der_kw <= der_kva")
    der_span: tuple[tuple[int, float, float], ...] = dyn(
        (), accepts=(list, dict), convert=_der_span, shown=f"[{DEFAULT_SPAN[0]}, {DEFAULT_SPAN[1]}] on every bus",
        help="where the DERs go: [lo, hi], the fraction of the feeder's three-phase MV buses (sorted by distance "
             "from the source) they are spread over, for every feeder, or a table bus -> [lo, hi]")
    der_buses: tuple[tuple[int, tuple[str, ...]], ...] = dyn(
        (), accepts=(dict,), convert=_der_buses, shown="none (placed by der_span)",
        help="bus -> the feeder bus names of its DERs' interconnection points, one per DER (a name may repeat), "
             "instead of a span")
    balance_gen: str = dyn("5", accepts=(int, str), convert=lambda v, _ctx: str(v),
                           help="PV (static generator) idx whose dispatch is lowered by the DERs' total dispatch")
    pfr_deadband_hz: float = dyn(0.017, unit="Hz", help="deadband of the DERs' primary response (droop)")
    droop_gain_pu: float = dyn(20.0, unit="pu/pu", help="D_dn: DER power per unit frequency deviation (20: 5 % "
                               "droop)")
    agc: bool = dyn(True, help="run the AGC federate (secondary frequency response)")
    agc_kp: float = dyn(0.1, help="AGC proportional gain")
    agc_ki: float = dyn(0.1, unit="1/s", help="AGC integral gain")
    agc_deadband_hz: float = dyn(0.005, unit="Hz", help="AGC frequency deadband")
    agc_limit_mw: float = dyn(100.0, unit="MW", help="AGC integrator limit (conditional integration at ± this)")
    der_agc_share: float = dyn(0.10, help="the DERs' share of the AGC participation, 0-1 (the online units share "
                               "the rest)")
    load_std: float = dyn(0.0, help="standard deviation of the load multiplier, sampled each second for every "
                          "load (0: constant loads)")
    seed: int = dyn(1, help="seed of the MPPT and load-multiplier series")
    mppt_mean_kw: float = dyn(800.0, unit="kW", help="mean of each DER's available (MPPT) power")
    mppt_std_kw: float = dyn(40.0, unit="kW", help="standard deviation of the MPPT series (AR(1), 1-s samples)")
    trip_gen: str = dyn("", help='synchronous machine (GENROU idx) tripped at trip_s; "": none')
    trip_s: float = dyn(5.0, unit="s", help="time of the trip, inside (0, stop_s)")
    v_min_pu: float = dyn(0.95, unit="pu", help="lower end of the feeder voltage band (headroom LP, coordination)")
    v_max_pu: float = dyn(1.05, unit="pu", help="upper end of the feeder voltage band")
    headroom: bool = dyn(True, help="compute the VSM + LP headroom (the DERs' P_VSM limits) every headroom_s")
    vsm_dp_kw: float = dyn(50.0, unit="kW", help="perturbation of each DER for the voltage-sensitivity matrix")
    feeder_head: str = dyn("transmission", help='feeder source voltage: the transmission bus voltage V_T '
                           '("transmission"), or V_T x (the model\'s source pu / V_T at the first exchange) '
                           '("model")')
    coordinate_voltage: bool = dyn(False, help="re-coordinate each feeder's regulators and transformer taps at "
                                   "the first operating point so every node is inside [v_min_pu, v_max_pu] with "
                                   "voltage_margin_pu clearance (hpcsim.coordination); false: the published feeder")
    voltage_margin_pu: float = dyn(0.01, unit="pu", help="the clearance the voltage coordination keeps inside the "
                                   "band")
    source_swing_pu: float = dyn(0.005, unit="pu", help="± excursion of the transmission bus voltage the "
                                 "coordination keeps its clearance over, besides the load series' lightest and "
                                 "heaviest samples (scenario 1 moves buses 4 and 9 by 0.005-0.009 pu)")

    # a fault-induced delayed voltage recovery (FIDVR) event: hpcsim.transmission.fidvr, hpcsim.dynamics.fidvr
    fault_bus: int = dyn(0, help="transmission bus of a three-phase fault (ANDES Fault); 0: no fault. With a "
                         "fault every load is constant power down to load_break_pu and constant current below")
    fault_s: float = dyn(1.1, unit="s", help="time of the fault, inside the run and between two exchanges "
                         "(the feeders must not be solved at the bolted fault)")
    fault_cycles: float = dyn(5.0, unit="cycles", help="the fault is cleared after this many cycles of the "
                              "case's frequency")
    fault_x_pu: float = dyn(1e-4, unit="pu", help="fault reactance on the system base (1e-4: bolted)")
    load_break_pu: float = dyn(0.7, unit="pu", help="with a fault: loads are constant current below this voltage "
                               "(PSS/E's PQBRAK idea; constant power does not solve through a bolted fault)")
    motor_share: tuple[tuple[int, float], ...] = dyn(
        (), accepts=(int, float, dict), convert=_motor_share, shown="0 (no motors)",
        help="share (0-1) of each feeder bus's load P carried by single-phase air-conditioner motors that stall "
             "(WECC motor D), or a table bus -> share for any load bus of the case; needs fault_bus")
    motor_v_stall_pu: float = dyn(0.55, unit="pu", help="motor D: stalls when the voltage stays below this ...")
    motor_t_stall_s: float = dyn(0.032, unit="s", help="... for this long")
    motor_r_stall_pu: float = dyn(0.1, unit="pu", help="stalled motor resistance on the motor's MVA base "
                                  "(P_m / motor_pf)")
    motor_x_stall_pu: float = dyn(0.1, unit="pu", help="stalled motor reactance on the motor's MVA base")
    motor_pf: float = dyn(0.939, help="running motor power factor")
    motor_trip_s: tuple[float, ...] = dyn(
        (3.0, 5.0, 8.0), accepts=(list,), convert=_delays, shown="[3.0, 5.0, 8.0]",
        help="thermal-trip delays after a stall; each bus's motors are split into one equal block per delay")
    motor_restart_share: float = dyn(0.0, help="share (0-1) of the motor blocks that restart after a thermal "
                                     "trip (0: none)")
    motor_v_restart_pu: float = dyn(0.95, unit="pu", help="a restarting block restarts when the voltage stays "
                                    "above this ...")
    motor_t_restart_s: float = dyn(0.3, unit="s", help="... for this long")
    der_ride_through: str = dyn("ride", help='the DERs at low voltage: "ride" (stay on) or "trip" (off for the '
                                'rest of the run once the voltage has stayed below der_trip_v_pu for more than '
                                'der_trip_s; IEEE 1547 Category I-like); applies with fault_bus')
    der_trip_v_pu: float = dyn(0.88, unit="pu", help="DER under-voltage trip threshold")
    der_trip_s: float = dyn(0.16, unit="s", help="DER under-voltage trip delay")

    def motor_share_of(self, bus: int) -> float:
        """The motor share of the load at ``bus`` (0: no motors)."""
        return next((x for b, x in self.motor_share if b == bus), 0.0)

    def clear_s(self, f0_hz: float) -> float:
        """When the fault is cleared: ``fault_s + fault_cycles / f0``."""
        return self.fault_s + self.fault_cycles / f0_hz

    def buses_for(self, bus: int) -> list[str]:
        """The feeder buses the study names for the DERs at transmission bus ``bus`` ([] = placed by span)."""
        return next((list(names) for b, names in self.der_buses if b == bus), [])

    def span_for(self, bus: int) -> tuple[float, float]:
        """The fraction of the feeder's MV buses the DERs at ``bus`` are spread over."""
        return next(((lo, hi) for b, lo, hi in self.der_span if b == bus), DEFAULT_SPAN)

    def tds_step_s(self, f0_hz: float) -> float:
        """The TDS step in seconds: ``tds_step_cycles`` of the case's nominal frequency."""
        return self.tds_step_cycles / f0_hz

    def check_step(self, f0_hz: float, where: str) -> None:
        """control_s must hold a whole number of TDS steps at the case's frequency (known once the case is read)."""
        if not _multiple(self.control_s, self.tds_step_s(f0_hz)):
            raise StudyError(f"{where}: [dynamics] control_s {self.control_s} must be a multiple of the TDS step "
                             f"({self.tds_step_cycles} cycles of {f0_hz:g} Hz)")

    @property
    def ticks(self) -> int:
        """Number of control intervals in the run."""
        return int(round(self.stop_s / self.control_s))

    @property
    def exchanges(self) -> int:
        """Number of T↔D exchanges in the run, the one at t = 0 included."""
        return int(round(self.stop_s / self.exchange_s)) + 1

    def every(self, period_s: float) -> int:
        """A period as a number of control intervals."""
        return int(round(period_s / self.control_s))


def _multiple(value: float, of: float) -> bool:
    k = value / of
    return k >= 1 and math.isclose(k, round(k), abs_tol=1e-9)


def parse(section: dict[str, Any], ctx: Context) -> DynamicsSpec:
    """A validated ``[dynamics]`` table (its keys and types were checked with the whole file)."""
    kw = values(DynamicsSpec, {SECTION: section}, ctx)
    spans = kw.get("der_span", ())
    if spans and spans[0][0] is None:  # one [lo, hi] for every feeder
        kw["der_span"] = tuple((bus, lo, hi) for bus, _ in kw["feeders"] for _, lo, hi in spans)
    shares = kw.get("motor_share", ())
    if shares and shares[0][0] is None:  # one share for every feeder bus
        kw["motor_share"] = tuple((bus, shares[0][1]) for bus, _ in kw["feeders"])
    kw["motor_share"] = tuple((b, x) for b, x in kw.get("motor_share", ()) if x > 0)
    spec = DynamicsSpec(**kw)
    _validate(spec, ctx.where)
    _validate_fidvr(spec, ctx.where)
    return spec


def _validate(s: DynamicsSpec, where: str) -> None:
    def bad(msg: str) -> StudyError:
        return StudyError(f"{where}: [dynamics] {msg}")

    if len({b for b, _ in s.feeders}) != len(s.feeders):
        raise bad("feeders: one feeder per bus")
    if not s.control_s > 0 or not _multiple(s.stop_s, s.control_s):
        raise bad(f"stop_s {s.stop_s} must be a positive multiple of control_s {s.control_s}")
    for name in ("exchange_s", "agc_s", "headroom_s"):
        if not _multiple(getattr(s, name), s.control_s):
            raise bad(f"{name} {getattr(s, name)} must be a multiple of control_s {s.control_s}")
    if not _multiple(s.headroom_s, s.exchange_s):
        raise bad(f"headroom_s {s.headroom_s} must be a multiple of exchange_s {s.exchange_s}")
    if s.ders_per_feeder < 0 or (s.ders_per_feeder and not 0 < s.der_kw <= s.der_kva):
        raise bad(f"DERs: need ders_per_feeder >= 0 and 0 < der_kw ({s.der_kw}) <= der_kva ({s.der_kva})")
    buses = {b for b, _ in s.feeders}
    for bus, names in s.der_buses:
        if bus not in buses:
            raise bad(f"der_buses.{bus}: bus {bus} has no feeder (feeders: {', '.join(map(str, sorted(buses)))})")
        if len(names) != s.ders_per_feeder:
            raise bad(f"der_buses.{bus} names {len(names)} buses for ders_per_feeder = {s.ders_per_feeder}")
        if any(b == bus for b, _, _ in s.der_span):
            raise bad(f"bus {bus} has both der_buses and der_span: give one")
    if not 0 <= s.der_agc_share <= 1:
        raise bad(f"der_agc_share {s.der_agc_share} must be in [0, 1]")
    if min(s.pfr_deadband_hz, s.agc_deadband_hz, s.droop_gain_pu, s.agc_kp, s.agc_ki, s.mppt_std_kw) < 0:
        raise bad("deadbands, gains and mppt_std_kw must be non-negative")
    if not 0 <= s.load_std < 0.5:
        raise bad(f"load_std {s.load_std} must be in [0, 0.5)")
    if not 0 < s.v_min_pu < s.v_max_pu:
        raise bad(f"need 0 < v_min_pu ({s.v_min_pu}) < v_max_pu ({s.v_max_pu})")
    if s.trip_gen and not 0 < s.trip_s < s.stop_s:
        raise bad(f"trip_s {s.trip_s} must be inside the run (0, {s.stop_s})")
    if s.feeder_head not in ("model", "transmission"):
        raise bad(f"feeder_head {s.feeder_head!r} must be 'model' or 'transmission'")
    if not 0 <= s.voltage_margin_pu < (s.v_max_pu - s.v_min_pu) / 2:
        raise bad(f"voltage_margin_pu {s.voltage_margin_pu} must be in [0, (v_max_pu - v_min_pu) / 2)")
    if not 0 <= s.source_swing_pu < 0.1:
        raise bad(f"source_swing_pu {s.source_swing_pu} must be in [0, 0.1)")
    if not s.vsm_dp_kw > 0:
        raise bad(f"vsm_dp_kw {s.vsm_dp_kw} must be positive")


def _validate_fidvr(s: DynamicsSpec, where: str) -> None:
    def bad(msg: str) -> StudyError:
        return StudyError(f"{where}: [dynamics] {msg}")

    if s.fault_bus < 0:
        raise bad(f"fault_bus {s.fault_bus} must be a bus number (0: no fault)")
    if not s.fault_bus:
        if s.motor_share:
            raise bad("motor_share needs a fault: set fault_bus")
        if s.der_ride_through != "ride":
            raise bad(f"der_ride_through = {s.der_ride_through!r} needs a fault: set fault_bus")
    if s.fault_bus and not 0 < s.fault_s < s.stop_s:
        raise bad(f"fault_s {s.fault_s} must be inside the run (0, {s.stop_s})")
    if not 0 < s.fault_cycles < 600:
        raise bad(f"fault_cycles {s.fault_cycles} must be in (0, 600)")
    if not 0 < s.fault_x_pu < 10:
        raise bad(f"fault_x_pu {s.fault_x_pu} must be in (0, 10)")
    if not 0 < s.load_break_pu < 1:
        raise bad(f"load_break_pu {s.load_break_pu} must be in (0, 1)")
    if not 0 < s.motor_v_stall_pu < 1:
        raise bad(f"motor_v_stall_pu {s.motor_v_stall_pu} must be in (0, 1)")
    if not 0 <= s.motor_t_stall_s < 10:
        raise bad(f"motor_t_stall_s {s.motor_t_stall_s} must be in [0, 10)")
    if min(s.motor_r_stall_pu, s.motor_x_stall_pu) < 0 or s.motor_r_stall_pu + s.motor_x_stall_pu <= 0:
        raise bad(f"motor_r_stall_pu and motor_x_stall_pu must be >= 0 and not both 0 "
                  f"(got {s.motor_r_stall_pu}, {s.motor_x_stall_pu})")
    if not 0 < s.motor_pf <= 1:
        raise bad(f"motor_pf {s.motor_pf} must be in (0, 1]")
    if not 0 <= s.motor_restart_share <= 1:
        raise bad(f"motor_restart_share {s.motor_restart_share} must be in [0, 1]")
    if not 0 < s.motor_v_restart_pu < 1.5 or not 0 <= s.motor_t_restart_s < 60:
        raise bad(f"motor_v_restart_pu {s.motor_v_restart_pu} must be in (0, 1.5) and motor_t_restart_s "
                  f"{s.motor_t_restart_s} in [0, 60)")
    if s.der_ride_through not in ("ride", "trip"):
        raise bad(f"der_ride_through {s.der_ride_through!r} must be 'ride' or 'trip'")
    if not 0 < s.der_trip_v_pu < 1.2 or not 0 <= s.der_trip_s < 60:
        raise bad(f"der_trip_v_pu {s.der_trip_v_pu} must be in (0, 1.2) and der_trip_s {s.der_trip_s} in [0, 60)")
