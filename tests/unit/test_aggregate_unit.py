"""Aggregation pieces without solvers: partial sums, source merging, run metadata, and a whole aggregate of a
small synthetic run written with the real writer (dask's in-process scheduler)."""

from __future__ import annotations

import json
import logging
import math

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hpcsim.errors import OutputError
from hpcsim.output import aggregate as agg
from hpcsim.output import readers
from hpcsim.output.parquet import SCHEMAS, StepWriter
from hpcsim.output.plots import pooled_envelope
from hpcsim.output.runinfo import read_run_info
from hpcsim.output.scheduler import check_scheduler, slurm_cluster

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(5)


def _node_file(path, rows: list[tuple[str, float, float]]) -> str:
    feeder, time_s, v = zip(*rows)
    table = pa.table({"time_s": time_s, "feeder": feeder, "node": [f"n{i}" for i in range(len(rows))],
                      "v_pu": np.asarray(v, np.float32)}, schema=SCHEMAS["node_voltages"])
    pq.write_table(table, path)
    return str(path)


def _combine(partials: list[pd.DataFrame]) -> pd.DataFrame:
    both = pd.concat(partials)
    sums = both.groupby(["feeder", "time_s"]).agg(
        {"n": "sum", "s1": "sum", "s2": "sum", "v_min": "min", "v_max": "max", "n_out": "sum"}).reset_index()
    return agg.finish_node_stats(sums).set_index(["feeder", "time_s"]).sort_index()


