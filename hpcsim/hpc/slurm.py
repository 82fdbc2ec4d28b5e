"""SLURM: the batch script (pure text from a plan) and the scheduler commands (submit, status).

Rendering is separate from submitting: :func:`render_script` is a pure function of the plan and the site's
additions, pinned by golden files; every scheduler command goes through :func:`_call`, which reports command,
exit code, stdout and stderr when it fails.

The script is ``jobs/templates/slurm.sbatch`` with the plan filled in (``@NAME@`` placeholders). It runs in
its job folder (``$SLURM_SUBMIT_DIR``; ``hpcsim jobs submit`` calls sbatch there), finds Python in
``$HPCSIM_PYTHON`` or the one that rendered it, learns its nodes from ``scontrol show hostnames`` and each
node's address from ``scontrol show node`` (``NodeAddr``), derives its broker ports from the job id, and spells
out every broker's command line: the root broker on node 0, one sub-broker per node, each bound to its own
node's address. The transmission federate runs on node 0 and all feeder ranks as ONE MPI step (PMI2) placed
by an arbitrary-distribution hostfile built from the plan. It waits on every step and fails fast: the first
step that ends non-zero stops the others and the job exits with its status (no hang until the walltime).
Finally ``python -m hpcsim.hpc.finish`` writes ``summary.json`` and ``runner.json``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcsim.cases import PROJECT_ROOT
from hpcsim.errors import StudyError, SubmitError
from hpcsim.federation.liveness import DEFAULT_STALL_TIMEOUT_S
from hpcsim.hpc import MEM_MARGIN
from hpcsim.hpc.plan import Plan

log = logging.getLogger(__name__)

TEMPLATE = PROJECT_ROOT / "jobs" / "templates" / "slurm.sbatch"
TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE")
CALL_TIMEOUT_S = 60.0
# the feeder step's MPI launcher: srun with SLURM's PMI2 or PMIx plugin, or none = MPICH's mpiexec (Hydra)
MPI_LAUNCHERS = ("pmi2", "pmix", "none")


class JobFailedError(SubmitError):
    """A job ended in a state other than COMPLETED."""

    exit_code = 3


def job_name(study: str) -> str:
    """A job name that needs no quoting in an ``#SBATCH`` line (sbatch parses those, not the shell)."""
    return "hpcsim-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", study).strip("_") or "study")[:48]


def mem_request_mb(plan: Plan, margin: float = MEM_MARGIN) -> tuple[int, str]:
    """(``--mem`` in MB, the line that explains it): the plan's largest predicted node peak + ``margin``, at most
    the node's memory."""
    peak = max(n.mem_mb for n in plan.nodes)
    node_mb = int(plan.cluster.mem_per_node_gb * 1024)
    want = int(math.ceil(peak * (1 + margin)))
    note = f"# memory: predicted peak {peak / 1024:.1f} GB per node + {margin:.0%} margin"
    if want > node_mb:
        return node_mb, note + f", capped at the node's {plan.cluster.mem_per_node_gb:g} GB"
    return want, note


def check_directives(directives: Sequence[str]) -> list[str]:
    """Extra ``#SBATCH`` options as given (``--qos=high``): one option each, no line breaks."""
    out = []
    for d in directives:
        d = d.strip()
        if not d.startswith("-") or any(c in d for c in "\n\r\0"):
            raise StudyError(f"--sbatch {d!r}: give one sbatch option such as --qos=high (starting with -)")
        out.append(d)
    return out


def check_mpi(mpi: str) -> str:
    if mpi not in MPI_LAUNCHERS:
        raise StudyError(f"--mpi {mpi!r}: one of {', '.join(MPI_LAUNCHERS)}")
    return mpi


def stall_timeout_s(plan: Plan) -> int:
    """The job watchdog's stall timeout: :data:`DEFAULT_STALL_TIMEOUT_S`, or 5 × the predicted start-up and one
    iteration where that is longer (a big study's first progress comes late)."""
    e = plan.estimate
    return int(math.ceil(max(DEFAULT_STALL_TIMEOUT_S, 5 * (e.startup_s + e.iteration_s + e.transmission_pf_s))))


