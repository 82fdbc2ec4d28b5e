"""``hpcsim plan`` and ``hpcsim jobs {render,submit,status}``: placement on a cluster and SLURM jobs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from hpcsim.cliopts import COMMON, add_json_option, add_out_option
from hpcsim.console import Table, emit_json, emit_line, emit_lines, emit_table
from hpcsim.errors import PlanError, SubmitError
from hpcsim.hpc import MEM_MARGIN

log = logging.getLogger("hpcsim")
SHOW_NODES = 8  # node rows shown in the plan table (first ones and the last one)


def _cluster(args: argparse.Namespace):
    from hpcsim.hpc.plan import Cluster  # noqa: PLC0415 - off `hpcsim --help`: the cost model (~13 ms)

    return Cluster(nodes=args.nodes, cores_per_node=args.cores_per_node, mem_per_node_gb=args.mem_per_node_gb,
                   walltime=args.walltime, partition=args.partition, account=args.account, ranks=args.ranks,
                   network=args.network)


def _study(args: argparse.Namespace):
    from hpcsim.study import load_study  # noqa: PLC0415 - off `hpcsim --help`: numpy

    return load_study(args.study)


def _mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def print_plan(plan) -> None:
    from hpcsim.hpc.slurm import mem_request_mb  # noqa: PLC0415 - off `hpcsim --help`: numpy

    s, c, e = plan.study, plan.cluster, plan.estimate
    dynamic = s.kind == "dynamic"
    if dynamic:
        what = (f"{s.name}: {s.case} ({s.case_buses} buses), {s.n_feeders} feeder federates (planned as "
                f"{s.model}, the largest), dynamic: {s.simulated_s:g} s simulated, {s.steps} T <-> D exchanges")
        timing = (f"per exchange {e.step_s:.3g} s = feeder {e.feeder_s:.3g} + ANDES TDS {e.transmission_pf_s:.3g} "
                  f"+ exchange {e.exchange_s:.3g}; start-up {e.startup_s:.3g} s; total {e.total_s:.4g} s "
                  f"({s.simulated_s / max(e.total_s, 1e-9):.3g} simulated s per wall s)")
    else:
        what = (f"{s.name}: {s.case} ({s.case_buses} buses), {s.n_feeders} {s.model} feeders on {s.n_buses} "
                f"boundary buses, {s.coupling} coupling, {s.steps} step(s)")
        timing = (f"per iteration {e.iteration_s:.3g} s = feeders {e.feeder_s:.3g} + transmission PF "
                  f"{e.transmission_pf_s:.3g} + exchange {e.exchange_s:.3g}; per step {e.step_s:.3g} s "
                  f"({e.iterations} iterations); start-up {e.startup_s:.3g} s; total {e.total_s:.4g} s")
    emit_lines([
        what,
        f"cluster: {c.nodes} node(s) × {c.cores_per_node} cores × {c.mem_per_node_gb:g} GB, walltime {c.walltime}"
        f"{', partition ' + c.partition if c.partition else ''}{', account ' + c.account if c.account else ''}; "
        f"network {plan.network}, broker ports {plan.ports['base']}+4·(job id mod {plan.ports['slots']})",
        f"feeder ranks: {plan.ranks} (≤ {e.feeders_per_rank} feeders each); peak node memory "
        f"{_mb(max(n.mem_mb for n in plan.nodes))} (a job asks for {_mb(mem_request_mb(plan)[0])} per node: "
        f"+{MEM_MARGIN:.0%})",
        timing,
    ])
    node0 = "the transmission and AGC federates" if dynamic else "the transmission federate"
    table = Table(f"placement (node 0 also runs the root broker and {node0})",
                  ["node", "ranks", "first rank", "feeders", "on broker", "cores", "memory"], align=["r"] * 7)
    shown = list(plan.nodes[:SHOW_NODES - 1]) + ([plan.nodes[-1]] if len(plan.nodes) >= SHOW_NODES else [])
    for n in shown:
        if n.index == plan.nodes[-1].index and len(plan.nodes) > SHOW_NODES:
            table.rows.append(["…", "", "", "", "", "", ""])
        table.rows.append([str(n.index), str(n.ranks), str(n.first_rank), str(n.feeders), str(n.federates),
                           f"{n.cores}/{c.cores_per_node}", _mb(n.mem_mb)])
    emit_table(table)
    for w in plan.warnings:
        log.warning("%s", w)


def _cost_model(args: argparse.Namespace):
    """The built-in cost model, or the one ``--model`` names; ``--iterations`` overrides its assumption."""
    from hpcsim.hpc.costs import DEFAULT, load_model  # noqa: PLC0415 - off `hpcsim --help`: the cost model (~13 ms)

    model = load_model(args.model) if args.model else DEFAULT
    if args.iterations is not None:
        if args.iterations < 1:
            raise PlanError(f"--iterations {args.iterations} must be at least 1")
        model = replace(model, fixed_iterations=args.iterations)
    return model


def print_prediction(plan, model) -> None:
    """The performance model's prediction for a plan: time per iteration, per step, memory per node."""
    s, e = plan.study, plan.estimate
    if s.kind == "dynamic":
        return _print_dynamic_prediction(plan, model)
    f, _ = model.feeder(s.model)
    solve = model.solve_s(s.model, plan.engine_mode) - f.overhead_s
    cold = model.solve_s(s.model, plan.engine_mode, first=True) - f.overhead_s
    buses = model.buses_per_rank(s.n_buses, plan.ranks, e.feeders_per_rank)
    first = model.first_extra_s(s.model, plan.engine_mode, s.start, e.feeders_per_rank, buses)
    if s.start == "solved":
        first_row = ("start solves", f"{first:.3g} s",
                     f"{buses} boundary bus(es) on the busiest rank × {f.start_solve_s * 1e3:.3g} ms, before "
                     f"connecting; the clones then start warm")
    else:
        first_row = ("first iteration, extra", f"{first:.3g} s", f"cold first solves ({cold * 1e3:.3g} ms each)")
    _emit_prediction(plan, model, [
        ("coupling iteration", f"{e.iteration_s:.3g} s",
         f"{e.feeders_per_rank} clones × ({solve * 1e3:.3g} ms solve + {f.overhead_s * 1e3:.3g} ms overhead) "
         f"+ PF {e.transmission_pf_s * 1e3:.3g} ms + exchange {e.exchange_s * 1e3:.3g} ms ({s.n_feeders} values)"),
        first_row,
        ("time step", f"{e.step_s:.3g} s", f"{e.iterations} iterations ({s.coupling}) + one PF"),
        ("start-up", f"{e.startup_s:.3g} s", "case load / compile, federation start, "
                                              + ("start solves" if s.start == "solved" else "cold first solves")),
        ("run", f"{e.total_s:.4g} s", f"{e.steps} step(s)"),
    ], "transmission federate", f"{plan.engine_mode} OpenDSS engines")


