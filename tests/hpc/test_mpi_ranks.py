"""MPI feeder ranks on this machine: ``mpiexec -n 2`` (pip mpich) runs the bus-8 study's two feeder groups
against a locally started broker; a world of the wrong size fails fast with one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcsim.cases import CASES_DIR
from hpcsim.federation.brokers import BrokerSpec, free_port_block
from hpcsim.federation.processes import ProcessGroup
from hpcsim.hpc.jobdir import render_job
from hpcsim.hpc.plan import Cluster
from hpcsim.study import load_study

pytestmark = pytest.mark.integration

MPIEXEC = Path(sys.executable).parent / "mpiexec"
BUS8 = CASES_DIR / "activsg200_ieee8500_bus8.toml"
RANK = [sys.executable, "-m", "hpcsim.hpc.rank"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    pytest.importorskip("mpi4py")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec next to {sys.executable} (pip install 'hpcsim[hpc]')")
    out = tmp_path_factory.mktemp("mpi")
    plan = render_job(load_study(BUS8), Cluster(nodes=1, cores_per_node=4, mem_per_node_gb=16), out)
    assert plan.ranks == 2
    return out


def test_two_mpi_ranks_run_the_two_feeder_groups(job):
    run = job / "run"
    for sub in ("logs", "configs"):
        (run / sub).mkdir(parents=True)
    shutil.copy(job / "boundary_map.txt", run)
    shutil.copy(job / "run.json", run)
    root = BrokerSpec(name=f"mpitest_{time.time_ns() % 10**9}", federates=3, port=free_port_block(2))
    args = ["--plan", str(job / "plan.json"), "--run-dir", str(run), "--broker-address", root.address]
    with ProcessGroup(run / "logs") as group:
        group.start("broker", root.argv())
        group.start("transmission", [*RANK, "transmission", *args])
        mpi = subprocess.run([str(MPIEXEC), "-n", "2", *RANK, "feeders", *args], capture_output=True, text=True,
                             timeout=120)
        assert mpi.returncode == 0, mpi.stderr[-2000:]
        assert group.wait(["transmission", "broker"], timeout_s=30)
        assert group.failed() == []
    subprocess.run([sys.executable, "-m", "hpcsim.hpc.finish", str(run), "--plan", str(job / "plan.json")],
                   check=True, capture_output=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] and summary["workers"] == 2 and summary["steps"][0]["iterations"] >= 2
    assert sorted(summary["timing"]["federates"]) == ["feeders_000", "feeders_001", "transmission"]
    c0, c1 = (json.loads((run / "configs" / f"feeders_00{i}.json").read_text()) for i in (0, 1))
    assert [len(c0["hpcsim"]["feeders"]), len(c1["hpcsim"]["feeders"])] == [1, 2]
    assert c0["broker_address"] == root.address and c0["hpcsim"]["run_dir"] == ".."
    assert [p["key"] for p in c0["publications"]] == [f"hpcsim/{f['name']}/s_mva" for f in c0["hpcsim"]["feeders"]]
    (b,) = summary["boundary"]
    assert b["p_mw"] == pytest.approx(sum(f["p_mw"] for f in summary["feeders"]), abs=3e-4)


def test_a_world_of_the_wrong_size_fails_fast_with_one_line(job, tmp_path):
    t0 = time.monotonic()
    r = subprocess.run([str(MPIEXEC), "-n", "3", *RANK, "feeders", "--plan", str(job / "plan.json"), "--run-dir",
                        str(tmp_path / "run"), "--broker-address", "tcp://127.0.0.1:9"],
                       capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 20
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == ["hpcsim: error: MPI world has 3 rank(s) but the plan places 2 feeder rank(s): "
                     "launch exactly 2 (srun -n / mpiexec -n)"]
