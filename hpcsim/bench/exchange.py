"""HELICS exchange cost of one coupling iteration, without any solver, flat or through a broker hierarchy.

A *hub* federate (playing the transmission federate) publishes ``n_buses`` complex voltages and subscribes to
``n_values`` complex powers published by ``echo_federates`` *echo* federates (playing the feeder groups; each
owns a contiguous share of the powers and subscribes to every voltage). Time and flags follow hpcsim's own
loop (:mod:`hpcsim.federation.federate`): iteration i runs at HELICS time ``1 + 2·i·ε``; the hub is
uninterruptible, publishes its voltages, asks for the next sub-step and is granted it only once every echo has
answered; the echoes are event driven (they ask for the end of time and are woken by new voltages), read every
voltage and publish their powers at the same time. One iteration, timed by the hub with ``perf_counter``, is
publish → time grant → every input read; every value carries the iteration number so a stale read fails the
run. Brokers (the real ``helics_broker`` binary, one root or root + sub-brokers as the local runner builds
them) and federates are separate processes in a :class:`ProcessGroup`; the hub writes its timings to JSON.
``python -m hpcsim.bench.exchange CONFIG.json`` runs one federate of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hpcsim.console import setup_logging
from hpcsim.errors import FederateError
from hpcsim.federation.federate import Clock, recorded_failure, serve
from hpcsim.federation.helics_config import RUN_DIR_FROM_CONFIG, Interface, federate_config, write_config
from hpcsim.federation.processes import ProcessGroup

log = logging.getLogger(__name__)
TIMEOUT_S = 120.0
POLL_S = 0.05
HUB = "hub"


def bus_key(bus: int) -> str:
    return f"bench/bus_{bus}/v_pu"


def value_key(j: int) -> str:
    return f"bench/value_{j}/s_mva"


def echo_share(n_values: int, echo_federates: int, k: int) -> range:
    """The contiguous block of value indices published by echo ``k`` (sizes differ by at most one)."""
    bounds = np.linspace(0, n_values, echo_federates + 1).round().astype(int)
    return range(int(bounds[k]), int(bounds[k + 1]))


# --- federate side (child processes) -------------------------------------------------------------------------


class HubRole:
    """Publishes the voltages, times each iteration until every power of that iteration has been read."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.pubs: list = []
        self.subs: list = []

    def register(self, pubs: dict, subs: dict) -> None:
        self.pubs = [pubs[bus_key(b)] for b in range(self.cfg["n_buses"])]
        self.subs = [subs[value_key(j)] for j in range(self.cfg["n_values"])]


