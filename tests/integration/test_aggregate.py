"""``hpcsim aggregate`` / ``hpcsim report`` on real bus-8 runs: every aggregate table checked against a direct
pyarrow computation on the raw outputs, a run killed mid-way, the figures, the report and bad run folders."""

from __future__ import annotations

import json
import shutil
import time

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from distributed import LocalCluster

from hpcsim.cases import read_matpower
from hpcsim.output.aggregate import aggregate_run
from hpcsim.output.parquet import read_table
from hpcsim.study import LOAD_PROFILES

from .helpers import federate_process, hpcsim, qsts_study, start_hpcsim, wait_for_step, write_study

pytestmark = pytest.mark.integration
FIGURES = ("voltage_envelope", "boundary_power", "convergence", "time_breakdown")
PD_BUS8 = read_matpower("ACTIVSg200").load_of()[8]


@pytest.fixture(scope="module")
def qsts_run(tmp_path_factory):
    """24 hourly loose steps with node voltages, aggregated and reported by one `hpcsim report`."""
    d = tmp_path_factory.mktemp("agg_qsts")
    r = hpcsim("-q", "run", str(qsts_study(d, outputs={"node_voltages": True})), "--out", str(d / "run"))
    assert r.returncode == 0, r.stderr
    report = hpcsim("-q", "report", str(d / "run"))  # default scheduler: threads
    assert report.returncode == 0, report.stderr
    return d / "run", report.stdout


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory):
    """The iterative bus-8 snapshot (several iterations per step) with node voltages, `hpcsim aggregate`."""
    d = tmp_path_factory.mktemp("agg_snap")
    study = write_study(d / "snap.toml", "activsg200_ieee8500_bus8.toml", outputs={"node_voltages": True})
    assert hpcsim("-q", "run", str(study), "--out", str(d / "run")).returncode == 0
    r = hpcsim("-q", "aggregate", str(d / "run"), "--scheduler", "threads")
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    return d / "run"


def _agg(run, name: str, keys: list[str]) -> pd.DataFrame:
    return pd.read_parquet(run / "aggregate" / f"{name}.parquet").sort_values(keys).reset_index(drop=True)


def _final(table: pa.Table, key: str) -> pa.Table:
    """Rows of the final iteration per (time, key), sorted (list columns dropped: acero cannot join them)."""
    table = table.select([f.name for f in table.schema if not pa.types.is_list(f.type)])
    last = table.group_by(["time_s", key]).aggregate([("iteration", "max")])
    joined = table.join(last, ["time_s", key])
    return joined.filter(pc.equal(joined["iteration"], joined["iteration_max"])).sort_by([("time_s", "ascending"),
                                                                                          (key, "ascending")])


