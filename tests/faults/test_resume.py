"""``hpcsim run --resume``: a 24-step QSTS killed hard at step 16 and resumed gives the tables of the run that was
never interrupted (every row to 1e-7, final iterations to 1e-8; iterations per step, taps and capacitor steps
equal); what cannot be resumed says so in one line."""

from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pyarrow.dataset as ds
import pytest

from hpcsim.federation.resume import truncate
from hpcsim.output.readers import COLUMNS
from hpcsim.output.written import record_path, verify
from tests.integration.helpers import hpcsim, start_hpcsim, wait_for_step, wait_gone, write_study

pytestmark = pytest.mark.integration


def table(run, name):
    return ds.dataset(run / "outputs" / name, format="parquet", partitioning="hive").to_table().to_pandas()


def final(run, name, key):
    return table(run, name).sort_values("iteration").groupby(["time_s", key]).last().sort_index()


@pytest.fixture(scope="module", params=["newton", "gauss-seidel"])
def day(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("resume")
    study = write_study(work / "day.toml", "activsg200_ieee8500_bus8.toml", name="bus8_day",
                        coupling={"mode": "iterative", "method": request.param, "tolerance": 1e-6},
                        time={"mode": "qsts", "start_s": 0, "stop_s": 86400, "step_s": 3600,
                              "load_profile": "rts_winter_weekday"})
    whole = work / "whole"
    r = hpcsim("-q", "run", str(study), "--out", str(whole))
    assert r.returncode == 0, r.stderr
    return study, whole


def test_a_qsts_killed_at_step_16_and_resumed_equals_the_uninterrupted_run(day, tmp_path):
    study, whole = day
    run = tmp_path / "killed"
    proc = start_hpcsim(["-q", "run", str(study), "--out", str(run)])
    wait_for_step(run, 16, proc)
    proc.send_signal(signal.SIGKILL)  # as a node reboot or a wall time without grace would
    proc.wait(timeout=10)
    assert wait_gone(run) == []
    done = len(list((run / "outputs" / "steps" / "federate=transmission").glob("part-*.parquet")))
    assert 16 <= done < 24

    r = hpcsim("-q", "run", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is True and len(summary["steps"]) == 24
    assert verify(run, dict(COLUMNS)).ok
    for name, key, cols in (("transmission", "bus", ["v_pu", "angle_deg", "p_mw", "q_mvar"]),
                            ("feeders", "feeder", ["v_source_pu", "p_mw", "q_mvar", "min_v_pu", "max_v_pu"])):
        a, b = final(whole, name, key), final(run, name, key)
        assert list(a.index) == list(b.index), name
        assert (a.iteration == b.iteration).all(), name
        for c in cols:
            assert np.max(np.abs(a[c].to_numpy() - b[c].to_numpy())) < 1e-8, (name, c)
        if name == "feeders":
            assert [list(x) for x in a.reg_taps] == [list(x) for x in b.reg_taps]
            assert [list(x) for x in a.cap_states] == [list(x) for x in b.cap_states]
    # every row, intermediate iterations too (the first resumed step's included)
    for name, keys, cols in (("transmission", ["time_s", "iteration", "bus"], ["v_pu", "p_mw", "q_mvar"]),
                             ("feeders", ["time_s", "iteration", "feeder"], ["v_source_pu", "p_mw", "q_mvar",
                                                                             "ds_dv_p_mw_per_pu"])):
        a = table(whole, name).sort_values(keys).reset_index(drop=True)
        b = table(run, name).sort_values(keys).reset_index(drop=True)
        assert a[keys].equals(b[keys]), name
        for c in cols:
            # a slope is a difference of two solves 1e-3 pu apart: it carries 1e3 x the solves' last digits
            # (each power flow now starts from the last converged solution, which a resumed run does not carry:
            # its first power flow starts from the case's voltages and stops at ANDES's tolerance elsewhere)
            atol = 1e-5 if c.startswith("ds_dv") else 1e-6
            assert np.allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=0, atol=atol, equal_nan=True), (name, c)
    sa = table(whole, "steps").sort_values(["federate", "time_s"])
    sb = table(run, "steps").sort_values(["federate", "time_s"])
    assert sa.iterations.tolist() == sb.iterations.tolist()
    assert len(table(whole, "transmission")) == len(table(run, "transmission"))


def test_a_run_killed_while_a_feeder_group_was_writing_resumes_from_that_step(day, tmp_path):
    """The transmission federate reports step 16 done while a feeder group is still writing its rows of step 16:
    killed then, the group's part file is there but unrecorded. The resume starts at step 16, not refused."""
    study, whole = day
    run = tmp_path / "mid-write"
    shutil.copytree(whole, run)
    truncate(run, 17)  # as killed during step 17
    records = record_path(run / "outputs", "steps", "feeders_000")
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join(line for line in lines if "part-00016.parquet" not in line))
    r = hpcsim("-q", "run", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert verify(run, dict(COLUMNS)).ok
    a, b = final(whole, "transmission", "bus"), final(run, "transmission", "bus")
    assert list(a.index) == list(b.index)
    assert np.max(np.abs(a.v_pu.to_numpy() - b.v_pu.to_numpy())) < 1e-8


def test_what_cannot_be_resumed_is_one_line(day, tmp_path):
    study, whole = day
    r = hpcsim("-q", "run", "--resume", str(whole))
    assert r.returncode == 2 and r.stderr.strip().endswith("all 24 steps are complete; nothing to resume")
    r = hpcsim("-q", "run", "--resume", str(tmp_path))
    assert r.returncode == 2 and "not a run folder" in r.stderr
    r = hpcsim("-q", "run", str(study), "--resume", str(whole))
    assert r.returncode == 2 and "takes no study" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
