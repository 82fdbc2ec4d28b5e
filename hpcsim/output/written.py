"""What a run wrote, recorded by its writers and checked by its readers.

Every part file a federate writes gets a record: one JSON line in ``outputs/_written/<table>/<federate>.jsonl``
with the file name, its row count and SHA-256, appended after the file is in place (so a file exists before its
record; a run killed in between leaves one unrecorded file, reported as such). The folder starts with ``_``, which
pyarrow and dask skip when they read a table folder.

:func:`verify` compares the part files on disk with the records: a file recorded but missing, a checksum or row
count that differs, a file that is not Parquet or lacks its table's columns, and a file nobody recorded are each
a problem. Runs written before the records existed are checked from their Parquet footers alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UNRECORDED = "not recorded by its writer"  # a part file whose writing never finished

RECORDS = "_written"
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def record_path(out_dir: Path, table: str, federate: str) -> Path:
    return Path(out_dir) / RECORDS / table / f"{federate}.jsonl"


def record(out_dir: Path, table: str, federate: str, path: Path, rows: int, sha256: str) -> None:
    """Append the record of one written part file (a single ``write`` of one line, flushed and synced)."""
    target = record_path(out_dir, table, federate)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"file": path.name, "rows": rows, "sha256": sha256}) + "\n"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Verification:
    files: int = 0  # part files found on disk
    problems: list[str] = field(default_factory=list)  # one "<path>: <why>" per damaged, missing or stray file
    rows: dict[str, int] = field(default_factory=dict)  # per table: rows of its readable files (from the footers)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """The problems in one line: how many, and the first."""
        n = len(self.problems)
        return f"{n} output file(s) damaged or missing (of {self.files}): {self.problems[0]}" + (
            f"; and {n - 1} more" if n > 1 else "")


def _records(out_dir: Path, table: str, federate: str) -> dict[str, dict] | None:
    path = record_path(out_dir, table, federate)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    out = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            out[rec["file"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line of a killed writer: its file is then reported as unrecorded
    return out


def _footer_problem(path: Path, columns: list[str]) -> tuple[str | None, int]:
    try:
        meta = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        return f"damaged (not a readable Parquet file: {str(exc).split('.')[0]})", 0
    missing = [c for c in columns if c not in meta.schema_arrow.names]
    if missing:
        return f"damaged (no column {', '.join(missing)})", meta.metadata.num_rows
    return None, meta.metadata.num_rows


def verify(run_dir: Path, tables: dict[str, list[str]]) -> Verification:
    """Check every part file of ``tables`` (table -> columns it must have) under ``<run>/outputs``."""
    run_dir = Path(run_dir)
    out_dir = run_dir / "outputs"
    result = Verification()
    for table, columns in tables.items():
        result.rows.setdefault(table, 0)
        folder = out_dir / table
        feds = {p.name.split("=", 1)[1]: p for p in sorted(folder.glob("federate=*")) if p.is_dir()}
        rec_dir = out_dir / RECORDS / table
        for rec_file in sorted(rec_dir.glob("*.jsonl")) if rec_dir.is_dir() else []:
            feds.setdefault(rec_file.stem, folder / f"federate={rec_file.stem}")
        for federate, fed_dir in feds.items():
            records = _records(out_dir, table, federate)
            on_disk = {p.name: p for p in sorted(fed_dir.glob("part-*.parquet"))}
            result.files += len(on_disk)
            for name, path in on_disk.items():
                problem, rows = _footer_problem(path, columns)
                result.rows[table] = result.rows.get(table, 0) + rows
                if problem is None and records is not None:
                    rec = records.get(name)
                    if rec is None:
                        problem = f"{UNRECORDED} (a run killed while writing it?)"
                    elif rec["rows"] != rows:
                        problem = f"damaged ({rows} rows, {rec['rows']} written)"
                    elif sha256_of(path) != rec["sha256"]:
                        problem = "damaged (checksum differs from the one written)"
                if problem:
                    result.problems.append(f"{path.relative_to(run_dir)}: {problem}")
            for name in sorted(set(records or {}) - set(on_disk)):
                result.problems.append(f"{(fed_dir / name).relative_to(run_dir)}: missing (written by the run, "
                                       "not on disk)")
    return result
