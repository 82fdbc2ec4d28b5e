"""The command line as a whole: every option and positional argument has help text, output folders and files
are spelled ``-o/--out`` everywhere (the former spellings still accepted), and every command that prints a
result takes ``--json``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from hpcsim.cases import CASES_DIR
from hpcsim.cli import _attach_option_values, build_parser

pytestmark = pytest.mark.unit


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, its parser) for every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from _commands(child, (*prefix, name))


COMMANDS = dict(_commands(build_parser()))


def test_the_tour_of_commands_is_complete():
    assert set(COMMANDS) >= {("run",), ("summarize",), ("plan",), ("aggregate",), ("report",), ("bench",),
                             ("prepare",), ("metadata", "generate"), ("metadata", "check"), ("metadata", "show"),
                             ("jobs", "render"), ("jobs", "submit"), ("jobs", "status")}


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_option_and_positional_has_help(words):
    parser = COMMANDS[words]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.help == argparse.SUPPRESS:  # a former spelling: another visible option has its dest
            assert any(a.dest == action.dest and a.help not in (None, "", argparse.SUPPRESS)
                       for a in parser._actions), f"{' '.join(words)}: hidden {action.option_strings} has no twin"
            continue
        assert action.help and action.help.strip(), f"`hpcsim {' '.join(words)}`: {action.option_strings or action.dest}"


WRITES = {("run",): "--out", ("bench",): "--out", ("jobs", "render"): "--output", ("metadata", "generate"): "--output"}


@pytest.mark.parametrize("words", sorted(WRITES), ids=" ".join)
def test_output_is_o_out_everywhere_and_the_old_spelling_still_works(words):
    parser = COMMANDS[words]
    out = [a for a in parser._actions if a.dest == "out"]
    visible = [a for a in out if a.help != argparse.SUPPRESS]
    assert len(visible) == 1 and visible[0].option_strings == ["-o", "--out"]
    assert WRITES[words] in {s for a in out for s in a.option_strings}


RESULTS = [("run",), ("summarize",), ("plan",), ("aggregate",), ("report",), ("bench",), ("metadata", "generate"),
           ("metadata", "check"), ("metadata", "show"), ("jobs", "render"), ("jobs", "submit"), ("jobs", "status")]


@pytest.mark.parametrize("words", RESULTS, ids=" ".join)
def test_every_command_that_prints_a_result_takes_json(words):
    assert "--json" in {s for a in COMMANDS[words]._actions for s in a.option_strings}


def test_an_option_value_that_is_itself_an_option_is_attached():
    assert _attach_option_values(["jobs", "render", "--sbatch", "--qos=high", "--sbatch=--x", "-o", "d"]) == \
        ["jobs", "render", "--sbatch=--qos=high", "--sbatch=--x", "-o", "d"]


def test_run_options_a_dynamic_study_would_ignore_are_refused_before_anything_starts(tmp_path):
    study = CASES_DIR / "dyn_ieee14_load_variation.toml"
    r = subprocess.run([sys.executable, "-m", "hpcsim", "run", str(study), "--workers", "3", "--coupling", "loose",
                        "-o", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"hpcsim: error: {study}: --coupling, --workers: not for a dynamic study (its [dynamics] section "
                     "sets the exchange schedule, and each feeder is a federate of its own)"]
    assert not (tmp_path / "run").exists()
