"""``hpcsim plan`` and ``hpcsim jobs {render,submit,status}``: placement on a cluster and SLURM jobs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

log = logging.getLogger("hpcsim")
SHOW_NODES = 8  # node rows shown in the plan table (first ones and the last one)


def _cluster(args: argparse.Namespace):
    from hpcsim.hpc.plan import Cluster  # noqa: PLC0415

    return Cluster(nodes=args.nodes, cores_per_node=args.cores_per_node, mem_per_node_gb=args.mem_per_node_gb,
                   walltime=args.walltime, partition=args.partition, account=args.account, ranks=args.ranks,
                   network=args.network)


def _study(args: argparse.Namespace):
    from hpcsim.study import load_study  # noqa: PLC0415

    return load_study(args.study)


def _mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def print_plan(plan) -> None:
    s, c, e = plan.study, plan.cluster, plan.estimate
    console = Console()
    console.print(
        f"[bold]{s.name}[/]: {s.case} ({s.case_buses} buses), {s.n_feeders} {s.model} feeders on {s.n_buses} "
        f"boundary buses, {s.coupling} coupling, {s.steps} step(s)\n"
        f"cluster: {c.nodes} node(s) × {c.cores_per_node} cores × {c.mem_per_node_gb:g} GB, walltime {c.walltime}"
        f"{', partition ' + c.partition if c.partition else ''}{', account ' + c.account if c.account else ''}; "
        f"network {plan.network}, broker ports {plan.ports['base']}+4·(job id mod {plan.ports['slots']})\n"
        f"feeder ranks: {plan.ranks} (≤ {e.feeders_per_rank} feeders each); peak node memory "
        f"{_mb(max(n.mem_mb for n in plan.nodes))} (request {_mb(plan.mem_request_mb)} per node)\n"
        f"per iteration {e.iteration_s:.3g} s = feeders {e.feeder_s:.3g} + transmission PF {e.transmission_pf_s:.3g} "
        f"+ exchange {e.exchange_s:.3g}; per step {e.step_s:.3g} s ({e.iterations} iterations); "
        f"start-up {e.startup_s:.3g} s; total {e.total_s:.4g} s"
    )
    table = Table(title="placement (node 0 also runs the root broker and the transmission federate)")
    for col in ("node", "ranks", "first rank", "feeders", "on broker", "cores", "memory"):
        table.add_column(col, justify="right")
    shown = list(plan.nodes[:SHOW_NODES - 1]) + ([plan.nodes[-1]] if len(plan.nodes) >= SHOW_NODES else [])
    for n in shown:
        if n.index == plan.nodes[-1].index and len(plan.nodes) > SHOW_NODES:
            table.add_row("…", "", "", "", "", "", "")
        table.add_row(str(n.index), str(n.ranks), str(n.first_rank), str(n.feeders), str(n.federates),
                      f"{n.cores}/{c.cores_per_node}", _mb(n.mem_mb))
    console.print(table)
    for w in plan.warnings:
        log.warning("%s", w)


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcsim.hpc.plan import plan_study  # noqa: PLC0415

    plan = plan_study(_study(args), _cluster(args))
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=1) + "\n")
    else:
        print_plan(plan)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from hpcsim.hpc.jobdir import render_job  # noqa: PLC0415

    plan = render_job(_study(args), _cluster(args), args.output)
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=1) + "\n")
    else:
        print_plan(plan)
        Console().print(f"wrote {args.output / 'job.sbatch'}; inspect it, then: hpcsim jobs submit {args.output}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcsim.hpc.slurm import submit  # noqa: PLC0415

    job_id = submit(args.dir)
    sys.stdout.write(job_id + "\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hpcsim.errors import SubmitError  # noqa: PLC0415
    from hpcsim.hpc.finish import root_cause  # noqa: PLC0415
    from hpcsim.hpc.slurm import JobFailedError, JobStatus, job_state, read_job_id, wait_for  # noqa: PLC0415

    job_id = read_job_id(args.dir)
    run = args.dir / "run"
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else None
    try:
        st = wait_for(job_id, args.timeout) if args.wait else job_state(job_id)
    except SubmitError:
        if summary is None:
            raise
        # SLURM forgets ended jobs (MinJobAge, and sacct needs accounting); the run folder still tells.
        st = JobStatus(job_id, "COMPLETED" if summary.get("converged") else "FAILED", "?",
                       "no longer known to SLURM; state from run/summary.json")
    line = f"job {st.job_id}: {st.state} (exit {st.exit_code}{', ' + st.reason if st.reason not in ('', 'None') else ''})"
    if summary is not None:
        its = [x["iterations"] for x in summary.get("steps", [])]
        line += (f"; {run}: {'converged' if summary.get('converged') else 'NOT converged'}, {len(its)} step(s), "
                 f"iterations {max(its, default=0)}, wall {summary.get('wall_s', 0):.1f} s")
    elif run.is_dir():
        line += f"; run folder {run}"
    cause = str(root_cause(run) or "") if run.is_dir() else None
    if cause:
        line += f"; cause: {cause}"
    sys.stdout.write(line + "\n")
    if args.wait and st.state != "COMPLETED":
        raise JobFailedError(f"job {job_id} ended {st.state} (exit {st.exit_code}){'; ' + cause if cause else ''}; "
                             f"logs in {run / 'logs'} and {args.dir / ('slurm-' + job_id + '.out')}")
    return 0


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, help="study file (cases/*.toml)")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--cores-per-node", type=int, required=True)
    p.add_argument("--mem-per-node-gb", type=float, required=True)
    p.add_argument("--walltime", default="01:00:00", help="HH:MM:SS or D-HH:MM:SS (default %(default)s)")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--ranks", type=int, default=None, help="at most this many feeder ranks (default: as many as fit)")
    p.add_argument("--network", choices=("auto", "local", "ipv4"), default="auto",
                   help="HELICS interfaces: local (loopback, one node) or ipv4; auto = local on one node")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def register(sub) -> None:
    from hpcsim.cli import COMMON  # noqa: PLC0415

    p = sub.add_parser("plan", parents=[COMMON],
                       help="place a study on a cluster: nodes, MPI feeder ranks, brokers, memory and time per step")
    _cluster_options(p)
    p.set_defaults(func=cmd_plan)

    jobs = sub.add_parser("jobs", parents=[COMMON], help="SLURM batch jobs: render, submit, status")
    js = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    r = js.add_parser("render", parents=[COMMON], help="write a job folder: job.sbatch, plan.json, configs")
    _cluster_options(r)
    r.add_argument("-o", "--output", type=Path, required=True, help="job folder to write")
    r.set_defaults(func=cmd_render)
    s = js.add_parser("submit", parents=[COMMON], help="sbatch a rendered job folder; prints the job id")
    s.add_argument("dir", type=Path, help="job folder (from `hpcsim jobs render`)")
    s.set_defaults(func=cmd_submit)
    st = js.add_parser("status", parents=[COMMON], help="state of a submitted job and its run folder")
    st.add_argument("dir", type=Path, help="job folder")
    st.add_argument("--wait", action="store_true", help="wait until the job ends; exit 3 unless it COMPLETED")
    st.add_argument("--timeout", type=float, default=3600.0, help="with --wait: give up after this many seconds")
    st.set_defaults(func=cmd_status)
