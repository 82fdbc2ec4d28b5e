"""What hpcsim prints, for terminals and for batch logs alike.

Results go to standard output, logs and progress to standard error. When a stream is a terminal, rich draws
tables with boxes, colours log levels and shows a live progress bar. When it is not (a ``slurm-<id>.out``, a
pipe, a file), everything is plain text: no wrapping, no colour codes, no markup interpreted in data, ISO-8601
timestamps, tables as aligned columns, and progress as a line per finished step or iteration at most every
:data:`PROGRESS_EVERY_S` seconds. ``--json`` prints results as JSON on standard output instead (non-finite
numbers become ``null``, so the output is strict JSON that ``jq`` and ``json.loads`` read).

Library code never prints: commands build plain data (a :class:`Table`, a dict) and hand it to
:func:`emit_table`, :func:`emit_line` or :func:`emit_json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

PROGRESS_EVERY_S = 30.0  # plain progress: a heartbeat line this often while nothing changes
PROGRESS_MIN_S = 2.0  # and at most one line this often when things change fast (not the last one)
WIDE = 10_000  # rich's width when it must not wrap (terminal tables are not wrapped by hpcsim either)


def is_terminal(stream: IO | None) -> bool:
    """True when ``stream`` is an interactive terminal (and ``TERM`` is not ``dumb``)."""
    try:
        return bool(stream is not None and stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # closed or unusual streams
        return False


def iso_now() -> str:
    """The local time as ISO 8601 with its UTC offset, to the millisecond."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class IsoFormatter(logging.Formatter):
    """``2026-12-01T15:04:05.123+00:00 INFO hpcsim.federate: message`` — one line per record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802, ARG002
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        # a multi-line message stays one record: continuation lines are indented, never mistaken for new ones
        return super().format(record).replace("\n", "\n    ")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    @property
    def stream(self) -> IO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: IO) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(level: int, stream: IO | None = None, name: str = "") -> None:
    """Log records of ``level`` and above to ``stream`` (default: standard error): rich on a terminal, else
    :class:`IsoFormatter` lines. Used by the CLI and by every federate and job-step process."""
    if is_terminal(stream or sys.stderr):
        from rich.console import Console  # rich only when a terminal shows it
        from rich.highlighter import NullHighlighter
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(file=stream) if stream else Console(stderr=True), show_path=False,
            rich_tracebacks=False, markup=False, log_time_format="%Y-%m-%dT%H:%M:%S",
            highlighter=NullHighlighter())
    else:
        handler = logging.StreamHandler(stream) if stream else _StderrHandler()
        handler.setFormatter(IsoFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if name:
        logging.getLogger(name).setLevel(level)


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class Table:
    """A result table as plain data; ``align`` per column, ``l`` or ``r`` (default: first left, rest right)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    align: list[str] | None = None

    def alignment(self) -> list[str]:
        """Per column: as given; else key-value tables (no header) left, others first left and the rest right."""
        if self.align:
            return self.align
        return ["l"] * len(self.columns) if not any(self.columns) else ["l"] + ["r"] * (len(self.columns) - 1)

    def as_dict(self) -> dict:
        """``{"title", "columns", "rows", "note"}`` — a table in ``--json`` output."""
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note}


def plain_table(table: Table) -> list[str]:
    """A table as aligned text lines: title, header, rows, note (cells never wrapped or cut)."""
    cols = len(table.columns)
    cells = [table.columns] + [[str(c) for c in row] + [""] * (cols - len(row)) for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(cols)]
    align = table.alignment()
    header = bool(any(table.columns))

    def fmt(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip()

    lines = [table.title] if table.title else []
    if header:
        lines.append(fmt(cells[0]))
    lines += [fmt(r) for r in cells[1:]]
    if table.note:
        lines.append(table.note)
    return lines


def emit_table(table: Table, stream: IO | None = None) -> None:
    """Print a table: rich with a box on a terminal, :func:`plain_table` lines otherwise."""
    stream = stream or sys.stdout
    if not is_terminal(stream):
        _write(stream, "\n".join(plain_table(table)) + "\n")
        return
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(file=stream, markup=False, highlight=False, emoji=False, soft_wrap=True)
    key_value = not any(table.columns)
    rich_table = RichTable(title=table.title or None, show_header=not key_value, title_justify="left")
    for col, a in zip(table.columns, table.alignment()):
        rich_table.add_column(col, justify="right" if a == "r" else "left", overflow="fold")
    for row in table.rows:
        rich_table.add_row(*[str(c) for c in row])
    console.print(rich_table, width=max(console.width, _natural_width(table)))
    if table.note:
        _write(stream, table.note + "\n")


def _natural_width(table: Table) -> int:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row)]
    return min(WIDE, sum(widths) + 3 * len(widths) + 4)


