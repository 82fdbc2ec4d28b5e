"""The ``slurm`` tier: a real multi-node SLURM on this machine (see :mod:`tests.slurm.local_cluster`).

The session fixture reuses a running cluster (its ``slurm.conf`` under the temporary directory, or
``$SLURM_CONF`` if that answers), otherwise starts munged + slurmctld + one slurmd per node (three nodes, each in
its own network namespace where the kernel allows) when run as root with the binaries installed, and skips with
the reason when it cannot. It stops only what it started.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .local_cluster import DEFAULT_NODES, LocalSlurm, Node, unavailable_reason

NEEDED_CPUS = 4  # per node: brokers (overlapping), transmission and two feeder ranks


@dataclass(frozen=True)
class Slurm:
    conf: Path
    cpus: int  # per node
    mem_gb: float  # per node
    nodes: tuple[Node, ...]
    cluster: LocalSlurm

    @property
    def isolated(self) -> bool:
        """Every node in its own network namespace."""
        return all(n.netns for n in self.nodes)


def _running_elsewhere() -> LocalSlurm | None:
    conf = os.environ.get("SLURM_CONF")
    if conf and Path(conf).is_file():
        other = LocalSlurm(Path(conf).parent)
        other.conf = Path(conf)
        if other.node_state():
            return other
    return None


@pytest.fixture(scope="session")
def slurm():
    cluster = _running_elsewhere() or LocalSlurm(nodes=DEFAULT_NODES)
    if not cluster.node_state():
        reason = unavailable_reason()
        if reason:
            pytest.skip(reason)
    cluster.start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True, check=True).stdout
        cpus, mem_mb = (int(x.rstrip("+")) for x in out.split()[:2])
        if cpus < NEEDED_CPUS:
            pytest.skip(f"the SLURM nodes have {cpus} CPUs; these tests need {NEEDED_CPUS}")
        yield Slurm(cluster.conf, cpus, mem_mb / 1024, tuple(cluster.nodes or cluster.read_nodes()), cluster)
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()