def render_script(plan: Plan, *, python: str = "python3", prologue: str = "", prologue_name: str = "",
                  directives: Sequence[str] = (), mem_margin: float = MEM_MARGIN, mpi: str = "pmi2",
                  requeue_before_s: int = 0, template: Path = TEMPLATE) -> str:
    """The batch script of a plan (pure; deterministic text). ``python`` is the default ``$HPCSIM_PYTHON``;
    ``prologue`` (site setup: module loads, a venv, environment) runs before hpcsim; ``directives`` are extra
    ``#SBATCH`` options, after hpcsim's (sbatch lets a later option win); ``mpi`` the feeder step's launcher
    (:data:`MPI_LAUNCHERS`); ``requeue_before_s`` > 0: the job requeues itself that long before its wall time
    (and SLURM requeues it after a node failure), resuming from the last completed step."""
    c, s = plan.cluster, plan.study
    mem_mb, mem_note = mem_request_mb(plan, mem_margin)
    header = [
        f"# hpcsim job: study {job_name(s.name)[7:]}, case {s.case}, {s.n_feeders} {s.model} feeders on "
        f"{s.n_buses} boundary buses",
        f"# plan: {len(plan.nodes)} node(s) x {c.cores_per_node} cores, {plan.ranks} feeder ranks "
        f"(≤ {plan.estimate.feeders_per_rank} feeders each), network {plan.network}; "
        f"predicted {plan.estimate.step_s:.3g} s per step",
        "# Rendered by `hpcsim jobs render` from jobs/templates/slurm.sbatch. Edit it as you need: a re-render",
        "# refuses to overwrite an edited job folder unless --force. Submit with `hpcsim jobs submit DIR`",
        "# (or `cd DIR && sbatch job.sbatch`).",
        f"#SBATCH --job-name={job_name(s.name)}",
        f"#SBATCH --nodes={len(plan.nodes)}",
        f"#SBATCH --ntasks-per-node={plan.max_cores}",
        "#SBATCH --cpus-per-task=1",
        mem_note,
        f"#SBATCH --mem={mem_mb}M",
        f"#SBATCH --time={c.walltime}",
    ]
    if requeue_before_s:
        header += [f"# requeued {requeue_before_s} s before the wall time (USR2) or after a node failure, then "
                   "resumed from the last completed step",
                   "#SBATCH --requeue", f"#SBATCH --signal=B:USR2@{requeue_before_s}",
                   "#SBATCH --open-mode=append  # slurm-<id>.out keeps every attempt"]
    else:
        header += ["# a co-simulation is not restarted by SLURM (after a node failure); resume it with",
                   "# `hpcsim jobs submit DIR --resume`, or render with --requeue-before S",
                   "#SBATCH --no-requeue"]
    if c.partition:
        header.append(f"#SBATCH --partition={c.partition}")
    if c.account:
        header.append(f"#SBATCH --account={c.account}")
    header.append("#SBATCH --output=slurm-%j.out")
    extra = check_directives(directives)
    if extra:
        header.append("# site directives (--sbatch)")
        header += [f"#SBATCH {d}" for d in extra]
    site = ""
    if prologue:
        body = prologue if prologue.endswith("\n") else prologue + "\n"
        site = (f"# --- site prologue (--prologue {prologue_name}) ---\n{body}# --- end of the site prologue ---\n")
    root = next(b for b in plan.brokers if b["parent"] is None)
    subs = [b["federates"] for b in plan.brokers if b["parent"] is not None]
    fill = {
        "HEADER": "\n".join(header), "PROLOGUE": site, "STUDY": shlex.quote(s.name), "PYTHON": shlex.quote(python),
        "NETWORK": plan.network, "MPI": check_mpi(mpi), "RANKS": str(plan.ranks),
        "RANKS_PER_NODE": " ".join(str(n.ranks) for n in plan.nodes), "ROOT_FEDERATES": str(root["federates"]),
        "SUB_FEDERATES": " ".join(map(str, subs)), "PORT_BASE": str(plan.ports["base"]),
        "PORT_STRIDE": str(plan.ports["stride"]), "PORT_SLOTS": str(plan.ports["slots"]),
        "STALL_S": str(stall_timeout_s(plan)),
        "NODE0_ROLES": "transmission agc" if s.kind == "dynamic" else "transmission",
    }
    try:
        text = template.read_text()
    except OSError as exc:
        raise StudyError(f"job template {template}: {exc}") from None
    unknown = sorted(set(re.findall(r"@([A-Z][A-Z0-9_]*)@", text)) - set(fill))
    if unknown:
        raise StudyError(f"job template {template}: unknown placeholder(s) {', '.join(unknown)}")
    # one pass over the template: a value that happens to hold @NAME@ (a prologue) is never filled again
    return re.sub(r"@([A-Z][A-Z0-9_]*)@", lambda m: fill[m.group(1)], text)


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


