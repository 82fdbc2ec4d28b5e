"""The case's operating point at the boundary (``[distribution] residual_load``, the default with
``clone_load = "bus"``): each boundary bus keeps, beside its feeders, the difference between the case's load and
the feeders' draw at the case voltage as a static constant-power load. Checked against independent solves: the
feeder model solved alone at the case voltage gives the residual, the transmission alone with the bus's whole
load (feeders + residual) gives the reported voltages, and the coupled answer sits at the case's own power-flow
solution where the feeders alone (their near-unity power factor) move it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from hpcsim.cases import FEEDERS, case_solution, read_matpower, resolve_transmission_case
from hpcsim.distribution import CloneState, FeederEngine
from hpcsim.errors import StudyError
from hpcsim.federation.runner import run_study
from hpcsim.output.aggregate import aggregate_run
from hpcsim.study import load_study
from hpcsim.transmission import TransmissionNetwork

from ..pins import check_pinned, steady_answer
from .helpers import BUS8_STUDY, hpcsim, independent_checks

pytestmark = pytest.mark.integration

BUS = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("residual")
    base = load_study(BUS8_STUDY).with_overrides(clone_load="bus", method="newton", start="solved")
    assert base.keeps_residual  # the default with clone_load = "bus"
    return {"residual": (tmp / "residual", run_study(base, tmp / "residual", show_progress=False)),
            "feeders only": (tmp / "only", run_study(base.with_overrides(residual_load=False, gen_voltage="solution"),
                                                     tmp / "only", show_progress=False))}


def _published_vm(bus: int) -> float:
    case = read_matpower("ACTIVSg200")
    return float(case.bus[list(case.bus_ids).index(bus), 7])


@pytest.mark.parametrize("kind", ["residual", "feeders only"])
def test_the_answers_are_the_pinned_ones(runs, kind):
    check_pinned(f"activsg200_ieee8500_bus8 clone_load=bus {kind}", steady_answer(runs[kind][1]))


def test_the_residual_is_the_case_load_minus_the_feeders_draw_at_the_case_voltage(runs):
    _, s = runs["residual"]
    assert s["converged"]
    (b,) = s["boundary"]
    case = read_matpower("ACTIVSg200")
    pd_mw, qd_mvar = case.load_of()[BUS]
    vm, va = (float(x) for x in case.bus[list(case.bus_ids).index(BUS), 7:9])
    mults = {f["load_mult"] for f in s["feeders"]}
    assert len(mults) == 1  # clone_load = "bus": the bus's clones share one multiplier (no diversity here)
    with FeederEngine(FEEDERS["ieee8500"]) as engine:  # a fresh compile, the feeder alone at the case voltage
        alone = engine.solve(CloneState("alone", BUS, mults.pop(), vm, va))
    k = len(s["feeders"])
    assert b["residual_p_mw"] == pytest.approx(pd_mw - k * alone.p_mw, abs=1e-4)
    assert b["residual_q_mvar"] == pytest.approx(qd_mvar - k * alone.q_mvar, abs=1e-4)
    # the feeders' near-unity power factor: most of the case's Q is the residual's
    assert b["residual_q_mvar"] > 0.5 * qd_mvar
    assert s["residual_q_mvar"] == pytest.approx(b["residual_q_mvar"])


@pytest.mark.parametrize("which", ["residual", "feeders only"])
def test_each_answer_passes_the_independent_checks(runs, which):
    independent_checks(runs[which][1])


def test_the_coupled_answer_stays_at_the_case_operating_point(runs):
    """With the residual the bus draws PD + jQD at the case voltage and the generators hold the published
    voltages (``gen_voltage = "solution"``, the default with the residual), so the coupled voltage is the
    published one up to how far the feeders' draw moves with the voltage; without the residual the bus loses most
    of its Q and its voltage rises."""
    vm = _published_vm(BUS)
    res, only = runs["residual"][1], runs["feeders only"][1]
    assert res["gen_voltage"] == "solution" and only["gen_voltage"] == "solution"
    with_res, without = res["boundary"][0]["v_pu"], only["boundary"][0]["v_pu"]
    assert abs(with_res - vm) < 1e-3, (with_res, vm)
    assert without - vm > 3 * abs(with_res - vm), (without, with_res, vm)


def test_held_generator_voltages_reproduce_the_published_solution():
    """``gen_voltage = "solution"``: ANDES alone on the case as published, every generator held at its bus's
    published VM, gives the published VM everywhere (the setpoints VG alone do not: remote regulation)."""
    for name in ("ACTIVSg200", "ACTIVSg2000"):
        sol = case_solution(name)
        net = TransmissionNetwork(resolve_transmission_case(name), [BUS if name == "ACTIVSg200" else 1001],
                                  hold_voltages=sol)
        net.solve()
        v = dict(zip(net.ss.Bus.idx.v, np.asarray(net.ss.Bus.v.v, dtype=float)))
        assert max(abs(v[b] - vm) for b, (vm, _) in sol.items()) < 1e-4, name


def test_aggregates_report_the_feeders_and_the_residual_apart(runs):
    run_dir, s = runs["residual"]
    folder = aggregate_run(run_dir).folder
    system = pd.read_parquet(folder / "system.parquet")
    boundary = pd.read_parquet(folder / "boundary.parquet")
    assert system["p_residual_mw"].iloc[0] == pytest.approx(s["residual_p_mw"], abs=1e-9)
    assert system["q_residual_mvar"].iloc[0] == pytest.approx(s["residual_q_mvar"], abs=1e-9)
    assert system["p_dist_mw"].iloc[0] == pytest.approx(s["boundary_p_mw"], abs=1e-9)
    assert boundary["residual_q_mvar"].iloc[0] == pytest.approx(s["boundary"][0]["residual_q_mvar"], abs=1e-9)


def test_a_residual_needs_the_solved_start():
    study = load_study(BUS8_STUDY)  # nominal clones, started from the case's PD as ANL did: no residual
    assert not study.keeps_residual
    with pytest.raises(StudyError, match=r"residual_load \(the default with clone_load = 'bus'\) needs "
                                         r"\[coupling\] start = 'solved'"):
        study.with_overrides(clone_load="bus")
    with pytest.raises(StudyError, match=r"residual_load needs \[coupling\] start = 'solved'"):
        study.with_overrides(residual_load=True)
    assert not study.with_overrides(clone_load="bus", residual_load=False).keeps_residual


def test_hpcsim_check_passes_the_answer_and_refuses_a_tampered_one(runs, tmp_path):
    """``hpcsim check RUN``: the same independent checks from the run folder alone; a summary whose reported
    power of one feeder was moved by 1 kW fails with exit 5 and one line naming the feeder."""
    run_dir, s = runs["residual"]
    ok = hpcsim("check", str(run_dir), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["feeders_checked"] == len(s["feeders"]) and report["controls_moved"] == []
    assert report["published_max_dv_pu"] < 1e-3
    bad = tmp_path / "tampered"
    shutil.copytree(run_dir, bad)
    summary = json.loads((bad / "summary.json").read_text())
    summary["feeders"][1]["p_mw"] += 1e-3
    (bad / "summary.json").write_text(json.dumps(summary))
    out = hpcsim("check", str(bad), "--sample", "3")
    assert out.returncode == 5, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("hpcsim: error:")]
    assert len(lines) == 1 and summary["feeders"][1]["name"] in lines[0] and "Traceback" not in out.stderr
