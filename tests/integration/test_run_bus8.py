"""The ANL reference run (ACTIVSg200 bus 8 + 3 cloned 8500-node feeders) on a real federation, checked
against independent solves of each side."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from hpcsim.cases import resolve_transmission_case
from hpcsim.console import to_json
from hpcsim.federation.runner import run_study
from hpcsim.study import load_study
from hpcsim.transmission import TransmissionNetwork

from ..pins import check_pinned, steady_answer
from .helpers import BUS8_STUDY, POWER_ATOL_MW, hpcsim, resolve_alone, wait_gone

pytestmark = pytest.mark.integration

SUMMARY_KEYS = {"study": str, "converged": bool, "coupling": str, "wall_s": float, "peak_rss_mb": float,
                "steps": list, "boundary": list, "feeders": list, "timing": dict}


@pytest.fixture(scope="module")
def iterative(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bus8") / "run"
    summary = run_study(load_study(BUS8_STUDY), run_dir, show_progress=False)
    return run_dir, summary


def test_summary_file_has_the_documented_schema(iterative):
    run_dir, summary = iterative
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_dir"] == str(run_dir.resolve())  # the returned copy names its folder; the file does not
    assert on_disk == json.loads(to_json({k: v for k, v in summary.items() if k != "run_dir"}))
    for key, typ in SUMMARY_KEYS.items():
        assert isinstance(on_disk[key], typ), key
    assert on_disk["converged"] is True and on_disk["coupling"] == "iterative"
    assert set(on_disk["timing"]) >= {"transmission_solve_s", "feeder_solve_s", "exchange_s"}
    (b,) = on_disk["boundary"]
    assert b["bus"] == 8 and b["feeders"] == [f"dcase_tbdry_8_feeder_{j}" for j in (1, 2, 3)]
    assert [f["name"] for f in on_disk["feeders"]] == b["feeders"]
    for f in on_disk["feeders"]:
        assert set(f) >= {"name", "bus", "model", "p_mw", "q_mvar", "v_source_pu", "angle_deg", "min_v_pu", "max_v_pu"}
    for sub in ("configs", "logs", "outputs/transmission", "outputs/feeders", "outputs/steps"):
        assert (run_dir / sub).is_dir(), sub
    assert (run_dir / "boundary_map.txt").read_text().startswith("1,3\n")


def test_the_answer_is_the_pinned_one(iterative):
    check_pinned("activsg200_ieee8500_bus8", steady_answer(iterative[1]))


def test_converges_below_tolerance_and_reports_iterations(iterative):
    _, s = iterative
    (step,) = s["steps"]
    assert 2 <= step["iterations"] <= 30
    assert step["dv_pu"] < 1e-6 and step["ds_pu"] < 1e-6


def test_boundary_power_is_the_sum_of_its_feeders(iterative):
    _, s = iterative
    (b,) = s["boundary"]
    assert b["p_mw"] == pytest.approx(sum(f["p_mw"] for f in s["feeders"]), abs=3e-4)
    assert b["q_mvar"] == pytest.approx(sum(f["q_mvar"] for f in s["feeders"]), abs=3e-4)
    # three 8500-node feeders draw ~12 MW each with losses (NOTES: 11.97-11.99 MW at 1.0-1.05 pu)
    assert 35.5 < b["p_mw"] < 36.3


def test_feeder_resolved_alone_at_the_boundary_voltage_gives_the_reported_power(iterative):
    """Independent check of the distribution side: a fresh OpenDSS engine, the feeder's reported control
    state frozen, at the final boundary voltage the transmission side reported."""
    _, s = iterative
    (b,) = s["boundary"]
    for f in s["feeders"]:
        alone = resolve_alone(f, b["v_pu"], b["angle_deg"])
        assert alone.p_mw == pytest.approx(f["p_mw"], abs=POWER_ATOL_MW)
        assert alone.q_mvar == pytest.approx(f["q_mvar"], abs=POWER_ATOL_MW)
        assert alone.control.reg_taps == tuple(f["reg_taps"])


def test_transmission_resolved_alone_with_the_reported_loads_gives_the_reported_voltage(iterative):
    """Independent check of the transmission side: ANDES alone with the boundary load the feeders drew."""
    _, s = iterative
    (b,) = s["boundary"]
    net = TransmissionNetwork(resolve_transmission_case("ACTIVSg200"), [8])
    net.set_boundary_loads({8: b["p_mw"]}, {8: b["q_mvar"]})
    net.solve()
    v, a = net.boundary_voltages()
    assert v[0] == pytest.approx(b["v_pu"], abs=1e-8)
    assert a[0] == pytest.approx(b["angle_deg"], abs=1e-6)
    # and the feeders pulled the bus voltage away from the case's stored solution (PD 23.74 MW -> ~36 MW)
    assert abs(v[0] - 1.0128) < 0.01


def test_identical_clones_equal_scale_mode(iterative, tmp_path):
    """K identical clones at a bus and one feeder multiplied by K are the same physics."""
    _, clones = iterative
    scaled = run_study(load_study(BUS8_STUDY).with_overrides(scale_mode=True), tmp_path / "scale", show_progress=False)
    assert scaled["converged"]
    assert len(scaled["feeders"]) == 1
    (bc,), (bs,) = clones["boundary"], scaled["boundary"]
    assert bs["p_mw"] == pytest.approx(bc["p_mw"], abs=1e-3)
    assert bs["q_mvar"] == pytest.approx(bc["q_mvar"], abs=1e-3)
    assert bs["v_pu"] == pytest.approx(bc["v_pu"], abs=1e-6)
    assert bs["p_mw"] == pytest.approx(3 * scaled["feeders"][0]["p_mw"], rel=1e-9)


def test_loose_coupling_lands_close_to_iterative(iterative, tmp_path):
    _, it = iterative
    loose = run_study(load_study(BUS8_STUDY).with_overrides(coupling="loose"), tmp_path / "loose", show_progress=False)
    assert loose["coupling"] == "loose" and loose["steps"][0]["iterations"] == 1
    # one exchange from the case's stored solution: the voltage is already close, the power is the feeders'
    assert loose["boundary"][0]["v_pu"] == pytest.approx(it["boundary"][0]["v_pu"], abs=2e-3)
    assert loose["boundary"][0]["p_mw"] == pytest.approx(it["boundary"][0]["p_mw"], abs=0.05)


def test_broker_hierarchy_equals_flat(iterative, tmp_path):
    _, flat = iterative
    tree = run_study(load_study(BUS8_STUDY).with_overrides(sub_brokers=2), tmp_path / "tree", show_progress=False)
    assert tree["converged"] and tree["sub_brokers"] == 2
    assert tree["steps"][0]["iterations"] == flat["steps"][0]["iterations"]
    for key in ("v_pu", "angle_deg", "p_mw", "q_mvar"):
        assert tree["boundary"][0][key] == pytest.approx(flat["boundary"][0][key], abs=1e-9)
    runner = json.loads((tmp_path / "tree" / "runner.json").read_text())["federates"]
    assert [f["name"] for f in runner[:3]] == ["root_broker", "sub0_broker", "sub1_broker"]
    assert "--subbrokers=2" in runner[0]["exec"] and "--broker_address=tcp://127.0.0.1:" in runner[1]["exec"]


def test_convergence_failure_is_one_line_exit_4_and_leaves_nothing_running(tmp_path):
    run_dir = tmp_path / "noconv"
    r = hpcsim("run", str(BUS8_STUDY), "--out", str(run_dir), "--max-iterations", "1", "-q")
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcsim: error: federate transmission failed: ConvergenceError")
    assert "Traceback" not in r.stderr
    assert wait_gone(run_dir) == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["converged"] is False


def test_two_runs_share_the_machine(tmp_path):
    """Free ports are chosen per run: two federations at once do not collide."""
    procs = [subprocess.Popen([sys.executable, "-m", "hpcsim.cli", "-q", "run", str(BUS8_STUDY), "--out",
                               str(tmp_path / f"r{i}"), "--workers", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    a, b = (json.loads((tmp_path / f"r{i}" / "summary.json").read_text()) for i in range(2))
    assert math.isclose(a["boundary"][0]["p_mw"], b["boundary"][0]["p_mw"], abs_tol=1e-9)
