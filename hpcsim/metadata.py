"""Boundary maps in the ANL text ("metadata") format: read, validate, write, generate.

Format::

    <number of boundary buses>,<number of feeders>
    <boundary bus>                          one line per boundary bus
    <boundary bus>,dcase_tbdry_<bus>_feeder_<j>   one line per feeder, j = 1..K

Rule used to generate a map from a case: a bus is a boundary bus if PD > P_feeder, and it is served by
K = ceil(PD / P_feeder) clones of the feeder model.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hpcsim.errors import MetadataError
from hpcsim.interface import clones_needed, is_boundary_bus

# re.ASCII: \d must not match non-ASCII digits such as "٨" or "８", which int() would silently accept.
FEEDER_NAME_RE = re.compile(r"^dcase_tbdry_(\d{1,15})_feeder_(\d{1,15})$", re.ASCII)
_INT_RE = re.compile(r"^[+]?\d+$", re.ASCII)


def feeder_name(bus: int, j: int) -> str:
    """The ANL topic name of clone ``j`` (1-based) at ``bus``."""
    return f"dcase_tbdry_{bus}_feeder_{j}"


@dataclass(frozen=True)
class BoundaryMap:
    """Which cloned feeders hang on which transmission bus, in file order."""

    feeders_by_bus: tuple[tuple[int, tuple[str, ...]], ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, Iterable[str]]) -> BoundaryMap:
        return cls(tuple((int(b), tuple(names)) for b, names in mapping.items()))

    @property
    def buses(self) -> list[int]:
        return [b for b, _ in self.feeders_by_bus]

    @property
    def n_buses(self) -> int:
        return len(self.feeders_by_bus)

    @property
    def n_feeders(self) -> int:
        return sum(len(f) for _, f in self.feeders_by_bus)

    def feeders_at(self, bus: int) -> tuple[str, ...]:
        for b, names in self.feeders_by_bus:
            if b == bus:
                return names
        raise KeyError(bus)

    def clones(self) -> dict[int, int]:
        """Bus -> K."""
        return {b: len(f) for b, f in self.feeders_by_bus}

    def feeder_names(self) -> list[str]:
        return [n for _, names in self.feeders_by_bus for n in names]

    def feeder_bus(self) -> dict[str, int]:
        """Feeder name -> its boundary bus."""
        return {n: b for b, names in self.feeders_by_bus for n in names}

    def first(self, n_buses: int) -> BoundaryMap:
        """The map restricted to its first ``n_buses`` boundary buses (the ANL ``nbdry_selected``)."""
        if n_buses < 1:
            raise MetadataError(f"--max-buses must be at least 1, got {n_buses}")
        return BoundaryMap(self.feeders_by_bus[:n_buses])

    def to_text(self) -> str:
        lines = [f"{self.n_buses},{self.n_feeders}"]
        lines += [str(b) for b in self.buses]
        lines += [f"{b},{n}" for b, names in self.feeders_by_bus for n in names]
        return "\n".join(lines) + "\n"


def generate(
    bus_pd_mw: Mapping[int, float], feeder_p_mw: float, max_buses: int | None = None
) -> BoundaryMap:
    """Boundary map from bus loads: PD > P_feeder makes a boundary bus with K = ceil(PD / P_feeder) clones.

    Buses keep the order of ``bus_pd_mw`` (the case's bus order).
    """
    if not feeder_p_mw > 0:
        raise MetadataError(f"feeder power must be positive, got {feeder_p_mw} MW")
    entries = []
    for bus, pd in bus_pd_mw.items():
        if is_boundary_bus(pd, feeder_p_mw):
            k = clones_needed(pd, feeder_p_mw)
            entries.append((int(bus), tuple(feeder_name(int(bus), j) for j in range(1, k + 1))))
    if not entries:
        raise MetadataError(f"no bus has a load above one feeder's {feeder_p_mw:g} MW: no boundary buses")
    bmap = BoundaryMap(tuple(entries))
    return bmap.first(max_buses) if max_buses is not None else bmap


def write(bmap: BoundaryMap, path: str | Path) -> Path:
    """Write atomically: the file is either complete or absent (never half-written)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise MetadataError(f"cannot write {path}: {exc.strerror}") from None
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", newline="\n") as fh:
            fh.write(bmap.to_text())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MetadataError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


MAX_DIGITS = 15  # bus numbers and counts: far beyond any real case, and int() of a huge digit string is refused


def _shown(text: str, limit: int = 40) -> str:
    """``text`` as quoted in a one-line message: cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def _int_field(text: str, where: str, what: str) -> int:
    if not _INT_RE.match(text):
        raise MetadataError(f"{where}: {what} {_shown(text)} is not a whole number")
    if len(text.lstrip("+")) > MAX_DIGITS:
        raise MetadataError(f"{where}: {what} {_shown(text)} has more than {MAX_DIGITS} digits")
    return int(text)


def parse(text: str, source: str = "<text>") -> BoundaryMap:
    """Parse and validate the ANL format. Errors name ``source`` and the line: ``file:line: why``."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [ln.rstrip() for ln in raw]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise MetadataError(f"{source}: empty boundary-map file")
    header = lines[0].strip()
    parts = [p.strip() for p in header.split(",")]
    if len(parts) != 2:
        raise MetadataError(f"{source}:1: header {_shown(header)} must be '<buses>,<feeders>'")
    n_bus = _int_field(parts[0], f"{source}:1", "bus count")
    n_fdr = _int_field(parts[1], f"{source}:1", "feeder count")
    if n_bus < 1 or n_fdr < 1:
        raise MetadataError(f"{source}:1: header {_shown(header)} declares no buses or no feeders")

    buses: list[int] = []
    bus_line: dict[int, int] = {}
    feeders: dict[int, list[str]] = {}
    seen_names: dict[str, int] = {}
    in_feeders = False
    for lineno, line in enumerate(lines[1:], start=2):
        where = f"{source}:{lineno}"
        s = line.strip()
        if not s:
            raise MetadataError(f"{where}: blank line inside the boundary map")
        if "," not in s:
            if in_feeders:
                raise MetadataError(f"{where}: bus line {_shown(s)} after the feeder lines began")
            bus = _int_field(s, where, "bus")
            if bus < 1:
                raise MetadataError(f"{where}: bus number {bus} must be positive")
            if bus in feeders:
                raise MetadataError(f"{where}: bus {bus} is listed twice")
            buses.append(bus)
            bus_line[bus] = lineno
            feeders[bus] = []
            continue
        in_feeders = True
        fields = [f.strip() for f in s.split(",")]
        if len(fields) != 2:
            raise MetadataError(f"{where}: feeder line {_shown(s)} must be '<bus>,<feeder name>'")
        bus = _int_field(fields[0], where, "bus")
        name = fields[1]
        m = FEEDER_NAME_RE.match(name)
        if m is None:
            raise MetadataError(f"{where}: feeder name {_shown(name)} is not of the form dcase_tbdry_<bus>_feeder_<j>")
        if int(m.group(1)) != bus:
            raise MetadataError(f"{where}: feeder {name} names bus {m.group(1)} but the line gives bus {bus}")
        if int(m.group(2)) < 1:
            raise MetadataError(f"{where}: feeder {name}: clone number must start at 1")
        if name != feeder_name(bus, int(m.group(2))):
            raise MetadataError(
                f"{where}: feeder name {name!r} is not canonical (expected {feeder_name(bus, int(m.group(2)))})"
            )
        if name in seen_names:
            raise MetadataError(f"{where}: feeder {name} is listed twice (first on line {seen_names[name]})")
        if bus not in feeders:
            raise MetadataError(f"{where}: feeder {name} hangs on bus {bus}, which is not a listed boundary bus")
        seen_names[name] = lineno
        feeders[bus].append(name)

    n_fdr_lines = len(seen_names)
    if len(buses) != n_bus or n_fdr_lines != n_fdr:
        raise MetadataError(
            f"{source}: header says {n_bus} buses and {n_fdr} feeders but the file has "
            f"{len(buses)} bus lines and {n_fdr_lines} feeder lines"
        )
    empty = [b for b in buses if not feeders[b]]
    if empty:
        raise MetadataError(f"{source}:{bus_line[empty[0]]}: boundary bus {empty[0]} has no feeder lines")
    return BoundaryMap(tuple((b, tuple(feeders[b])) for b in buses))


def read(path: str | Path) -> BoundaryMap:
    """Read and validate a boundary-map file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such boundary-map file") from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MetadataError(
            f"{path}:{line}: not a text file (byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8)"
        ) from None
    return parse(text, str(path))


def check_against_case(bmap: BoundaryMap, bus_pd_mw: Mapping[int, float], case: str, source: str) -> None:
    """Every boundary bus must exist in the case and carry load."""
    for bus in bmap.buses:
        if bus not in bus_pd_mw:
            raise MetadataError(f"{source}: boundary bus {bus} is not a bus of case {case}")
        if not bus_pd_mw[bus] > 0:
            raise MetadataError(f"{source}: boundary bus {bus} has no load in case {case} (PD = {bus_pd_mw[bus]:g} MW)")
