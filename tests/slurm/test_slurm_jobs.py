"""Rendered jobs on a real SLURM: the bus-8 study (with a site prologue and two extra directives) gives the
same answer as ``hpcsim run`` and leaves a runner.json of what ran; a failing feeder step ends the job promptly
as FAILED with nothing left running."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hpcsim.cases import CASES_DIR, PROJECT_ROOT
from hpcsim.federation.runner import run_study
from hpcsim.hpc import slurm as sl
from hpcsim.hpc.jobdir import render_job
from hpcsim.hpc.plan import Cluster
from hpcsim.study import load_study

pytestmark = pytest.mark.slurm

BUS8 = CASES_DIR / "activsg200_ieee8500_bus8.toml"
HPCSIM = [sys.executable, "-m", "hpcsim.cli", "-q"]


def hpcsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCSIM, *args], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)


def render(slurm, out: Path, *site: str) -> Path:
    r = hpcsim("jobs", "render", str(BUS8), "--nodes", "1", "--cores-per-node", str(slurm.cpus), "--mem-per-node-gb",
               f"{slurm.mem_gb:.1f}", "--ranks", "2", "--walltime", "00:05:00", *site, "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def submit(job: Path) -> str:
    r = hpcsim("jobs", "submit", str(job))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def leftovers(run_dir: Path, job_id: str) -> list[str]:
    marks = (str(run_dir), f"--name=root_{job_id} ", f"--name=sub0_{job_id} ")
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or []) + " "
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmd for m in marks):
                found.append(cmd)
        except psutil.Error:
            continue
    return found


def gone(run_dir: Path, job_id: str, timeout_s: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := leftovers(run_dir, job_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_study(load_study(BUS8).with_overrides(workers=2), tmp_path_factory.mktemp("ref") / "run",
                     show_progress=False)


def test_bus8_job_equals_the_local_run(slurm, reference, tmp_path):
    prologue = tmp_path / "site prologue.sh"
    prologue.write_text('echo "site prologue ran on $(hostname) in $SLURM_JOB_ID"\nexport HPCSIM_SITE_MARK=1\n')
    job = render(slurm, tmp_path / "job dir", "--prologue", str(prologue), "--sbatch", "--comment=hpcsim-site-test",
                 "--sbatch", "--open-mode=append")  # a space in every path of the job
    subprocess.run(["bash", "-n", str(job / "job.sbatch")], check=True)
    job_id = submit(job)
    assert (job / "job_id").read_text().strip() == job_id
    status = sl.wait_for(job_id, timeout_s=120)
    out = (job / f"slurm-{job_id}.out").read_text()
    assert status.state == "COMPLETED", out
    run = job / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is True and reference["converged"] is True
    assert [s["iterations"] for s in summary["steps"]] == [s["iterations"] for s in reference["steps"]]
    for mine, theirs in zip(summary["boundary"], reference["boundary"], strict=True):
        assert mine["bus"] == theirs["bus"]
        for key in ("v_pu", "angle_deg", "p_mw", "q_mvar"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-9), key
    assert summary["workers"] == 2 and summary["slurm"]["job_id"] == job_id
    for path in ("configs/transmission.json", "configs/feeders_000.json", "configs/feeders_001.json",
                 "logs/root_broker.log", "logs/sub0_broker.log", "logs/transmission.log", "logs/feeders_001.log",
                 "outputs/feeders", "outputs/transmission", "outputs/steps", "boundary_map.txt", "study.toml"):
        assert (run / path).exists(), path
    # the MPI start-up went through srun's PMI server cleanly (MPICH's UCX address could overflow its requests)
    for log in ("feeders_000.log", "feeders_001.log"):
        assert "mpi/pmi2" not in (run / "logs" / log).read_text(), log
    cfg = json.loads((run / "configs" / "feeders_001.json").read_text())
    assert cfg["hpcsim"]["run_dir"] == ".." and cfg["broker_address"].startswith("tcp://127.0.0.1:")
    # the site's additions took effect: the prologue ran first, sbatch took the extra directives
    assert "site prologue ran on" in out and f"in {job_id}" in out
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Comment=hpcsim-site-test" in shown  # ended jobs stay known for MinJobAge (300 s)
    # runner.json: every broker and federate step as the script ran it, in HELICS's runner format
    runner = json.loads((run / "runner.json").read_text())
    steps = {f["name"]: f for f in runner["federates"]}
    assert runner["broker"] is False and list(steps) == ["root_broker", "sub0_broker", "transmission", "feeders"]
    assert f"--name=root_{job_id}" in steps["root_broker"]["exec"] and "--subbrokers=1" in steps["root_broker"]["exec"]
    assert "hpcsim.hpc.rank" in steps["transmission"]["exec"] and steps["feeders"]["exec"].startswith("srun --mpi=")
    assert steps["transmission"]["env"]["HPCSIM_SUB_PORT"] == cfg["broker_address"].rsplit(":", 1)[1]
    r = hpcsim("jobs", "status", str(job))
    assert r.returncode == 0 and r.stdout.startswith(f"job {job_id}: COMPLETED") and "converged" in r.stdout
    assert gone(run, job_id) == []


def test_failing_feeder_step_ends_the_job_promptly_as_failed(slurm, tmp_path):
    job = tmp_path / "failing"  # rendered and submitted in-process this time (the CLI is covered above)
    render_job(load_study(BUS8), Cluster(1, slurm.cpus, slurm.mem_gb, walltime="00:05:00", ranks=2,
                                         network="ipv4"), job)
    bundle = job / "configs" / "node_000.json"
    cfg = json.loads(bundle.read_text())
    cfg["feeder_model"] = str(tmp_path / "missing" / "Master.dss")  # every rank of node 0 fails to load it
    bundle.write_text(json.dumps(cfg))
    t0 = time.monotonic()
    job_id = sl.submit(job)
    status = sl.wait_for(job_id, timeout_s=60, poll_s=0.5)
    elapsed = time.monotonic() - t0
    # a federate failed: 3, as `hpcsim run` (whichever step SLURM saw end first)
    assert status.state == "FAILED" and status.exit_code == "3:0", status
    assert elapsed < 60
    r = hpcsim("jobs", "status", str(job), "--wait", "--timeout", "10")
    assert r.returncode == 3
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"hpcsim: error: job {job_id} ended FAILED (exit {status.exit_code}); federate feeders_00")
    assert "CaseError: feeder file" in line
    summary = json.loads((job / "run" / "summary.json").read_text())
    assert summary["converged"] is False
    assert gone(job / "run", job_id) == []


def test_a_job_that_does_not_converge_exits_4_like_hpcsim_run(slurm, tmp_path):
    job = tmp_path / "noconv"
    render_job(load_study(BUS8).with_overrides(max_iterations=1),
               Cluster(1, slurm.cpus, slurm.mem_gb, walltime="00:05:00", ranks=2), job)
    job_id = sl.submit(job)
    status = sl.wait_for(job_id, timeout_s=60, poll_s=0.5)
    assert (status.state, status.exit_code) == ("FAILED", "4:0")
    out = (job / f"slurm-{job_id}.out").read_text()
    assert "federate transmission on node01 failed: ConvergenceError" in out
    assert json.loads((job / "run" / "summary.json").read_text())["converged"] is False
    assert gone(job / "run", job_id) == []
