"""Measured costs the placement plan is built from — the only place these figures live.

Every figure says where it comes from. "measured" = this project, on a 2-core / 24 GiB Debian machine
(opendssdirect.py 0.9, ANDES 2.0, HELICS 3.6 zmq), see also the project notes. The plan multiplies them out;
they are meant to be right to a factor of ~1.5, which is what a placement needs (and what a walltime
request can absorb), not a performance model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FeederCost:
    """One cloned feeder inside a feeder-rank process."""

    rss_mb: float  # resident memory one more compiled clone adds to its process
    compile_s: float  # OpenDSS compile of one clone
    first_solve_s: float  # first solve after compile (controls settle from the model's initial state)
    solve_s: float  # a re-solve after a boundary-voltage change, controls on (one coupling iteration)


FEEDER_COSTS: dict[str, FeederCost] = {
    # measured: +33 MB per engine (NOTES: ≈ 33 MB), compile 0.1–0.36 s, first solve 0.3–0.4 s; re-solve with
    # controls 40 ms (NOTES) to 75 ms (QSTS steps move the voltage more than an iteration does): 75 ms is used.
    "ieee8500": FeederCost(rss_mb=35.0, compile_s=0.2, first_solve_s=0.35, solve_s=0.075),
    # measured: +2.1 MB per engine, compile 52 ms, first solve ≤ 22 ms, re-solve 0.5 ms
    "ieee34": FeederCost(rss_mb=2.1, compile_s=0.052, first_solve_s=0.022, solve_s=0.0005),
    # measured: +1.9 MB per engine, compile 47 ms, first solve ≤ 13 ms, re-solve 0.1 ms
    "ieee13": FeederCost(rss_mb=1.9, compile_s=0.047, first_solve_s=0.013, solve_s=0.0001),
}
# A feeder model without measurements is planned with the largest one's figures (conservative).
FALLBACK_MODEL = "ieee8500"

# A feeder-rank process before its first clone: Python + numpy + pyarrow + HELICS + opendssdirect + mpi4py.
# measured: a feeder-group federate peaks at 175 MB with one 8500-node clone and 208 MB with two.
RANK_BASE_MB = 140.0

# helics_broker (zmq): measured 8 MB idle. Routing state per interface it knows: estimated like a federate's
# input (below) — the root broker of a 70k-bus plan knows ~80,000 of them.
BROKER_BASE_MB = 8.0
HANDLE_KB = 2.1  # measured: 10,000 subscriptions add 20.9 MB to a federate

# ANDES on the MATPOWER cases: (buses, power-flow seconds, load seconds, peak RSS MB of the federate process).
# PF times from the project notes (median); load time and RSS measured (ANDES load + setup, then 3 PFs).
TRANSMISSION_POINTS: tuple[tuple[int, float, float, float], ...] = (
    (200, 0.005, 2.2, 151.0),  # ACTIVSg200
    (2_000, 0.024, 2.3, 169.0),  # ACTIVSg2000
    (10_000, 0.1, 7.8, 246.0),  # ACTIVSg10k
    (25_000, 0.29, 17.5, 384.0),  # ACTIVSg25k
    (70_000, 1.6, 50.0, 824.0),  # ACTIVSg70k
)

# HELICS value exchange. Latency of one exchange through a 2-level hierarchy: 0.37 ms (NOTES, zmq). Per value
# the transmission federate receives in an iteration: measured 22 µs at 10,000 and 36 µs at 2,000 values per
# iteration through one broker (publish + route + read); 25 µs is used. The transmission federate reads every
# feeder's power each iteration, so this term is serial on the critical path and grows with the feeder count.
EXCHANGE_LATENCY_S = 0.37e-3
PER_VALUE_S = 25e-6
FEDERATION_START_S = 0.2  # NOTES: federation start to executing mode (small federations)

# Coupling iterations per time step (tolerance 1e-6): measured 3 on the ACTIVSg200 bus-8 study (3 feeders) and
# 8 on the full ACTIVSg200 study (126 feeders, 37 buses); more boundary buses take more Gauss-Seidel sweeps, so
# plans use the larger figure. Loose coupling is one exchange.
ITERATIONS = {"iterative": 8, "loose": 1}

# Memory a node keeps for its OS and daemons: plans use at most this fraction of the stated node memory.
USABLE_MEMORY_FRACTION = 0.9


def feeder_cost(model: str) -> tuple[FeederCost, bool]:
    """(cost of one clone of ``model``, whether it was measured); unknown models get the 8500-node figures."""
    if model in FEEDER_COSTS:
        return FEEDER_COSTS[model], True
    return FEEDER_COSTS[FALLBACK_MODEL], False


def _interpolate(buses: int, column: int) -> float:
    """Log–log interpolation over :data:`TRANSMISSION_POINTS` (the end segments extrapolate)."""
    pts = TRANSMISSION_POINTS
    x = math.log(max(buses, 1))
    i = 0
    while i < len(pts) - 2 and buses > pts[i + 1][0]:
        i += 1
    (x0, y0), (x1, y1) = ((math.log(p[0]), math.log(p[column])) for p in (pts[i], pts[i + 1]))
    return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


@dataclass(frozen=True)
class TransmissionCost:
    pf_s: float
    load_s: float
    rss_mb: float


def transmission_cost(buses: int, feeders: int) -> TransmissionCost:
    """ANDES power flow, load time and federate memory for a case of ``buses`` buses serving ``feeders``
    feeders (one HELICS subscription each)."""
    return TransmissionCost(pf_s=_interpolate(buses, 1), load_s=_interpolate(buses, 2),
                            rss_mb=_interpolate(buses, 3) + feeders * HANDLE_KB / 1024)


def broker_mb(handles: int) -> float:
    """A broker that routes ``handles`` publications/subscriptions."""
    return BROKER_BASE_MB + handles * HANDLE_KB / 1024


def exchange_s(values: int) -> float:
    """HELICS time of one coupling iteration: voltages out, then ``values`` feeder powers into transmission."""
    return 2 * EXCHANGE_LATENCY_S + values * PER_VALUE_S
