"""The typed role configs of a dynamic study (:mod:`hpcsim.federation.role_config`): what the plan
(:func:`hpcsim.dynamics.plan.role_configs`) hands each federate — the TDS, one per DER feeder, the AGC.

Times are in seconds or in control intervals (``*_ticks``); powers in MW (DER ratings in kVA/kW, as the study gives
them); the order of the fields is the order of the keys in the config files.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME_OFFSET = 1.0  # HELICS time = simulated seconds + 1 (so nothing happens at HELICS time 0)


@dataclass(frozen=True)
class Governor:
    """A turbine governor (ANDES ``TGOV1``) that takes AGC set points: its machine, droop and rating."""

    idx: str | int
    syn: str | int
    r_pu: float
    sn_mva: float


@dataclass(frozen=True)
class DynamicCommon:
    """What every dynamic role shares: the clock, the DER rating, the frequency base, the load multiplier series."""

    study: str
    run_dir: str
    control_s: float
    ticks: int  # control intervals in the run
    exchange_s: float
    exchange_ticks: int
    agc_ticks: int
    headroom_ticks: int
    flush_ticks: int  # how often the outputs are written
    der_kva: float
    der_kw: float
    headroom: bool
    f0_hz: float
    governors: tuple[Governor, ...]
    load_mult: tuple[float, ...]  # one per exchange


@dataclass(frozen=True)
class TdsFeeder:
    """A feeder as the transmission side sees it: its bus, its DERs, its scale and first load (MW, Mvar)."""

    bus: int
    der_names: tuple[str, ...]
    scale: float
    p0_mw: float
    q0_mvar: float


@dataclass(frozen=True)
class MotorBus:
    """The air-conditioner motor load at one bus (MW, running)."""

    bus: int
    p_mw: float


@dataclass(frozen=True)
class FidvrConfig:
    """The fault, the motors and the DER ride-through of a FIDVR study (:mod:`hpcsim.transmission.fidvr`)."""

    fault_bus: int
    fault_s: float
    clear_s: float
    fault_x_pu: float
    load_break_pu: float
    motors: tuple[MotorBus, ...]
    motor_v_stall_pu: float
    motor_t_stall_s: float
    motor_r_stall_pu: float
    motor_x_stall_pu: float
    motor_pf: float
    motor_trip_s: tuple[float, ...]
    motor_restart_share: float
    motor_v_restart_pu: float
    motor_t_restart_s: float
    der_ride_through: str
    der_trip_v_pu: float
    der_trip_s: float


@dataclass(frozen=True)
class TdsConfig(DynamicCommon):
    """The transmission federate: ANDES TDS of ``case`` with the DERs, the trip, the AGC inputs."""

    role: str
    case: str
    tds_step_s: float
    droop_gain_pu: float
    pfr_deadband_hz: float
    balance_gen: str
    trip_gen: str
    trip_s: float
    bias_mw_per_01hz: float
    mppt_mw: tuple[tuple[float, ...], ...]  # per second of the run, per DER
    feeder_of_bus: dict[str, str]
    feeders: tuple[TdsFeeder, ...]
    fidvr: FidvrConfig | None = None  # a study with a fault (left out of the config file otherwise)


@dataclass(frozen=True)
class DerFeederConfig(DynamicCommon):
    """One DER feeder federate (:class:`hpcsim.distribution.der_feeder.DerFeeder`)."""

    role: str
    bus: int
    feeder: str
    der_buses: tuple[str, ...]
    der_names: tuple[str, ...]
    scale: float
    feeder_head: str
    v_min_pu: float
    v_max_pu: float
    vsm_dp_kw: float
    settings: tuple[str, ...]  # the voltage coordination, as OpenDSS commands


@dataclass(frozen=True)
class AgcConfig(DynamicCommon):
    """The AGC federate."""

    role: str
    agc: bool
    agc_s: float
    agc_kp: float
    agc_ki: float
    agc_deadband_hz: float
    agc_limit_mw: float
    der_agc_share: float
    n_der: int


CONFIGS: dict[str, type] = {"tds": TdsConfig, "dfeeder": DerFeederConfig, "agc": AgcConfig}
