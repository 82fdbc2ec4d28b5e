"""A real one-machine SLURM (munged + slurmctld + slurmd) for the ``slurm`` test tier.

Installs nothing: it needs root and Debian's ``slurm-wlm``/``munge`` binaries (``.ci/run`` installs them), and
follows the recipe in the project notes. State, spool, logs and ``slurm.conf`` live in one folder under the
temporary directory (``<tmp>/hpcsim-slurm-<uid>``), which is also how a second test session finds and reuses a
cluster that is already running (slurmctld's ports 6817/6818 are fixed: one cluster per machine). Only the
daemons this object started are stopped.

The node advertises at least :data:`MIN_CPUS` CPUs (``SlurmdParameters=config_overrides``) even on a 2-core
machine: the tests check co-simulation results, not speed, and a T&D federation's sides compute in turn
(Gauss–Seidel), so brokers + transmission + two feeder ranks fit on two real cores.

Run by hand: ``python -m tests.slurm.local_cluster start|stop|status`` (``start`` leaves it running).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

MIN_CPUS = 8
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "srun", "scancel")
CONF_TEMPLATE = """\
ClusterName=local
SlurmctldHost=localhost
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
MailProg=/bin/true
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SchedulerParameters=batch_sched_delay=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


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


class LocalSlurm:
    """Start (or reuse) the local cluster; ``env`` is what clients need (``SLURM_CONF``)."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or Path(tempfile.gettempdir()) / f"hpcsim-slurm-{os.getuid()}"
        self.conf = self.folder / "slurm.conf"
        self.started: list[subprocess.Popen] = []
        self.reused = False

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def node_state(self) -> str | None:
        """The node's state (``idle``, ...) if a controller answers with this ``slurm.conf``, else None."""
        if not self.conf.is_file() or not _listening(_CTLD_HOST, _CTLD_PORT):
            return None  # sinfo would retry for ~10 s before giving up
        try:
            r = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], env=self.env, capture_output=True,
                               text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None

    def start(self, timeout_s: float = 30.0) -> LocalSlurm:
        state = self.node_state()
        if state and state.rstrip("*") in ("idle", "mixed", "allocated", "completing"):
            self.reused = True
            log.info("reusing the running local SLURM (%s, node %s)", self.conf, state)
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool"):
            shutil.rmtree(self.folder / sub, ignore_errors=True)
            (self.folder / sub).mkdir()
        mem_mb = _mem_total_mib() - 1024
        self.conf.write_text(CONF_TEMPLATE.format(d=self.folder, cpus=max(os.cpu_count() or 1, MIN_CPUS),
                                                  mem_mb=mem_mb))
        try:
            if not _munge_works():
                run_dir = Path("/run/munge")
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.chown(run_dir, "munge", "munge")
                self._spawn("munged", [_which("munged"), "-F"], user="munge")
                _poll(_munge_works, 10.0, "munged did not start")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
            _poll(lambda: (self.node_state() or "").rstrip("*") == "idle", timeout_s,
                  f"local SLURM node not idle after {timeout_s:.0f} s (logs in {self.folder})")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> None:
        out = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, user=user, group=user, start_new_session=True)
        out.close()
        self.started.append(proc)

    def stop(self) -> None:
        """Stop the daemons this object started (in reverse order); a reused cluster is left running."""
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.started.clear()


_CTLD_HOST, _CTLD_PORT = "127.0.0.1", 6817  # SlurmctldHost=localhost, default SlurmctldPort


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


if __name__ == "__main__":  # pragma: no cover - developer convenience
    logging.basicConfig(level=logging.INFO)
    cluster = LocalSlurm()
    action = sys.argv[1] if len(sys.argv) > 1 else "status"
    if action == "start":
        reason = unavailable_reason()
        if reason:
            sys.exit(reason)
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    elif action == "status":
        print(cluster.node_state() or "not running")
    else:
        sys.exit("usage: python -m tests.slurm.local_cluster start|status")
