"""The study file's keys are declared once: the reader, its messages and docs/study-keys.md come from the
declarations; ``[transmission] case`` has one resolution rule for every study kind."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from hpcsim.cases import CASES_DIR, TRANSMISSION_DIR, andes_case
from hpcsim.errors import StudyError
from hpcsim.study import REFERENCE_FILE, Study, key_reference, load_study
from hpcsim.studyfile.dynamics import DynamicsSpec
from hpcsim.studyfile.keys import declared, sections

pytestmark = pytest.mark.unit

BUNDLED = "ieee14/ieee14_full.xlsx"


def _write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_committed_key_reference_is_the_generated_one():
    assert REFERENCE_FILE.read_text() == key_reference(), "regenerate: hpcsim study keys -o docs/study-keys.md"


@pytest.mark.parametrize("cls", [Study, DynamicsSpec])
def test_every_field_is_a_declared_key_with_help_and_a_default_of_its_own_type(cls):
    keys = {d.field: d for d in declared(cls)}
    assert set(keys) == {f.name for f in dataclasses.fields(cls)} - {"source"}
    for d in keys.values():
        assert d.key.help.strip(), d.label
        if d.required or d.key.convert is not None or d.default in (None, ()):
            continue
        assert d.takes(d.default), f"{d.label}: default {d.default!r} is not of its own type"


def test_sections_and_toml_names_come_from_the_declarations():
    known = sections(Study)
    assert list(known) == ["", "transmission", "distribution", "coupling", "time", "diversity", "run", "outputs",
                           "dynamics"]
    assert known["coupling"]["mode"].field == "coupling" and known["time"]["mode"].field == "time_mode"
    assert "feeders" in known["dynamics"] and "tds_step_cycles" in known["dynamics"]


def test_float_keys_take_integers_and_bool_is_not_an_integer(tmp_path):
    s = load_study(_write(tmp_path, '[transmission]\ncase = "ACTIVSg200"\n[coupling]\nmode = "loose"\n'
                                    '[run]\nstall_timeout_s = 5\n'))
    assert s.name == "s" and s.coupling == "loose" and isinstance(s.stall_timeout_s, float) and s.stall_timeout_s == 5
    with pytest.raises(StudyError, match=r"s.toml: \[coupling\] max_iterations = True has the wrong type"):
        load_study(_write(tmp_path, '[transmission]\ncase = "ACTIVSg200"\n[coupling]\nmax_iterations = true\n'))
    with pytest.raises(StudyError, match=r"s.toml: \[dynamics\] stop_s = False has the wrong type"):
        load_study(_write(tmp_path, f'[transmission]\ncase = "{BUNDLED}"\n[dynamics]\nstop_s = false\n'))


def test_unknown_keys_name_the_known_ones(tmp_path):
    with pytest.raises(StudyError, match=r"unknown key \[coupling\] foo; known: mode, method, acceleration, start, "
                                         r"tolerance, max_iterations$"):
        load_study(_write(tmp_path, '[transmission]\ncase = "ACTIVSg200"\n[coupling]\nfoo = 1\n'))


# --- [transmission] case: one rule for every study kind --------------------------------------------------------


def test_a_shipped_name_is_kept(tmp_path):
    assert load_study(_write(tmp_path, '[transmission]\ncase = "ACTIVSg200"\n')).case == "ACTIVSg200"


def test_a_file_is_relative_to_the_study_file_whatever_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "grids").mkdir()
    shutil.copy(TRANSMISSION_DIR / "case_ACTIVSg200.m", tmp_path / "grids" / "mine.m")
    shutil.copy(andes_case(BUNDLED), tmp_path / "grids" / "dyn.xlsx")
    monkeypatch.chdir(CASES_DIR)
    steady = load_study(_write(tmp_path, '[transmission]\ncase = "grids/mine.m"\n'))
    assert steady.case == str((tmp_path / "grids" / "mine.m").resolve())
    dynamic = load_study(_write(tmp_path, '[transmission]\ncase = "grids/dyn.xlsx"\n[dynamics]\n'
                                          'feeders = { 4 = "ieee34" }\n'))
    assert dynamic.case == str((tmp_path / "grids" / "dyn.xlsx").resolve())


def test_else_a_case_bundled_with_andes_is_kept_by_name(tmp_path):
    s = load_study(_write(tmp_path, f'[transmission]\ncase = "{BUNDLED}"\n[dynamics]\nfeeders = {{ 4 = "ieee34" }}\n'))
    assert s.case == BUNDLED and andes_case(BUNDLED).is_file()


@pytest.mark.parametrize("value, message", [
    ("nope.m", r"s.toml: \[transmission\] case file .*nope.m does not exist"),
    ("nope/grid.xlsx", r"s.toml: \[transmission\] case file .*nope/grid.xlsx does not exist"),
    ("ACTIVSg9", r"s.toml: \[transmission\] unknown transmission case 'ACTIVSg9'"),
])
def test_anything_else_is_one_line_naming_the_file_and_value(tmp_path, value, message):
    with pytest.raises(StudyError, match=message) as err:
        load_study(_write(tmp_path, f'[transmission]\ncase = "{value}"\n'))
    assert "\n" not in str(err.value)


def test_a_steady_study_needs_a_matpower_case(tmp_path):
    with pytest.raises(StudyError, match=r"s.toml: \[transmission\] case 'ieee14/ieee14_full.xlsx' is not a "
                                         r"MATPOWER case"):
        load_study(_write(tmp_path, f'[transmission]\ncase = "{BUNDLED}"\n'))


def test_every_shipped_study_loads():
    for path in sorted(CASES_DIR.glob("*.toml")):
        assert load_study(path).name == path.stem