def test_node_partials_combine_to_the_direct_statistics(tmp_path):
    """Keys split within a file (non-contiguous runs) and across files; dead nodes left out; band edges."""
    rows = [(f"f{k % 3}", float(3600 * (k % 2)), float(v)) for k, v in enumerate(RNG.normal(1.0, 0.03, 3000))]
    rows += [("f0", 0.0, 0.0), ("f1", 3600.0, 0.005), ("f2", 0.0, 0.95), ("f2", 0.0, 1.05)]
    a = _node_file(tmp_path / "a.parquet", rows[:1700])
    b = _node_file(tmp_path / "b.parquet", rows[1700:])
    got = _combine([readers.node_partial(a), readers.node_partial(b)])
    df = pd.DataFrame(rows, columns=["feeder", "time_s", "v"]).assign(v=lambda d: d.v.astype(np.float32).astype(float))
    live = df[df.v > readers.LIVE_PU]
    want = live.groupby(["feeder", "time_s"]).v.agg(["min", "mean", "max", "std", "count"])
    out = live.assign(o=(live.v < 0.95) | (live.v > 1.05)).groupby(["feeder", "time_s"]).o.sum()
    np.testing.assert_allclose(got["node_mean_v_pu"], want["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["std_v_pu"], want["std"], rtol=1e-9)
    np.testing.assert_array_equal(got["node_min_v_pu"], want["min"])
    np.testing.assert_array_equal(got["node_max_v_pu"], want["max"])
    np.testing.assert_array_equal(got["n_nodes"].astype(int), want["count"])
    np.testing.assert_array_equal(got["n_outside"].astype(int), out)


def test_variance_around_one_pu_keeps_its_precision():
    v = 1.0 + 1e-5 * RNG.standard_normal(100_000)
    d = v - 1.0
    df = pd.DataFrame({"feeder": ["f"], "time_s": [0.0], "n": [len(v)], "s1": [d.sum()], "s2": [(d * d).sum()],
                       "v_min": [v.min()], "v_max": [v.max()], "n_out": [0]})
    assert agg.finish_node_stats(df)["std_v_pu"].iloc[0] == pytest.approx(np.std(v, ddof=1), rel=1e-6)


def test_unreadable_node_file_is_skipped_with_a_warning(tmp_path, caplog):
    bad = tmp_path / "part-00000.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with caplog.at_level(logging.WARNING):
        assert readers.node_partial(str(bad)).empty
    assert "skipping unreadable" in caplog.text


def test_voltage_sources_prefer_nodes_and_fall_back_to_the_feeders_table():
    df = pd.DataFrame({"time_s": [0.0, 0.0], "feeder": ["a", "b"], "bus": [1, 1], "federate": ["g", "g"],
                       "v_source_pu": [1.0, 1.0], "min_v_pu": [0.9, 0.91], "mean_v_pu": [1.0, 1.01],
                       "max_v_pu": [1.1, 1.11], "node_min_v_pu": [0.8, np.nan], "node_mean_v_pu": [0.99, np.nan],
                       "node_max_v_pu": [1.2, np.nan], "std_v_pu": [0.02, np.nan],
                       "n_nodes": pd.array([10, pd.NA], "Int64"), "n_outside": pd.array([2, pd.NA], "Int64")})
    out = agg.merge_voltage_sources(df).set_index("feeder")
    assert out.loc["a", ["min_v_pu", "mean_v_pu", "max_v_pu", "std_v_pu"]].tolist() == [0.8, 0.99, 1.2, 0.02]
    assert out.loc["b", ["min_v_pu", "mean_v_pu", "max_v_pu"]].tolist() == [0.91, 1.01, 1.11]
    assert math.isnan(out.loc["b", "std_v_pu"]) and out.loc["b", "n_nodes"] is pd.NA
    assert out["source"].tolist() == ["node_voltages", "feeders"]
    no_nodes = agg.merge_voltage_sources(df.drop(columns=["node_min_v_pu", "node_mean_v_pu", "node_max_v_pu",
                                                          "std_v_pu", "n_nodes", "n_outside"]))
    assert no_nodes["n_nodes"].isna().all() and (no_nodes["source"] == "feeders").all()


def test_system_totals_scale_the_case_load_by_the_profile():
    df = pd.DataFrame({"time_s": [0.0, 3600.0], "n_buses": [2, 2], "p_dist_mw": [30.0, 60.0],
                       "q_dist_mvar": [3.0, 6.0], "p_case_nominal_mw": [40.0, 40.0], "q_case_nominal_mvar": [8.0, 8.0]})
    out = agg.add_profile(df, {0.0: 0.5, 3600.0: 1.0})
    assert out["p_case_mw"].tolist() == [20.0, 40.0] and out["p_ratio"].tolist() == [1.5, 1.5]
    assert agg.add_profile(df, {})["p_case_mw"].isna().all()


def test_pooled_envelope_equals_the_statistics_of_all_nodes():
    groups = [RNG.normal(1.0, s, n) for s, n in ((0.01, 50), (0.03, 80), (0.02, 7))]
    fv = pd.DataFrame({"time_s": 0.0, "feeder": ["a", "b", "c"], "min_v_pu": [g.min() for g in groups],
                       "mean_v_pu": [g.mean() for g in groups], "max_v_pu": [g.max() for g in groups],
                       "std_v_pu": [g.std(ddof=1) for g in groups], "n_nodes": [len(g) for g in groups]})
    everything = np.concatenate(groups)
    env = pooled_envelope(fv).iloc[0]
    assert env["mean_v_pu"] == pytest.approx(everything.mean())
    assert env["std_v_pu"] == pytest.approx(everything.std(ddof=1))
    assert (env["min_v_pu"], env["max_v_pu"]) == (everything.min(), everything.max())


@pytest.mark.parametrize("value", ["local", "slurm", "threads", "sync", "tcp://10.0.0.1:8786", "node01:8786"])
def test_scheduler_values(value):
    assert check_scheduler(value) == value


def test_slurm_worker_job_script_is_rendered_without_submitting(monkeypatch):
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__QUEUE", "batch")
    dask.config.refresh()
    cluster = slurm_cluster(jobs=0)  # starts only the scheduler, in this process; sbatch is never called
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
        monkeypatch.delenv("DASK_JOBQUEUE__SLURM__QUEUE")
        dask.config.refresh()
    assert "#SBATCH -p batch" in script and "--cpus-per-task=1" in script and "--mem=4G" in script
    assert "distributed.cli.dask_worker" in script and "--nthreads 1" in script


def test_unknown_scheduler_is_an_output_error():
    with pytest.raises(OutputError, match="unknown dask scheduler 'lokal'"):
        check_scheduler("lokal")


# --- a synthetic run written with the real writer ---------------------------------------------------------


def _synthetic_run(run_dir, steps: int = 3, node_steps: int = 2, summary: bool = True):
    """2 buses (K = 1, 2), 3 feeders in 2 groups, 2 iterations per step; node voltages for the first steps."""
    out = run_dir / "outputs"
    feeders = {"g0": [("fa", 1), ("fb", 2)], "g1": [("fc", 2)]}
    times = [3600.0 * k for k in range(steps)]
    writers = {(t, f): StepWriter(out, t, f) for t in ("feeders", "steps", "node_voltages") for f in feeders}
    tw, ts = StepWriter(out, "transmission", "transmission"), StepWriter(out, "steps", "transmission")
    for k, t in enumerate(times):
        for it in range(2):
            for bus, clones in ((1, 1), (2, 2)):
                tw.add(time_s=t, iteration=it, bus=bus, clones=clones, v_pu=1.0 + 0.01 * it, angle_deg=-1.0,
                       p_mw=10.0 * clones + it, q_mvar=1.0 * clones, solve_s=0.01, dv_pu=10.0 ** -(it + 3),
                       ds_pu=float("nan") if it == 0 else 10.0 ** -(it + 4))
            for fed, members in feeders.items():
                for name, bus in members:
                    writers["feeders", fed].add(
                        time_s=t, iteration=it, feeder=name, bus=bus, model="m", load_mult=1.0, v_source_pu=1.0,
                        angle_deg=-1.0, p_mw=10.0 + it, q_mvar=1.0, p_total_mw=10.0, q_total_mvar=1.0,
                        min_v_pu=0.9 + it, mean_v_pu=1.0, max_v_pu=1.1, solve_s=0.02, reg_taps=[], cap_states=[])
        for fed, members in feeders.items():
            writers["feeders", fed].flush(k)
            writers["steps", fed].add(time_s=t, iterations=2, dv_pu=float("nan"), ds_pu=2e-7, compute_s=1.0, exchange_s=0.5,
                                      peak_rss_mb=100.0)
            writers["steps", fed].flush(k)
            if k < node_steps:
                for name, _ in members:
                    writers["node_voltages", fed].extend({"time_s": [t] * 4, "feeder": [name] * 4,
                                                          "node": ["a", "b", "c", "d"], "v_pu": [0.0, 0.94, 1.0, 1.02]})
                writers["node_voltages", fed].flush(k)
        tw.flush(k)
        ts.add(time_s=t, iterations=2, dv_pu=1e-7, ds_pu=1e-7, compute_s=0.1, exchange_s=2.0, peak_rss_mb=50.0)
        ts.flush(k)
    (run_dir / "configs").mkdir()
    (run_dir / "configs" / "transmission.json").write_text(json.dumps(
        {"study": "syn", "case": "ACTIVSg200", "coupling": "iterative", "tolerance": 1e-6,
         "times_s": times + [3600.0 * steps], "profile": [1.0] * (steps + 1)}))
    if summary:
        (run_dir / "summary.json").write_text(json.dumps({"study": "syn", "case": "ACTIVSg200", "converged": True}))
    return run_dir


def _read(result, name):
    df = pd.read_parquet(result.path(name))
    return df.sort_values([c for c in ("time_s", "iteration", "bus", "feeder") if c in df.columns])


def test_synthetic_run_aggregates_with_leftovers_and_a_missing_summary(tmp_path):
    run = _synthetic_run(tmp_path / "run", summary=False)
    (run / "outputs" / "feeders" / "federate=g0" / "part-00003.parquet.tmp").write_bytes(b"half a file")
    result = agg.aggregate_run(run, "sync")
    m = result.manifest
    assert m["status"] == "incomplete (3 of 4 steps, no summary.json)" and m["steps_written"] == 3
    b = _read(result, "boundary")
    assert b["iteration"].tolist() == [1] * 6 and b["p_mw"].tolist() == [11.0, 21.0] * 3
    assert b["n_feeders"].tolist() == [1, 2] * 3 and b["feeders_p_mw"].tolist() == [11.0, 22.0] * 3
    assert b["pd_case_mw"].notna().all()
    fv = _read(result, "feeder_voltages")
    with_nodes = fv[fv["time_s"] < 7200]
    assert (with_nodes["source"] == "node_voltages").all() and with_nodes["n_nodes"].tolist() == [3] * 6
    assert with_nodes["n_outside"].tolist() == [1] * 6 and with_nodes["min_v_pu"].tolist() == pytest.approx([0.94] * 6)
    last = fv[fv["time_s"] == 7200]
    assert (last["source"] == "feeders").all() and last["std_v_pu"].isna().all()
    assert last["min_v_pu"].tolist() == [1.9] * 3  # the final iteration's row of the feeders table
    steps = _read(result, "steps")
    assert steps["federates"].tolist() == [3] * 3 and steps["iterations"].tolist() == [2] * 3
    its = _read(result, "iterations")
    assert its["iteration"].tolist() == [0, 1] * 3 and its["dv_pu"].tolist() == [1e-3, 1e-4] * 3
    assert its["ds_pu"].isna().tolist() == [True, False] * 3 and its["ds_pu"].dropna().tolist() == [1e-5] * 3
    fed = pd.read_parquet(result.path("federates")).set_index("federate")
    assert fed.loc["g0", "compute_s"] == 3.0 and fed.loc["transmission", "exchange_s"] == 6.0
    assert fed.loc["transmission", "role"] == "transmission"
    system = _read(result, "system")
    assert system["p_dist_mw"].tolist() == [32.0] * 3 and system["n_buses"].tolist() == [2] * 3


def test_file_without_a_newer_column_reads_as_null(tmp_path):
    old = pa.table({"time_s": [0.0], "iteration": [0], "bus": [1], "clones": [1], "v_pu": [1.0],
                    "angle_deg": [0.0], "p_mw": [1.0]})
    pq.write_table(old, tmp_path / "old.parquet")
    t = readers.read_columns(str(tmp_path / "old.parquet"), "transmission")
    assert t.column("q_mvar").null_count == 1 and t.schema.field("iteration").type == pa.int32()


def test_run_info_fallbacks_and_errors(tmp_path):
    with pytest.raises(OutputError, match="no such run folder"):
        read_run_info(tmp_path / "nope")
    with pytest.raises(OutputError, match="no co-simulation outputs"):
        read_run_info(tmp_path)
    run = _synthetic_run(tmp_path / "run", summary=False)
    (run / "configs" / "transmission.json").unlink()
    (run / "study.toml").write_text('name = "x"\n[transmission]\ncase = "ACTIVSg2000"\n')
    info = read_run_info(run)
    assert info.case == "ACTIVSg2000" and info.converged is None and info.load_mult_of() == {}