def _emit_prediction(plan, model, rows: list[tuple[str, str, str]], node0: str, engines: str) -> None:
    """The prediction table: ``rows`` (time figures), then the memory of node 0, the other nodes and the job."""
    mems = [n.mem_mb for n in plan.nodes]
    table = Table(f"prediction (cost model: {model.source})", ["quantity", "predicted", "from"],
                  align=["l", "r", "l"])
    table.rows = [list(r) for r in [
        *rows,
        ("memory, node 0", _mb(mems[0]), f"{node0}, root + sub-broker, ranks"),
        ("memory, other nodes", _mb(max(mems[1:], default=0.0)), f"largest; {engines}"),
        ("memory, whole job", _mb(sum(mems)), f"{len(mems)} node(s)"),
    ]]
    emit_table(table)


def _print_dynamic_prediction(plan, model) -> None:
    s, e = plan.study, plan.estimate
    _emit_prediction(plan, model, [
        ("exchange", f"{e.step_s:.3g} s",
         f"ANDES TDS over {s.exchange_interval_s:.3g} simulated s ({model.tds_s_per_sim_s(s.case_buses) * 1e3:.3g} "
         f"ms per simulated s) + a feeder re-solve ({e.feeder_s * 1e3:.3g} ms) + exchange {e.exchange_s * 1e3:.3g} ms"),
        ("start-up", f"{e.startup_s:.3g} s", "case load / compile, federation start, a cold first solve"),
        ("run", f"{e.total_s:.4g} s", f"{e.steps} exchanges, {s.simulated_s:g} s simulated"),
    ], "transmission and AGC federates", "one OpenDSS engine per feeder")


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcsim.hpc.plan import plan_study  # noqa: PLC0415 - off `hpcsim --help`: the cost model (~13 ms)

    model = _cost_model(args)
    plan = plan_study(_study(args), _cluster(args), model)
    if args.json:
        emit_json(plan.to_dict())
    else:
        print_plan(plan)
        if args.predict:
            print_prediction(plan, model)
    return 0


