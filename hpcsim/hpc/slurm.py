"""SLURM: the batch script (pure text from a plan) and the scheduler commands (submit, status).

Rendering is separate from submitting: :func:`render_script` is a pure function of the plan, pinned by golden
files; every scheduler command goes through :func:`_call`, which reports command, exit code, stdout and stderr
when it fails.

The script holds no machine paths: it runs in its job folder (``$SLURM_SUBMIT_DIR``; ``hpcsim jobs submit``
calls sbatch there), finds Python in ``$HPCSIM_PYTHON`` (set by ``hpcsim jobs submit``) or on ``PATH``, learns
its nodes from ``scontrol show hostnames``, and leaves addresses and ports to :mod:`hpcsim.hpc.rank` at run
time. Steps: root broker on node 0, one sub-broker per node, the transmission federate on node 0, and all
feeder ranks as ONE MPI step (PMI2) placed by an arbitrary-distribution hostfile built from the plan. It waits
on every step and fails fast: the first step that ends non-zero stops the others and the job exits with its
status (no hang until the walltime). Finally ``python -m hpcsim.hpc.finish`` writes ``summary.json``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hpcsim.errors import SubmitError
from hpcsim.hpc.plan import Plan

log = logging.getLogger(__name__)

TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE")
CALL_TIMEOUT_S = 60.0


class JobFailedError(SubmitError):
    """A job ended in a state other than COMPLETED."""

    exit_code = 3


def job_name(study: str) -> str:
    """A job name that needs no quoting in an ``#SBATCH`` line (sbatch parses those, not the shell)."""
    return "hpcsim-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", study).strip("_") or "study")[:48]


_BODY = r"""
set -uo pipefail

STUDY=@STUDY@
JOB_DIR=${HPCSIM_JOB_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
PYTHON=${HPCSIM_PYTHON:-python3}
RUN=$JOB_DIR/run
RANKS=@RANKS@
RANKS_PER_NODE=(@RANKS_PER_NODE@)

cd "$JOB_DIR" || exit 2
if [ ! -f plan.json ]; then
  echo "hpcsim: no plan.json in $JOB_DIR: submit from the job folder (hpcsim jobs submit DIR)" >&2
  exit 2
fi
if [ -e "$RUN" ]; then
  echo "hpcsim: $RUN exists: this job folder has run already; render a new one" >&2
  exit 2
fi
mkdir -p "$RUN/configs" "$RUN/logs" && cp study.toml boundary_map.txt "$RUN/" || exit 2
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
if [ "${#NODES[@]}" -ne "${#RANKS_PER_NODE[@]}" ]; then
  echo "hpcsim: the job has ${#NODES[@]} node(s), the plan ${#RANKS_PER_NODE[@]}" >&2
  exit 2
fi
export HPCSIM_NODES="${NODES[*]}"
echo "hpcsim: study $STUDY on ${#NODES[@]} node(s) (${NODES[0]} …), $RANKS feeder ranks, run folder $RUN"

# Every process gets its role (node, broker address, feeders) from hpcsim.hpc.rank at run time.
ROLE=("$PYTHON" -m hpcsim.hpc.rank --plan "$JOB_DIR/plan.json" --configs "$JOB_DIR/configs" --run-dir "$RUN")
HOSTFILE=$RUN/configs/hostfile
for i in "${!NODES[@]}"; do
  for ((k = 0; k < RANKS_PER_NODE[i]; k++)); do echo "${NODES[i]}"; done
done > "$HOSTFILE"

PIDS=()
stop_steps() {
  kill -TERM "${PIDS[@]}" 2>/dev/null
  for ((t = 0; t < 40; t++)); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && return
    sleep 0.25
  done
  kill -KILL "${PIDS[@]}" 2>/dev/null
}
trap 'stop_steps; exit 143' TERM INT
START=$SECONDS

# Brokers wait on sockets: they share their node's cores (--overlap); the plan keeps one core per node for them.
srun --nodes=1 --ntasks=1 --exact --overlap -w "${NODES[0]}" -o "$RUN/logs/root_broker.log" \
  "${ROLE[@]}" root-broker &
PIDS+=("$!")
for i in "${!NODES[@]}"; do
  srun --nodes=1 --ntasks=1 --exact --overlap -w "${NODES[i]}" -o "$RUN/logs/sub${i}_broker.log" \
    "${ROLE[@]}" sub-broker &
  PIDS+=("$!")
done
srun --nodes=1 --ntasks=1 --exact -w "${NODES[0]}" -o "$RUN/logs/transmission.log" \
  "${ROLE[@]}" transmission &
PIDS+=("$!")
# Feeder ranks: one MPI step; rank r runs on the node the plan gives it (line r of the hostfile).
SLURM_HOSTFILE=$HOSTFILE srun --mpi=pmi2 --exact --kill-on-bad-exit=1 --distribution=arbitrary \
  -n "$RANKS" -o "$RUN/logs/feeders_%3t.log" "${ROLE[@]}" feeders &
PIDS+=("$!")

# Fail fast: the first step to end non-zero stops the others.
status=0
for _ in "${PIDS[@]}"; do
  wait -n
  rc=$?
  if [ "$rc" -ne 0 ]; then
    status=$rc
    break
  fi
done
WALL=$((SECONDS - START))
FINISH=("$PYTHON" -m hpcsim.hpc.finish "$RUN" --plan "$JOB_DIR/plan.json" --wall-s "$WALL")
if [ "$status" -ne 0 ]; then
  echo "hpcsim: a job step failed (exit $status) after ${WALL} s; stopping the others (logs in $RUN/logs)" >&2
  stop_steps
  "${FINISH[@]}" --failed "$status"  # exits with the first federate error's code (3, 4) or this status
  exit $?
fi
"${FINISH[@]}" || exit $?
echo "hpcsim: done in ${WALL} s: $RUN/summary.json"
"""


