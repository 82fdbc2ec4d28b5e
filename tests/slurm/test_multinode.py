"""Studies across the nodes of the local multi-node SLURM (each node its own network namespace where possible):
the 126-feeder study on 3 nodes equals ``hpcsim run``, every feeder rank talks to its own node's sub-broker,
shared engines and a QSTS run the same way, a rank killed or a node lost mid-run ends the job promptly as
FAILED 3 naming the federate and node with nothing left on any node, and a job that lands on fewer nodes than
planned says so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from hpcsim.bench.exchange_nodes import compare_layouts, measure_exchange_nodes
from hpcsim.cases import CASES_DIR, PROJECT_ROOT
from hpcsim.federation.runner import run_study
from hpcsim.hpc import slurm as sl
from hpcsim.hpc.jobdir import Site, render_job
from hpcsim.hpc.plan import Cluster
from hpcsim.study import load_study
from tests.integration.helpers import write_study
from tests.pins import check_pinned, dynamic_answer

pytestmark = pytest.mark.slurm

FULL = CASES_DIR / "activsg200_ieee8500.toml"
HPCSIM = [sys.executable, "-m", "hpcsim.cli", "-q"]
RANKS = 5  # 1 + 2 + 2 over 3 nodes: a rank count the nodes do not divide


def hpcsim(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCSIM, *args], capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


def render_on_three_nodes(slurm, study: Path, job: Path, *args: str, timeout: float = 300) -> None:
    """``hpcsim jobs render`` of ``study`` for the three nodes (their cores and memory) into ``job``."""
    r = hpcsim("jobs", "render", str(study), "--nodes", "3", "--cores-per-node", str(slurm.cpus),
               "--mem-per-node-gb", f"{slurm.mem_gb:.1f}", *args, "-o", str(job), timeout=timeout)
    assert r.returncode == 0, r.stderr


def run_job(slurm, study: Path, job: Path, *args: str, wait_s: int, render_timeout: float = 300
            ) -> tuple[str, subprocess.CompletedProcess, str]:
    """Render ``study`` for the three nodes, submit it and wait for it through the CLI (``jobs submit``, ``jobs
    status --wait``); it must succeed. Returns (its job id, the ``jobs status`` result, its slurm-<id>.out)."""
    render_on_three_nodes(slurm, study, job, *args, timeout=render_timeout)
    r = hpcsim("jobs", "submit", str(job))
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    r = hpcsim("jobs", "status", str(job), "--wait", "--timeout", str(wait_s))
    out = (job / f"slurm-{job_id}.out").read_text()
    assert r.returncode == 0, r.stderr + out
    return job_id, r, out


def cluster_for(slurm, nodes: int = 3, ranks: int = RANKS) -> Cluster:
    return Cluster(nodes, slurm.cpus, slurm.mem_gb, walltime="00:10:00", ranks=ranks)


def job_processes(job_id: str, run_dir: Path) -> list[str]:
    """Processes of the job still alive on any node: its federates, brokers, launchers and slurmstepds."""
    marks = (str(run_dir), f"_{job_id} ", f"[{job_id}.")
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or []) + " "
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmd for m in marks):
                found.append(cmd.strip())
        except psutil.Error:
            continue
    return found


def gone(job_id: str, run_dir: Path, timeout_s: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := job_processes(job_id, run_dir)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def wait_for_step(run_dir: Path, step: int, job_id: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if json.loads((run_dir / "progress.json").read_text())["step"] >= step:
                return
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        assert not sl.job_state(job_id).done, (run_dir.parent / f"slurm-{job_id}.out").read_text()
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach step {step}")


def same_answer(mine: dict, theirs: dict, v_tol: float = 1e-8) -> None:
    assert mine["converged"] is True and theirs["converged"] is True
    assert [s["iterations"] for s in mine["steps"]] == [s["iterations"] for s in theirs["steps"]]
    assert len(mine["boundary"]) == len(theirs["boundary"])
    for a, b in zip(mine["boundary"], theirs["boundary"], strict=True):
        assert a["bus"] == b["bus"]
        assert a["v_pu"] == pytest.approx(b["v_pu"], abs=v_tol)
        assert a["angle_deg"] == pytest.approx(b["angle_deg"], abs=1e-6)


def sub_broker_of(federate_map: dict) -> dict[str, str]:
    """Federate name -> the name of the broker its core registered with (HELICS's own federate_map)."""
    out = {}

    def walk(broker: dict) -> None:
        for core in broker.get("cores", []):
            for fed in core.get("federates", []):
                out[fed["attributes"]["name"]] = broker["attributes"]["name"]
        for child in broker.get("brokers", []):
            walk(child)

    walk(federate_map)
    return out


REF_RUN: list[Path] = []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``hpcsim run`` of the 126-feeder study with as many worker processes as the job has feeder ranks."""
    run = tmp_path_factory.mktemp("ref") / "run"
    REF_RUN[:] = [run]
    return run_study(load_study(FULL).with_overrides(workers=RANKS), run, show_progress=False)


def test_126_feeders_on_three_nodes_equal_the_local_run(slurm, reference, tmp_path):
    job = tmp_path / "job"
    job_id, r, out = run_job(slurm, FULL, job, "--ranks", str(RANKS), "--walltime", "00:10:00", wait_s=300)
    run = job / "run"
    summary = json.loads((run / "summary.json").read_text())
    same_answer(summary, reference)
    names = [n.name for n in slurm.nodes]
    assert summary["slurm"]["nodelist"] == "node[01-03]" and summary["slurm"]["nodes"] == 3
    assert "can't honor" not in out  # the feeder step is placed by the hostfile, not --ntasks-per-node
    # jobs status: the run, then one line per node with its federates
    lines = r.stdout.splitlines()
    assert lines[0] == f"job {job_id}: COMPLETED (exit 0:0)" and "converged" in lines[1]
    assert [ln.split(":")[0] for ln in lines[2:5]] == [f"node {i} {n}" for i, n in enumerate(names)]

    plan = json.loads((job / "plan.json").read_text())
    assert [n["ranks"] for n in plan["nodes"]] == [1, 2, 2]
    addrs = [n.addr for n in slurm.nodes]
    fmap = sub_broker_of(json.loads((run / "federate_map.json").read_text()))
    port = None
    for node in plan["nodes"]:
        i = node["index"]
        for rank in range(node["first_rank"], node["first_rank"] + node["ranks"]):
            name = f"feeders_{rank:03d}"
            cfg = json.loads((run / "configs" / f"{name}.json").read_text())
            host, port = cfg["broker_address"].removeprefix("tcp://").rsplit(":", 1)
            # the rank connected to its own node's sub-broker at that node's address, bound its own socket there
            assert host == addrs[i], (name, cfg["broker_address"])
            assert cfg["core_init_string"] == f"--local_interface=tcp://{addrs[i]}"
            # and HELICS agrees: its core registered with sub-broker i (on node i, reached at node i's address)
            assert fmap[name] == f"sub{i}_{job_id}", (name, fmap)
            assert f"{name} on node {i} (rank {rank}) -> tcp://{addrs[i]}:{port}" in \
                (run / "logs" / f"{name}.log").read_text()
    assert fmap["transmission"] == f"sub0_{job_id}"
    # every broker bound its own node's address; the sub-brokers reached the root at node 0's
    runner = {f["name"]: f for f in json.loads((run / "runner.json").read_text())["federates"]}
    for i, addr in enumerate(addrs):
        step = runner[f"sub{i}_broker"]
        assert f"--local_interface=tcp://{addr}" in step["exec"] and step["host"] == names[i]
        assert f"--broker_address=tcp://{addrs[0]}:" in step["exec"]
    assert "127.0.0.1" not in json.dumps(runner) and "0.0.0.0" not in json.dumps(runner)
    assert gone(job_id, run) == []


def test_a_dynamic_study_on_three_nodes_gives_the_answer_of_hpcsim_run(slurm, tmp_path):
    """The paper's scenario 1 (IEEE 14 + IEEE 34 + IEEE 8500, 20 DERs, AGC) as a SLURM job: the transmission and
    AGC federates on node 0, each feeder federate on a node of its own, under that node's sub-broker; the
    frequency, ACE and feeder-voltage statistics are the ones ``hpcsim run`` gives (its answer, pinned)."""
    job = tmp_path / "job"
    study = CASES_DIR / "dyn_ieee14_load_variation.toml"
    job_id, _, out = run_job(slurm, study, job, "--walltime", "00:10:00", wait_s=400, render_timeout=600)
    run = job / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["completed"] and summary["kind"] == "dynamic" and summary["slurm"]["nodes"] == 3
    check_pinned("dyn_ieee14_load_variation", dynamic_answer(summary))
    plan = json.loads((job / "plan.json").read_text())
    fmap = sub_broker_of(json.loads((run / "federate_map.json").read_text()))
    assert fmap["transmission"] == fmap["agc"] == f"sub0_{job_id}"
    for node in plan["nodes"][1:]:
        (cfg,) = json.loads((job / "configs" / f"node_{node['index']:03d}.json").read_text())["feeders"]
        assert fmap[cfg["name"]] == f"sub{node['index']}_{job_id}", (cfg["name"], fmap)
    assert gone(job_id, run) == []


def test_shared_engines_and_qsts_on_three_nodes_equal_the_local_run(slurm, tmp_path):
    """A 2-step loose QSTS of the 126-feeder study with diversity, every rank on one shared OpenDSS engine."""
    study_file = write_study(tmp_path / "qsts.toml", "activsg200_ieee8500_qsts.toml", name="qsts4_shared",
                             run={"engine_mode": "shared"},
                             time={"mode": "qsts", "start_s": 0, "stop_s": 7200, "step_s": 3600,
                                   "load_profile": "rts_winter_weekday"})
    study = load_study(study_file)
    reference = run_study(study.with_overrides(workers=3), tmp_path / "ref", show_progress=False)
    job = tmp_path / "job"
    plan = render_job(study, cluster_for(slurm, ranks=3), job)
    assert plan.engine_mode == "shared" and [n.ranks for n in plan.nodes] == [1, 1, 1]
    job_id = sl.submit(job)
    status = sl.wait_for(job_id, timeout_s=300, poll_s=0.5)
    assert status.state == "COMPLETED", (job / f"slurm-{job_id}.out").read_text()
    summary = json.loads((job / "run" / "summary.json").read_text())
    assert len(summary["steps"]) == 2 and summary["engine_mode"] == "shared"
    same_answer(summary, reference)
    # every step's boundary voltages, not only the last one's
    mine, theirs = (boundary_voltages(d) for d in (job / "run", tmp_path / "ref"))
    assert mine.keys() == theirs.keys() and len(mine) == 2 * len(summary["boundary"])
    assert max(abs(mine[k] - theirs[k]) for k in mine) < 1e-8
    assert gone(job_id, job / "run") == []


def boundary_voltages(run_dir: Path) -> dict[tuple[float, int], float]:
    """(time, bus) -> the last iteration's boundary voltage, from the transmission's Parquet output."""
    t = pq.read_table(run_dir / "outputs" / "transmission").to_pandas()
    last = t.sort_values("iteration").groupby(["time_s", "bus"]).last()
    return {k: float(v) for k, v in last["v_pu"].items()}


@pytest.fixture
def long_job(slurm, tmp_path):
    """A 96-step loose QSTS of the bus-8 study on 3 nodes, one feeder rank on each: still running when hit."""
    study = write_study(tmp_path / "qsts96.toml", "activsg200_ieee8500_bus8.toml", name="bus8_qsts96",
                        coupling={"mode": "loose"},
                        time={"mode": "qsts", "start_s": 0, "stop_s": 86400, "step_s": 900,
                              "load_profile": "rts_winter_weekday"})
    job = tmp_path / "job"
    plan = render_job(load_study(study), cluster_for(slurm, ranks=3), job)
    assert [n.ranks for n in plan.nodes] == [1, 1, 1]
    return job


def failed_as_expected(job: Path, job_id: str, t_hit: float, *must: str) -> str:
    """The job failed with exit 3 naming ``must``, its script ended (summary.json written) < 30 s after the
    hit, and nothing of it is left on any node."""
    status = sl.wait_for(job_id, timeout_s=90, poll_s=0.25)
    out = (job / f"slurm-{job_id}.out").read_text()
    assert (status.state, status.exit_code) == ("FAILED", "3:0"), out
    summary = job / "run" / "summary.json"
    assert summary.stat().st_mtime - t_hit < 30, f"{summary.stat().st_mtime - t_hit:.0f} s"
    assert json.loads(summary.read_text())["converged"] is False
    r = hpcsim("jobs", "status", str(job))
    cause = next(line for line in r.stdout.splitlines() if line.startswith("cause: "))
    for text in must:
        assert text in cause, cause
    assert gone(job_id, job / "run") == []
    return cause


def feeder_rank_on(node: str) -> psutil.Process:
    """The feeder rank process SLURM started on ``node``."""
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = p.info["cmdline"] or []
            env = p.info["environ"] or {}
            if "hpcsim.hpc.rank" in cmd and cmd[-1] == "feeders" and env.get("SLURMD_NODENAME") == node:
                return p
        except psutil.Error:
            continue
    raise AssertionError(f"no feeder rank on {node}")


def test_a_feeder_rank_killed_on_node_3_ends_the_job(long_job):
    job_id = sl.submit(long_job)
    wait_for_step(long_job / "run", 2, job_id)
    feeder_rank_on("node03").kill()
    t_hit = time.time()
    cause = failed_as_expected(long_job, job_id, t_hit, "feeders_002 on node03", "Killed")
    assert "died without an error of its own" in cause


def test_a_frozen_feeder_rank_on_node_2_ends_the_job_at_the_stall_timeout(long_job, monkeypatch):
    monkeypatch.setenv("HPCSIM_STALL_S", "8")  # the job script's override of the rendered timeout (60 s here)
    job_id = sl.submit(long_job)
    wait_for_step(long_job / "run", 2, job_id)
    feeder_rank_on("node02").send_signal(signal.SIGSTOP)
    t_hit = time.time()
    cause = failed_as_expected(long_job, job_id, t_hit, "Stalled: no progress for", "stall timeout 8 s")
    assert "a federate is frozen or deadlocked" in cause


def test_a_cancelled_job_resubmitted_with_resume_finishes_its_run(long_job, tmp_path):
    run = long_job / "run"
    job_id = sl.submit(long_job)
    wait_for_step(run, 10, job_id)
    subprocess.run(["scancel", job_id], check=True)  # as its wall time would (SIGTERM, then SIGKILL)
    assert sl.wait_for(job_id, timeout_s=60, poll_s=0.5).state in ("CANCELLED", "FAILED")
    assert gone(job_id, run) == []
    done = len(list((run / "outputs" / "steps" / "federate=transmission").glob("part-*.parquet")))
    assert 10 <= done < 96
    r = hpcsim("jobs", "submit", str(long_job), "--resume")
    assert r.returncode == 0, r.stderr
    again = r.stdout.strip()
    status = sl.wait_for(again, timeout_s=240, poll_s=0.5)
    out = (long_job / f"slurm-{again}.out").read_text()
    assert status.state == "COMPLETED", out
    assert f"resuming {run} at step " in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is True and len(summary["steps"]) == 96
    ref = tmp_path / "uninterrupted"
    run_study(load_study(long_job.parent / "qsts96.toml").with_overrides(workers=RANKS), ref, show_progress=False)

    def final(folder, name, key):
        t = ds.dataset(folder / "outputs" / name, format="parquet", partitioning="hive").to_table().to_pandas()
        return t.sort_values("iteration").groupby(["time_s", key]).last().sort_index()

    for name, key, cols in (("transmission", "bus", ["v_pu", "angle_deg", "p_mw", "q_mvar"]),
                            ("feeders", "feeder", ["v_source_pu", "p_mw", "q_mvar"])):
        a, b = final(ref, name, key), final(run, name, key)
        assert list(a.index) == list(b.index), name
        for c in cols:
            # each power flow starts from the last converged solution, which a resumed run does not carry: its
            # first power flow starts from the case's voltages and stops at ANDES's tolerance elsewhere
            assert np.max(np.abs(a[c].to_numpy() - b[c].to_numpy())) < 1e-6, (name, c)
        if name == "feeders":
            assert [list(x) for x in a.reg_taps] == [list(x) for x in b.reg_taps]


@pytest.mark.xfail(strict=False, reason="requeue races the ending first attempt here: about 1 run in 3 the job "
                                        "ends FAILED (exit 1:0, no output) at the requeue instead of restarting; "
                                        "`jobs submit --resume` (tested above) is the reliable path")
def test_a_job_signalled_before_its_wall_time_requeues_itself_and_resumes(slurm, long_job, tmp_path):
    job = tmp_path / "requeue"
    render_job(load_study(long_job.parent / "qsts96.toml"), cluster_for(slurm, ranks=3), job,
               site=Site(requeue_before_s=120))
    script = (job / "job.sbatch").read_text()
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR2@120" in script
    run = job / "run"
    job_id = sl.submit(job)
    wait_for_step(run, 5, job_id)
    # what SLURM does 120 s before the wall time (--signal=B:USR2@120): USR2 to the batch shell alone
    (shell,) = [p for p in psutil.process_iter(["cmdline", "environ"])
                if (p.info["environ"] or {}).get("SLURM_JOB_ID") == job_id
                and any(a.endswith("slurm_script") for a in p.info["cmdline"] or [])]
    shell.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while sl.job_state(job_id).state != "PENDING":  # requeued: SLURM holds it ~2 min (BeginTime)
        assert time.monotonic() < deadline, sl.job_state(job_id)
        time.sleep(0.25)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)  # skip the hold
    status = sl.wait_for(job_id, timeout_s=300, poll_s=0.5)
    out = (job / f"slurm-{job_id}.out").read_text()
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert status.state == "COMPLETED", out + shown
    assert "requeueing job" in out and f"resuming {run} at step " in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is True and len(summary["steps"]) == 96
    assert gone(job_id, run) == []


def test_node_3_lost_mid_run_ends_the_job(slurm, long_job):
    if not slurm.isolated:
        pytest.skip("losing one node alone needs one network namespace per node")
    job_id = sl.submit(long_job)
    wait_for_step(long_job / "run", 2, job_id)
    try:
        killed = slurm.cluster.crash("node03")  # its slurmd, slurmstepds, sub-broker and feeder rank at once
        t_hit = time.time()
        assert killed >= 3
        watchdog = long_job / "run" / "errors" / "watchdog.json"
        deadline = time.monotonic() + 30
        while not watchdog.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "NodeLost" in watchdog.read_text()
        # back from a reboot: SLURM can then clean the job up on node03 too (a dead node keeps it COMPLETING
        # until SlurmdTimeout)
        slurm.cluster.reboot("node03")
        failed_as_expected(long_job, job_id, t_hit, "node03", "sub2_broker", "feeders_002")
        lines = hpcsim("jobs", "status", str(long_job)).stdout.splitlines()
        (node3,) = [ln for ln in lines if ln.startswith("node 2 node03: ")]
        assert node3.endswith("failed: sub2_broker (NodeLost), feeders_002 (NodeLost)"), node3
    finally:
        if slurm.cluster.node_states().get("node03") != "idle":
            slurm.cluster.reboot("node03")


def test_a_job_on_fewer_nodes_than_planned_says_so(slurm, tmp_path):
    job = tmp_path / "job"
    render_on_three_nodes(slurm, CASES_DIR / "activsg200_ieee8500_bus8.toml", job, "--ranks", "3",
                          "--sbatch=--nodes=2")
    job_id = sl.submit(job)
    status = sl.wait_for(job_id, timeout_s=60, poll_s=0.25)
    assert (status.state, status.exit_code) == ("FAILED", "2:0")
    out = (job / f"slurm-{job_id}.out").read_text()
    assert "hpcsim: the job got 2 node(s), the plan needs 3: render for 2 (hpcsim jobs render --nodes 2) or ask " \
           "SLURM for 3" in out


@pytest.mark.usefixtures("slurm")
def test_node_lists_expand_as_slurm_does():
    for nodelist in ("node[01-03,07]", "node[01-03]", "login1,node[8-10]", "n1"):
        theirs = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                check=True).stdout.split()
        assert sl.expand_nodelist(nodelist) == theirs, nodelist


@pytest.mark.usefixtures("reference")  # its run folder, REF_RUN[0]
def test_aggregate_with_dask_workers_as_slurm_jobs_on_other_nodes(slurm, tmp_path):
    """``hpcsim aggregate --scheduler slurm``: three dask-jobqueue worker jobs, one per node (--exclusive), give
    the tables the in-process thread pool gives."""
    runs = {}
    for scheduler in ("threads", "slurm"):
        run = tmp_path / scheduler
        shutil.copytree(REF_RUN[0], run)
        env = {**os.environ, "DASK_JOBQUEUE__SLURM__JOB_EXTRA_DIRECTIVES": '["--exclusive"]',
               "DASK_JOBQUEUE__SLURM__WALLTIME": "00:10:00"}
        r = subprocess.run([*HPCSIM, "aggregate", str(run), "--scheduler", scheduler, "--slurm-jobs", "3",
                            "--no-plots", "--json"], capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
                           env=env)
        assert r.returncode == 0, r.stderr
        runs[scheduler] = run / "aggregate"
    label = json.loads((runs["slurm"] / "manifest.json").read_text())["scheduler"]
    # the workers ran on the compute nodes, at their addresses, not where the aggregation was started
    assert label.startswith("slurm (3 workers on "), label
    if slurm.isolated:
        assert all(n.addr in label for n in slurm.nodes), label
    for table in ("boundary", "feeder_voltages", "steps", "iterations", "federates", "system"):
        a = pd.read_parquet(runs["threads"] / f"{table}.parquet")
        b = pd.read_parquet(runs["slurm"] / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


def test_the_exchange_benchmark_across_three_nodes_flat_and_hierarchy(slurm, tmp_path):
    """What ``hpcsim bench --slurm-nodes 3`` adds: one job per layout, every value checked fresh by the hub."""
    (row,) = compare_layouts(tmp_path / "pairs", values=(126,), nodes=3, iterations=10)
    assert row["flat_ms"] > 0 and row["hierarchy_ms"] > 0 and row["hierarchy_over_flat"] > 0
    # the hierarchy job really ran through a sub-broker per node, each bound to its node's address
    one = measure_exchange_nodes(tmp_path / "one", 126, layout="hierarchy", nodes=3, iterations=5)
    assert len(one["per_iteration_s"]) == 5
    names = json.dumps(one["federation_brokers"])
    assert all(f"sub{i}_bench" in names for i in range(3))
    steps = (tmp_path / "one" / "steps.tsv").read_text().splitlines()
    for i, node in enumerate(slurm.nodes):
        line = next(s for s in steps if s.startswith(f"sub{i}_broker\t"))
        assert f"--local_interface=tcp://{node.addr}" in line and f"\t{i}\t" in line


def test_feeder_ranks_launched_by_mpiexec_instead_of_srun(slurm, tmp_path):
    """``--mpi none``: MPICH's mpiexec (Hydra) inside the allocation places the ranks from a NODE:COUNT hostfile;
    the answer is the bus-8 study's as ``hpcsim run`` gives it, each rank on its planned node with its own log."""
    study = load_study(CASES_DIR / "activsg200_ieee8500_bus8.toml")
    reference = run_study(study.with_overrides(workers=3), tmp_path / "ref", show_progress=False)
    prologue = tmp_path / "site.sh"
    # the nodes' shared host name resolves to 127.0.0.1 here: Hydra must advertise the node's interface instead
    prologue.write_text("export HYDRA_IFACE=eth0\n" if slurm.isolated else "\n")
    job = tmp_path / "job"
    render_on_three_nodes(slurm, CASES_DIR / "activsg200_ieee8500_bus8.toml", job, "--ranks", "3",
                          "--mpi", "none", "--prologue", str(prologue))
    job_id = sl.submit(job)
    status = sl.wait_for(job_id, timeout_s=180, poll_s=0.5)
    assert status.state == "COMPLETED", (job / f"slurm-{job_id}.out").read_text()
    run = job / "run"
    same_answer(json.loads((run / "summary.json").read_text()), reference, v_tol=1e-9)
    assert (run / "configs" / "hostfile").read_text().split() == ["node01:1", "node02:1", "node03:1"]
    for rank, node in enumerate(slurm.nodes):
        log = (run / "logs" / f"feeders_{rank:03d}.log").read_text()
        assert f"feeders_{rank:03d} on node {rank} (rank {rank}) -> tcp://{node.addr}:" in log
    assert gone(job_id, run) == []
