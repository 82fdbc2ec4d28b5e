"""The pinned-answer check the integration tests use (tests/pins.py) fails when it should."""

from __future__ import annotations

import math

import pytest

from tests import pins

pytestmark = pytest.mark.unit


@pytest.fixture
def pinfile(tmp_path, monkeypatch):
    monkeypatch.setattr(pins, "PINS", tmp_path / "pins.json")
    monkeypatch.setenv("HPCSIM_UPDATE_GOLDEN", "1")
    pins.check_pinned("study", {"bus 8 p_mw": 35.9305, "bus 8 v_pu": 1.0178, "nadir": math.nan})
    monkeypatch.delenv("HPCSIM_UPDATE_GOLDEN")
    return tmp_path / "pins.json"


@pytest.mark.usefixtures("pinfile")
def test_the_recorded_answer_passes_and_a_move_beyond_1e_9_of_the_value_fails():
    pins.check_pinned("study", {"bus 8 p_mw": 35.9305 * (1 + 5e-9), "bus 8 v_pu": 1.0178, "nadir": math.nan})
    with pytest.raises(AssertionError, match="1 values moved"):
        pins.check_pinned("study", {"bus 8 p_mw": 35.9305 * (1 + 2e-8), "bus 8 v_pu": 1.0178, "nadir": math.nan})
    with pytest.raises(AssertionError, match="moved"):  # NaN only equals NaN
        pins.check_pinned("study", {"bus 8 p_mw": 35.9305, "bus 8 v_pu": 1.0178, "nadir": 59.9})


@pytest.mark.usefixtures("pinfile")
def test_an_unrecorded_study_or_a_changed_set_of_values_fails():
    with pytest.raises(AssertionError, match="no pinned answer for other"):
        pins.check_pinned("other", {"x": 1.0})
    with pytest.raises(AssertionError, match="keys changed"):
        pins.check_pinned("study", {"bus 8 p_mw": 35.9305, "nadir": math.nan})


def test_a_steady_answer_holds_iterations_boundary_and_feeders():
    summary = {"steps": [{"iterations": 4}], "feeders": [{"name": "f1", "p_mw": 1.0, "q_mvar": 0.1, "min_v_pu": 0.95,
                                                          "max_v_pu": 1.05}],
               "boundary": [{"bus": 8, "v_pu": 1.01, "angle_deg": -16.0, "p_mw": 1.0, "q_mvar": 0.1}]}
    answer = pins.steady_answer(summary)
    assert answer["iterations[0]"] == 4 and answer["bus 8 angle_deg"] == -16.0 and answer["f1 max_v_pu"] == 1.05
    assert len(answer) == 1 + 4 + 4