class EchoRole:
    """Reads every voltage, publishes its share of the powers stamped with the iteration it answers."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.share = range(*cfg["share"])
        self.pubs: list = []
        self.subs: list = []

    def register(self, pubs: dict, subs: dict) -> None:
        self.subs = [subs[bus_key(b)] for b in range(self.cfg["n_buses"])]
        self.pubs = [pubs[value_key(j)] for j in self.share]


def drive_hub(fed, role: HubRole, cfg: dict) -> None:
    import helics as h

    warmup, total = int(cfg["warmup"]), int(cfg["warmup"]) + int(cfg["iterations"])
    clock = Clock(total)
    expected_imag = np.arange(cfg["n_values"], dtype=float)
    per_iteration_s: list[float] = []
    h.helicsFederateRequestTime(fed, clock.time(0, 0))
    for i in range(total):
        t0 = time.perf_counter()
        for b, pub in enumerate(role.pubs):
            h.helicsPublicationPublishComplex(pub, complex(i, b))
        h.helicsFederateRequestTime(fed, clock.time(0, i + 1))
        values = [h.helicsInputGetComplex(sub) for sub in role.subs]
        dt = time.perf_counter() - t0
        got = np.asarray(values, dtype=complex)
        stale = int(np.count_nonzero((got.real != i) | (got.imag != expected_imag)))
        if stale:
            raise FederateError(f"{HUB}: iteration {i}: {stale} of {len(got)} inputs are not this iteration's values")
        if i >= warmup:
            per_iteration_s.append(dt)
    query = h.helicsCreateQuery("root", "brokers")  # every broker and core the root knows: proves the hierarchy
    brokers = h.helicsQueryExecute(query, fed)
    h.helicsQueryFree(query)
    out = Path(cfg["run_dir"]) / "hub.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"per_iteration_s": per_iteration_s, "federation_brokers": brokers}))
    tmp.replace(out)


def drive_echo(fed, role: EchoRole, cfg: dict) -> None:  # noqa: ARG001 - the signature of every role's driver
    import helics as h

    imag = [float(j) for j in role.share]
    while True:
        granted = h.helicsFederateRequestTime(fed, h.HELICS_TIME_MAXTIME)
        if granted >= h.HELICS_TIME_MAXTIME:
            break
        volts = [h.helicsInputGetComplex(sub) for sub in role.subs]
        token = volts[0].real
        for pub, q in zip(role.pubs, imag):
            h.helicsPublicationPublishComplex(pub, complex(token, q))


ROLES = {"hub": (HubRole, drive_hub), "echo": (EchoRole, drive_echo)}


def _build_role(cfg: dict):
    if cfg["role"] not in ROLES:
        raise FederateError(f"{cfg.get('name')}: unknown benchmark role {cfg['role']!r}")
    return ROLES[cfg["role"]][0](cfg)


def run_member(path: Path) -> int:
    """Run one federate of the benchmark (hub or echo) through hpcsim's own federate life cycle."""
    return serve(path, _build_role, lambda cfg: ROLES[cfg["role"]][1])


def member_config(name: str, role: dict, broker_address: str) -> dict:
    """A benchmark federate's config file: the hub publishes the voltages and reads every value
    (uninterruptible, like the transmission federate); an echo does the opposite for its share."""
    buses = [Interface(bus_key(b), "complex", "pu") for b in range(role["n_buses"])]
    if role["role"] == "hub":
        values = [Interface(value_key(j), "complex", "MVA") for j in range(role["n_values"])]
        return federate_config(name, role, broker_address, buses, values, uninterruptible=True)
    values = [Interface(value_key(j), "complex", "MVA") for j in range(*role["share"])]
    return federate_config(name, role, broker_address, values, buses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.bench.exchange",
                                     description="one federate of the HELICS exchange benchmark")
    parser.add_argument("config", type=Path, help="federate config (JSON) written by measure_exchange")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    return run_member(args.config)


# --- parent side -----------------------------------------------------------------------------------------------


def _validate(n_values: int, sub_brokers: int, echo_federates: int, n_buses: int, iterations: int,
              warmup: int) -> None:
    if echo_federates < 1:
        raise ValueError(f"echo_federates must be >= 1, got {echo_federates}")
    if n_values < echo_federates:
        raise ValueError(f"n_values ({n_values}) must be >= echo_federates ({echo_federates})")
    if n_buses < 1 or iterations < 1 or warmup < 0:
        raise ValueError(f"need n_buses >= 1, iterations >= 1, warmup >= 0; got {n_buses}, {iterations}, {warmup}")
    if not 0 <= sub_brokers <= echo_federates + 1:
        raise ValueError(f"sub_brokers must be in 0..{echo_federates + 1} (one federate at least per sub-broker), "
                         f"got {sub_brokers}")


