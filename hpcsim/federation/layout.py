"""From a study to a federation: the boundary map, the clones, the feeder groups and one config per federate.

Every federate is started with one JSON config (``<run>/configs/<federate>.json``, a standard HELICS federate
config with the role's settings in its ``hpcsim`` section, :mod:`hpcsim.federation.helics_config`); the
federate loop reads all its differences from it, whether it is launched by the local runner, ``helics run``, an
``srun`` step or an MPI rank. The role settings (:func:`role_configs`) are written once per study; the HELICS
part (broker address, interfaces: :func:`interfaces`) is added where the broker address is known.

HELICS time is the step index (step k at time k + 1), decoupled from simulated time (``time_s``); see
:mod:`hpcsim.federation.federate` for iterations and loose coupling.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from hpcsim import metadata
from hpcsim.cases import case_label, read_matpower, resolve_feeder, resolve_transmission_case
from hpcsim.distribution import feeder_curve, nominal_load_mw
from hpcsim.dynamics.wiring import DYNAMIC_ROLES, wiring
from hpcsim.errors import StudyError
from hpcsim.federation.configs import FeederGroupConfig, FeederSpec, TransmissionConfig
from hpcsim.federation.helics_config import RUN_DIR_FROM_CONFIG, Interface, federate_config, write_config
from hpcsim.federation.role_config import to_dict
from hpcsim.hpc.costs import DEFAULT
from hpcsim.metadata import BoundaryMap
from hpcsim.study import Study

log = logging.getLogger(__name__)

TRANSMISSION = "transmission"
MIN_LOAD_MULT, MAX_LOAD_MULT = 0.5, 1.5


def voltage_key(bus: int) -> str:
    """HELICS publication of a boundary bus voltage: complex, per unit, rectangular."""
    return f"hpcsim/bus_{bus}/v_pu"


def power_key(feeder: str) -> str:
    """HELICS publication of one feeder's positive-sequence power: complex, MW + j Mvar."""
    return f"hpcsim/{feeder}/s_mva"


def slope_key(feeder: str) -> str:
    """HELICS publication of one feeder's power sensitivity dS/d|V| (Newton coupling): complex, MVA per pu."""
    return f"hpcsim/{feeder}/ds_dv_mva_per_pu"


def group_name(i: int) -> str:
    return f"feeders_{i:03d}"


@dataclass(frozen=True)
class Layout:
    study: Study
    case_path: str
    feeder_model: str
    boundary: BoundaryMap
    feeders: tuple[FeederSpec, ...]
    groups: tuple[tuple[FeederSpec, ...], ...]
    engine_mode: str = "separate"
    pd_mw: float = 0.0  # the case's PD at the boundary buses (what the feeders replace)
    bus_mult: dict[int, float] | None = None  # per bus: its clones' load multiplier before diversity
    case_v: dict[int, tuple[float, float]] | None = None  # per boundary bus: the case's (VM pu, VA deg)

    @property
    def federate_names(self) -> list[str]:
        return [TRANSMISSION] + [group_name(i) for i in range(len(self.groups))]


def boundary_map_of(study: Study) -> BoundaryMap:
    """The study's boundary map: its file (checked against the case) or generated on the fly."""
    case = read_matpower(study.case)
    pd = dict(zip(case.bus_ids.tolist(), case.pd_mw.tolist()))
    if study.boundary_map is not None:
        bmap = metadata.read(study.boundary_map)
        metadata.check_against_case(bmap, pd, case_label(study.case), str(study.boundary_map))
    else:
        p_feeder = study.feeder_mw or nominal_load_mw(resolve_feeder(study.feeder))
        bmap = metadata.generate(pd, p_feeder)
    if study.max_buses is not None:
        bmap = bmap.first(study.max_buses)
    return bmap


GUESS_DECIMALS = 6  # the first-guess draws (MW, Mvar) are rounded to 1e-6

# Separate engines are used while their estimated memory stays under this fraction of the available memory.
SEPARATE_ENGINE_MEMORY_FRACTION = 0.5


