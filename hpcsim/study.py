"""Study files (TOML): the single source of truth of a run, validated and typed; unknown keys are rejected.

Every key is a field of :class:`Study` (or of :class:`hpcsim.studyfile.dynamics.DynamicsSpec`), declared once
with its section, type, default, unit and help; the reader, the type checks and docs/study-keys.md
(``hpcsim study keys``) come from the declarations. Relative paths in a study (case, boundary map, feeders,
load profile CSV) are resolved against the study file's folder. See ``cases/*.toml`` for the shipped studies.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hpcsim.cases import SHIPPED_CASES, find_case, is_matpower
from hpcsim.coupling import ACCELERATIONS, METHODS
from hpcsim.errors import CaseError, StudyError
from hpcsim.studyfile.dynamics import DynamicsSpec
from hpcsim.studyfile.dynamics import parse as parse_dynamics
from hpcsim.studyfile.keys import (
    TOP,
    Context,
    by_section,
    check_document,
    feeder_value,
    key,
    key_rows,
    reference,
    study_path,
    values,
)

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


def _name(value: str, ctx: Context) -> str:
    if not value or any(c in value for c in "/\\\0"):
        raise StudyError(f"{ctx.where}: name {value!r} must be non-empty and contain no path separators")
    return value


def _case(value: str, ctx: Context) -> str:
    try:
        return find_case(value, ctx.base)
    except CaseError as exc:
        raise StudyError(f"{ctx.where}: [transmission] {exc}") from None


def _boundary_map(value: str, ctx: Context) -> Path | None:
    return None if value == "generate" else study_path(value, ctx)


def _profile(value: str | list, ctx: Context) -> tuple[float, ...]:
    where = ctx.where
    if isinstance(value, list):
        try:
            vals = tuple(float(x) for x in value)
        except (TypeError, ValueError):
            raise StudyError(f"{where}: [time] load_profile list must hold numbers") from None
    elif value in LOAD_PROFILES:
        vals = LOAD_PROFILES[value]
    else:
        path = study_path(value, ctx)
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


@dataclass(frozen=True)
class Study:
    """A validated study; each field is a study-file key declared once (:func:`hpcsim.studyfile.keys.key`),
    ``source`` excepted. ``boundary_map`` is a path or ``None`` (generate from the case on the fly)."""

    name: str = key("", convert=_name, shown="the file's name without .toml",
                    help="the study's name: run folders and job names; no path separators")
    case: str = key("transmission", convert=_case, example='case = "ACTIVSg200"',
                    help=f"the transmission case, one rule for every study kind: a shipped name "
                         f"({', '.join(SHIPPED_CASES)}); else a file (any suffix) relative to the study file's "
                         "folder; else a case bundled with ANDES (ieee14/ieee14_full.xlsx). A study without "
                         "[dynamics] needs a MATPOWER case (a shipped name or a .m file)")
    feeder: str = key("distribution", "ieee8500", convert=feeder_value,
                      help="the feeder model: ieee8500, ieee34, ieee13 or a .dss path relative to the study file")
    boundary_map: Path | None = key("distribution", None, accepts=(str,), convert=_boundary_map, shown='"generate"',
                                    help="the boundary map (ANL format) relative to the study file, or "
                                         '"generate": from the case on the fly (with feeder_mw, max_buses)')
    feeder_mw: float | None = key("distribution", None, unit="MW", shown="the model's Σ load kW",
                                  help="P_feeder of a generated map: K = ceil(PD / P_feeder) clones per bus")
    max_buses: int | None = key("distribution", None, shown="all",
                                help="keep only the first N boundary buses")
    clone_load: str = key("distribution", "nominal",
                          help='how much load each clone carries: "nominal", the feeder model\'s own (the ANL '
                               'convention); "bus", the K clones of a bus together draw its PD at 1 pu '
                               "(hpcsim.federation.layout)")
    residual_load: bool | None = key("distribution", None, shown='true with clone_load = "bus", else false',
                                     help="keep (case load - feeders' draw at the case voltage) at each boundary "
                                          "bus as a constant-power load, so the bus draws the case's PD + jQD at "
                                          'the case voltage; needs start = "solved"')
    gen_voltage: str | None = key("transmission", None, shown='"solution" with residual_load, else "setpoint"',
                                  help='what the generators regulate to: the case\'s setpoint VG ("setpoint", as '
                                       "MATPOWER's runpf) or their bus's VM in the case's published solution "
                                       '("solution", which reproduces it)')
    coupling: str = key("coupling", "iterative", toml="mode",
                        help='"loose": one exchange per step; "iterative": exchange until the mismatch is below '
                             "the tolerance")
    method: str = key("coupling", DEFAULT_METHOD,
                      help=f"iterative coupling method: {' or '.join(METHODS)} (README \"Coupling methods\")")
    acceleration: str = key("coupling", "none",
                            help=f"{' or '.join(ACCELERATIONS)}: Anderson acceleration of the boundary voltages "
                                 "(hpcsim.coupling.Anderson), either method")
    start: str = key("coupling", "solved",
                     help='the first boundary loads: "solved" per bus by its feeder group at the case voltage; '
                          '"predicted" off the feeder curve (no solve); "case": the case\'s PD/QD shared over the '
                          "K clones (the ANL scheme)")
    tolerance: float = key("coupling", 1e-6, unit="pu", help="iterative coupling tolerance, in (0, 1)")
    max_iterations: int = key("coupling", 30, help="iterative coupling: give up (exit 4) after this many "
                              "exchanges in a step")
    time_mode: str = key("time", "snapshot", toml="mode",
                         help='"snapshot": one step at start_s; "qsts": steps start_s, start_s + step_s, ... '
                              "before stop_s")
    start_s: float = key("time", 0.0, unit="s", help="simulated time of the first step")
    stop_s: float = key("time", 0.0, unit="s", help="end of a QSTS run (after start_s)")
    step_s: float = key("time", 1.0, unit="s", help="QSTS step (positive)")
    load_profile: tuple[float, ...] = key("time", LOAD_PROFILES["flat"], accepts=(str, list), convert=_profile,
                                          shown='"flat"',
                                          help=f"the load multiplier per step (wrapping): {', '.join(LOAD_PROFILES)}, "
                                               "a list of multipliers or a CSV file relative to the study file")
    load_mult_std: float = key("diversity", 0.0, help="seeded per-clone load multiplier (1 sigma) so clones "
                               "differ, in [0, 0.5)")
    seed: int = key("diversity", 1, help="seed of the per-clone multipliers, 0 to 2^63 - 1")
    workers: int = key("run", 0, help="feeder-group federates; 0: one per core")
    scale_mode: bool = key("run", False, help="one feeder per bus, its power x K (TDcoSim / ANDES-tutorial style)")
    sub_brokers: int = key("run", 0, help="broker hierarchy: root + S sub-brokers; 0: flat")
    engine_mode: str = key("run", "auto", help='"separate" (one OpenDSS engine per clone), "shared" (one per '
                           'worker) or "auto" (by the cost model)')
    warm_start: bool = key("run", True, help="each clone's first solve from the model solved once for its bus "
                           "(WarmStarts)")
    stall_timeout_s: float = key("run", 60.0, unit="s", help="a run with no progress and no federate computing "
                                 "this long ends (exit 3); 1 s to a week")
    node_voltages: bool = key("outputs", False, help="write the full node voltages per feeder and step")
    description: str = key("", "", help="what the study is, for its readers")
    dynamics: DynamicsSpec | None = key("dynamics", None, table=DynamicsSpec, convert=parse_dynamics,
                                        shown="a steady-state study (snapshot or QSTS)",
                                        help="A dynamic frequency study (hpcsim.dynamics: ANDES TDS, OpenDSS "
                                             "feeders with DERs, AGC)")
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


# Steps one run may hold: its progress and output records grow with the step count.
MAX_STEPS = 1_000_000


def _validate(s: Study, where: str) -> None:
    """The checks across keys and of each key's range (types were checked when the file was read)."""
    if s.dynamics is None and not is_matpower(s.case):
        raise StudyError(f"{where}: [transmission] case {s.case!r} is not a MATPOWER case: a study without "
                         f"[dynamics] needs one of {', '.join(SHIPPED_CASES)} or a .m file")
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
    for name in ("start_s", "stop_s", "step_s"):
        if not math.isfinite(getattr(s, name)):
            raise StudyError(f"{where}: [time] {name} {getattr(s, name)} must be a finite number of seconds")
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
    check_document(Study, data, where)
    tables = by_section(data)
    tables[TOP] = {"name": path.stem, **tables[TOP]}
    study = Study(**values(Study, tables, Context(where, path.resolve().parent)), source=path.resolve())
    _validate(study, where)
    return study


REFERENCE_FILE = Path(__file__).resolve().parent.parent / "docs" / "study-keys.md"
_INTRO = """
Every key of a study file (`cases/*.toml`), generated from the declarations in `hpcsim/study.py` and
`hpcsim/studyfile/dynamics.py` by `hpcsim study keys -o docs/study-keys.md` (a unit test keeps this file equal to
it). Unknown sections and keys are refused; a float key takes an integer too; relative paths are relative to the
study file's folder. Ranges and cross-key rules are checked after reading (one line naming the file, key and
value, exit 2).
"""


def key_reference() -> str:
    """docs/study-keys.md: every study key with its type, default, unit and help."""
    return reference(Study, "Study file keys", _INTRO)


def key_table() -> list[dict[str, str]]:
    """The key reference as rows: section, key, type, default, unit, help."""
    return key_rows(Study)
