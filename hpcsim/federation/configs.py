"""The typed role configs of a steady-state study (snapshot or QSTS; :mod:`hpcsim.federation.role_config`): what
the layout (:func:`hpcsim.federation.layout.role_configs`) hands the transmission federate and each feeder group.

The order of the fields is the order of the keys in the config files. Tables keyed by bus have string keys, as in
JSON. ``resume`` is added to a config when a job resumes (:mod:`hpcsim.federation.resume` writes and reads it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeederSpec:
    """One feeder clone (or, in scale mode, one feeder standing for its bus's K clones)."""

    name: str
    bus: int
    load_mult: float
    weight: int  # how many clones this feeder stands for (K in scale mode, else 1)
    p0_mw: float  # the feeder curve's (or the case's) guess of its draw: the first boundary load unless the
    q0_mvar: float  # study's start is "solved" (then the feeder group sends it before the first power flow)


@dataclass(frozen=True)
class SteadyCommon:
    """What both steady roles share: the coupling and the steps."""

    study: str
    run_dir: str
    coupling: str  # "loose" or "iterative"
    method: str  # hpcsim.coupling.METHODS
    acceleration: str
    tolerance: float  # pu
    max_iterations: int
    times_s: tuple[float, ...]
    profile: tuple[float, ...]  # the load multiplier of each step
    node_voltages: bool
    start: str  # hpcsim.study.STARTS
    residual_load: bool
    gen_voltage: str  # "setpoint" or "solution"


@dataclass(frozen=True)
class TransmissionConfig(SteadyCommon):
    """The transmission federate: the case, the boundary buses, their clone counts and every feeder."""

    role: str
    case: str
    buses: tuple[int, ...]
    clones: dict[str, int]  # bus -> K
    feeders: tuple[FeederSpec, ...]
    resume: dict | None = None


@dataclass(frozen=True)
class FeederGroupConfig(SteadyCommon):
    """A feeder group federate: its feeders of one model, solved by separate or shared engines."""

    role: str
    feeder_model: str
    engine_mode: str  # "separate" or "shared"
    feeders: tuple[FeederSpec, ...]
    bus_mult: dict[str, float]  # bus -> its clones' load multiplier before diversity
    warm_start: bool
    case_v: dict[str, tuple[float, float]] | None = None  # bus -> the case's (VM pu, VA deg), start "solved"
    resume: dict | None = None


CONFIGS: dict[str, type] = {"transmission": TransmissionConfig, "feeders": FeederGroupConfig}
