"""A real multi-node SLURM on one machine (munged + slurmctld + one slurmd per node) for the ``slurm`` tier.

Installs nothing: it needs root and Debian's ``slurm-wlm``/``munge`` binaries (``.ci/run`` installs them), and
follows the recipe in the project notes (Debian's slurmd is built with multiple-slurmd support: ``slurmd -N
NAME`` with one ``Port=`` per node and ``%n`` in the spool, pid and log paths).

Each node has its own address. Where the kernel allows (root, ``ip netns``), every node is its own **network
namespace** on a bridge this module creates (``hpcsimbr0``, 10.213.77.1/24; node *i* at 10.213.77.(10+i)):
``slurmd -N node0i`` runs inside it (``nsenter --net``, which keeps the host's /sys and cgroups, unlike ``ip
netns exec``), and so does every task SLURM starts there. A process on node 2 then has its own loopback and
cannot reach node 1's: a broker bound to ``127.0.0.1``, or a federate sent to the wrong node's address, fails as
it would on a real cluster. Elsewhere the nodes get distinct loopback addresses (127.0.0.2, .3, …) on the
host's one network (weaker: every address is reachable from every node). The controller listens on the bridge
address (or 127.0.0.1), which every node reaches.

Nodes are named ``node01``, ``node02``, … so job node lists come as ranges (``node[01-03]``), as on a cluster.
Each advertises :data:`CPUS_PER_NODE` CPUs (``SlurmdParameters=config_overrides``) even on a 2-core machine: the
tests check co-simulation results, not speed, and a T&D federation's sides compute in turn. ``SlurmdTimeout``
is 60 s (real sites: 300 s), so a lost node is found by hpcsim's own watchdog first, as it would be on a
cluster; :meth:`LocalSlurm.crash` and :meth:`LocalSlurm.reboot` lose a node and bring it back.

State, spool, logs and ``slurm.conf`` live in one folder under the temporary directory
(``<tmp>/hpcsim-slurm-<uid>``), which is also how a second test session finds and reuses a cluster that is
already running (slurmctld's port 6817 is fixed: one cluster per machine). Only what this object started
(daemons, namespaces, the bridge) is stopped and removed.

By hand: ``python -m tests.slurm.local_cluster start [--nodes 3]`` (prints the ``export SLURM_CONF=…`` line and
leaves the cluster running), ``status``, ``stop``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CPUS_PER_NODE = 4
DEFAULT_NODES = 3
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "srun", "scancel")
BRIDGE = "hpcsimbr0"
SUBNET = "10.213.77"
BRIDGE_ADDR = f"{SUBNET}.1"
NS_PREFIX = "hpcsim-"
SLURMD_PORT_BASE = 17000
CONF_TEMPLATE = """\
ClusterName=local
SlurmctldHost={ctld_host}({ctld_addr})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=60
KillWait=5
MailProg=/bin/true
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/run/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
SchedulerParameters=batch_sched_delay=0
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
NODE_LINE = ("NodeName={name} NodeHostname={host} NodeAddr={addr} Port={port} CPUs={cpus} RealMemory={mem_mb} "
             "State=UNKNOWN")


@dataclass(frozen=True)
class Node:
    name: str
    addr: str
    port: int
    netns: str | None  # the network namespace it runs in, None on the host's network


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be started here, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "the SLURM tests start slurmctld/slurmd/munged and need root"
    missing = [n for n in DAEMONS + CLIENTS if _which(n) is None]
    if missing:
        return f"SLURM/munge binaries not installed ({', '.join(missing)}): apt-get install slurm-wlm slurmctld slurmd slurm-client munge"
    return None


