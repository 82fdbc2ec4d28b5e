"""What a run folder says about itself: case, planned time steps, load profile, status.

Works on complete runs, runs killed mid-way (no ``summary.json``) and runs from SLURM jobs (same layout).
Sources, first found wins: ``summary.json`` (written by the local runner, also on failure), ``run.json`` and
``configs/transmission.json`` (written before any federate starts: case, times, tolerance; the load profile and
the clones from the transmission federate's settings) and ``study.toml`` (the copy of the study; only its
``[transmission] case`` is read, because relative paths in it point next to the original file, not into the run
folder).
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hpcsim.errors import OutputError

log = logging.getLogger(__name__)

TABLES = ("transmission", "feeders", "steps", "node_voltages")
BAND_PU = (0.95, 1.05)  # ANSI C84.1 range A: the default band for counting nodes outside it


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


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Metadata of a run folder; raises :class:`OutputError` when it holds no outputs at all."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: no such run folder")
    if not output_files(run_dir, "transmission") and not output_files(run_dir, "feeders"):
        raise OutputError(f"{run_dir}: no co-simulation outputs (expected "
                          f"{run_dir / 'outputs'}/transmission|feeders/federate=*/part-*.parquet)")
    summary = _read_json(run_dir / "summary.json")
    desc = _read_json(run_dir / "run.json")
    doc = _read_json(run_dir / "configs" / "transmission.json")
    config = doc.get("hpcsim", doc)
    case = summary.get("case") or desc.get("case") or config.get("case") or _study_case(run_dir / "study.toml")
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
    )


def case_loads(case: str | None) -> dict[int, tuple[float, float, float]]:
    """Bus -> (PD MW, QD Mvar, published VM pu) of the original transmission case; empty (with a warning) if it
    cannot be read."""
    if not case:
        log.warning("the run folder does not name its transmission case; case load columns will be null")
        return {}
    from hpcsim.cases import read_matpower  # noqa: PLC0415
    from hpcsim.errors import CaseError  # noqa: PLC0415

    try:
        c = read_matpower(case)
        return {int(b): (float(p), float(q), float(vm))
                for b, p, q, vm in zip(c.bus_ids, c.pd_mw, c.qd_mvar, c.bus[:, 7])}
    except CaseError as exc:
        log.warning("case load columns will be null: %s", exc)
        return {}
