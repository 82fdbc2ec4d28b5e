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


def _cost_model(args: argparse.Namespace):
    """The built-in cost model, or the one ``--model`` names; ``--iterations`` overrides its assumption."""
    from dataclasses import replace  # noqa: PLC0415

    from hpcsim.hpc.costs import DEFAULT, load_model  # noqa: PLC0415

    model = load_model(args.model) if args.model else DEFAULT
    if args.iterations is not None:
        if args.iterations < 1:
            from hpcsim.errors import PlanError  # noqa: PLC0415

            raise PlanError(f"--iterations {args.iterations} must be at least 1")
        model = replace(model, fixed_iterations=args.iterations)
    return model


def print_prediction(plan, model) -> None:
    """The performance model's prediction for a plan: time per iteration, per step, memory per node."""
    s, e = plan.study, plan.estimate
    f, _ = model.feeder(s.model)
    solve = model.solve_s(s.model, plan.engine_mode) - f.overhead_s
    cold = model.solve_s(s.model, plan.engine_mode, first=True) - f.overhead_s
    first = e.feeders_per_rank * max(0.0, cold - solve)
    mems = [n.mem_mb for n in plan.nodes]
    table = Table(title=f"prediction (cost model: {model.source})")
    table.add_column("quantity")
    table.add_column("predicted", justify="right")
    table.add_column("from")
    rows = [
        ("coupling iteration", f"{e.iteration_s:.3g} s",
         f"{e.feeders_per_rank} clones × ({solve * 1e3:.3g} ms solve + {f.overhead_s * 1e3:.3g} ms overhead) "
         f"+ PF {e.transmission_pf_s * 1e3:.3g} ms + exchange {e.exchange_s * 1e3:.3g} ms ({s.n_feeders} values)"),
        ("first iteration, extra", f"{first:.3g} s", f"cold first solves ({cold * 1e3:.3g} ms each)"),
        ("time step", f"{e.step_s:.3g} s", f"{e.iterations} iterations ({s.coupling}) + one PF"),
        ("start-up", f"{e.startup_s:.3g} s", "case load / compile, federation start, cold first solves"),
        ("run", f"{e.total_s:.4g} s", f"{e.steps} step(s)"),
        ("memory, node 0", _mb(mems[0]), "transmission federate, root + sub-broker, ranks"),
        ("memory, other nodes", _mb(max(mems[1:], default=0.0)), f"largest; {plan.engine_mode} OpenDSS engines"),
        ("memory, whole job", _mb(sum(mems)), f"{len(mems)} node(s)"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcsim.hpc.plan import plan_study  # noqa: PLC0415

    model = _cost_model(args)
    plan = plan_study(_study(args), _cluster(args), model)
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=1) + "\n")
    else:
        print_plan(plan)
        if args.predict:
            print_prediction(plan, model)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from hpcsim.hpc.jobdir import render_job  # noqa: PLC0415

    plan = render_job(_study(args), _cluster(args), args.output, _cost_model(args))
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
    p.add_argument("--model", type=Path, default=None,
                   help="cost model (model.json written by `hpcsim bench`; default: the built-in fitted model)")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterative coupling: iterations per step to assume (default: the cost model's law of the "
                        "boundary-bus count, fitted on measured runs)")


def register(sub) -> None:
    from hpcsim.cli import COMMON  # noqa: PLC0415

    p = sub.add_parser("plan", parents=[COMMON],
                       help="place a study on a cluster: nodes, MPI feeder ranks, brokers, memory and time per step")
    _cluster_options(p)
    p.add_argument("--predict", action="store_true",
                   help="also print the performance model's prediction: time per iteration and step, memory per node")
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
