"""Study files (TOML): the single source of truth of a run, validated and typed; unknown keys are rejected.

Relative paths in a study (boundary map, load profile CSV) are resolved against the study file's folder.
See ``cases/*.toml`` for the shipped studies and README "Study files" for every key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hpcsim.coupling import ACCELERATIONS, METHODS
from hpcsim.dynamics import spec as dynamics_spec
from hpcsim.errors import StudyError

DEFAULT_METHOD = "newton"  # the fastest that passes every check (README "Coupling methods")
# The boundary loads of the first transmission solve: "solved" — what each bus's feeder model draws, solved by
# its feeder group before the first power flow at the bus's case voltage and multiplier (one solve per bus, the
# warm start of its clones); "predicted" — each clone's draw read off the feeder curve
# (hpcsim.distribution.FeederCurve, no solve); "case" — the case's PD/QD shared over the K clones (the ANL
# scheme: the first exchange then corrects a 1.3-1.5 x load difference).
STARTS = ("solved", "predicted", "case")

# IEEE Reliability Test System (1979), Table 4: hourly load in % of the daily peak, winter weekday
# (hours 0-1 ... 23-24). Published data used as a representative daily load shape.
RTS_WINTER_WEEKDAY_PCT = (
    67, 63, 60, 59, 59, 60, 74, 86, 95, 96, 96, 95, 95, 95, 93, 94, 99, 100, 100, 96, 91, 83, 73, 63,
)
# How much load each clone carries. "nominal": the feeder model's own load (the ANL convention; with
# K = ceil(PD / P_feeder) and feeder losses a bus then draws up to ~1.5 x its PD). "bus": every clone of a bus
# is scaled so that the K clones together draw the bus's PD at 1 pu (see hpcsim.federation.layout).
CLONE_LOADS = ("nominal", "bus")
# What each generator holds: "setpoint" the case's VG (as MATPOWER's runpf); "solution" its bus's VM in the case's
# published solution (cases solved with remote regulation carry VG != VM; see hpcsim.transmission)
GEN_VOLTAGES = ("setpoint", "solution")

LOAD_PROFILES: dict[str, tuple[float, ...]] = {
    "rts_winter_weekday": tuple(p / 100.0 for p in RTS_WINTER_WEEKDAY_PCT),
    "flat": (1.0,),
}

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"name": str, "description": str},
    "transmission": {"case": str, "gen_voltage": str},
    "distribution": {"feeder": str, "boundary_map": str, "feeder_mw": (int, float), "max_buses": int,
                     "clone_load": str, "residual_load": bool},
    "coupling": {"mode": str, "method": str, "acceleration": str, "start": str, "tolerance": (int, float),
                 "max_iterations": int},
    "time": {"mode": str, "start_s": (int, float), "stop_s": (int, float), "step_s": (int, float),
             "load_profile": (str, list)},
    "diversity": {"load_mult_std": (int, float), "seed": int},
    "run": {"workers": int, "scale_mode": bool, "sub_brokers": int, "engine_mode": str, "warm_start": bool,
            "stall_timeout_s": (int, float)},
    "outputs": {"node_voltages": bool},
    "dynamics": dynamics_spec.SCHEMA,
}


@dataclass(frozen=True)
class Study:
    """A validated study. ``boundary_map`` is a path or ``None`` (generate from the case on the fly)."""

    name: str
    case: str
    feeder: str = "ieee8500"
    boundary_map: Path | None = None
    feeder_mw: float | None = None
    max_buses: int | None = None
    clone_load: str = "nominal"  # see CLONE_LOADS
    # keep (case load − feeders' draw at the case voltage) at each boundary bus as a constant-power load, so the
    # bus's total load at the case voltage is the case's PD + jQD; None: yes for clone_load "bus", no otherwise
    residual_load: bool | None = None
    # what generators regulate to: the case's setpoint VG ("setpoint"), or their bus's voltage in the case's
    # published solution ("solution", which reproduces it); None: "solution" with residual_load, else "setpoint"
    gen_voltage: str | None = None
    coupling: str = "iterative"
    method: str = DEFAULT_METHOD  # see hpcsim.coupling.METHODS
    acceleration: str = "none"  # or "anderson" on the boundary voltages (hpcsim.coupling.Anderson)
    start: str = "solved"  # first boundary loads: solved per bus by the feeders, read off the curve, or case PD/QD
    tolerance: float = 1e-6
    max_iterations: int = 30
    time_mode: str = "snapshot"
    start_s: float = 0.0
    stop_s: float = 0.0
    step_s: float = 1.0
    load_profile: tuple[float, ...] = (1.0,)
    load_mult_std: float = 0.0
    seed: int = 1
    workers: int = 0
    scale_mode: bool = False
    sub_brokers: int = 0
    engine_mode: str = "auto"
    warm_start: bool = True  # first solves from a solved state at each bus's case voltage (WarmStarts)
    stall_timeout_s: float = 60.0  # a run with no progress and no federate computing this long ends (exit 3)
    node_voltages: bool = False
    description: str = ""
    dynamics: dynamics_spec.DynamicsSpec | None = None  # a dynamic frequency study (hpcsim.dynamics)
    source: Path | None = field(default=None, compare=False)

    @property
    def times_s(self) -> list[float]:
        """Simulated times of the steps: one for a snapshot, start..stop (inclusive of start) for QSTS."""
        if self.time_mode == "snapshot":
            return [self.start_s]
        return [self.start_s + k * self.step_s for k in range(self.n_steps)]

    @property
    def keeps_residual(self) -> bool:
        """Whether each boundary bus keeps the case's load beyond the feeders' draw (``residual_load``)."""
        return self.clone_load == "bus" if self.residual_load is None else self.residual_load

    @property
    def generator_voltage(self) -> str:
        """``gen_voltage`` with its default resolved."""
        if self.gen_voltage is not None:
            return self.gen_voltage
        return "solution" if self.keeps_residual else "setpoint"

    @property
    def n_steps(self) -> int:
        """How many steps the run has (computed without listing them)."""
        if self.time_mode == "snapshot":
            return 1
        return int(math.floor((self.stop_s - self.start_s) / self.step_s + 1e-9))

    def profile_at(self, time_s: float) -> float:
        """Load multiplier at ``time_s``: the profile is sampled per step (index = step number, wrapping)."""
        if self.time_mode == "snapshot":
            return self.load_profile[0]
        k = int(round((time_s - self.start_s) / self.step_s))
        return self.load_profile[k % len(self.load_profile)]

    def with_overrides(self, **kw: Any) -> Study:
        """A copy with CLI overrides applied (``None`` values ignored), re-validated."""
        kw = {k: v for k, v in kw.items() if v is not None}
        new = replace(self, **kw)
        _validate(new, str(self.source or new.name))
        return new


def _check_types(data: dict, where: str) -> None:
    for section, value in data.items():
        if isinstance(value, dict):
            if section not in _SCHEMA or section == "":
                raise StudyError(f"{where}: unknown section [{section}]; known: {', '.join(s for s in _SCHEMA if s)}")
            allowed = _SCHEMA[section]
            items = value.items()
            prefix = f"[{section}] "
        else:
            allowed = _SCHEMA[""]
            items = [(section, value)]
            prefix = ""
        for key, v in items:
            if key not in allowed:
                raise StudyError(f"{where}: unknown key {prefix}{key}; known: {', '.join(allowed)}")
            want = allowed[key]
            if isinstance(v, bool) and want is not bool and bool not in (want if isinstance(want, tuple) else (want,)):
                raise StudyError(f"{where}: {prefix}{key} = {v!r} has the wrong type")
            if not isinstance(v, want):
                raise StudyError(f"{where}: {prefix}{key} = {v!r} has the wrong type")


def _profile(value: str | list, base: Path, where: str) -> tuple[float, ...]:
    if isinstance(value, list):
        try:
            vals = tuple(float(x) for x in value)
        except (TypeError, ValueError):
            raise StudyError(f"{where}: [time] load_profile list must hold numbers") from None
    elif value in LOAD_PROFILES:
        vals = LOAD_PROFILES[value]
    else:
        path = (base / value) if not Path(value).is_absolute() else Path(value)
        if not path.is_file():
            known = ", ".join(LOAD_PROFILES)
            raise StudyError(f"{where}: [time] load_profile {value!r} is neither a built-in ({known}) nor a file")
        try:
            vals = tuple(float(x) for x in np.loadtxt(path, delimiter=",", ndmin=1))
        except ValueError as exc:
            raise StudyError(f"{where}: load profile {path}: {exc}") from None
    if not vals or any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise StudyError(f"{where}: [time] load_profile must be a non-empty list of positive multipliers")
    return vals


# Steps one run may hold: its progress and output records grow with the step count.
MAX_STEPS = 1_000_000


def _validate(s: Study, where: str) -> None:
    if s.coupling not in ("loose", "iterative"):
        raise StudyError(f"{where}: [coupling] mode {s.coupling!r} must be 'loose' or 'iterative'")
    if s.method not in METHODS:
        raise StudyError(f"{where}: [coupling] method {s.method!r} must be one of {', '.join(METHODS)}")
    if s.acceleration not in ACCELERATIONS:
        raise StudyError(f"{where}: [coupling] acceleration {s.acceleration!r} must be one of "
                         f"{', '.join(ACCELERATIONS)}")
    if s.start not in STARTS:
        raise StudyError(f"{where}: [coupling] start {s.start!r} must be one of {', '.join(STARTS)}")
    if not 0 < s.tolerance < 1:
        raise StudyError(f"{where}: [coupling] tolerance {s.tolerance} must be in (0, 1)")
    if s.max_iterations < 1:
        raise StudyError(f"{where}: [coupling] max_iterations {s.max_iterations} must be at least 1")
    if s.time_mode not in ("snapshot", "qsts"):
        raise StudyError(f"{where}: [time] mode {s.time_mode!r} must be 'snapshot' or 'qsts'")
    for key in ("start_s", "stop_s", "step_s"):
        if not math.isfinite(getattr(s, key)):
            raise StudyError(f"{where}: [time] {key} {getattr(s, key)} must be a finite number of seconds")
    if s.time_mode == "qsts":
        if not s.step_s > 0:
            raise StudyError(f"{where}: [time] step_s {s.step_s} must be positive")
        if not s.stop_s > s.start_s:
            raise StudyError(f"{where}: [time] stop_s {s.stop_s} must be after start_s {s.start_s}")
        if s.n_steps > MAX_STEPS:
            raise StudyError(f"{where}: [time] ({s.stop_s:g} - {s.start_s:g}) s / {s.step_s:g} s = {s.n_steps} "
                             f"steps: more than the {MAX_STEPS} one run holds (a year at 1-minute steps is "
                             f"525600); split the study or take longer steps")
    if s.clone_load not in CLONE_LOADS:
        raise StudyError(f"{where}: [distribution] clone_load {s.clone_load!r} must be 'nominal' or 'bus'")
    if s.keeps_residual and s.start != "solved" and s.dynamics is None:
        why = "" if s.residual_load else " (the default with clone_load = 'bus')"
        raise StudyError(f"{where}: [distribution] residual_load{why} needs [coupling] start = 'solved': the "
                         f"residual is the case's load minus the feeders' draw solved at the case voltage; set "
                         f"residual_load = false to start from {s.start!r}")
    if s.gen_voltage not in (None, *GEN_VOLTAGES):
        raise StudyError(f"{where}: [transmission] gen_voltage {s.gen_voltage!r} must be 'setpoint' or 'solution'")
    if not 0 <= s.seed < 2**63:
        raise StudyError(f"{where}: [diversity] seed {s.seed} must be a whole number from 0 to 2^63 - 1")
    if not 0 <= s.load_mult_std < 0.5:
        raise StudyError(f"{where}: [diversity] load_mult_std {s.load_mult_std} must be in [0, 0.5)")
    if s.workers < 0:
        raise StudyError(f"{where}: [run] workers {s.workers} must be 0 (one per core) or more")
    if s.engine_mode not in ("auto", "separate", "shared"):
        raise StudyError(f"{where}: [run] engine_mode {s.engine_mode!r} must be 'auto', 'separate' or 'shared'")
    if not 1 <= s.stall_timeout_s <= 86400 * 7:
        raise StudyError(f"{where}: [run] stall_timeout_s {s.stall_timeout_s} must be from 1 s to a week")
    if s.sub_brokers < 0:
        raise StudyError(f"{where}: [run] sub_brokers {s.sub_brokers} must be 0 (flat) or more")
    if s.feeder_mw is not None and not s.feeder_mw > 0:
        raise StudyError(f"{where}: [distribution] feeder_mw {s.feeder_mw} must be positive")
    if s.max_buses is not None and s.max_buses < 1:
        raise StudyError(f"{where}: [distribution] max_buses {s.max_buses} must be at least 1")
    if s.boundary_map is not None and not s.boundary_map.is_file():
        raise StudyError(f"{where}: [distribution] boundary_map {s.boundary_map} does not exist")


def load_study(path: str | Path) -> Study:
    """Read and validate a study TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: cannot read: {exc}") from None
    where = str(path)
    _check_types(data, where)
    base = path.resolve().parent
    tr, di, co = data.get("transmission", {}), data.get("distribution", {}), data.get("coupling", {})
    ti, dv, ru, ou = data.get("time", {}), data.get("diversity", {}), data.get("run", {}), data.get("outputs", {})
    if "case" not in tr:
        raise StudyError(f"{where}: [transmission] case is required")
    bmap = di.get("boundary_map", "generate")
    study = Study(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        case=tr["case"] if not tr["case"].endswith(".m") else str((base / tr["case"]).resolve()),
        feeder=di.get("feeder", "ieee8500") if not str(di.get("feeder", "")).endswith(".dss")
        else str((base / di["feeder"]).resolve()),
        boundary_map=None if bmap == "generate" else (base / bmap).resolve(),
        feeder_mw=float(di["feeder_mw"]) if "feeder_mw" in di else None,
        max_buses=di.get("max_buses"),
        clone_load=di.get("clone_load", "nominal"),
        residual_load=di.get("residual_load"),
        gen_voltage=tr.get("gen_voltage"),
        coupling=co.get("mode", "iterative"),
        method=co.get("method", DEFAULT_METHOD),
        acceleration=co.get("acceleration", "none"),
        start=co.get("start", "solved"),
        tolerance=float(co.get("tolerance", 1e-6)),
        max_iterations=co.get("max_iterations", 30),
        time_mode=ti.get("mode", "snapshot"),
        start_s=float(ti.get("start_s", 0.0)),
        stop_s=float(ti.get("stop_s", 0.0)),
        step_s=float(ti.get("step_s", 1.0)),
        load_profile=_profile(ti.get("load_profile", "flat"), base, where),
        load_mult_std=float(dv.get("load_mult_std", 0.0)),
        seed=dv.get("seed", 1),
        workers=ru.get("workers", 0),
        scale_mode=ru.get("scale_mode", False),
        sub_brokers=ru.get("sub_brokers", 0),
        engine_mode=ru.get("engine_mode", "auto"),
        warm_start=ru.get("warm_start", True),
        stall_timeout_s=float(ru.get("stall_timeout_s", 60.0)),
        node_voltages=ou.get("node_voltages", False),
        dynamics=dynamics_spec.parse(data["dynamics"], base, where) if "dynamics" in data else None,
        source=path.resolve(),
    )
    if not study.name or any(c in study.name for c in "/\\\0"):
        raise StudyError(f"{where}: name {study.name!r} must be non-empty and contain no path separators")
    _validate(study, where)
    return study