def submit(job_dir: Path, resume: bool = False) -> str:
    """``sbatch --parsable job.sbatch`` in the job folder; returns the job id, also written to ``job_id``.
    ``resume``: continue the folder's run from its last completed step (the job script's resume mode)."""
    job_dir = job_dir.resolve()
    if not (job_dir / "job.sbatch").is_file():
        raise SubmitError(f"{job_dir}: no job.sbatch (render one with `hpcsim jobs render`)")
    if resume and not (job_dir / "run").is_dir():
        raise SubmitError(f"{job_dir}: --resume: no run folder to resume (submit it without --resume)")
    if not resume and (job_dir / "run").exists():
        raise SubmitError(f"{job_dir / 'run'} exists: this job folder has run already; resume it "
                          f"(hpcsim jobs submit {job_dir} --resume) or render a new one")
    env = {**os.environ, "HPCSIM_PYTHON": os.environ.get("HPCSIM_PYTHON", sys.executable),
           "HPCSIM_RESUME": "1" if resume else "0"}
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
    nodelist: str = ""  # SLURM's NodeList of the job (``node[01-03]``), empty while pending

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


def _fields(text: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in text.split() if "=" in tok)


def job_state(job_id: str) -> JobStatus:
    """State of a job: ``scontrol show job`` (queued, running and recently ended jobs), else ``sacct``."""
    try:
        f = _fields(_call(["scontrol", "show", "job", "--oneliner", job_id]).stdout)
        nodelist = f.get("NodeList", "")
        return JobStatus(job_id, f.get("JobState", "UNKNOWN"), f.get("ExitCode", "?"), f.get("Reason", ""),
                         "" if nodelist == "(null)" else nodelist)
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


_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compact host list (``node[01-03,07],login1``) as names, in order (``scontrol show hostnames``
    without a controller; one bracket group per name)."""
    names: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)?", nodelist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            names.append(part)
            continue
        head, body, tail = m.groups()
        for item in body.split(","):
            r = _RANGE_RE.match(item)
            if not r:
                raise SubmitError(f"node list {nodelist!r}: cannot read range {item!r}")
            lo, hi = r.group(1), r.group(2) or r.group(1)
            if int(hi) < int(lo):
                raise SubmitError(f"node list {nodelist!r}: range {item!r} runs backwards")
            names += [f"{head}{i:0{len(lo)}d}{tail}" for i in range(int(lo), int(hi) + 1)]
    return names


def node_states(names: Sequence[str]) -> dict[str, str]:
    """SLURM's state of each node (``idle``, ``allocated``, ``down*`` …); empty if sinfo cannot tell."""
    if not names:
        return {}
    try:
        out = _call(["sinfo", "--noheader", "--Node", "--nodes", ",".join(names), "--format", "%N %T"]).stdout
    except SubmitError:
        return {}
    return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)


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