def _check_against_pyarrow(run, profile) -> None:
    out = run / "outputs"
    trans, feeders = _final(read_table(out, "transmission"), "bus"), _final(read_table(out, "feeders"), "feeder")
    steps = read_table(out, "steps")
    # boundary: the final transmission iteration, plus the feeders' own sum at the bus
    b = _agg(run, "boundary", ["time_s", "bus"])
    for col in ("time_s", "bus", "clones", "iteration", "v_pu", "angle_deg", "p_mw", "q_mvar"):
        np.testing.assert_array_equal(b[col], trans[col].to_numpy(), err_msg=col)
    at_bus = feeders.group_by(["time_s", "bus"]).aggregate([("p_mw", "sum"), ("feeder", "count")]).sort_by("time_s")
    np.testing.assert_allclose(b["feeders_p_mw"], at_bus["p_mw_sum"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(b["feeders_p_mw"], b["p_mw"], rtol=1e-9)  # weight 1: the bus carries its feeders
    assert (b["n_feeders"] == 3).all() and (b["pd_case_mw"] == PD_BUS8[0]).all()
    # feeder voltages: statistics over every energized node
    nv = read_table(out, "node_voltages")
    v = pc.cast(nv["v_pu"], pa.float64())
    live = pa.table({"feeder": nv["feeder"], "time_s": nv["time_s"], "v": v,
                     "out": pc.cast(pc.or_(pc.less(v, 0.95), pc.greater(v, 1.05)), pa.int64())}).filter(
        pc.greater(v, 0.01))
    ref = live.group_by(["time_s", "feeder"]).aggregate(
        [("v", "min"), ("v", "mean"), ("v", "max"), ("v", "stddev", pc.VarianceOptions(ddof=1)), ("v", "count"),
         ("out", "sum")]).sort_by([("time_s", "ascending"), ("feeder", "ascending")]).to_pandas()
    fv = _agg(run, "feeder_voltages", ["time_s", "feeder"])
    assert (fv["source"] == "node_voltages").all() and len(fv) == len(ref) == feeders.num_rows
    np.testing.assert_array_equal(fv["min_v_pu"], ref["v_min"])
    np.testing.assert_array_equal(fv["max_v_pu"], ref["v_max"])
    np.testing.assert_allclose(fv["mean_v_pu"], ref["v_mean"], rtol=1e-12)
    np.testing.assert_allclose(fv["std_v_pu"], ref["v_stddev"], rtol=1e-9)
    np.testing.assert_array_equal(fv["n_nodes"], ref["v_count"])
    np.testing.assert_array_equal(fv["n_outside"], ref["out_sum"])
    # node voltages are those of the final iteration: they agree with the feeders table (float32 storage)
    np.testing.assert_allclose(fv["mean_v_pu"], feeders["mean_v_pu"].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(fv["min_v_pu"], feeders["min_v_pu"].to_numpy(), atol=1e-6)
    # steps and federates
    s = _agg(run, "steps", ["time_s"])
    t_rows = steps.filter(pc.equal(steps["federate"], "transmission")).sort_by("time_s")
    np.testing.assert_array_equal(s["iterations"], t_rows["iterations"].to_numpy())
    worst = steps.group_by("time_s").aggregate([("ds_pu", "max"), ("federate", "count")]).sort_by("time_s")
    np.testing.assert_array_equal(s["ds_pu"], worst["ds_pu_max"].to_numpy())
    np.testing.assert_array_equal(s["dv_pu"], t_rows["dv_pu"].to_numpy())
    np.testing.assert_array_equal(s["federates"], worst["federate_count"].to_numpy())
    it = _agg(run, "iterations", ["time_s", "iteration"])
    raw = read_table(out, "transmission")
    per_it = raw.group_by(["time_s", "iteration"]).aggregate([("dv_pu", "max"), ("ds_pu", "max")]).sort_by(
        [("time_s", "ascending"), ("iteration", "ascending")])
    np.testing.assert_array_equal(it["dv_pu"], per_it["dv_pu_max"].to_numpy())
    np.testing.assert_array_equal(it["ds_pu"], per_it["ds_pu_max"].to_numpy())
    assert (it.groupby("time_s")["iteration"].max().to_numpy() == trans["iteration"].to_numpy()).all()
    f = _agg(run, "federates", ["federate"])
    per = steps.group_by("federate").aggregate([("compute_s", "sum"), ("exchange_s", "sum")]).sort_by("federate")
    np.testing.assert_allclose(f["compute_s"], per["compute_s_sum"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(f["exchange_s"], per["exchange_s_sum"].to_numpy(), rtol=1e-12)
    # system: distribution load vs the case's PD at bus 8 times the step's profile multiplier
    sy = _agg(run, "system", ["time_s"])
    np.testing.assert_allclose(sy["p_dist_mw"], trans["p_mw"].to_numpy(), rtol=1e-12)
    want = [PD_BUS8[0] * profile[int(t // 3600) % len(profile)] for t in sy["time_s"]]
    np.testing.assert_allclose(sy["p_case_mw"], want, rtol=1e-12)


def test_qsts_aggregates_match_pyarrow(qsts_run):
    run, _ = qsts_run
    _check_against_pyarrow(run, LOAD_PROFILES["rts_winter_weekday"])
    m = json.loads((run / "aggregate" / "manifest.json").read_text())
    assert m["status"] == "converged" and m["steps_written"] == m["planned_steps"] == 24
    assert m["input_rows"]["node_voltages"] == 3 * 24 * 8531


def test_iterative_snapshot_aggregates_match_pyarrow(snapshot_run):
    _check_against_pyarrow(snapshot_run, LOAD_PROFILES["flat"])
    assert _agg(snapshot_run, "boundary", ["time_s"])["iteration"].iloc[0] >= 2  # really the last of several
    for name in FIGURES:  # single-step variants of the figures
        assert (snapshot_run / "aggregate" / f"{name}.png").stat().st_size > 10_000


def test_existing_scheduler_address_gives_the_same_tables(snapshot_run):
    before = {n: _agg(snapshot_run, n, ["time_s"]) for n in ("boundary", "feeder_voltages", "steps", "system")}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        result = aggregate_run(snapshot_run, cluster.scheduler_address)
    assert result.manifest["scheduler"].startswith("tcp://")
    for name, df in before.items():
        pd.testing.assert_frame_equal(_agg(snapshot_run, name, ["time_s"]), df, check_like=True)


def test_figures_and_report(qsts_run):
    run, stdout = qsts_run
    assert "Feeder voltages" in stdout and "converged" in stdout and "report.md" in stdout
    text = (run / "report.md").read_text()
    for name in FIGURES:
        assert f"](aggregate/{name}.png)" in text
        img = mpimg.imread(run / "aggregate" / f"{name}.png")
        assert img.shape[0] > 250 and img.shape[1] > 700, name
        assert img[..., :3].std() > 0.05, f"{name} looks blank"
    assert "| bus |" in text and "Time per federate" in text


def test_killed_run_aggregates_what_it_wrote(tmp_path):
    run = tmp_path / "run"
    proc = start_hpcsim(["-q", "run", str(qsts_study(tmp_path)), "--out", str(run)])
    wait_for_step(run, 3, proc)
    federate_process(run, "feeders_000").kill()
    assert proc.communicate(timeout=30) and proc.returncode == 3
    done = len(list((run / "outputs" / "transmission").rglob("part-*.parquet")))
    r = hpcsim("-q", "aggregate", str(run), "--no-plots", "--scheduler", "local")  # a LocalCluster of processes
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "aggregate" / "manifest.json").read_text())
    assert m["status"] == f"not converged ({done} of 24 steps)" and m["scheduler"].startswith("local (")
    assert len(_agg(run, "boundary", ["time_s"])) == done
    fv = _agg(run, "feeder_voltages", ["time_s", "feeder"])
    assert (fv["source"] == "feeders").all() and fv["std_v_pu"].isna().all() and fv["n_nodes"].isna().all()
    assert len(fv) == read_table(run / "outputs", "feeders").group_by(["time_s", "feeder"]).aggregate([]).num_rows
    # the runner itself killed too: no summary.json
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()
    t0 = time.monotonic()
    assert aggregate_run(copy, "threads").manifest["status"] == f"incomplete ({done} of 24 steps, no summary.json)"
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize(("command", "folder", "expected"), [("aggregate", "nope", "no such run folder"),
                                                            ("report", ".", "no co-simulation outputs")])
def test_bad_run_folder_is_one_line_exit_2(tmp_path, command, folder, expected):
    r = hpcsim(command, str(tmp_path / folder))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr
    assert lines[0].startswith("hpcsim: error:")
