"""Output for terminals and batch logs (:mod:`hpcsim.console`)."""

from __future__ import annotations

import io
import json
import logging
import math
import re

import pytest

from hpcsim.console import (IsoFormatter, Progress, Table, emit_table, is_terminal, plain_table, setup_logging,
                            to_json)

pytestmark = pytest.mark.unit


def test_a_plain_table_aligns_columns_and_never_cuts_a_cell():
    long = "/scratch/" + "x" * 300 + "/run"
    t = Table("title with [markup] in it", ["bus", "path", "P MW"], [["8", long, "35.965"], ["123", "short", "1.0"]],
              note="note [b]kept[/b]", align=["l", "l", "r"])
    lines = plain_table(t)
    assert lines[0] == "title with [markup] in it" and lines[-1] == "note [b]kept[/b]"
    assert lines[1].split() == ["bus", "path", "P", "MW"]
    assert long in lines[2] and lines[2].startswith("8  ") and lines[3].startswith("123")
    assert lines[2].index(long) == lines[3].index("short")  # the path column starts at one place
    assert lines[2].endswith("35.965") and lines[3].endswith("   1.0")  # numbers right-aligned


def test_emit_table_on_a_pipe_is_plain_text():
    buf = io.StringIO()
    assert not is_terminal(buf)
    emit_table(Table("t", ["a", "b"], [["1", "[red]x[/red]"]], align=["l", "l"]), buf)
    assert buf.getvalue() == "t\na  b\n1  [red]x[/red]\n"


def test_key_value_tables_have_no_header_line():
    assert plain_table(Table("Run", ["", ""], [["study", "s"], ["status", "converged"]])) == \
        ["Run", "study   s", "status  converged"]


def test_json_is_strict_and_pretty_with_flat_rows_on_one_line():
    data = {"mismatch": math.inf, "nan": math.nan, "rows": [{"bus": 8, "p_mw": 1.5}], "times_s": [0.0, 3600.0],
            "nested": {"a": {"b": [1, {"c": 2}]}}}
    text = to_json(data)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert parsed["mismatch"] is None and parsed["nan"] is None and parsed["nested"]["a"]["b"][1] == {"c": 2}
    assert '  {"bus": 8, "p_mw": 1.5}' in text and '"times_s": [0.0, 3600.0]' in text
    assert to_json(data, indent=None).count("\n") == 0


def test_log_records_are_iso_8601_lines(capsys):
    setup_logging(logging.INFO)
    logging.getLogger("hpcsim.test").info("wrote %s", "/a/b c")
    err = capsys.readouterr().err
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO hpcsim\.test: wrote /a/b c\n$", err)
    rec = logging.LogRecord("x", logging.INFO, "f", 1, "two\nlines", None, None)
    assert IsoFormatter().format(rec).endswith("INFO x: two\n    lines")


def test_plain_progress_is_a_line_per_change_and_a_heartbeat_not_a_line_per_poll(capsys):
    setup_logging(logging.INFO)
    with Progress("co-simulation", 3, stream=io.StringIO(), every_s=3600, min_s=0) as bar:
        for _ in range(50):
            bar.update(0, "1 it, dV 1e-2")  # the same state polled again and again
        bar.update(0, "2 it, dV 1e-3")
        bar.update(1, "2 it, dV 1e-7")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("hpcsim.progress: co-simulation: " in line for line in lines)
    assert lines[0].endswith("0/3, 1 it, dV 1e-2 (0 s)") and "1/3, 2 it" in lines[2]
    with Progress("fast", 100, stream=io.StringIO(), every_s=3600, min_s=3600) as bar:
        for k in range(101):  # a dynamic run's ticks: far more changes than lines
            bar.update(k, f"t = {k / 2} s")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "0/100" in lines[0] and "100/100" in lines[1]
    with Progress("quiet", 3, show=False) as bar:
        bar.update(1, "x")
    assert capsys.readouterr().err == ""
