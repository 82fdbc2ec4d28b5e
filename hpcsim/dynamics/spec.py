"""The ``[dynamics]`` section of a study file: a dynamic T&D frequency study (ANDES TDS + OpenDSS feeders + AGC).

With a ``[dynamics]`` section, ``[transmission] case`` names an ANDES case (a path, or a case bundled with ANDES
such as ``ieee14/ieee14_full.xlsx``) and the feeders are given per transmission bus here::

    [dynamics]
    stop_s = 60.0
    feeders = { 4 = "ieee34", 9 = "ieee8500" }   # bus -> feeder (name or .dss path)
    ders_per_feeder = 10                          # 0: no DERs (the tutorial case)
    ...

Every key, its unit and default is in :data:`FIELDS`; times must be multiples of the control interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hpcsim.errors import StudyError

SCHEMA: dict[str, type | tuple[type, ...]] = {
    "stop_s": (int, float), "tds_step_cycles": int, "exchange_s": (int, float), "control_s": (int, float),
    "agc_s": (int, float), "headroom_s": (int, float), "feeders": dict, "ders_per_feeder": int,
    "der_kva": (int, float), "der_kw": (int, float), "der_span": (list, dict), "der_buses": dict,
    "balance_gen": (int, str),
    "pfr_deadband_hz": (int, float), "droop_gain_pu": (int, float), "agc": bool, "agc_kp": (int, float),
    "agc_ki": (int, float), "agc_deadband_hz": (int, float), "agc_limit_mw": (int, float),
    "der_agc_share": (int, float), "load_std": (int, float), "seed": int, "mppt_mean_kw": (int, float),
    "mppt_std_kw": (int, float), "trip_gen": str, "trip_s": (int, float), "v_min_pu": (int, float),
    "v_max_pu": (int, float), "headroom": bool, "vsm_dp_kw": (int, float), "feeder_head": str,
    "coordinate_voltage": bool, "voltage_margin_pu": (int, float), "source_swing_pu": (int, float),
}


@dataclass(frozen=True)
class DynamicsSpec:
    """A validated ``[dynamics]`` section (units in the names; defaults are the paper's where it gives them)."""

    feeders: tuple[tuple[int, str], ...]  # (transmission bus, feeder name or .dss path)
    stop_s: float = 60.0
    tds_step_cycles: int = 2  # transmission step: two cycles of the case's frequency (1/30 s at 60 Hz)
    exchange_s: float = 1.0  # T <-> D
    control_s: float = 0.5  # frequency and ACE to the controllers
    agc_s: float = 4.0  # AGC set points back
    headroom_s: float = 10.0  # VSM + LP in every feeder
    ders_per_feeder: int = 10
    der_kva: float = 900.0
    der_kw: float = 500.0
    der_span: tuple[tuple[int, float, float], ...] = ()  # (bus, lo, hi): DERs spread over that fraction of the
    # feeder's 3-phase MV buses sorted by distance; buses not listed use DEFAULT_SPAN
    der_buses: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (bus, feeder buses): the DERs' interconnection
    # points given by name (one per DER, a bus may repeat) instead of spread over a span
    balance_gen: str = "5"  # PV (static gen) idx whose dispatch is lowered by the total DER dispatch
    pfr_deadband_hz: float = 0.017
    droop_gain_pu: float = 20.0  # D_dn: pu power per pu frequency (5 % droop)
    agc: bool = True
    agc_kp: float = 0.1
    agc_ki: float = 0.1  # 1/s
    agc_deadband_hz: float = 0.005
    agc_limit_mw: float = 100.0
    der_agc_share: float = 0.10
    load_std: float = 0.0  # load multiplier standard deviation (per second, all loads)
    seed: int = 1
    mppt_mean_kw: float = 800.0
    mppt_std_kw: float = 40.0
    trip_gen: str = ""  # synchronous machine idx tripped at trip_s ("" = none)
    trip_s: float = 5.0
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    headroom: bool = True
    vsm_dp_kw: float = 50.0
    # feeder source voltage: V_T ("transmission"), or V_T × (model's source pu / V_T at the first exchange) ("model")
    feeder_head: str = "transmission"
    # re-coordinate each feeder's regulators and transformer taps at the first operating point so every node is
    # inside [v_min_pu, v_max_pu] with this clearance (hpcsim.coordination); false: the published feeder
    coordinate_voltage: bool = False
    voltage_margin_pu: float = 0.01
    # the coordination keeps that clearance over the run's extremes: the load multiplier series' lightest and
    # heaviest samples, and this excursion (± pu) of the transmission bus voltage (scenario 1 moves buses 4 and 9
    # by 0.005–0.009 pu)
    source_swing_pu: float = 0.005

    def buses_for(self, bus: int) -> list[str]:
        """The feeder buses the study names for the DERs at transmission bus ``bus`` ([] = placed by span)."""
        return next((list(names) for b, names in self.der_buses if b == bus), [])

    def span_for(self, bus: int) -> tuple[float, float]:
        for b, lo, hi in self.der_span:
            if b == bus:
                return lo, hi
        return DEFAULT_SPAN

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


FIELDS = {f.name: f for f in fields(DynamicsSpec)}
DEFAULT_SPAN = (0.1, 1.0)


def _multiple(value: float, of: float) -> bool:
    k = value / of
    return k >= 1 and math.isclose(k, round(k), abs_tol=1e-9)


def parse(section: dict[str, Any], base: Path, where: str) -> DynamicsSpec:
    """Validate a ``[dynamics]`` table (types were checked against :data:`SCHEMA` by the study loader)."""
    raw = dict(section)
    feeders_in = raw.pop("feeders", None)
    if not feeders_in:
        raise StudyError(f"{where}: [dynamics] feeders is required, e.g. feeders = {{ 4 = \"ieee34\" }}")
    feeders = []
    for bus, name in feeders_in.items():
        try:
            bus_id = int(bus)
        except ValueError:
            raise StudyError(f"{where}: [dynamics] feeders key {bus!r} is not a bus number") from None
        if not isinstance(name, str):
            raise StudyError(f"{where}: [dynamics] feeders.{bus} = {name!r} must be a feeder name or .dss path")
        feeders.append((bus_id, str((base / name).resolve()) if name.endswith(".dss") else name))
    if "der_span" in raw:
        spans = raw["der_span"]
        per_bus = spans.items() if isinstance(spans, dict) else [(b, spans) for b, _ in feeders]
        out = []
        for bus, span in per_bus:
            if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(x, (int, float)) for x in span)
                    or not 0 <= span[0] < span[1] <= 1 or not str(bus).isdigit()):
                raise StudyError(f"{where}: [dynamics] der_span {span!r} must be [lo, hi] with 0 <= lo < hi <= 1 "
                                 f"(or a table bus -> [lo, hi])")
            out.append((int(bus), float(span[0]), float(span[1])))
        raw["der_span"] = tuple(out)
    if "der_buses" in raw:
        out_buses = []
        for bus, names in raw["der_buses"].items():
            if (not str(bus).isdigit() or not isinstance(names, list)
                    or not all(isinstance(x, str) and x for x in names)):
                raise StudyError(f"{where}: [dynamics] der_buses.{bus} must be a list of feeder bus names under a "
                                 f"transmission bus number, e.g. der_buses = {{ 4 = [\"800\", \"890\"] }}")
            out_buses.append((int(bus), tuple(names)))
        raw["der_buses"] = tuple(out_buses)
    if "balance_gen" in raw:
        raw["balance_gen"] = str(raw["balance_gen"])
    spec = DynamicsSpec(feeders=tuple(feeders), **{k: (float(v) if isinstance(FIELDS[k].default, float)
                                                        and not isinstance(v, bool) else v)
                                                   for k, v in raw.items()})
    _validate(spec, where)
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
