"""Shared-engine mode (many clones on one OpenDSS engine, their small state swapped) equals one engine per clone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hpcsim.cases import FEEDERS
from hpcsim.cli import main
from hpcsim.distribution import CloneState, FeederEngine, SharedEngine
from hpcsim.federation.runner import run_study
from hpcsim.study import load_study

from .helpers import BUS8_STUDY

pytestmark = pytest.mark.integration
N_CLONES = 24


def test_shared_engine_equals_separate_engines_on_diverse_clones():
    rng = np.random.default_rng(11)
    model = FEEDERS["ieee8500"]
    mults = rng.uniform(0.7, 1.2, N_CLONES)
    separate = [FeederEngine(model) for _ in range(N_CLONES)]
    shared = SharedEngine(model)
    order = np.arange(N_CLONES)
    for round_ in range(3):
        rng.shuffle(order)  # interleave clones differently every round
        for k in order:
            v, a = 1.0 + 0.03 * rng.standard_normal(), -12 + 3 * rng.standard_normal()
            clone = CloneState(f"c{k}", 1, float(mults[k] * (1 + 0.05 * round_)), float(v), float(a))
            alone = separate[k].solve(CloneState(**vars(clone)))
            swapped = shared.solve(CloneState(**vars(clone)))
            assert swapped.p_mw == pytest.approx(alone.p_mw, abs=1e-8)
            assert swapped.q_mvar == pytest.approx(alone.q_mvar, abs=1e-8)
            assert swapped.min_v_pu == pytest.approx(alone.min_v_pu, abs=1e-9)
            assert swapped.max_v_pu == pytest.approx(alone.max_v_pu, abs=1e-9)
            assert swapped.control == alone.control
    # the clones really were diverse: different taps somewhere
    assert len({separate[k].control_state() for k in range(N_CLONES)}) > 3


def test_federation_with_shared_engines_equals_separate(tmp_path):
    study = load_study(BUS8_STUDY)
    sep = run_study(study.with_overrides(engine_mode="separate"), tmp_path / "sep", show_progress=False)
    shr = run_study(study.with_overrides(engine_mode="shared", workers=1), tmp_path / "shr", show_progress=False)
    assert sep["engine_mode"] == "separate" and shr["engine_mode"] == "shared"
    assert shr["steps"][0]["iterations"] == sep["steps"][0]["iterations"]
    for a, b in zip(sep["feeders"], shr["feeders"]):
        assert a["name"] == b["name"] and a["reg_taps"] == b["reg_taps"]
        assert b["p_mw"] == pytest.approx(a["p_mw"], abs=1e-8)
    assert shr["boundary"][0]["v_pu"] == pytest.approx(sep["boundary"][0]["v_pu"], abs=1e-10)


def test_clones_scaled_to_the_bus_draw_its_case_load(tmp_path):
    """clone_load = "bus" on bus 8 (PD 23.74 MW, K = 3): nominal clones draw ~36 MW, scaled ones the PD (the
    residual is the voltage dependence of losses and loads away from 1 pu)."""
    study = load_study(BUS8_STUDY)
    nominal = run_study(study, tmp_path / "nominal", show_progress=False)
    # (the study starts from the case's PD, as ANL did, so without the residual load, which needs the solved start)
    scaled = run_study(study.with_overrides(clone_load="bus", residual_load=False), tmp_path / "bus",
                       show_progress=False)
    assert nominal["boundary_pd_mw"] == scaled["boundary_pd_mw"] == pytest.approx(23.74)
    assert nominal["boundary_p_mw"] > 1.4 * nominal["boundary_pd_mw"]
    assert scaled["boundary_p_mw"] == pytest.approx(scaled["boundary_pd_mw"], rel=0.02)
    assert scaled["clone_load"] == "bus" and scaled["converged"]


def test_bench_check_predicts_a_finished_run(tmp_path, capsys):
    run_study(load_study(BUS8_STUDY), tmp_path / "run", show_progress=False)
    assert main(["bench", "--check", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "predicted vs measured" in out and "run" in out
    assert main(["bench", "--check", str(tmp_path / "nothing")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    # refitting the operating-point costs: not on a checked run, not without runs to check, and only on a
    # shared-engine run at the case's operating point (this one has neither)
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    for args, message in ((["--fit", str(tmp_path / "run"), "--check", str(tmp_path / "run")], "cannot also be checked"),
                          (["--fit", str(tmp_path / "run")], "go with --check"),
                          (["--fit", str(tmp_path / "run"), "--check", str(tmp_path / "copy")], "residual_load")):
        assert main(["bench", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
