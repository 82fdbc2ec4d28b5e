"""Quasi-static time series, and every way a run can end badly: a dead worker, Ctrl-C, bad study files."""

from __future__ import annotations

import json
import signal
import sys
import time

import pytest

from hpcsim.output.parquet import read_table
from hpcsim.study import LOAD_PROFILES

from .helpers import (BUS8_STUDY, federate_process, hpcsim, qsts_study, start_hpcsim, wait_for_step, wait_gone,
                      write_study)

pytestmark = pytest.mark.integration
PROFILE = LOAD_PROFILES["rts_winter_weekday"]


def test_qsts_runs_24_hourly_steps_following_the_profile(tmp_path):
    run_dir = tmp_path / "run"
    r = hpcsim("-q", "run", str(qsts_study(tmp_path)), "--out", str(run_dir))
    assert r.returncode == 0, r.stderr
    s = json.loads((run_dir / "summary.json").read_text())
    assert [st["time_s"] for st in s["steps"]] == [3600.0 * k for k in range(24)]
    assert all(st["iterations"] == 1 for st in s["steps"])
    feeders = read_table(run_dir / "outputs", "feeders").to_pandas()
    assert len(feeders) == 3 * 24
    # each clone's multiplier = its seeded diversity factor x the hourly profile; clones differ
    per_clone = feeders.assign(base=feeders.load_mult / [PROFILE[int(t // 3600)] for t in feeders.time_s])
    bases = per_clone.groupby("feeder").base.agg(["min", "max"])
    assert (bases["max"] - bases["min"]).max() < 1e-12
    assert bases["min"].nunique() == 3
    # the boundary load follows the daily shape: trough at 03:00 (59 %), peak at 17:00 (100 %)
    trans = read_table(run_dir / "outputs", "transmission").to_pandas()
    final = trans.sort_values("iteration").groupby("time_s").last()
    assert final.p_mw[3 * 3600.0] < 0.65 * final.p_mw[17 * 3600.0]
    assert len(list((run_dir / "outputs" / "feeders").rglob("part-*.parquet"))) == 2 * 24


def test_killing_a_worker_ends_the_run_promptly_and_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_hpcsim(["-q", "run", str(qsts_study(tmp_path)), "--out", str(run_dir)])
    wait_for_step(run_dir, 3, proc)
    victim = federate_process(run_dir, "feeders_000")
    t_kill = time.monotonic()
    victim.kill()
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t_kill
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "feeders_000" in lines[0] and "signal 9" in lines[0], err
    assert elapsed < 10, f"run took {elapsed:.1f} s to end after the worker died"
    assert wait_gone(run_dir) == []
    # what was written before the failure is readable
    done = read_table(run_dir / "outputs", "transmission")
    assert done.num_rows >= 3
    assert json.loads((run_dir / "summary.json").read_text())["converged"] is False


def test_ctrl_c_stops_everything(tmp_path):
    run_dir = tmp_path / "run"
    # 96 quarter-hour steps, so the run is still going when the interrupt lands
    study = write_study(tmp_path / "qsts.toml", "activsg200_ieee8500_bus8.toml", name="bus8_qsts96",
                        coupling={"mode": "loose"},
                        time={"mode": "qsts", "start_s": 0, "stop_s": 86400, "step_s": 900,
                              "load_profile": "rts_winter_weekday"})
    # as from a terminal: a shell that starts a job in the background hands it SIGINT ignored, and Python then
    # never turns SIGINT into KeyboardInterrupt
    proc = start_hpcsim(["-q", "run", str(study), "--out", str(run_dir)],
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "hpcsim: interrupted"
    assert wait_gone(run_dir) == []


BAD_STUDIES = {
    "unknown key": ("[coupling]\nmode = 'iterative'\ntolerence = 1e-6\n", "unknown key [coupling] tolerence"),
    "unknown section": ("[solver]\nx = 1\n", "unknown section [solver]"),
    "wrong type": ("[coupling]\nmax_iterations = 'ten'\n", "max_iterations = 'ten' has the wrong type"),
    "bad mode": ("[coupling]\nmode = 'tight'\n", "'tight' must be 'loose' or 'iterative'"),
    "bad toml": ("[coupling\n", "invalid TOML"),
    "missing map": ("[distribution]\nboundary_map = 'nope.txt'\n", "nope.txt does not exist"),
    "qsts without stop": ("[time]\nmode = 'qsts'\nstep_s = 3600\n", "stop_s 0.0 must be after start_s"),
    "bad profile": ("[time]\nmode = 'qsts'\nstop_s = 7200\nstep_s = 3600\nload_profile = 'weekly'\n",
                    "load_profile 'weekly' is neither"),
    "unknown case": ("", "unknown transmission case 'ACTIVSg9'"),
}


@pytest.mark.parametrize("label", list(BAD_STUDIES))
def test_bad_study_is_one_line_exit_2_and_writes_nothing(tmp_path, label):
    body, expected = BAD_STUDIES[label]
    case = "ACTIVSg9" if label == "unknown case" else "ACTIVSg200"
    path = tmp_path / "bad.toml"
    path.write_text(f"name = 'bad'\n[transmission]\ncase = '{case}'\n" + body)
    run_dir = tmp_path / "run"
    r = hpcsim("run", str(path), "--out", str(run_dir))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcsim: error:") and expected in lines[0], r.stderr
    assert not run_dir.exists()


def test_existing_run_folder_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    r = hpcsim("run", str(BUS8_STUDY), "--out", str(run_dir))
    assert r.returncode == 2 and "exists and is not empty" in r.stderr
    assert (run_dir / "summary.json").read_text() == "{}"


def test_missing_study_file():
    r = hpcsim("run", "cases/nope.toml")
    assert r.returncode == 2 and r.stderr.strip() == "hpcsim: error: cases/nope.toml: no such study file"
    assert sys.executable


def test_a_power_flow_beyond_the_nose_exits_4_with_the_per_bus_mismatch(tmp_path):
    """3,000 nominal IEEE 8500 clones on bus 8 in scale mode (one feeder solved, its power × 3,000: ~32 GW where
    the case has 23.7 MW): no power flow exists, the damped continuation from the case's solution fails too,
    and the run ends with one line, exit 4, naming the worst bus and the per-bus mismatch file, nothing left
    running."""
    bmap = tmp_path / "bus8x3000.txt"
    names = [f"8,dcase_tbdry_8_feeder_{k}" for k in range(1, 3001)]
    bmap.write_text("1,3000\n8\n" + "\n".join(names) + "\n")
    study = write_study(tmp_path / "nose.toml", "activsg200_ieee8500_bus8.toml",
                        distribution={"boundary_map": str(bmap)},
                        coupling={"method": "newton", "start": "solved"}, run={"workers": 1, "scale_mode": True})
    run_dir = tmp_path / "run"
    r = hpcsim("run", str(study), "--out", str(run_dir), timeout=300)
    assert r.returncode == 4, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("hpcsim: error:") and "power flow did not converge" in line and "worst at bus" in line
    assert "Traceback" not in r.stderr
    mismatch = run_dir / "errors" / "pf_mismatch.csv"
    assert str(mismatch) in line
    rows = mismatch.read_text().splitlines()
    assert rows[0] == "bus,v_pu,angle_deg,p_mismatch_mw,q_mismatch_mvar" and len(rows) == 1 + 200
    worst = rows[1].split(",")
    assert abs(float(worst[3])) + abs(float(worst[4])) > 1.0  # MW / Mvar: far from a solution
    assert wait_gone(run_dir) == []
