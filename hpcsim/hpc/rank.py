"""Process entry of the federate steps of a SLURM job: ``python -m hpcsim.hpc.rank KIND --plan PLAN --run-dir RUN``.

KIND is ``transmission``, ``feeders`` (one MPI rank = one feeder group; in a dynamic study one feeder federate)
or ``agc`` (a dynamic study's, on node 0); the brokers are started by the job
script itself, their command lines spelled out in ``job.sbatch``. :func:`role_of` is the one place that turns
the environment and the plan into a role: which node, which broker to connect to, which address to bind,
which feeders. The job script exports what it learned from SLURM: ``HPCSIM_NODES`` (the job's hostnames, from
``scontrol show hostnames``), ``HPCSIM_NODE_ADDRS`` (each node's address, SLURM's ``NodeAddr``) and
``HPCSIM_SUB_PORT`` (the sub-brokers' port, derived from the job id); the step adds ``SLURMD_NODENAME`` and
``SLURM_PROCID``/``SLURM_NTASKS`` or the MPI rank and size. The node is found by name (``SLURMD_NODENAME`` in
the job's node list), not by ``SLURM_NODEID``, which counts within the step: a one-node step on the job's
fourth node sees ``SLURM_NODEID=0``. A federate connects to its own node's sub-broker at that node's address
and binds its own socket to it (on a one-node job, loopback).

Outside SLURM (``mpiexec -n R`` on one machine) there are no node names: give ``--broker-address`` (or
``HPCSIM_BROKER_ADDRESS``) of a broker you started.

Configs: the job folder holds ``configs/transmission.json`` and one bundle per node ``configs/node_NNN.json``
(role settings from :func:`hpcsim.federation.layout.role_configs`); each federate cuts its part, writes its
whole HELICS federate config to ``<run>/configs/<name>.json`` — the same run-folder layout as ``hpcsim run`` —
and runs the ordinary federate loop from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hpcsim.console import setup_logging
from hpcsim.errors import HpcsimError, PlanError
from hpcsim.federation.federate import run_federate
from hpcsim.federation.helics_config import write_config
from hpcsim.hpc.plan import Plan, rank_slice

log = logging.getLogger("hpcsim.rank")

KINDS = ("transmission", "feeders", "agc")  # agc: a dynamic study's, on node 0 beside the transmission
ENV_NODES = "HPCSIM_NODES"
ENV_ADDRS = "HPCSIM_NODE_ADDRS"
ENV_SUB_PORT = "HPCSIM_SUB_PORT"
ENV_BROKER = "HPCSIM_BROKER_ADDRESS"
LOOPBACK = "127.0.0.1"


class WorldSizeError(PlanError):
    """The MPI world does not have the number of feeder ranks the plan places."""


class PlacementError(PlanError):
    """A process runs on another node than the plan gives it."""


@dataclass(frozen=True)
class Role:
    kind: str
    name: str  # federate name
    node: int  # node index in the plan
    connect_to: str  # the broker this federate connects to (its node's sub-broker)
    interface: str | None = None  # the address it binds (its node's), None on loopback
    rank: int | None = None
    feeders: tuple[int, int] | None = None  # [start, stop) in the study's feeder order


def bundle_name(node: int) -> str:
    return f"node_{node:03d}"


def _job_nodes(plan: Plan, env: Mapping[str, str]) -> tuple[list[str], list[str], int | None]:
    """(node names, node addresses, index of this node) from the job script's environment."""
    nodes = env.get(ENV_NODES, "").split()
    if not nodes:
        return [], [], None
    if len(nodes) != len(plan.nodes):
        raise PlacementError(f"{ENV_NODES} lists {len(nodes)} node(s), the plan has {len(plan.nodes)}")
    addrs = env.get(ENV_ADDRS, "").split() or list(nodes)
    if len(addrs) != len(nodes):
        raise PlacementError(f"{ENV_ADDRS} lists {len(addrs)} address(es) for {len(nodes)} node(s)")
    name = env.get("SLURMD_NODENAME", "")
    if name not in nodes:
        raise PlacementError(f"this node {name!r} (SLURMD_NODENAME) is not in {ENV_NODES} ({' '.join(nodes[:4])} …)")
    return nodes, addrs, nodes.index(name)


def role_of(kind: str, plan: Plan, env: Mapping[str, str], mpi: tuple[int, int] | None = None,
            broker_address: str | None = None) -> Role:
    """The role of this process: ``kind`` from the command line, everything else from ``env`` and the plan."""
    from hpcsim.federation.layout import (  # noqa: PLC0415 - numpy only in federate ranks, not broker ranks
        TRANSMISSION, group_name,
    )

    if kind not in KINDS:
        raise PlanError(f"unknown role {kind!r}: one of {', '.join(KINDS)}")
    nodes, addrs, here = _job_nodes(plan, env)
    if not nodes and not broker_address:
        raise PlanError(f"{kind}: not inside a job ({ENV_NODES} unset): give --broker-address")
    port = env.get(ENV_SUB_PORT, "")
    if nodes and not broker_address and not port.isdigit():
        raise PlanError(f"{kind}: {ENV_SUB_PORT} {port!r} is not a port (the job script exports it)")

    def on(node: int) -> int:
        if here is not None and here != node:
            raise PlacementError(f"{kind} belongs on node {node} ({nodes[node]}) but runs on {nodes[here]}")
        return node

    def broker(node: int) -> tuple[str, str | None]:
        if broker_address:
            return broker_address, None
        if plan.network == "local":
            return f"tcp://{LOOPBACK}:{port}", None
        return f"tcp://{addrs[node]}:{port}", f"tcp://{addrs[node]}"

    if kind == "transmission":
        return Role(kind, TRANSMISSION, on(0), *broker(0))
    if kind == "agc":
        if plan.study.kind != "dynamic":
            raise PlanError(f"agc: the plan is of a {plan.study.kind} study, which has no AGC federate")
        return Role(kind, "agc", on(0), *broker(0))
    if mpi is not None:
        rank, size = mpi
    else:
        rank, size = int(env.get("SLURM_PROCID", "0")), int(env.get("SLURM_NTASKS", "1"))
    if size != plan.ranks:
        raise WorldSizeError(f"MPI world has {size} rank(s) but the plan places {plan.ranks} feeder rank(s): "
                             f"launch exactly {plan.ranks} (srun -n / mpiexec -n)")
    node = on(plan.node_of_rank(rank).index)
    return Role(kind, group_name(rank), node, *broker(node), rank, rank_slice(rank, plan.study.n_feeders, plan.ranks))


