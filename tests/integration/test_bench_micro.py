"""Micro-benchmarks of ``hpcsim bench``: HELICS exchange per coupling iteration (flat and through a broker
hierarchy) and memory per feeder clone (separate and shared engines). Small real runs; structure, counts and
sanity only, never timings (they move with the machine's load)."""

from __future__ import annotations


import psutil
import pytest

from hpcsim.bench.exchange import measure_exchange
from hpcsim.bench.memory import measure_clone_memory

from .helpers import processes_matching

MEMORY_KEYS = {"model", "mode", "clones", "base_mb", "first_mb", "total_mb", "per_clone_mb", "engine_mb"}


def _live_brokers(names: list[str]) -> list[psutil.Process]:
    """Live processes whose command line names one of these brokers (wherever they were reparented)."""
    return processes_matching([f"--name={n}" for n in names])


@pytest.mark.integration
@pytest.mark.parametrize("sub_brokers", [0, 2])
def test_exchange_runs_flat_and_through_a_hierarchy_and_leaves_nothing_behind(tmp_path, sub_brokers):
    result = measure_exchange(50, sub_brokers=sub_brokers, echo_federates=2, n_buses=10, iterations=10, warmup=2,
                              work_dir=tmp_path)
    assert {"n_values", "sub_brokers", "echo_federates", "iterations", "per_iteration_s", "median_s", "min_s",
            "max_s"} <= set(result)
    assert (result["n_values"], result["sub_brokers"], result["echo_federates"], result["iterations"]) == \
        (50, sub_brokers, 2, 10)
    times = result["per_iteration_s"]
    assert len(times) == 10 and all(t > 0 for t in times)
    assert result["min_s"] <= result["median_s"] <= result["max_s"]
    # the root really has the sub-brokers below it (its own "brokers" query, run by the hub)
    assert len(result["brokers"]) == 1 + sub_brokers
    subs = result["brokers"][1:]
    assert all(s in result["federation_brokers"] for s in subs)
    if sub_brokers == 0:
        assert not any(str(b).startswith("sub") for b in result["federation_brokers"])
    assert (tmp_path / "logs" / "hub.log").is_file()
    # torn down: no broker of this run alive, no helics_broker child left
    assert _live_brokers(result["brokers"]) == []
    kids = [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
    assert not [c for c in kids if "helics_broker" in c.name()]


@pytest.mark.integration
def test_clone_memory_of_the_13_bus_feeder_in_both_modes():
    separate = measure_clone_memory("ieee13", 4, "separate")
    shared = measure_clone_memory("ieee13", 4, "shared")
    for r, mode in ((separate, "separate"), (shared, "shared")):
        assert set(r) == MEMORY_KEYS
        assert (r["model"], r["mode"], r["clones"]) == ("ieee13", mode, 4)
        assert 0 < r["base_mb"] < r["first_mb"] <= r["total_mb"] + 1.0
    # against what the clones hold: a separate 13-bus engine is an OpenDSS circuit (~2 MB measured by hand:
    # 1.9 MB); a clone on a shared engine is its node voltages and taps (41 nodes x 16 bytes + a few taps: kB)
    assert 0.3 < separate["per_clone_mb"] < 10.0
    assert shared["per_clone_mb"] < 0.25


@pytest.mark.integration
def test_shared_engine_costs_a_small_fraction_of_an_engine_per_8500_clone():
    separate = measure_clone_memory("ieee8500", 3, "separate")
    shared = measure_clone_memory("ieee8500", 3, "shared")
    assert separate["per_clone_mb"] > 10  # an 8500-node engine is tens of MB
    assert separate["engine_mb"] > 10 and shared["engine_mb"] > 10
    assert shared["per_clone_mb"] < separate["per_clone_mb"] / 20