def engine_mode_for(study: Study, n_feeders: int, n_buses: int = 1) -> str:
    """``separate`` (one OpenDSS engine per clone) or ``shared`` (one per worker, clone state swapped).

    ``auto`` picks by the cost model (:data:`hpcsim.hpc.costs.DEFAULT`): a separate engine costs a compile per
    clone (~0.2 s for the IEEE 8500) and re-solves faster (no state swap, no Y rebuild when consecutive clones'
    taps differ: 16.8 vs 25.9 ms), so it pays off only when a clone is solved often enough —
    ``steps × (iterations + 1) × (t_shared − t_separate) > t_compile``, e.g. a 24-step QSTS, not a Newton
    snapshot — and only while clones × the memory per engine fits in half the memory available now.
    """
    if study.engine_mode != "auto":
        return study.engine_mode
    cost, _ = DEFAULT.feeder(resolve_feeder(study.feeder).name)
    fits = n_feeders * cost.rss_mb < SEPARATE_ENGINE_MEMORY_FRACTION * psutil.virtual_memory().available / 2**20
    solves = study.n_steps * (DEFAULT.iterations_for(study.coupling, n_buses, study.method) + 1)
    worth = solves * (cost.shared_solve_s - cost.solve_s) > cost.compile_s
    return "separate" if fits and worth else "shared"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def split_groups(feeders: list[FeederSpec], workers: int) -> tuple[tuple[FeederSpec, ...], ...]:
    """Spread feeders evenly over ``workers`` contiguous groups (sizes differ by at most one)."""
    n = min(max(1, workers), len(feeders))
    bounds = np.linspace(0, len(feeders), n + 1).round().astype(int)
    return tuple(tuple(feeders[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def clone_multiplier(pd_mw: float, k: int, curve: tuple[float, float, float]) -> float:
    """Load multiplier m that makes K clones draw ``pd_mw`` together (``clone_load = "bus"``): the root in
    (0, ∞) of c2·m² + c1·m + c0 = PD / K, with ``curve`` the feeder's loading curve
    (:func:`hpcsim.distribution.loading_curve`)."""
    c0, c1, c2 = curve
    target = pd_mw / k - c0
    if target <= 0:
        raise StudyError(f"clone_load = bus: {pd_mw:.3f} MW over {k} clones is below one clone's no-load "
                         f"losses ({c0:.3f} MW)")
    if abs(c2) <= 1e-12 * abs(c1):
        return target / c1
    return (-c1 + math.sqrt(c1 * c1 + 4.0 * c2 * target)) / (2.0 * c2)


def _base_multipliers(study: Study, bmap: BoundaryMap, pd: dict[int, float], curve) -> dict[int, float]:
    """Per-bus load multiplier of the clones before diversity: 1 (nominal) or :func:`clone_multiplier`."""
    if study.clone_load == "nominal":
        return {bus: 1.0 for bus in bmap.buses}
    mult = {bus: clone_multiplier(pd[bus], len(names), curve.p_total) for bus, names in bmap.feeders_by_bus}
    log.info("clone_load = bus: feeder P(m) = %.3f + %.3f m + %.3f m² MW at 1 pu; clone multipliers %.3f to %.3f",
             *curve.p_total, min(mult.values()), max(mult.values()))
    return mult


def build_layout(study: Study, bmap: BoundaryMap | None = None) -> Layout:
    """The federation of a study: its clones (load multipliers, the informed first guess of each clone's power:
    the feeder's predicted draw at its multiplier and its bus's case voltage, :class:`hpcsim.distribution.
    FeederCurve`), the feeder groups and the engine mode."""
    bmap = bmap or boundary_map_of(study)
    model = resolve_feeder(study.feeder)
    case = read_matpower(study.case)
    loads = case.load_of()
    vm = dict(zip(case.bus_ids.tolist(), case.bus[:, 7].tolist()))
    va = dict(zip(case.bus_ids.tolist(), case.bus[:, 8].tolist()))
    rng = np.random.default_rng(study.seed)
    curve = feeder_curve(model)
    base = _base_multipliers(study, bmap, {bus: pq[0] for bus, pq in loads.items()}, curve)
    specs: list[FeederSpec] = []
    for bus, names in bmap.feeders_by_bus:
        chosen = names[:1] if study.scale_mode else names
        weight = len(names) if study.scale_mode else 1
        for name in chosen:
            mult = base[bus]
            if study.load_mult_std > 0:
                mult *= float(np.clip(1.0 + study.load_mult_std * rng.standard_normal(), MIN_LOAD_MULT,
                                      MAX_LOAD_MULT))
            if study.start == "case":
                s0 = complex(*loads[bus]) / len(names)
            else:
                s0 = curve.draw(mult * study.profile_at(study.times_s[0]), vm[bus])
            # to 1 W / 1 var: a first guess, and the last bits of the feeder solves differ between CPUs, which
            # would make rendered job folders differ from machine to machine
            specs.append(FeederSpec(name, bus, mult, weight, round(float(s0.real), GUESS_DECIMALS),
                                    round(float(s0.imag), GUESS_DECIMALS)))
    workers = study.workers or default_workers()
    return Layout(
        study=study,
        case_path=str(resolve_transmission_case(study.case)),
        feeder_model=str(model.entry) if study.feeder not in ("ieee8500", "ieee34", "ieee13") else study.feeder,
        boundary=bmap,
        feeders=tuple(specs),
        groups=split_groups(specs, workers),
        engine_mode=engine_mode_for(study, len(specs), bmap.n_buses),
        pd_mw=sum(loads[b][0] for b in bmap.buses),
        bus_mult={b: float(base[b]) for b in bmap.buses},
        case_v={b: (float(vm[b]), float(va[b])) for b in bmap.buses},
    )


def role_configs(layout: Layout) -> dict[str, dict]:
    """The role settings of every federate (the ``hpcsim`` section of its config, typed by
    :mod:`hpcsim.federation.configs`), JSON-able, with no machine paths: the case and the feeder model by name (a
    path only for a user's own file), the run folder relative to the config file."""
    s = layout.study
    common = {
        "study": s.name,
        "run_dir": RUN_DIR_FROM_CONFIG,
        "coupling": s.coupling,
        "method": s.method,
        "acceleration": s.acceleration,
        "tolerance": s.tolerance,
        "max_iterations": s.max_iterations,
        "times_s": tuple(s.times_s),
        "profile": tuple(s.profile_at(t) for t in s.times_s),
        "node_voltages": s.node_voltages,
        "start": s.start,
        "residual_load": s.keeps_residual,
        "gen_voltage": s.generator_voltage,
    }
    configs = {TRANSMISSION: TransmissionConfig(
        **common, role=TRANSMISSION, case=s.case, buses=tuple(layout.boundary.buses),
        clones={str(b): k for b, k in layout.boundary.clones().items()}, feeders=layout.feeders)}
    for i, group in enumerate(layout.groups):
        buses = sorted({f.bus for f in group})
        configs[group_name(i)] = FeederGroupConfig(
            **common, role="feeders", feeder_model=layout.feeder_model, engine_mode=layout.engine_mode,
            feeders=group, bus_mult={str(b): (layout.bus_mult or {}).get(b, 1.0) for b in buses},
            warm_start=s.warm_start,
            case_v={str(b): tuple(layout.case_v[b]) for b in buses} if s.start == "solved" and layout.case_v
            else None)
    return {name: to_dict(c) for name, c in configs.items()}


def interfaces(role: Mapping) -> tuple[list[Interface], list[Interface], bool]:
    """(publications, subscriptions, uninterruptible) of a steady-state federate, from its role settings.

    The transmission federate publishes every boundary voltage (complex, pu) and subscribes to every feeder's
    power (complex, MVA) and, with the Newton method, its slope dS/d|V| (complex, MVA/pu); it is
    uninterruptible (granted exactly the time it asks for: the barrier). A feeder group does the opposite for
    its feeders and their buses.
    """
    feeders = role["feeders"]
    powers = [Interface(power_key(f["name"]), "complex", "MVA") for f in feeders]
    if role.get("method") == "newton":  # and each feeder's slope, once per step
        powers += [Interface(slope_key(f["name"]), "complex", "MVA/pu") for f in feeders]
    if role["role"] == TRANSMISSION:
        return [Interface(voltage_key(int(b)), "complex", "pu") for b in role["buses"]], powers, True
    buses = sorted({int(f["bus"]) for f in feeders})
    return powers, [Interface(voltage_key(b), "complex", "pu") for b in buses], False


def federate_document(name: str, role: Mapping, broker_address: str, network: str = "local",
                      interface: str | None = None) -> dict:
    """A federate's whole config file (HELICS part + role settings), of any study kind: a dynamic role's
    interfaces come from :func:`hpcsim.dynamics.wiring.wiring`."""
    if role.get("role") in DYNAMIC_ROLES:
        pubs, subs, uninterruptible = wiring(role)
        pubs, subs = pubs.values(), subs.values()
    else:
        pubs, subs, uninterruptible = interfaces(role)
    return federate_config(name, role, broker_address, pubs, subs, uninterruptible=uninterruptible,
                           network=network, interface=interface)


def federate_configs(layout: Layout, broker_of: dict[str, str], network: str = "local") -> dict[str, dict]:
    """Every federate's config file. ``broker_of`` maps federate name -> address of the broker it connects to."""
    return {name: federate_document(name, role, broker_of[name], network)
            for name, role in role_configs(layout).items()}


def write_configs(configs: dict[str, dict], run_dir: Path) -> dict[str, Path]:
    """``<run>/configs/<name>.json`` for every config (pretty-printed); returns name -> path."""
    return {name: write_config(run_dir / "configs" / f"{name}.json", cfg) for name, cfg in configs.items()}


def run_description(layout: Layout, *, workers: int | None = None, sub_brokers: int = 0, **extra) -> dict:
    """The static description of a run (``<run>/run.json``): what the summary needs besides the outputs —
    study, case, feeder model, coupling and its tolerance, the planned step times, workers and brokers, engine
    mode, clone loads, and the case's PD at the boundary buses. Written before any federate starts, so a run
    folder describes itself even if the run dies (``hpcsim summarize``)."""
    s = layout.study
    return {
        "schema": 2, "kind": "steady", "study": s.name, "case": s.case, "model": resolve_feeder(s.feeder).name,
        "coupling": s.coupling, "method": s.method, "acceleration": s.acceleration, "start": s.start,
        "tolerance": s.tolerance,
        "max_iterations": s.max_iterations,
        "times_s": s.times_s, "scale_mode": s.scale_mode,
        "workers": len(layout.groups) if workers is None else workers, "sub_brokers": sub_brokers,
        "engine_mode": layout.engine_mode, "clone_load": s.clone_load, "residual_load": s.keeps_residual,
        "gen_voltage": s.generator_voltage,
        "n_feeders": layout.boundary.n_feeders, "n_buses": layout.boundary.n_buses,
        "boundary_pd_mw": layout.pd_mw, **extra,
    }