def netns_works() -> bool:
    """Can this process make network namespaces (root, ``ip`` and ``nsenter`` present, the kernel allows it)?"""
    if os.geteuid() != 0 or not _which("ip") or not _which("nsenter"):
        return False
    probe = f"{NS_PREFIX}probe"
    ok = subprocess.run([_which("ip"), "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run([_which("ip"), "netns", "del", probe], capture_output=True)
    return ok


def node_names(count: int) -> list[str]:
    return [f"node{i + 1:02d}" for i in range(count)]


class LocalSlurm:
    """Start (or reuse) the local cluster; ``env`` is what clients need (``SLURM_CONF``)."""

    def __init__(self, folder: Path | None = None, nodes: int = DEFAULT_NODES, isolation: str = "auto"):
        if isolation not in ("auto", "netns", "loopback"):
            raise ValueError(f"isolation {isolation!r}: auto, netns or loopback")
        self.folder = folder or Path(tempfile.gettempdir()) / f"hpcsim-slurm-{os.getuid()}"
        self.conf = self.folder / "slurm.conf"
        self.count = nodes
        self.isolation = isolation
        self.started: list[subprocess.Popen] = []
        self.made_netns: list[str] = []
        self.made_bridge = False
        self.reused = False
        self.nodes: list[Node] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _client(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run([_which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                                  timeout=timeout)
        except (subprocess.TimeoutExpired, OSError, TypeError):
            return None

    def node_states(self) -> dict[str, str]:
        """Each node's state (``idle``, ``down*``, ...) if a controller answers with this ``slurm.conf``."""
        if not self.conf.is_file() or not _listening(*_controller(self.conf)):
            return {}  # sinfo would retry for ~10 s before giving up
        r = self._client("sinfo", "-h", "-N", "-o", "%N %T")
        if r is None or r.returncode != 0:
            return {}
        return dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)

    def node_state(self) -> str | None:
        """One word for the cluster: the state every node shares, ``mixed`` if they differ, None if none answers."""
        states = {s.rstrip("*~#") for s in self.node_states().values()}
        if not states:
            return None
        return states.pop() if len(states) == 1 else "mixed"

    def read_nodes(self) -> list[Node]:
        """The nodes as the ``slurm.conf`` in the folder declares them."""
        nodes = []
        for line in self.conf.read_text().splitlines():
            if line.startswith("NodeName="):
                kv = dict(part.split("=", 1) for part in line.split())
                ns = f"{NS_PREFIX}{kv['NodeName']}"
                nodes.append(Node(kv["NodeName"], kv["NodeAddr"], int(kv["Port"]),
                                  ns if kv["NodeAddr"].startswith(SUBNET + ".") else None))
        return nodes

    def start(self, timeout_s: float = 30.0) -> LocalSlurm:
        states = self.node_states()
        usable = ("idle", "mixed", "allocated", "completing")
        if states and all(s.rstrip("*~#") in usable for s in states.values()):
            if len(states) < self.count:
                raise RuntimeError(f"a local SLURM with {len(states)} node(s) runs ({self.conf}); {self.count} "
                                   "are wanted: stop it first (python -m tests.slurm.local_cluster stop)")
            self.reused = True
            self.nodes = self.read_nodes()
            log.info("reusing the running local SLURM (%s, %d nodes)", self.conf, len(states))
            return self
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.stop_stale()
        use_netns = self.isolation == "netns" or (self.isolation == "auto" and netns_works())
        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool", "log", "run"):
            shutil.rmtree(self.folder / sub, ignore_errors=True)
            (self.folder / sub).mkdir()
        host = socket.gethostname()
        self.nodes = [Node(name, f"{SUBNET}.{11 + i}" if use_netns else f"127.0.0.{2 + i}", SLURMD_PORT_BASE + i + 1,
                           f"{NS_PREFIX}{name}" if use_netns else None)
                      for i, name in enumerate(node_names(self.count))]
        mem_mb = max(1024, (_mem_total_mib() - 1024) // self.count)
        lines = "\n".join(NODE_LINE.format(name=n.name, host=host, addr=n.addr, port=n.port, cpus=CPUS_PER_NODE,
                                           mem_mb=mem_mb) for n in self.nodes)
        for n in self.nodes:
            (self.folder / "spool" / n.name).mkdir()
        ctld = (host, BRIDGE_ADDR) if use_netns else ("localhost", "127.0.0.1")
        self.conf.write_text(CONF_TEMPLATE.format(d=self.folder, ctld_host=ctld[0], ctld_addr=ctld[1], nodes=lines))
        try:
            if use_netns:
                self._make_network()
            if not _munge_works():
                run_dir = Path("/run/munge")
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.chown(run_dir, "munge", "munge")
                self._spawn("munged", [_which("munged"), "-F"], user="munge")
                _poll(_munge_works, 10.0, "munged did not start")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            for n in self.nodes:
                enter = [_which("nsenter"), f"--net=/run/netns/{n.netns}"] if n.netns else []
                self._spawn(f"slurmd-{n.name}", [*enter, _which("slurmd"), "-D", "-N", n.name, "-f", str(self.conf)])
            _poll(lambda: self.node_state() == "idle" and len(self.node_states()) == self.count, timeout_s,
                  f"local SLURM nodes not idle after {timeout_s:.0f} s (logs in {self.folder / 'log'})")
        except BaseException:
            self.stop()
            raise
        log.info("local SLURM: %d nodes (%s) on %s", self.count, ", ".join(f"{n.name}={n.addr}" for n in self.nodes),
                 "network namespaces" if use_netns else "loopback addresses")
        return self

    def _make_network(self) -> None:
        ip = _which("ip")

        def run(*argv: str) -> None:
            r = subprocess.run([ip, *argv], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"ip {' '.join(argv)}: {r.stderr.strip()}")

        run("link", "add", BRIDGE, "type", "bridge")
        self.made_bridge = True
        run("addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE)
        run("link", "set", BRIDGE, "up")
        for i, n in enumerate(self.nodes):
            run("netns", "add", n.netns)
            self.made_netns.append(n.netns)
            veth = f"hpcsimv{i + 1}"
            run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.netns)
            run("link", "set", veth, "master", BRIDGE, "up")
            for argv in (("addr", "add", f"{n.addr}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                         ("link", "set", "lo", "up"), ("route", "add", "default", "via", BRIDGE_ADDR)):
                run("-n", n.netns, *argv)

    def _spawn(self, name: str, argv: list[str], user: str | None = None, keep: bool = True) -> None:
        out = open(self.folder / "log" / f"{name}.out", "ab")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, user=user, group=user, start_new_session=True)
        out.close()
        if keep:
            self.started.append(proc)

    def node_pids(self, node: str) -> list[int]:
        """Every process running on ``node`` (in its network namespace; empty for loopback nodes)."""
        ns = f"{NS_PREFIX}{node}"
        r = subprocess.run([_which("ip") or "ip", "netns", "pids", ns], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def crash(self, node: str) -> int:
        """Kill every process on ``node`` at once (its slurmd, slurmstepds and tasks), as a node that loses
        power; returns how many were killed. Needs network namespaces."""
        pids = self.node_pids(node)
        if not pids:
            raise RuntimeError(f"no process found on {node} (network namespaces off?)")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def reboot(self, node: str, timeout_s: float = 30.0) -> None:
        """Start ``node``'s slurmd again after :meth:`crash` (a node back from a reboot) and wait until SLURM has
        it idle again."""
        n = next(x for x in (self.nodes or self.read_nodes()) if x.name == node)
        enter = [_which("nsenter"), f"--net=/run/netns/{n.netns}"] if n.netns else []
        # a reused cluster's daemons belong to whoever started it: so does this one then
        self._spawn(f"slurmd-{n.name}", [*enter, _which("slurmd"), "-D", "-N", n.name, "-f", str(self.conf)],
                    keep=not self.reused)
        _poll(lambda: self.node_states().get(node, "") == "idle", timeout_s,
              f"{node} not idle {timeout_s:.0f} s after its slurmd restarted (logs in {self.folder / 'log'})")

    def stop(self) -> None:
        """Stop what this object started (in reverse order): daemons, any process left in its namespaces, the
        namespaces and the bridge. A reused cluster is left running."""
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.started.clear()
        for ns in self.made_netns:
            self._remove_netns(ns)
        self.made_netns.clear()
        if self.made_bridge:
            subprocess.run([_which("ip"), "link", "del", BRIDGE], capture_output=True)
            self.made_bridge = False

    def _remove_netns(self, ns: str) -> None:
        ip = _which("ip")
        r = subprocess.run([ip, "netns", "pids", ns], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run([ip, "netns", "del", ns], capture_output=True)

    def stop_stale(self) -> None:
        """Remove what a killed session left: daemons of this folder's ``slurm.conf``, our namespaces, the bridge."""
        conf = str(self.conf)
        for p in psutil.process_iter(["cmdline"]):
            try:
                cmd = p.info["cmdline"] or []
                if any(a == conf for a in cmd) and any(a.endswith(("slurmctld", "slurmd")) for a in cmd[:3]):
                    p.kill()
            except psutil.Error:
                continue
        ip = _which("ip")
        if ip:
            listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout.split()
            for ns in listed:
                if ns.startswith(NS_PREFIX):
                    self._remove_netns(ns)
            subprocess.run([ip, "link", "del", BRIDGE], capture_output=True)

    def stop_running(self) -> None:
        """Stop a cluster started by another process (``start`` by hand): the same clean-up as after a crash."""
        self.stop_stale()


def _controller(conf: Path) -> tuple[str, int]:
    for line in conf.read_text().splitlines():
        if line.startswith("SlurmctldHost="):
            value = line.split("=", 1)[1]
            return (value.split("(", 1)[1].rstrip(")") if "(" in value else "127.0.0.1"), 6817
    return "127.0.0.1", 6817


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _munge_works() -> bool:
    try:
        cred = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=5)
        if cred.returncode != 0:
            return False
        return subprocess.run([_which("unmunge")], input=cred.stdout, capture_output=True, timeout=5).returncode == 0
    except (subprocess.TimeoutExpired, OSError, TypeError):
        return False


def _poll(check, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(message)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - by hand
    parser = argparse.ArgumentParser(prog="python -m tests.slurm.local_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "status", "stop"))
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="nodes to start (default %(default)s)")
    parser.add_argument("--isolation", choices=("auto", "netns", "loopback"), default="auto",
                        help="one network namespace per node (auto: when possible) or loopback addresses")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cluster = LocalSlurm(nodes=args.nodes, isolation=args.isolation)
    if args.action == "start":
        try:
            cluster.start()
        except RuntimeError as exc:
            print(f"local_cluster: {exc}", file=sys.stderr)
            return 2
        print(f"export SLURM_CONF={cluster.conf}")
    elif args.action == "status":
        states = cluster.node_states()
        print("\n".join(f"{k} {v}" for k, v in states.items()) if states else "not running")
    else:
        cluster.stop_running()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
