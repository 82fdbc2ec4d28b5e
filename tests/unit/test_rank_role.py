"""The environment → role function of job steps (brokers, transmission, MPI feeder ranks)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpcsim.errors import PlanError
from hpcsim.hpc.plan import Cluster, StudyShape, make_plan, rank_slice
from hpcsim.hpc.rank import PlacementError, WorldSizeError, cut_bundle, feeder_config, role_of

pytestmark = pytest.mark.unit

SG200 = StudyShape(name="sg200", case="ACTIVSg200", case_buses=200, model="ieee8500", coupling="iterative", steps=1,
                   n_buses=37, n_feeders=126)
PLAN = make_plan(SG200, Cluster(nodes=4, cores_per_node=16, mem_per_node_gb=64))  # ranks per node 14 15 15 15
SUB = 23411


def env(node: str, **kw) -> dict:
    """What the job script exports (names, SLURM's node addresses, the sub-broker port) and SLURM adds."""
    return {"HPCSIM_NODES": "cn01 cn02 cn03 cn04", "HPCSIM_NODE_ADDRS": "10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4",
            "HPCSIM_SUB_PORT": str(SUB), "SLURMD_NODENAME": node, "SLURM_JOB_ID": "77", **kw}


def test_transmission_connects_to_node_0_sub_broker_at_node_0_address_and_binds_it():
    t = role_of("transmission", PLAN, env("cn01"))
    assert (t.name, t.node, t.connect_to, t.interface) == ("transmission", 0, f"tcp://10.0.0.1:{SUB}",
                                                           "tcp://10.0.0.1")


def test_feeder_rank_gets_its_node_broker_address_and_feeders_from_the_mpi_rank():
    r = role_of("feeders", PLAN, env("cn03"), mpi=(30, 59))
    assert (r.name, r.node, r.rank, r.connect_to, r.interface) == ("feeders_030", 2, 30, f"tcp://10.0.0.3:{SUB}",
                                                                   "tcp://10.0.0.3")
    assert r.feeders == rank_slice(30, 126, 59)
    from_slurm = role_of("feeders", PLAN, env("cn03", SLURM_PROCID="30", SLURM_NTASKS="59"))
    assert from_slurm == r


def test_node_names_stand_in_for_addresses_when_slurm_gave_none():
    r = role_of("feeders", PLAN, {k: v for k, v in env("cn02").items() if k != "HPCSIM_NODE_ADDRS"}, mpi=(14, 59))
    assert r.connect_to == f"tcp://cn02:{SUB}"


def test_world_of_the_wrong_size_names_ranks_and_plan():
    with pytest.raises(WorldSizeError, match=r"MPI world has 58 rank\(s\) but the plan places 59 feeder rank\(s\)"):
        role_of("feeders", PLAN, env("cn01"), mpi=(0, 58))


@pytest.mark.parametrize("kind, node, mpi", [("transmission", "cn04", None), ("feeders", "cn03", (3, 59))])
def test_a_process_on_the_wrong_node_is_refused(kind, node, mpi):
    with pytest.raises(PlacementError, match="belongs on node"):
        role_of(kind, PLAN, env(node), mpi=mpi)


def test_environment_that_disagrees_with_the_plan_is_refused():
    with pytest.raises(PlacementError, match="lists 2 node"):
        role_of("transmission", PLAN, {"HPCSIM_NODES": "a b", "SLURMD_NODENAME": "a"})
    with pytest.raises(PlacementError, match="lists 3 address"):
        role_of("transmission", PLAN, env("cn01", HPCSIM_NODE_ADDRS="1 2 3"))
    with pytest.raises(PlacementError, match="not in HPCSIM_NODES"):
        role_of("transmission", PLAN, env("elsewhere"))
    with pytest.raises(PlanError, match="HPCSIM_SUB_PORT"):
        role_of("transmission", PLAN, env("cn01", HPCSIM_SUB_PORT=""))
    with pytest.raises(PlanError, match="not inside a job"):
        role_of("transmission", PLAN, {})
    with pytest.raises(PlanError, match="unknown role"):
        role_of("root-broker", PLAN, env("cn01"))


def test_one_node_local_plan_uses_loopback_and_an_explicit_broker_wins():
    plan = make_plan(replace(SG200, n_buses=1, n_feeders=3), Cluster(1, 4, 16))
    one = env("cn01") | {"HPCSIM_NODES": "cn01", "HPCSIM_NODE_ADDRS": "10.0.0.1"}
    r = role_of("feeders", plan, one, mpi=(1, 2))
    assert (r.connect_to, r.interface, r.feeders) == (f"tcp://127.0.0.1:{SUB}", None, (1, 3))
    mine = role_of("feeders", plan, {}, mpi=(0, 2), broker_address="tcp://127.0.0.1:9999")
    assert mine.connect_to == "tcp://127.0.0.1:9999" and mine.feeders == (0, 1)


def test_rank_config_is_cut_from_its_node_bundle():
    node = PLAN.nodes[2]
    feeders = [{"name": f"f{i}", "bus": 100 + i // 3} for i in range(node.first_feeder, node.first_feeder + node.feeders)]
    mult = {str(f["bus"]): 1.0 for f in feeders}
    bundle = {"name": "feeders_002", "role": "feeders", "feeders": feeders, "bus_mult": mult, "tolerance": 1e-6}
    role = role_of("feeders", PLAN, env("cn03"), mpi=(31, 59))
    cfg = feeder_config(bundle, PLAN, role)
    start, stop = role.feeders
    assert [f["name"] for f in cfg["feeders"]] == [f"f{i}" for i in range(start, stop)]
    assert set(cfg["bus_mult"]) == {str(f["bus"]) for f in cfg["feeders"]} and cfg["name"] == "feeders_031"
    assert cfg["tolerance"] == 1e-6
    with pytest.raises(PlanError, match="cannot cut"):
        cut_bundle(bundle, node.first_feeder, 0, 2, "x")


def test_a_dynamic_study_s_agc_runs_on_node_0_and_its_feeder_ranks_on_their_nodes():
    shape = replace(SG200, coupling="dynamic", n_buses=2, n_feeders=2, kind="dynamic", simulated_s=60.0)
    plan = make_plan(shape, Cluster(nodes=3, cores_per_node=4, mem_per_node_gb=8))
    nodes = {"HPCSIM_NODES": "cn01 cn02 cn03", "HPCSIM_NODE_ADDRS": "10.0.0.1 10.0.0.2 10.0.0.3"}
    agc = role_of("agc", plan, env("cn01", **nodes))
    assert (agc.name, agc.node, agc.connect_to) == ("agc", 0, f"tcp://10.0.0.1:{SUB}")
    with pytest.raises(PlacementError, match="agc belongs on node 0"):
        role_of("agc", plan, env("cn02", **nodes))
    second = role_of("feeders", plan, env("cn03", **nodes), mpi=(1, 2))
    assert (second.node, second.feeders) == (2, (1, 2))
    with pytest.raises(PlanError, match="has no AGC federate"):
        role_of("agc", PLAN, env("cn01"))
