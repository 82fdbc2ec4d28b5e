"""The HELICS exchange benchmark (:mod:`hpcsim.bench.exchange`) across the nodes of a SLURM cluster, flat or
through a broker hierarchy.

One batch job per layout, on ``nodes`` nodes. The hub (the transmission federate's part) runs on node 0 and one
echo federate (a feeder group's part) on every node, so ``nodes - 1`` of the echoes answer over the network.

- **flat**: one root broker on node 0; every federate connects to it at node 0's address;
- **hierarchy**: root broker on node 0 plus one sub-broker per node bound to that node's address; each federate
  connects to its own node's sub-broker (as hpcsim's jobs do).

The job learns its nodes and their addresses from SLURM (``scontrol show hostnames``, ``NodeAddr``) and runs
``python -m hpcsim.bench.exchange_nodes prepare``, which writes every federate config and prints the steps
(name, node index, command) the script then starts with ``srun -w NODE``. The hub's timings come back in
``hub.json`` as in the one-machine benchmark. ``measure_exchange_nodes`` renders, submits and reads one job.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from hpcsim.bench.exchange import HUB, echo_share, member_config
from hpcsim.errors import FederateError
from hpcsim.federation.brokers import broker_binary
from hpcsim.federation.helics_config import RUN_DIR_FROM_CONFIG, write_config
from hpcsim.hpc import slurm as sl
from hpcsim.hpc.rank import ENV_ADDRS, ENV_NODES

LAYOUTS = ("flat", "hierarchy")
PORT_BASE = 31000

SCRIPT = """#!/bin/bash
#SBATCH --job-name=hpcsim-exchange-{layout}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=3
#SBATCH --time=00:10:00
#SBATCH --no-requeue
#SBATCH --output={out}
set -uo pipefail
cd {dir}
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
ADDRS=()
for node in "${{NODES[@]}}"; do
  addr=$(scontrol show node -o "$node" | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')
  ADDRS+=("${{addr:-$node}}")
done
export {env_nodes}="${{NODES[*]}}" {env_addrs}="${{ADDRS[*]}}"
PORT=$(({port_base} + 8 * (SLURM_JOB_ID % 500)))
mkdir -p logs
{python} -m hpcsim.bench.exchange_nodes prepare . --layout {layout} --values {values} --iterations {iterations} \\
  --port "$PORT" > steps.tsv || exit 2
PIDS=()
while IFS=$'\\t' read -r name idx cmd; do
  eval "argv=($cmd)"
  srun --nodes=1 --ntasks=1 --exact --overlap -w "${{NODES[idx]}}" -o "logs/$name.log" "${{argv[@]}}" &
  PIDS+=("$!")
done < steps.tsv
status=0
for pid in "${{PIDS[@]}}"; do wait "$pid" || status=$?; done
exit $status
"""


def prepare(folder: Path, layout: str, n_values: int, iterations: int, port: int, warmup: int = 5,
            n_buses: int = 20, env: dict | None = None) -> list[tuple[str, int, list[str]]]:
    """Write every federate config for the job's nodes (from the environment) and return the steps
    ``(name, node index, argv)``: brokers first."""
    env = dict(os.environ if env is None else env)
    nodes, addrs = env[ENV_NODES].split(), env[ENV_ADDRS].split()
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: one of {', '.join(LAYOUTS)}")
    binary = str(broker_binary())
    n = len(nodes)
    names = [HUB] + [f"echo{k}" for k in range(n)]
    node_of = {HUB: 0, **{f"echo{k}": k for k in range(n)}}
    root = [binary, "-t", "zmq", "-f", str(len(names)), "--name=root_bench", "--loglevel=warning",
            f"--local_interface=tcp://{addrs[0]}", f"--port={port}"]
    steps: list[tuple[str, int, list[str]]] = []
    if layout == "flat":
        steps.append(("root_broker", 0, root))
        broker_of = {name: f"tcp://{addrs[0]}:{port}" for name in names}
    else:
        steps.append(("root_broker", 0, [*root, f"--subbrokers={n}"]))
        for i in range(n):
            here = sum(1 for name in names if node_of[name] == i)
            steps.append((f"sub{i}_broker", i, [binary, "-t", "zmq", "-f", str(here), f"--name=sub{i}_bench",
                                                 "--loglevel=warning", f"--local_interface=tcp://{addrs[i]}",
                                                 f"--broker_address=tcp://{addrs[0]}:{port}",
                                                 f"--localport={port + 2}"]))
        broker_of = {name: f"tcp://{addrs[node_of[name]]}:{port + 2}" for name in names}
    common = {"run_dir": RUN_DIR_FROM_CONFIG, "n_buses": n_buses, "n_values": n_values}
    for k, name in enumerate(names):
        if name == HUB:
            role = {**common, "role": "hub", "iterations": iterations, "warmup": warmup}
        else:
            share = echo_share(n_values, n, k - 1)
            role = {**common, "role": "echo", "share": [share.start, share.stop]}
        cfg = member_config(name, role, broker_of[name])
        cfg.pop("interface_network", None)
        cfg["core_init_string"] = f"--local_interface=tcp://{addrs[node_of[name]]}"
        path = write_config(folder / "configs" / f"{name}.json", cfg)
        steps.append((name, node_of[name], [sys.executable, "-m", "hpcsim.bench.exchange", str(path.resolve())]))
    return steps


def render(folder: Path, layout: str, nodes: int, n_values: int, iterations: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "exchange.sbatch"
    script.write_text(SCRIPT.format(layout=layout, nodes=nodes, out=shlex.quote(str(folder / "slurm.out")),
                                    dir=shlex.quote(str(folder.resolve())), env_nodes=ENV_NODES,
                                    env_addrs=ENV_ADDRS, port_base=PORT_BASE, python=shlex.quote(sys.executable),
                                    values=n_values, iterations=iterations))
    return script


def measure_exchange_nodes(folder: Path, n_values: int, *, layout: str, nodes: int = 3, iterations: int = 30,
                           timeout_s: float = 180.0) -> dict:
    """Render, submit and wait for one exchange job; the hub's timings as :func:`measure_exchange` returns."""
    script = render(folder, layout, nodes, n_values, iterations)
    r = sl._call(["sbatch", "--parsable", script.name], cwd=folder)
    job_id = r.stdout.strip().split(";", 1)[0]
    status = sl.wait_for(job_id, timeout_s, poll_s=0.5)
    if status.state != "COMPLETED":
        raise FederateError(f"exchange job {job_id} ({layout}) ended {status.state} (exit {status.exit_code}); "
                            f"logs in {folder / 'logs'}")
    hub = json.loads((folder / "hub.json").read_text())
    times = [float(t) for t in hub["per_iteration_s"]]
    return {"n_values": n_values, "layout": layout, "nodes": nodes, "iterations": iterations,
            "median_s": float(np.median(times)), "min_s": min(times), "max_s": max(times),
            "per_iteration_s": times, "federation_brokers": hub.get("federation_brokers"), "job_id": job_id}


def compare_layouts(folder: Path, values: tuple[int, ...] = (126, 2000), nodes: int = 3,
                    iterations: int = 30) -> list[dict]:
    """Flat and hierarchy at each value count, one job each; hierarchy / flat per value count."""
    out = []
    for n_values in values:
        pair = {layout: measure_exchange_nodes(folder / f"{layout}_{n_values}", n_values, layout=layout,
                                               nodes=nodes, iterations=iterations) for layout in LAYOUTS}
        out.append({"n_values": n_values, "nodes": nodes, "flat_ms": pair["flat"]["median_s"] * 1e3,
                    "hierarchy_ms": pair["hierarchy"]["median_s"] * 1e3,
                    "hierarchy_over_flat": pair["hierarchy"]["median_s"] / pair["flat"]["median_s"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.bench.exchange_nodes", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prepare", help="(inside the job) write the configs, print the steps")
    p.add_argument("folder", type=Path)
    p.add_argument("--layout", choices=LAYOUTS, required=True)
    p.add_argument("--values", type=int, required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    steps = prepare(args.folder, args.layout, args.values, args.iterations, args.port)
    for name, idx, cmd in steps:
        print(f"{name}\t{idx}\t{shlex.join(cmd)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