def _requeue_s(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--requeue-before {value!r} is not a whole number of seconds") from None
    if not 0 <= seconds <= 65535:  # SLURM's --signal takes up to 65535 s
        raise argparse.ArgumentTypeError(f"--requeue-before {seconds} must be from 0 to 65535 s")
    return seconds


def cmd_render(args: argparse.Namespace) -> int:
    from hpcsim.hpc.jobdir import Site, render_job  # noqa: PLC0415 - off `hpcsim --help`: numpy

    site = Site(python=args.python, prologue=args.prologue, directives=tuple(args.sbatch),
                mem_margin=args.mem_margin, mpi=args.mpi, requeue_before_s=args.requeue_before)
    plan = render_job(_study(args), _cluster(args), args.out, _cost_model(args), site, force=args.force)
    if args.json:
        emit_json({"job_dir": args.out, "script": args.out / "job.sbatch", "plan": plan.to_dict()})
    else:
        print_plan(plan)
        emit_line(f"wrote {args.out / 'job.sbatch'}")
        emit_line(f"inspect it, then: hpcsim jobs submit {args.out}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcsim.hpc.slurm import submit  # noqa: PLC0415 - off `hpcsim --help`: numpy

    job_id = submit(args.dir, resume=args.resume)
    if args.json:
        emit_json({"job_id": job_id, "job_dir": args.dir})
    else:
        emit_line(job_id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hpcsim.hpc.finish import root_cause  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.hpc.slurm import (  # noqa: PLC0415 - off `hpcsim --help`: numpy
        JobFailedError, JobStatus, job_state, read_job_id, wait_for,
    )

    job_id = read_job_id(args.dir)
    run = args.dir / "run"
    try:
        st = wait_for(job_id, args.timeout) if args.wait else job_state(job_id)
    except SubmitError:
        summary = _read_summary(run)
        if summary is None:
            raise
        # SLURM forgets ended jobs (MinJobAge, and sacct needs accounting); the run folder still tells.
        st = JobStatus(job_id, "COMPLETED" if summary.get("converged") else "FAILED", "?",
                       "no longer known to SLURM; state from run/summary.json")
    summary = _read_summary(run)  # after the wait: the job writes it as it ends
    reason = st.reason if st.reason not in ("", "None") else ""
    cause = str(root_cause(run) or "") if run.is_dir() else ""
    its = [x["iterations"] for x in summary.get("steps", [])] if summary else []
    nodes = _per_node(args.dir, st, summary)
    if args.json:
        emit_json({"job_id": st.job_id, "state": st.state, "exit_code": st.exit_code, "reason": reason,
                   "job_dir": args.dir, "run_dir": run if run.is_dir() else None, "cause": cause or None,
                   "converged": summary.get("converged") if summary else None, "steps": len(its) if summary else None,
                   "iterations": max(its, default=0) if summary else None,
                   "wall_s": summary.get("wall_s") if summary else None, "nodes": nodes})
    else:
        emit_line(f"job {st.job_id}: {st.state} (exit {st.exit_code}{', ' + reason if reason else ''})")
        if summary is not None:
            emit_line(f"run {run}: {'converged' if summary.get('converged') else 'NOT converged'}, {len(its)} "
                      f"step(s), iterations {max(its, default=0)}, wall {summary.get('wall_s') or 0:.1f} s")
        elif run.is_dir():
            emit_line(f"run {run}: no summary.json yet")
        for n in nodes:
            failed = f"; failed: {', '.join(n['failed'])}" if n["failed"] else ""
            emit_line(f"node {n['index']} {n['name']}: {n['state']}; {len(n['federates'])} federate(s) "
                      f"({_shorten(n['federates'])}){failed}")
        if cause:
            emit_line(f"cause: {cause}")
    if args.wait and st.state != "COMPLETED":
        raise JobFailedError(f"job {job_id} ended {st.state} (exit {st.exit_code}){'; ' + cause if cause else ''}; "
                             f"logs in {run / 'logs'} and {args.dir / ('slurm-' + job_id + '.out')}")
    return 0


def _shorten(names: list[str], keep: int = 4) -> str:
    return ", ".join(names) if len(names) <= keep else ", ".join(names[:keep]) + f", … {len(names) - keep} more"


def _per_node(job_dir: Path, st, summary: dict | None) -> list[dict]:
    """Per node of the job: its name, SLURM's state of it now, the federates the plan put there and those that
    recorded an error (or that the node watchdog lost)."""
    from hpcsim.federation.layout import TRANSMISSION, group_name  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.hpc.slurm import expand_nodelist, node_states  # noqa: PLC0415 - off `hpcsim --help`: numpy

    try:
        plan = json.loads((job_dir / "plan.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    nodelist = st.nodelist or ((summary or {}).get("slurm") or {}).get("nodelist") or ""
    names = expand_nodelist(nodelist) if nodelist else []
    states = node_states(names)
    failed: dict[str, str] = {}
    for path in sorted((job_dir / "run" / "errors").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for fed in [rec.get("federate", path.stem), *rec.get("federates", [])]:  # the watchdog lists a node's
            failed.setdefault(fed, rec.get("type", "error"))
    out = []
    for n in plan["nodes"]:
        i = n["index"]
        feds = [f"sub{i}_broker"] + ([TRANSMISSION, "root_broker"] if i == 0 else []) + \
            [group_name(r) for r in range(n["first_rank"], n["first_rank"] + n["ranks"])]
        name = names[i] if i < len(names) else "?"
        out.append({"index": i, "name": name, "state": states.get(name, "unknown"), "federates": feds,
                    "failed": [f"{f} ({failed[f]})" for f in feds if f in failed]})
    return out


def _read_summary(run: Path) -> dict | None:
    try:
        return json.loads((run / "summary.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable %s: %s", run / "summary.json", exc)
        return None


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, help="study file (cases/*.toml)")
    p.add_argument("--nodes", type=int, required=True, help="nodes of the cluster to place the study on")
    p.add_argument("--cores-per-node", type=int, required=True, help="cores (SLURM CPUs) per node")
    p.add_argument("--mem-per-node-gb", type=float, required=True, help="memory per node in GB")
    p.add_argument("--walltime", default="01:00:00", help="HH:MM:SS or D-HH:MM:SS (default %(default)s)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    p.add_argument("--account", default=None, help="SLURM account to charge (default: none given)")
    p.add_argument("--ranks", type=int, default=None, help="at most this many feeder ranks (default: as many as fit)")
    p.add_argument("--network", choices=("auto", "local", "ipv4"), default="auto",
                   help="HELICS interfaces: local (loopback, one node) or ipv4; auto = local on one node")
    p.add_argument("--model", type=Path, default=None,
                   help="cost model (model.json written by `hpcsim bench`; default: the built-in fitted model)")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterative coupling: iterations per step to assume (default: the cost model's law of the "
                        "boundary-bus count, fitted on measured runs)")


def register(sub) -> None:
    p = sub.add_parser("plan", parents=[COMMON],
                       help="place a study on a cluster: nodes, MPI feeder ranks, brokers, memory and time per step")
    _cluster_options(p)
    add_json_option(p, "the plan")
    p.add_argument("--predict", action="store_true",
                   help="also print the performance model's prediction: time per iteration and step, memory per node")
    p.set_defaults(func=cmd_plan)

    jobs = sub.add_parser("jobs", parents=[COMMON], help="SLURM batch jobs: render, submit, status")
    js = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    r = js.add_parser("render", parents=[COMMON], help="write a job folder: job.sbatch, plan.json, configs")
    _cluster_options(r)
    add_out_option(r, "job folder to write", required=True, alias="--output")
    r.add_argument("--prologue", type=Path, default=None, metavar="FILE",
                   help="shell lines the job runs first (module loads, venv activation, environment), copied "
                        "into job.sbatch")
    r.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="an extra #SBATCH directive, e.g. --sbatch=--qos=high (repeatable; after hpcsim's, so it "
                        "wins over them)")
    r.add_argument("--mem-margin", type=float, default=MEM_MARGIN, metavar="SHARE",
                   help="memory asked per node = the plan's predicted peak x (1 + SHARE) (default %(default)s)")
    r.add_argument("--mpi", choices=("pmi2", "pmix", "none"), default="pmi2",
                   help="how the feeder ranks are launched: srun --mpi=pmi2 (default) or pmix, or none = MPICH's "
                        "mpiexec inside the allocation (set HYDRA_IFACE in the prologue if node names do not "
                        "resolve to the nodes' addresses)")
    r.add_argument("--requeue-before", type=_requeue_s, default=0, metavar="S",
                   help="requeue the job S seconds before its wall time (and after a node failure) and resume it "
                        "from its last completed step (default 0: never; then `jobs submit DIR --resume`)")
    r.add_argument("--python", default=sys.executable, metavar="PATH",
                   help="the job's default $HPCSIM_PYTHON (default: this Python, %(default)s)")
    r.add_argument("--force", action="store_true",
                   help="render over a job folder even if its files were edited since it was rendered")
    add_json_option(r, "the job folder, its script and the plan")
    r.set_defaults(func=cmd_render)
    s = js.add_parser("submit", parents=[COMMON], help="sbatch a rendered job folder; prints the job id")
    s.add_argument("dir", type=Path, help="job folder (from `hpcsim jobs render`)")
    s.add_argument("--resume", action="store_true",
                   help="continue the folder's run (killed, or stopped at its wall time) from its last completed "
                        "step instead of starting a new one")
    add_json_option(s, "{job_id, job_dir}")
    s.set_defaults(func=cmd_submit)
    st = js.add_parser("status", parents=[COMMON], help="state of a submitted job and its run folder")
    st.add_argument("dir", type=Path, help="job folder (from `hpcsim jobs render`, submitted)")
    st.add_argument("--wait", action="store_true", help="wait until the job ends; exit 3 unless it COMPLETED")
    st.add_argument("--timeout", type=float, default=3600.0, help="with --wait: give up after this many seconds")
    add_json_option(st, "the job's state, its run's verdict and the first federate error")
    st.set_defaults(func=cmd_status)
