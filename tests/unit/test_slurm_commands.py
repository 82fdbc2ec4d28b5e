"""Scheduler commands through the one ``_call``: errors, submit and status, with stand-in sbatch/scontrol/sacct."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hpcsim.cli import main
from hpcsim.errors import SubmitError
from hpcsim.hpc import slurm

pytestmark = pytest.mark.unit


def fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


@pytest.fixture
def job_dir(tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    (d / "job.sbatch").write_text("#!/bin/bash\n")
    return d


def test_a_failing_command_reports_command_exit_code_stdout_and_stderr_on_one_line():
    with pytest.raises(SubmitError) as exc:
        slurm._call(["sh", "-c", "echo some out; echo 'line 1' >&2; echo 'line 2' >&2; exit 3"])
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("`sh -c 'echo some out;")
    assert "exit code 3" in msg and "stdout: some out" in msg and "stderr: line 1 | line 2" in msg


def test_a_missing_scheduler_is_a_submit_error():
    with pytest.raises(SubmitError, match="not found"):
        slurm._call(["hpcsim-no-such-sbatch", "x"])


def test_submit_runs_sbatch_in_the_job_folder_and_records_the_job_id(bin_dir, job_dir):
    fake(bin_dir, "sbatch", 'echo "$PWD|$*|$HPCSIM_PYTHON" > calls.txt; echo "4242;cluster"')
    assert slurm.submit(job_dir) == "4242"
    assert (job_dir / "job_id").read_text() == "4242\n"
    cwd, args, python = (job_dir / "calls.txt").read_text().strip().split("|")
    assert Path(cwd) == job_dir.resolve() and args == "--parsable job.sbatch" and python


def test_a_rejected_submission_says_why_and_records_nothing(bin_dir, job_dir):
    fake(bin_dir, "sbatch", 'echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1')
    with pytest.raises(SubmitError, match="exit code 1.*Invalid account"):
        slurm.submit(job_dir)
    assert not (job_dir / "job_id").exists()


def test_submit_refuses_a_folder_without_script_or_that_has_run(tmp_path, job_dir):
    with pytest.raises(SubmitError, match="no job.sbatch"):
        slurm.submit(tmp_path)
    (job_dir / "run").mkdir()
    with pytest.raises(SubmitError, match="has run already"):
        slurm.submit(job_dir)


def test_status_from_scontrol_then_sacct(bin_dir):
    fake(bin_dir, "scontrol", 'echo "JobId=5 JobName=hpcsim-x JobState=RUNNING Reason=None ExitCode=0:0 Nodes=1"')
    st = slurm.job_state("5")
    assert (st.state, st.exit_code, st.done) == ("RUNNING", "0:0", False)
    fake(bin_dir, "scontrol", 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    fake(bin_dir, "sacct", 'echo "FAILED|2:0"')
    assert slurm.job_state("5") == slurm.JobStatus("5", "FAILED", "2:0")
    fake(bin_dir, "sacct", 'echo "accounting storage is disabled" >&2; exit 1')
    with pytest.raises(SubmitError, match="scontrol show job --oneliner 5.*Invalid job id"):
        slurm.job_state("5")


def test_jobs_status_command_waits_and_fails_with_exit_3_on_a_failed_job(bin_dir, job_dir, capsys):
    (job_dir / "job_id").write_text("9\n")
    fake(bin_dir, "scontrol", 'echo "JobId=9 JobState=COMPLETED Reason=None ExitCode=0:0"')
    assert main(["jobs", "status", str(job_dir), "--wait"]) == 0
    assert capsys.readouterr().out.startswith("job 9: COMPLETED (exit 0:0)")
    fake(bin_dir, "scontrol", 'echo "JobId=9 JobState=FAILED Reason=NonZeroExitCode ExitCode=2:0"')
    assert main(["jobs", "status", str(job_dir), "--wait"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpcsim: error: job 9 ended FAILED (exit 2:0)")
    assert main(["jobs", "status", str(job_dir.parent)]) == 2  # no job_id there


def test_status_of_a_job_slurm_has_forgotten_comes_from_its_run_folder(bin_dir, job_dir, capsys):
    (job_dir / "job_id").write_text("3\n")
    fake(bin_dir, "scontrol", 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    fake(bin_dir, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1')
    assert main(["jobs", "status", str(job_dir)]) == 2  # nothing to go by
    capsys.readouterr()
    (job_dir / "run").mkdir()
    (job_dir / "run" / "summary.json").write_text('{"converged": true, "steps": [{"iterations": 3}], "wall_s": 9.0}')
    assert main(["jobs", "status", str(job_dir), "--wait"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("job 3: COMPLETED (exit ?, no longer known to SLURM") and "converged, 1 step(s)" in out
