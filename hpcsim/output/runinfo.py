"""What a run folder says about itself: its kind (steady or dynamic), case, planned time steps or simulated
seconds, load profile, status.

Works on complete runs, runs killed mid-way (no ``summary.json``) and runs from SLURM jobs (same layout).
Sources, first found wins: ``summary.json`` (written by the local runner, also on failure), ``run.json`` and
``configs/transmission.json`` (written before any federate starts: case, times, tolerance; the load profile and
the clones from the transmission federate's settings) and ``study.toml`` (the copy of the study; only its
``[transmission] case`` is read, because relative paths in it point next to the original file, not into the run
folder). A dynamic run (``run.json`` ``"kind": "dynamic"``) also brings its :class:`DynamicInfo`.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hpcsim.errors import CaseError, OutputError

log = logging.getLogger(__name__)

TABLES = ("transmission", "feeders", "steps", "node_voltages")
DYNAMIC_TABLES = ("frequency", "ace", "der", "feeder_voltage", "steps")
INPUTS = {"steady": TABLES, "dynamic": DYNAMIC_TABLES}  # the output tables of each study kind
EVIDENCE = {"steady": ("transmission", "feeders"), "dynamic": ("frequency", "feeder_voltage")}  # any one will do
BAND_PU = (0.95, 1.05)  # ANSI C84.1 range A: the default band for counting nodes outside it


@dataclass(frozen=True)
class DynamicInfo:
    """What a dynamic run's ``run.json`` and ``summary.json`` say (``completed``: ``None`` without a summary)."""

    stop_s: float
    f0_hz: float
    n_der: int
    agc: bool
    n_feeders: int
    trip: str | None = None  # "GENROU_2 at 5 s"
    completed: bool | None = None

    @classmethod
    def from_description(cls, desc: dict, summary: dict) -> DynamicInfo:
        trip = desc.get("trip") or None
        return cls(stop_s=float(desc["stop_s"]), f0_hz=float(desc.get("f0_hz", 60.0)), n_der=int(desc.get("n_der", 0)),
                   agc=bool(desc.get("agc")), n_feeders=len(desc.get("feeders", ())),
                   trip=f"{trip['gen']} at {trip['t_s']:g} s" if trip else None,
                   completed=summary.get("completed") if summary else None)


@dataclass(frozen=True)
class RunInfo:
    """Run metadata needed to aggregate and report; any field may be unknown (``None`` / empty)."""

    run_dir: Path
    study: str
    case: str | None
    coupling: str | None = None
    tolerance: float | None = None
    times_s: tuple[float, ...] = ()
    profile: tuple[float, ...] = ()
    clones: dict[int, int] = field(default_factory=dict)
    converged: bool | None = None
    wall_s: float | None = None
    has_summary: bool = False
    dynamic: DynamicInfo | None = None

    @property
    def kind(self) -> str:
        return "dynamic" if self.dynamic is not None else "steady"

    @property
    def planned_steps(self) -> int | None:
        return len(self.times_s) or None

    def load_mult_of(self) -> dict[float, float]:
        """Time (s) -> load-profile multiplier applied at that step (empty when the config is missing)."""
        return dict(zip(self.times_s, self.profile)) if len(self.profile) == len(self.times_s) else {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}


def _study_case(path: Path) -> str | None:
    try:
        return tomllib.loads(path.read_text()).get("transmission", {}).get("case")
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def output_files(run_dir: Path, table: str) -> list[tuple[str, Path]]:
    """(federate, file) of every complete part file of a table, sorted; ``*.tmp`` leftovers are skipped."""
    folder = run_dir / "outputs" / table
    found = []
    for part in sorted(folder.glob("federate=*/part-*.parquet")):
        found.append((part.parent.name.split("=", 1)[1], part))
    return found


def _kind(run_dir: Path, desc: dict) -> str:
    """``run.json``'s kind; without one, what the outputs show."""
    kind = desc.get("kind") or ("dynamic" if any(output_files(run_dir, t) for t in EVIDENCE["dynamic"]) else "steady")
    if kind not in INPUTS:
        raise OutputError(f"{run_dir / 'run.json'}: unknown run kind {kind!r} (expected steady or dynamic)")
    return kind


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Metadata of a run folder; raises :class:`OutputError` when it holds no outputs at all."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: no such run folder")
    desc = _read_json(run_dir / "run.json")
    kind = _kind(run_dir, desc)
    if not any(output_files(run_dir, t) for t in EVIDENCE[kind]):
        raise OutputError(f"{run_dir}: no co-simulation outputs (expected "
                          f"{run_dir / 'outputs'}/{'|'.join(EVIDENCE[kind])}/federate=*/part-*.parquet)")
    summary = _read_json(run_dir / "summary.json")
    doc = _read_json(run_dir / "configs" / "transmission.json")
    config = doc.get("hpcsim", doc)
    case = summary.get("case") or desc.get("case") or config.get("case") or _study_case(run_dir / "study.toml")
    dynamic = None
    if kind == "dynamic":
        try:
            dynamic = DynamicInfo.from_description(desc, summary)
        except (KeyError, TypeError, ValueError) as exc:
            why = "missing or unreadable" if not desc else f"{type(exc).__name__}: {exc}"
            raise OutputError(f"{run_dir / 'run.json'}: no description of this dynamic run ({why})") from None
    return RunInfo(
        run_dir=run_dir,
        study=summary.get("study") or desc.get("study") or config.get("study") or run_dir.name,
        case=case,
        coupling=summary.get("coupling") or desc.get("coupling") or config.get("coupling"),
        tolerance=desc.get("tolerance", config.get("tolerance")),
        times_s=tuple(float(t) for t in config.get("times_s", ())),
        profile=tuple(float(p) for p in config.get("profile", ())),
        clones={int(b): int(k) for b, k in config.get("clones", {}).items()},
        converged=summary.get("converged") if summary else None,
        wall_s=summary.get("wall_s"),
        has_summary=bool(summary),
        dynamic=dynamic,
    )


def case_loads(case: str | None) -> dict[int, tuple[float, float, float]]:
    """Bus -> (PD MW, QD Mvar, published VM pu) of the original transmission case; empty (with a warning) if it
    cannot be read."""
    if not case:
        log.warning("the run folder does not name its transmission case; case load columns will be null")
        return {}
    from hpcsim.cases import (  # noqa: PLC0415 - numpy only when the case is read (runinfo loads with the CLI)
        read_matpower,
    )
    try:
        c = read_matpower(case)
        return {int(b): (float(p), float(q), float(vm))
                for b, p, q, vm in zip(c.bus_ids, c.pd_mw, c.qd_mvar, c.bus[:, 7])}
    except CaseError as exc:
        log.warning("case load columns will be null: %s", exc)
        return {}
