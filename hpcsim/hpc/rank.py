"""Process entry of every step of a SLURM job: ``python -m hpcsim.hpc.rank KIND --plan PLAN --run-dir RUN``.

KIND is ``root-broker``, ``sub-broker``, ``transmission`` or ``feeders`` (one MPI rank = one feeder group).
:func:`role_of` is the one place that turns the environment (``HPCSIM_NODES`` — the job's hostnames, exported
by the job script from ``scontrol show hostnames "$SLURM_JOB_NODELIST"`` —, ``SLURMD_NODENAME``,
``SLURM_JOB_ID``, ``SLURM_PROCID``/``SLURM_NTASKS`` or the MPI rank and size) and the plan into a role: which
node, which broker to listen as or connect to, which feeders. Broker addresses are computed here at run time
from node 0's hostname and ports derived from the job id, never written into the job. The node is found by
name (``SLURMD_NODENAME`` in the job's node list), not by ``SLURM_NODEID``, which counts within the step: a
one-node step on the job's fourth node sees ``SLURM_NODEID=0``.

Outside SLURM (``mpiexec -n R`` on one machine) there are no node names: give ``--broker-address`` (or
``HPCSIM_BROKER_ADDRESS``) of a broker you started.

Configs: the job folder holds ``configs/transmission.json`` and one bundle per node ``configs/node_NNN.json``
(written by ``hpcsim jobs render`` through :func:`hpcsim.federation.layout.federate_configs`); each federate
fills in its broker address and run folder, writes its final config to ``<run>/configs/<name>.json`` — the same
run-folder layout as ``hpcsim run`` — and runs the ordinary federate loop.
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

from hpcsim.errors import HpcsimError, PlanError
from hpcsim.hpc.plan import Plan, broker_ports, rank_slice

log = logging.getLogger("hpcsim.rank")

KINDS = ("root-broker", "sub-broker", "transmission", "feeders")
ENV_NODES = "HPCSIM_NODES"
ENV_BROKER = "HPCSIM_BROKER_ADDRESS"
LOOPBACK = "127.0.0.1"


class WorldSizeError(PlanError):
    """The MPI world does not have the number of feeder ranks the plan places."""


class PlacementError(PlanError):
    """A process runs on another node than the plan gives it."""


@dataclass(frozen=True)
class Role:
    kind: str
    name: str  # broker or federate name
    node: int  # node index in the plan
    listen: str | None  # address a broker listens on
    connect_to: str | None  # broker this process connects to (a sub-broker's parent, a federate's broker)
    rank: int | None = None
    feeders: tuple[int, int] | None = None  # [start, stop) in the study's feeder order


def bundle_name(node: int) -> str:
    return f"node_{node:03d}"


def role_of(kind: str, plan: Plan, env: Mapping[str, str], mpi: tuple[int, int] | None = None,
            broker_address: str | None = None) -> Role:
    """The role of this process: ``kind`` from the command line, everything else from ``env`` and the plan."""
    from hpcsim.federation.layout import TRANSMISSION, group_name  # noqa: PLC0415

    if kind not in KINDS:
        raise PlanError(f"unknown role {kind!r}: one of {', '.join(KINDS)}")
    nodes = env.get(ENV_NODES, "").split()
    if nodes and len(nodes) != len(plan.nodes):
        raise PlacementError(f"{ENV_NODES} lists {len(nodes)} node(s), the plan has {len(plan.nodes)}")
    here = None
    if nodes:
        name = env.get("SLURMD_NODENAME", "")
        if name not in nodes:
            raise PlacementError(f"this node {name!r} (SLURMD_NODENAME) is not in {ENV_NODES} ({' '.join(nodes[:4])} …)")
        here = nodes.index(name)
    job_id = int(env.get("SLURM_JOB_ID") or 0)
    root_port, sub_port = broker_ports(plan.ports, job_id)

    def host(i: int) -> str:
        return LOOPBACK if plan.network == "local" or not nodes else nodes[i]

    def on(node: int) -> int:
        if here is not None and here != node:
            raise PlacementError(f"{kind} belongs on node {node} ({nodes[node]}) but runs on {nodes[here]}")
        return node

    root = f"tcp://{host(0)}:{root_port}"
    if kind == "root-broker":
        return Role(kind, f"root_{job_id}", on(0), root, None)
    if kind == "sub-broker":
        node = here if here is not None else 0
        return Role(kind, f"sub{node}_{job_id}", node, f"tcp://{host(node)}:{sub_port}", root)
    if kind == "transmission":
        return Role(kind, TRANSMISSION, on(0), None, broker_address or f"tcp://{host(0)}:{sub_port}")
    if mpi is not None:
        rank, size = mpi
    else:
        rank, size = int(env.get("SLURM_PROCID", "0")), int(env.get("SLURM_NTASKS", "1"))
    if size != plan.ranks:
        raise WorldSizeError(f"MPI world has {size} rank(s) but the plan places {plan.ranks} feeder rank(s): "
                             f"launch exactly {plan.ranks} (srun -n / mpiexec -n)")
    node = on(plan.node_of_rank(rank).index)
    return Role(kind, group_name(rank), node, None, broker_address or f"tcp://{host(node)}:{sub_port}", rank,
                rank_slice(rank, plan.study.n_feeders, plan.ranks))


def cut_bundle(bundle: dict, offset: int, start: int, stop: int, name: str) -> dict:
    """The config of feeders [start, stop) from a bundle whose first feeder is number ``offset``: those
    feeders and the voltages of their buses, everything else shared."""
    feeders = bundle["feeders"][start - offset:stop - offset]
    if len(feeders) != stop - start:
        raise PlanError(f"{name}: bundle {bundle['name']} holds {len(bundle['feeders'])} feeders from number "
                        f"{offset}, cannot cut [{start}, {stop})")
    v0 = bundle["v0"]
    return {**bundle, "name": name, "feeders": feeders,
            "v0": {str(b): v0[str(b)] for b in sorted({int(f["bus"]) for f in feeders})}}


def feeder_config(bundle: dict, plan: Plan, role: Role) -> dict:
    """A rank's federate config, cut from its node's bundle."""
    return cut_bundle(bundle, plan.nodes[role.node].first_feeder, *role.feeders, role.name)


def _write_config(cfg: dict, run_dir: Path) -> None:
    folder = run_dir / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg['name']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=1))
    os.replace(tmp, path)


def _exec_broker(role: Role, plan: Plan) -> int:
    from hpcsim.federation.brokers import BrokerSpec, broker_binary  # noqa: PLC0415

    planned = "root" if role.kind == "root-broker" else f"sub{role.node}"
    spec = next(b for b in plan.brokers if b["name"] == planned)
    host, port = role.listen.split("//", 1)[1].rsplit(":", 1)
    broker = BrokerSpec(name=role.name, federates=spec["federates"], port=int(port), host=host,
                        sub_brokers=spec["sub_brokers"], network=plan.network, parent=role.connect_to)
    argv = broker.argv(broker_binary())
    log.info("%s on node %d: %s", role.name, role.node, " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the broker replaces this process: srun's signals reach it directly
    return 0  # pragma: no cover


def _run(kind: str, args: argparse.Namespace, mpi: tuple[int, int] | None) -> int:
    from hpcsim.federation.federate import run_federate  # noqa: PLC0415
    from hpcsim.federation.layout import read_config  # noqa: PLC0415

    plan = Plan.from_dict(json.loads(Path(args.plan).read_text()))
    configs = Path(args.configs) if args.configs else Path(args.plan).parent / "configs"
    override = args.broker_address or os.environ.get(ENV_BROKER)
    role = role_of(kind, plan, os.environ, mpi, override)
    if kind in ("root-broker", "sub-broker"):
        return _exec_broker(role, plan)
    if not os.environ.get(ENV_NODES) and not override:
        raise PlanError(f"{role.name}: not inside a job ({ENV_NODES} unset): give --broker-address")
    source = configs / ("transmission.json" if kind == "transmission" else f"{bundle_name(role.node)}.json")
    cfg = read_config(source)
    if kind == "feeders":
        cfg = feeder_config(cfg, plan, role)
    cfg.update(broker_address=role.connect_to, run_dir=str(Path(args.run_dir).resolve()), network=plan.network)
    _write_config(cfg, Path(args.run_dir))
    log.info("%s on node %d (rank %s) -> %s", role.name, role.node, role.rank, role.connect_to)
    return run_federate(cfg)


def _mpi_world() -> tuple[object, int, int]:
    from mpi4py import MPI  # noqa: PLC0415 - optional extra "hpc"; initialises MPI (PMI from srun or mpiexec)

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.hpc.rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--plan", required=True, help="plan.json of the job folder")
    parser.add_argument("--run-dir", required=True, help="run folder (outputs, logs, final configs)")
    parser.add_argument("--configs", default=None, help="rendered configs (default: next to the plan)")
    parser.add_argument("--broker-address", default=None, help=f"connect here instead (also ${ENV_BROKER})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