def measure_exchange(n_values: int, *, sub_brokers: int = 0, echo_federates: int = 2, n_buses: int = 20,
                     iterations: int = 30, warmup: int = 5, work_dir: Path | None = None) -> dict:
    """HELICS wall time of one coupling iteration between a hub and ``echo_federates`` echo federates.

    Returns ``{"n_values", "sub_brokers", "echo_federates", "iterations", "per_iteration_s", "median_s", "min_s",
    "max_s", "n_buses", "brokers"}`` (``brokers``: the names of the brokers started, root first). Without
    ``work_dir`` a temporary folder is used and removed on success (kept on failure, for its logs). Raises
    :class:`FederateError` naming the failing process, or after a timeout of 120 s.
    """
    from hpcsim.federation.runner import (  # noqa: PLC0415 - parent only: the hub and echo federates load no runner
        federation_processes, local_hierarchy, start_federation, wait_for_federates,
    )

    _validate(n_values, sub_brokers, echo_federates, n_buses, iterations, warmup)
    temporary = work_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="hpcsim-exchange-") if temporary else work_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "hub.json").unlink(missing_ok=True)
    names = [HUB] + [f"echo{k}" for k in range(echo_federates)]
    hierarchy = local_hierarchy(names, sub_brokers, f"{int(time.time() * 1000) % 10**9}")
    common = {"run_dir": RUN_DIR_FROM_CONFIG, "n_buses": n_buses, "n_values": n_values}
    roles = {HUB: {**common, "role": "hub", "iterations": iterations, "warmup": warmup}}
    for k, name in enumerate(names[1:]):
        share = echo_share(n_values, echo_federates, k)
        roles[name] = {**common, "role": "echo", "share": [share.start, share.stop]}
    for name, role in roles.items():
        write_config(run_dir / "configs" / f"{name}.json", member_config(name, role, hierarchy.broker_of[name]))
    log.debug("exchange benchmark: %d values, %d echoes, %d sub-broker(s) in %s", n_values, echo_federates,
              sub_brokers, run_dir)
    with ProcessGroup(run_dir / "logs") as group:
        start_federation(group, run_dir, federation_processes(hierarchy, names, "hpcsim.bench.exchange"))
        wait_for_federates(group, names, run_dir, timeout_s=TIMEOUT_S, what="exchange benchmark", poll_s=POLL_S)
        failure = recorded_failure(run_dir, group.failed())  # a federate that recorded an error and exited 0
        if failure is not None:
            raise failure
        brokers = [n for n in group.procs if n.endswith("_broker")]
        if not group.wait(brokers, timeout_s=10.0):
            log.warning("exchange benchmark: broker still running 10 s after the federates finished; stopping it")
    try:
        hub = json.loads((run_dir / "hub.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FederateError(f"federate {HUB} exited 0 but left no readable {run_dir / 'hub.json'}: {exc}") from None
    times = [float(t) for t in hub["per_iteration_s"]]
    if len(times) != iterations:
        raise FederateError(f"federate {HUB} recorded {len(times)} iterations, expected {iterations}")
    if temporary:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"n_values": n_values, "sub_brokers": sub_brokers, "echo_federates": echo_federates,
            "iterations": iterations, "per_iteration_s": times, "median_s": float(np.median(times)),
            "min_s": min(times), "max_s": max(times), "n_buses": n_buses,
            "brokers": [b.name for b in hierarchy.brokers], "federation_brokers": hub.get("federation_brokers")}


def fit_exchange(points: list[dict]) -> tuple[float, float]:
    """Least-squares fit ``median_s = latency_s + n_values · per_value_s`` over ``points`` (each a
    :func:`measure_exchange` result, or any dict with ``n_values`` and ``median_s``); returns
    ``(latency_s, per_value_s)``, both clipped at >= 0."""
    if len(points) < 2 or len({p["n_values"] for p in points}) < 2:
        raise ValueError(f"fit_exchange needs points at >= 2 distinct n_values, got {[p['n_values'] for p in points]}")
    n = np.array([float(p["n_values"]) for p in points])
    y = np.array([float(p["median_s"]) for p in points])
    (latency_s, per_value_s), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(n), n]), y, rcond=None)
    return max(float(latency_s), 0.0), max(float(per_value_s), 0.0)


if __name__ == "__main__":
    sys.exit(main())