def render_script(plan: Plan) -> str:
    """The batch script of a plan (pure; deterministic text)."""
    c = plan.cluster
    s = plan.study
    header = [
        "#!/bin/bash",
        f"# hpcsim job: study {job_name(s.name)[7:]}, case {s.case}, {s.n_feeders} {s.model} feeders on "
        f"{s.n_buses} boundary buses",
        f"# plan: {len(plan.nodes)} node(s) x {c.cores_per_node} cores, {plan.ranks} feeder ranks "
        f"(≤ {plan.estimate.feeders_per_rank} feeders each), network {plan.network}; "
        f"predicted {plan.estimate.step_s:.3g} s per step",
        "# Rendered by `hpcsim jobs render`; submit with `hpcsim jobs submit DIR` (or `cd DIR && sbatch job.sbatch`",
        "# with hpcsim's Python as HPCSIM_PYTHON or first on PATH).",
        f"#SBATCH --job-name={job_name(s.name)}",
        f"#SBATCH --nodes={len(plan.nodes)}",
        f"#SBATCH --ntasks-per-node={plan.max_cores}",
        "#SBATCH --cpus-per-task=1",
        f"#SBATCH --mem={plan.mem_request_mb}M",
        f"#SBATCH --time={c.walltime}",
    ]
    if c.partition:
        header.append(f"#SBATCH --partition={c.partition}")
    if c.account:
        header.append(f"#SBATCH --account={c.account}")
    header.append("#SBATCH --output=slurm-%j.out")
    body = (_BODY.replace("@STUDY@", shlex.quote(s.name)).replace("@RANKS@", str(plan.ranks))
            .replace("@RANKS_PER_NODE@", " ".join(str(n.ranks) for n in plan.nodes)))
    return "\n".join(header) + "\n" + body


# --- scheduler commands ---------------------------------------------------------------------------------------


def _call(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one scheduler command; :class:`SubmitError` with command, exit code, stdout and stderr if it fails."""
    cmd = " ".join(shlex.quote(a) for a in argv)
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
    except FileNotFoundError:
        raise SubmitError(f"`{cmd}`: {argv[0]} not found (is SLURM installed and on PATH?)") from None
    except subprocess.TimeoutExpired:
        raise SubmitError(f"`{cmd}` did not answer in {CALL_TIMEOUT_S:.0f} s") from None
    if r.returncode != 0:
        def one(text: str) -> str:
            return " | ".join(line for line in text.strip().splitlines() if line) or "(empty)"

        raise SubmitError(f"`{cmd}` failed with exit code {r.returncode}; stdout: {one(r.stdout)}; "
                          f"stderr: {one(r.stderr)}")
    return r


def submit(job_dir: Path) -> str:
    """``sbatch --parsable job.sbatch`` in the job folder; returns the job id, also written to ``job_id``."""
    job_dir = job_dir.resolve()
    if not (job_dir / "job.sbatch").is_file():
        raise SubmitError(f"{job_dir}: no job.sbatch (render one with `hpcsim jobs render`)")
    if (job_dir / "run").exists():
        raise SubmitError(f"{job_dir / 'run'} exists: this job folder has run already; render a new one")
    env = {**os.environ, "HPCSIM_PYTHON": os.environ.get("HPCSIM_PYTHON", sys.executable)}
    out = _call(["sbatch", "--parsable", "job.sbatch"], cwd=job_dir, env=env).stdout.strip()
    job_id = out.split(";", 1)[0]
    if not job_id.isdigit():
        raise SubmitError(f"sbatch --parsable printed {out!r}, not a job id")
    (job_dir / "job_id").write_text(job_id + "\n")
    log.info("submitted job %s from %s", job_id, job_dir)
    return job_id


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    exit_code: str
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


def _fields(text: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in text.split() if "=" in tok)


def job_state(job_id: str) -> JobStatus:
    """State of a job: ``scontrol show job`` (queued, running and recently ended jobs), else ``sacct``."""
    try:
        f = _fields(_call(["scontrol", "show", "job", "--oneliner", job_id]).stdout)
        return JobStatus(job_id, f.get("JobState", "UNKNOWN"), f.get("ExitCode", "?"), f.get("Reason", ""))
    except SubmitError as first:
        try:
            out = _call(["sacct", "--noheader", "--parsable2", "-X", "-j", job_id, "-o", "State,ExitCode"]).stdout
        except SubmitError:
            raise first from None
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            raise first from None
        state, code = lines[0].split("|")[:2]
        return JobStatus(job_id, state.split()[0], code)


def read_job_id(job_dir: Path) -> str:
    try:
        return (job_dir / "job_id").read_text().strip()
    except OSError:
        raise SubmitError(f"{job_dir}: no job_id (submit it first with `hpcsim jobs submit {job_dir}`)") from None


def wait_for(job_id: str, timeout_s: float, poll_s: float = 1.0) -> JobStatus:
    """Poll until the job reaches a terminal state; :class:`SubmitError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        st = job_state(job_id)
        if st.done:
            return st
        if time.monotonic() > deadline:
            raise SubmitError(f"job {job_id} still {st.state} after {timeout_s:.0f} s")
        time.sleep(poll_s)