def emit_line(text: str = "", stream: IO | None = None) -> None:
    """One line of result text, written as is (no markup, no wrapping)."""
    _write(stream or sys.stdout, text + "\n")


def emit_lines(lines: Iterable[str], stream: IO | None = None) -> None:
    for line in lines:
        emit_line(line, stream)


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return strict(obj.item())
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    return obj


LINE = 160  # a flat object is kept on one line while it fits


def to_json(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`), pretty-printed for people: nested objects indented,
    but a list of numbers or strings on one line, and a flat object (no nested containers) on one line while
    it fits in :data:`LINE` characters — a feeder, a publication, a row stay one line each. ``indent=None``:
    the most compact form (one line)."""
    obj = strict(obj)
    if indent is None:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return _pretty(obj, indent, 0)


def _flat(items: Iterable) -> bool:
    return all(not isinstance(v, (dict, list)) for v in items)


def _pretty(obj: Any, indent: int, level: int) -> str:
    one = lambda o: json.dumps(o, allow_nan=False, separators=(", ", ": "))  # noqa: E731
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        if _flat(obj.values()):
            line = one(obj)
            if len(line) + indent * (level + 1) <= LINE:
                return line
        pad = " " * (indent * (level + 1))
        body = ",\n".join(f"{pad}{json.dumps(str(k))}: {_pretty(v, indent, level + 1)}" for k, v in obj.items())
        return "{\n" + body + "\n" + " " * (indent * level) + "}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        if _flat(obj):
            return one(obj)
        pad = " " * (indent * (level + 1))
        body = ",\n".join(pad + _pretty(v, indent, level + 1) for v in obj)
        return "[\n" + body + "\n" + " " * (indent * level) + "]"
    return json.dumps(obj, allow_nan=False)


def emit_json(obj: Any, stream: IO | None = None) -> None:
    """``--json`` output: strict JSON, pretty-printed, one document on standard output."""
    _write(stream or sys.stdout, to_json(obj) + "\n")


def _write(stream: IO, text: str) -> None:
    stream.write(text)
    stream.flush()


# --- progress -----------------------------------------------------------------------------------------------


class Progress:
    """Progress of a long task on standard error: a rich bar on a terminal; otherwise an ISO-timestamped log
    line whenever ``completed`` or the first word of ``info`` changes (a finished step or iteration) — at most
    one per ``min_s`` unless the task is complete — and a heartbeat every ``every_s`` seconds while nothing
    changes. Disabled entirely when ``show`` is False (``-q``)."""

    def __init__(self, description: str, total: int, show: bool = True, stream: IO | None = None,
                 every_s: float = PROGRESS_EVERY_S, min_s: float = PROGRESS_MIN_S):
        self.description, self.total, self.show = description, total, show
        self.stream = stream or sys.stderr
        self.every_s, self.min_s = every_s, min_s
        self._bar = None
        self._task = None
        self._last: tuple[int, str] | None = None
        self._last_t = 0.0
        self._t0 = time.monotonic()
        self.log = logging.getLogger("hpcsim.progress")

    def __enter__(self) -> Progress:
        if self.show and is_terminal(self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                                     TimeElapsedColumn(), console=Console(file=self.stream, markup=False),
                                     transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, info="starting")
        return self

    def update(self, completed: int, info: str = "") -> None:
        if not self.show:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, info=info)
            return
        now = time.monotonic()
        key = (completed, info.split(" ", 1)[0])
        changed = key != self._last and (self._last is None or now - self._last_t >= self.min_s
                                         or completed >= self.total)
        if changed or now - self._last_t >= self.every_s:
            self._last, self._last_t = key, now
            self.log.info("%s: %d/%d%s (%.0f s)", self.description, completed, self.total,
                          f", {info}" if info else "", now - self._t0)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def format_row(values: Sequence[Any], fmts: Sequence[str]) -> list[str]:
    """Cells of a table row: each value through its format (``""`` keeps ``str``); ``None``/NaN shown as –."""
    out = []
    for v, f in zip(values, fmts):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("–")
        elif isinstance(v, float) and math.isinf(v):
            out.append("∞")
        else:
            out.append(format(v, f) if f else str(v))
    return out
