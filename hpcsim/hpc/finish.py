"""Last step of a SLURM job: ``python -m hpcsim.hpc.finish RUN_DIR --plan PLAN --wall-s S [--failed STATUS]``.

Builds ``<run>/summary.json`` from the Parquet outputs exactly as the local runner does
(:func:`hpcsim.output.summary.build_summary`), so a job's run folder reads like one from ``hpcsim run``. The job
script runs it after every step succeeded, or with ``--failed STATUS`` (``converged: false``) after a step
ended with STATUS. Then it prints the first federate error and exits with that error's code, as ``hpcsim run``
would (3 a federate failed, 4 no convergence), or with STATUS if no federate recorded one: which step SLURM
reports first is a race (a rank killed by ``--kill-on-bad-exit`` ends with 143 as often as the failing one
with its own code), the recorded cause is not.
Peak memory is the sum of every federate's own peak (the runner samples the total instead).

It also writes ``<run>/runner.json`` (the ``helics run`` format) from ``<run>/configs/steps.tsv``, where the
job script recorded every step's command line as it started it: the federation as it ran, node by node.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
from pathlib import Path

from hpcsim import metadata
from hpcsim.console import setup_logging
from hpcsim.errors import FederateError, HpcsimError
from hpcsim.federation.federate import recorded_failure
from hpcsim.federation.helics_config import Process, runner_file, write_config
from hpcsim.federation.layout import group_name
from hpcsim.hpc.plan import Plan

log = logging.getLogger(__name__)


def root_cause(run_dir: Path) -> HpcsimError | None:
    """The first real error a federate (or the node watchdog) recorded under ``<run>/errors/`` (the local
    runner's reading); else the first task srun reports dead (:func:`launcher_cause`); else None."""
    return recorded_failure(run_dir) or launcher_cause(run_dir)


# srun's own report of a task that ended badly: "srun: error: node03: task 2: Killed"
_SRUN_TASK_RE = re.compile(r"^srun: error: (?P<node>\S+): task (?P<task>\d+): (?P<how>.+)$")
# steps in the order their srun logs are read: the feeder ranks, then the single-task steps
_STEP_LOGS = (("feeders", None), ("transmission", "transmission"))


def launcher_cause(run_dir: Path) -> FederateError | None:
    """A federate that died without recording why (SIGKILL, out of memory, a crash in C): the first task that
    srun reports ending other than "Terminated" (the ones stopped after it) in ``logs/NAME.srun.log``, named
    with its node. The feeder step's task number is its MPI rank, so its federate name follows."""
    for step, name in _STEP_LOGS:
        try:
            lines = (run_dir / "logs" / f"{step}.srun.log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = _SRUN_TASK_RE.match(line.strip())
            if m and m["how"].strip() != "Terminated":
                fed = name or group_name(int(m["task"]))
                return FederateError(f"federate {fed} on {m['node']} died without an error of its own: srun "
                                     f"reports task {m['task']} {m['how'].strip()} (log: "
                                     f"{run_dir / 'logs' / (fed + '.log')})")
    return None


JOB_ENV = ("HPCSIM_NODES", "HPCSIM_NODE_ADDRS", "HPCSIM_SUB_PORT")


def write_runner(run_dir: Path, study: str, env: dict[str, str] | None = None) -> Path | None:
    """``<run>/runner.json`` from the steps the job script recorded (name, node, command), with the job
    environment the federate steps read; None when nothing was recorded."""
    env = dict(os.environ if env is None else env)
    try:
        lines = (run_dir / "configs" / "steps.tsv").read_text().splitlines()
    except FileNotFoundError:
        return None
    shared = tuple((k, env[k]) for k in JOB_ENV if k in env)
    processes = []
    for line in lines:
        name, node, command = line.split("\t", 2)
        extra = (("SLURM_HOSTFILE", "configs/hostfile"),) if name == "feeders" else ()
        processes.append(Process(name, tuple(shlex.split(command)), env=shared + extra,
                                 host=node if name != "feeders" else "all nodes (hostfile)"))
    return write_config(run_dir / "runner.json", runner_file(study, processes))


def finish(run_dir: Path, plan: Plan, wall_s: float, failed: bool = False) -> dict:
    from hpcsim.output.summary import (  # noqa: PLC0415 - pyarrow off `hpcsim jobs status` (root_cause)
        build_run_summary, read_description, write_summary,
    )

    desc = read_description(run_dir)
    slurm = {"slurm": {"job_id": os.environ.get("SLURM_JOB_ID"), "nodes": len(plan.nodes),
                       "nodelist": os.environ.get("SLURM_JOB_NODELIST")}}
    if desc.get("kind") == "dynamic":
        from hpcsim.dynamics.summary import build_summary  # noqa: PLC0415 - ANDES-free, but only for dynamic runs

        summary = build_summary(run_dir, desc, completed=not failed, wall_s=wall_s) | slurm
    else:
        summary = build_run_summary(run_dir, desc, metadata.read(run_dir / "boundary_map.txt"), ran_ok=not failed,
                                    wall_s=wall_s, extra=slurm)
    write_summary(run_dir, summary)
    write_runner(run_dir, summary["study"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.hpc.finish", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--wall-s", type=float, default=0.0, help="wall time of the federation (seconds)")
    parser.add_argument("--failed", type=int, default=None, metavar="STATUS",
                        help="a step ended with STATUS: converged = false, exit with the cause's code")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    try:
        plan = Plan.from_dict(json.loads(args.plan.read_text()))
        summary = finish(args.run_dir, plan, args.wall_s, args.failed is not None)
        if "steps" in summary:
            log.info("%s: %s, %d step(s) -> %s", summary["study"], "converged" if summary["converged"] else "FAILED",
                     len(summary["steps"]), args.run_dir / "summary.json")
        else:  # a dynamic run
            log.info("%s: %s, %g s simulated -> %s", summary["study"],
                     "completed" if summary["completed"] else "FAILED", summary["stop_s"], args.run_dir / "summary.json")
    except (HpcsimError, OSError, json.JSONDecodeError) as exc:
        print(f"hpcsim: error: cannot write {args.run_dir / 'summary.json'}: {exc}", file=sys.stderr)
        if args.failed is None:
            return 2
    if args.failed is None:
        return 0
    cause = root_cause(args.run_dir)
    if cause is None:
        return args.failed
    print(f"hpcsim: error: {cause}", file=sys.stderr)
    return cause.exit_code


if __name__ == "__main__":
    sys.exit(main())
