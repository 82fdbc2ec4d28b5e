"""The pieces of a multi-node job that run without SLURM: node lists, the MPI launcher choice, the cause read
from srun's own log, and the node watchdog against real sockets."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from hpcsim.errors import StudyError, SubmitError
from hpcsim.hpc import slurm as sl
from hpcsim.hpc.finish import launcher_cause, root_cause
from hpcsim.hpc.jobdir import Site, job_files
from hpcsim.hpc.plan import Cluster
from hpcsim.hpc.watch import STALLED, probe, watch
from hpcsim.cases import CASES_DIR
from hpcsim.study import load_study

BUS8 = CASES_DIR / "activsg200_ieee8500_bus8.toml"


@pytest.mark.parametrize("nodelist, names", [
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("login1,node[8-10]", ["login1", "node8", "node9", "node10"]),
    ("a[1-2],b[09-11]", ["a1", "a2", "b09", "b10", "b11"]),
    ("n1", ["n1"]),
])
def test_node_lists_expand_in_order(nodelist, names):
    assert sl.expand_nodelist(nodelist) == names


@pytest.mark.parametrize("bad", ["node[3-1]", "node[a-b]"])
def test_unreadable_node_lists_are_refused_with_the_list(bad):
    with pytest.raises(SubmitError, match=r"node list"):
        sl.expand_nodelist(bad)


def script(mpi: str) -> str:
    _, files = job_files(load_study(BUS8), Cluster(3, 4, 8.0, ranks=3), site=Site(mpi=mpi))
    return files["job.sbatch"].decode()


def test_the_mpi_launcher_is_chosen_at_render_time():
    pmi2, pmix, none = script("pmi2"), script("pmix"), script("none")
    for text, mpi in ((pmi2, "pmi2"), (pmix, "pmix"), (none, "none")):
        assert f"\nMPI={mpi}\n" in text and "#SBATCH --no-requeue" in text
    # one template: the three scripts differ in that line only
    assert [a for a, b in zip(pmi2.splitlines(), pmix.splitlines()) if a != b] == ["MPI=pmi2"]
    assert 'srun --mpi="$MPI"' in pmi2 and '"$MPIEXEC" -n "$RANKS" -f "$HOSTFILE"' in none
    with pytest.raises(StudyError, match="--mpi 'openmpi'"):
        script("openmpi")


def test_srun_names_the_task_that_died_first(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "feeders.srun.log").write_text(
        "srun: error: node03: task 2: Killed\nsrun: launch/slurm: _step_signal: Terminating StepId=4.5\n"
        "srun: error: node02: task 1: Terminated\nsrun: error: node01: task 0: Terminated\n")
    cause = launcher_cause(run)
    assert "federate feeders_002 on node03 died without an error of its own: srun reports task 2 Killed" in str(cause)
    assert cause.exit_code == 3
    # a federate's own record comes first
    (run / "errors").mkdir()
    (run / "errors" / "transmission.json").write_text(json.dumps(
        {"federate": "transmission", "type": "ConvergenceError", "message": "step 0 did not converge",
         "node": "node01"}))
    assert str(root_cause(run)).startswith("federate transmission on node01 failed: ConvergenceError")


def test_only_terminated_tasks_name_nobody(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "feeders.srun.log").write_text("srun: error: node02: task 1: Terminated\n")
    assert launcher_cause(tmp_path) is None


class Listener:
    """A real TCP listener on loopback (a broker's port as the watchdog sees it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.alive:
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                return

    def close(self):
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept (close alone does not)
        except OSError:
            pass
        self.sock.close()


def test_the_watchdog_loses_a_node_whose_sub_broker_stops_answering(tmp_path):
    root, sub0 = Listener(), Listener()
    port = sub0.port
    assert probe("127.0.0.1", port) is None
    (tmp_path / "plan.json").write_text(json.dumps({"nodes": [{"first_rank": 0, "ranks": 1},
                                                               {"first_rank": 1, "ranks": 2}]}))
    run = tmp_path / "run"
    sub1_addr = "127.0.0.2"  # node 1's sub-broker: a second loopback address, same port

    sub1 = socket.socket()
    sub1.bind((sub1_addr, port))
    sub1.listen(4)
    threading.Timer(0.5, sub1.close).start()  # node 1 dies half a second in
    t0 = time.monotonic()
    lost = watch(run, ["node01", "node02"], ["127.0.0.1", sub1_addr], port, root.port, tmp_path / "plan.json",
                 interval_s=0.2, misses=2)
    assert lost == 1 and time.monotonic() - t0 < 5
    record = json.loads((run / "errors" / "watchdog.json").read_text())
    assert record["node"] == "node02" and record["federates"] == ["feeders_001", "feeders_002"]
    assert str(root_cause(run)).startswith("federate sub1_broker on node02 failed: NodeLost: node02 (127.0.0.2) "
                                           "stopped answering")
    root.close()
    sub0.close()


def test_the_watchdog_calls_it_an_ending_when_the_root_broker_is_gone(tmp_path):
    sub = Listener()
    root_port = Listener()
    threading.Timer(0.3, sub.close).start()
    threading.Timer(0.3, root_port.close).start()
    lost = watch(tmp_path / "run", ["node01"], ["127.0.0.1"], sub.port, root_port.port, tmp_path / "plan.json",
                 interval_s=0.2, misses=2)
    assert lost is None and not (tmp_path / "run" / "errors").exists()


def test_the_watchdog_ends_a_federation_that_stops_progressing(tmp_path):
    root, sub = Listener(), Listener()
    run = tmp_path / "run"
    run.mkdir()
    progress = run / "progress.json"
    progress.write_text('{"step": 0}')

    def advance(k: int) -> None:  # progress every 0.2 s until 0.4 s, then nothing
        progress.write_text(f'{{"step": {k}, "iterations": 1}}')
        if k < 3:
            threading.Timer(0.2, advance, (k + 1,)).start()

    advance(1)
    t0 = time.monotonic()
    stalled = watch(run, ["node01"], ["127.0.0.1"], sub.port, root.port, tmp_path / "plan.json", interval_s=0.1,
                    stall_timeout_s=1.0)
    elapsed = time.monotonic() - t0
    assert stalled == STALLED and 1.3 <= elapsed < 4, elapsed  # the last progress at 0.4 s
    record = json.loads((run / "errors" / "watchdog.json").read_text())
    assert record["type"] == "Stalled" and '"step": 3' in record["message"]
    assert "federate watchdog on node01 failed: Stalled: no progress for 1 s" in str(root_cause(run))
    root.close()
    sub.close()
