"""The coupling methods on real federations: Gauss–Seidel (the ANL reference) and Newton (boundary loads matched
to the feeders' power and slope) reach the same answer, Newton in no more exchanges, both pass the independent
checks, Newton also from far away (the case's PD as first guess, several buses), in loose QSTS and in scale
mode."""

from __future__ import annotations

import json

import pytest

from hpcsim.cases import resolve_feeder
from hpcsim.distribution import CloneState, FeederEngine
from hpcsim.federation.runner import run_study
from hpcsim.output.parquet import read_table
from hpcsim.study import load_study

from .helpers import BUS8_STUDY, CASES, independent_checks, write_study

pytestmark = pytest.mark.integration


def _iterations(run_dir) -> list[tuple[int, float, float]]:
    t = read_table(run_dir / "outputs", "transmission").to_pandas().drop_duplicates("iteration")
    return [(int(i), float(dv), float(ds)) for i, dv, ds in zip(t["iteration"], t["dv_pu"], t["ds_pu"])]


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("methods")
    study = load_study(BUS8_STUDY).with_overrides(start="predicted")  # the study itself starts as ANL did
    return {m: (tmp / m, run_study(study.with_overrides(method=m), tmp / m, show_progress=False))
            for m in ("gauss-seidel", "newton")}


def test_both_methods_converge_to_the_same_answer_newton_in_no_more_exchanges(methods):
    (_, gs), (newton_dir, nt) = methods["gauss-seidel"], methods["newton"]
    assert gs["converged"] and nt["converged"] and nt["method"] == "newton" and gs["method"] == "gauss-seidel"
    assert nt["steps"][0]["iterations"] <= gs["steps"][0]["iterations"]
    for a, b in zip(gs["boundary"], nt["boundary"]):
        assert b["v_pu"] == pytest.approx(a["v_pu"], abs=1e-6)
        assert b["p_mw"] == pytest.approx(a["p_mw"], abs=1e-3)
    # the Newton exchange: after the first correction the transmission voltage barely moves
    its = _iterations(newton_dir)
    assert its[2][1] < 1e-7, its


@pytest.mark.parametrize("method", ["gauss-seidel", "newton"])
def test_each_answer_passes_the_independent_checks(methods, method):
    independent_checks(methods[method][1])


def test_the_informed_start_begins_close_to_the_answer(methods, tmp_path):
    """The first transmission solve uses the feeders' predicted draw, not the case's PD (23.74 MW at bus 8 for
    ~36 MW of feeders): the first exchange's power correction is ~50 x smaller."""
    informed = _iterations(methods["newton"][0])
    case = run_study(load_study(BUS8_STUDY).with_overrides(method="newton", start="case"), tmp_path / "case",
                     show_progress=False)
    assert case["converged"]
    assert informed[1][2] * 20 < _iterations(tmp_path / "case")[1][2]


def test_the_solved_start_is_the_feeder_model_at_the_case_voltage(methods, tmp_path):
    """Start "solved": before the first power flow each feeder group solves its buses' model once at the case
    voltage and multiplier and sends that draw; the first boundary load is what a fresh engine draws there, and
    the run ends at the same answer as from the curve's prediction."""
    s = run_study(load_study(BUS8_STUDY).with_overrides(method="newton", start="solved"), tmp_path / "solved",
                  show_progress=False)
    assert s["converged"] and s["start"] == "solved"
    role = json.loads((tmp_path / "solved" / "configs" / "feeders_000.json").read_text())["hpcsim"]
    (bus, (vm, va)), = role["case_v"].items()
    alone = FeederEngine(resolve_feeder("ieee8500")).solve(
        CloneState("alone", int(bus), role["bus_mult"][bus], vm, va))
    first = read_table(tmp_path / "solved" / "outputs", "transmission").to_pandas().query("iteration == 0")
    k = int(first["clones"].iloc[0])
    assert float(first["p_mw"].iloc[0]) == pytest.approx(k * alone.p_mw, rel=1e-9)
    assert float(first["q_mvar"].iloc[0]) == pytest.approx(k * alone.q_mvar, rel=1e-9)
    for a, b in zip(methods["newton"][1]["boundary"], s["boundary"]):
        assert b["v_pu"] == pytest.approx(a["v_pu"], abs=1e-6)
    independent_checks(s)


def test_newton_converges_from_far_away_on_many_buses(tmp_path):
    """The case's PD/QD as first guess (1.3-1.5 x off), 6 boundary buses, 23 feeders on one worker."""
    study = load_study(CASES / "activsg200_ieee8500.toml").with_overrides(max_buses=6, method="newton",
                                                                         start="case", workers=1)
    s = run_study(study, tmp_path / "far", show_progress=False)
    assert s["converged"] and s["n_buses"] == 6 and s["steps"][0]["iterations"] <= 6
    independent_checks(s)


def test_newton_in_a_loose_qsts_and_in_scale_mode(tmp_path):
    path = write_study(tmp_path / "qsts.toml", "activsg200_ieee8500_bus8.toml", name="bus8_qsts3",
                       coupling={"mode": "loose", "method": "newton"},
                       time={"mode": "qsts", "start_s": 0, "stop_s": 10800, "step_s": 3600,
                             "load_profile": "rts_winter_weekday"})
    loose = run_study(load_study(path), tmp_path / "qsts", show_progress=False)
    assert loose["converged"] and [s["iterations"] for s in loose["steps"]] == [1, 1, 1]
    scale = run_study(load_study(BUS8_STUDY).with_overrides(method="newton", scale_mode=True), tmp_path / "scale",
                      show_progress=False)
    assert scale["converged"] and len(scale["feeders"]) == 1