def cut_bundle(bundle: dict, offset: int, start: int, stop: int, name: str) -> dict:
    """The config of feeders [start, stop) from a bundle whose first feeder is number ``offset``: those
    feeders and the per-bus settings of their buses, everything else shared."""
    feeders = bundle["feeders"][start - offset:stop - offset]
    if len(feeders) != stop - start:
        raise PlanError(f"{name}: bundle {bundle['name']} holds {len(bundle['feeders'])} feeders from number "
                        f"{offset}, cannot cut [{start}, {stop})")
    buses = sorted({int(f["bus"]) for f in feeders})
    per_bus = {key: {str(b): bundle[key][str(b)] for b in buses} for key in ("bus_mult", "case_v") if key in bundle}
    return {**bundle, "name": name, "feeders": feeders, **per_bus}


def feeder_config(bundle: dict, plan: Plan, role: Role) -> dict:
    """A rank's federate config, cut from its node's bundle."""
    return cut_bundle(bundle, plan.nodes[role.node].first_feeder, *role.feeders, role.name)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: {exc}") from None


def _run(kind: str, args: argparse.Namespace, mpi: tuple[int, int] | None) -> int:
    from hpcsim.federation.layout import (  # noqa: PLC0415 - numpy only in federate ranks, not broker ranks
        federate_document,
    )
    from hpcsim.hpc.resume import carried_for  # noqa: PLC0415 - numpy, pyarrow only in federate ranks

    plan = Plan.from_dict(json.loads(Path(args.plan).read_text()))
    configs = Path(args.configs) if args.configs else Path(args.plan).parent / "configs"
    override = args.broker_address or os.environ.get(ENV_BROKER)
    role = role_of(kind, plan, os.environ, mpi, override)
    source = configs / (f"{kind}.json" if kind in ("transmission", "agc") else f"{bundle_name(role.node)}.json")
    cfg = _read_json(source)
    if kind == "feeders":
        cfg = feeder_config(cfg, plan, role)
        if plan.study.kind == "dynamic":  # one feeder federate per rank: its role settings as they are
            (cfg,) = cfg["feeders"]
    carried = carried_for(Path(args.run_dir), cfg)  # a resumed job: start from its last completed step
    if carried:
        cfg["resume"] = carried
    name = cfg.pop("name", role.name)
    if args.log_dir is not None:
        _log_to(Path(args.log_dir) / f"{name}.log")
    path = write_config(Path(args.run_dir) / "configs" / f"{name}.json",
                        federate_document(name, cfg, role.connect_to, plan.network, role.interface))
    log.info("%s on node %d (rank %s) -> %s", name, role.node, role.rank, role.connect_to)
    return run_federate(path)


def _log_to(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C libraries too) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _mpi_world() -> tuple[object, int, int]:
    from mpi4py import MPI  # optional extra "hpc"; initialises MPI (PMI from srun or mpiexec)

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.hpc.rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--plan", required=True, help="plan.json of the job folder")
    parser.add_argument("--run-dir", required=True, help="run folder (outputs, logs, final configs)")
    parser.add_argument("--configs", default=None, help="rendered configs (default: next to the plan)")
    parser.add_argument("--broker-address", default=None, help=f"connect here instead (also ${ENV_BROKER})")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="write this process's output to DIR/NAME.log (launchers without srun's -o, "
                             "such as mpiexec)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    logging.getLogger("hpcsim").setLevel(logging.DEBUG if os.environ.get("HPCSIM_DEBUG") else logging.INFO)
    logging.getLogger("andes").setLevel(logging.WARNING)
    comm, rank = None, 0
    try:
        mpi = None
        if args.kind == "feeders":
            comm, rank, size = _mpi_world()
            mpi = (rank, size)
        code = _run(args.kind, args, mpi)
    except HpcsimError as exc:
        if rank == 0:  # every rank finds the same error: one line, not one per rank
            print(f"hpcsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        print(f"hpcsim: error: {args.kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if code != 0 and comm is not None and comm.Get_size() > 1:
        # The error is recorded (errors/<name>.json) and HELICS told. Leave without MPI_Finalize, which can wait
        # for ranks that are still blocked in HELICS: the launcher (srun --kill-on-bad-exit, mpiexec) sees a
        # non-zero exit and stops the other ranks. MPI_Abort would do the same but lose this exit code.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
