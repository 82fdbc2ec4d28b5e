"""The cost model plans and predictions are built from — the only place these figures live.

:class:`CostModel` holds per-clone feeder costs (memory and time, both engine modes), per-process and broker
memory, the ANDES power-flow cost by case size, the HELICS exchange cost and iterations per step.
:data:`DEFAULT` is the model fitted by ``hpcsim bench`` on the project's 2-core / 24 GiB Debian machine
(opendssdirect.py 0.9, ANDES 2.0, HELICS 3.6 zmq); ``hpcsim bench`` writes a refitted ``model.json`` for the
machine it runs on, which ``hpcsim plan --predict --model FILE`` uses instead.

A coupling iteration of a plan costs (see :mod:`hpcsim.hpc.plan`)::

    t_it = k_max · (t_solve + t_overhead) + t_pf(buses) + t_lat + n_values · t_value

with k_max the busiest rank's clones. Before the first iteration, a run that starts "solved" (the default) does
one start solve per boundary bus on each rank (``b_max · t_start``, part of the start-up); one that does not pays
a cold first solve instead of t_solve for each clone of its first iteration. Memory of a feeder rank: separate
engines ``m_base + k · m_engine``; a shared engine ``m_base + m_engine + k · m_clone``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hpcsim.errors import PlanError


@dataclass(frozen=True)
class FeederCost:
    """One cloned feeder inside a feeder-rank process."""

    rss_mb: float  # resident memory of one compiled engine (separate mode: one per clone)
    compile_s: float  # OpenDSS compile of one engine
    first_solve_s: float  # first solve of a clone (controls settle from the model's initial state)
    solve_s: float  # a re-solve after a boundary-voltage change, controls on (one coupling iteration)
    shared_clone_mb: float  # memory of one clone's state on a shared engine
    shared_solve_s: float  # a re-solve on a shared engine (state swapped in: Y rebuilt when taps differ)
    shared_first_solve_s: float  # a clone's first solve on a shared engine (from the compiled state)
    overhead_s: float = 0.0  # per clone and iteration outside OpenDSS: HELICS reads/writes, Parquet rows
    # start "solved": one solve per boundary bus a rank holds, from the compiled state at the bus's case voltage
    # and load (controls settle far from the model's own operating point), before the federate connects; the
    # bus's clones then start warm from it
    start_solve_s: float = 0.0
    # a re-solve on a shared engine in a study at the case's operating point (residual_load: the boundary
    # voltages start at the published solution and move by ~1e-4 pu, so few regulator taps move); None: as
    # shared_solve_s
    shared_solve_op_s: float | None = None


@dataclass(frozen=True)
class TransmissionCost:
    pf_s: float
    load_s: float
    rss_mb: float


@dataclass(frozen=True)
class CostModel:
    feeders: dict[str, FeederCost]
    rank_base_mb: float  # a feeder-rank process before its first clone
    broker_base_mb: float
    handle_kb: float  # routing/subscription state per HELICS interface
    # ANDES on the MATPOWER cases: (buses, power-flow seconds, load seconds, peak RSS MB of the federate)
    transmission_points: tuple[tuple[int, float, float, float], ...]
    exchange_latency_s: float  # one coupling iteration's HELICS round trip, no values
    per_value_s: float  # per feeder power the transmission federate receives (serial on the critical path)
    federation_start_s: float
    # iterative coupling at tolerance 1e-6, per coupling method: (boundary buses, coupling iterations of a step)
    # of measured runs; plans use the power law I = a·buses^b fitted through them (Gauss–Seidel needs more sweeps
    # as more boundary buses interact); loose coupling is one exchange
    iteration_points: dict[str, tuple[tuple[int, int], ...]]
    fixed_iterations: int | None = None  # overrides the power law (hpcsim plan --iterations)
    # ANDES TDS CPU seconds per simulated second, by case buses (the dynamic study's critical path); a size
    # between or beyond the points scales linearly with the buses from the nearest one (an assumption: only
    # IEEE 14 is measured)
    tds_points: tuple[tuple[int, float], ...] = ((14, 0.075),)
    usable_memory_fraction: float = 0.9  # of a node's memory; the rest is the OS's and its daemons'
    fallback_model: str = "ieee8500"  # costs of a feeder model without measurements (the largest: conservative)
    source: str = "built in"
    fitted: dict = field(default_factory=dict)  # what the fit saw (runs, residuals), for the record

    def feeder(self, model: str) -> tuple[FeederCost, bool]:
        """(cost of one clone of ``model``, whether it was measured); unknown models get the fallback's."""
        if model in self.feeders:
            return self.feeders[model], True
        return self.feeders[self.fallback_model], False

    def _interpolate(self, buses: int, column: int) -> float:
        """Log–log interpolation over the transmission points (the end segments extrapolate)."""
        pts = self.transmission_points
        x = math.log(max(buses, 1))
        i = 0
        while i < len(pts) - 2 and buses > pts[i + 1][0]:
            i += 1
        (x0, y0), (x1, y1) = ((math.log(p[0]), math.log(p[column])) for p in (pts[i], pts[i + 1]))
        return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))

    def transmission(self, buses: int, feeders: int) -> TransmissionCost:
        """ANDES power flow, load time and federate memory for a case of ``buses`` buses serving ``feeders``
        feeders (one HELICS subscription each)."""
        return TransmissionCost(pf_s=self._interpolate(buses, 1), load_s=self._interpolate(buses, 2),
                                rss_mb=self._interpolate(buses, 3) + feeders * self.handle_kb / 1024)

    def tds_s_per_sim_s(self, buses: int) -> float:
        """ANDES TDS time per simulated second of a case of ``buses`` buses (see ``tds_points``)."""
        b, s = min(self.tds_points, key=lambda p: abs(math.log(max(buses, 1) / p[0])))
        return s * max(buses, 1) / b

    def broker_mb(self, handles: int) -> float:
        """A broker that routes ``handles`` publications/subscriptions."""
        return self.broker_base_mb + handles * self.handle_kb / 1024

    def exchange_s(self, values: int) -> float:
        """HELICS time of one coupling iteration: voltages out, then ``values`` feeder powers in."""
        return self.exchange_latency_s + values * self.per_value_s

    def rank_mb(self, model: str, clones: int, engine_mode: str) -> float:
        """Memory of one feeder-rank process holding ``clones`` clones."""
        f, _ = self.feeder(model)
        if engine_mode == "shared":
            return self.rank_base_mb + (f.rss_mb + clones * f.shared_clone_mb if clones else 0.0)
        return self.rank_base_mb + clones * f.rss_mb

    def ranks_mb(self, model: str, engine_mode: str, ranks: int, clones: int) -> float:
        """Memory of ``ranks`` feeder ranks sharing ``clones`` clones evenly (sizes differ by at most one)."""
        if not ranks:
            return 0.0
        q, r = divmod(clones, ranks)
        return (ranks - r) * self.rank_mb(model, q, engine_mode) + r * self.rank_mb(model, q + 1, engine_mode)

    def solve_s(self, model: str, engine_mode: str, first: bool = False, operating_point: bool = False) -> float:
        """Per clone and iteration: OpenDSS solve plus the per-clone overhead; ``operating_point``: the study
        starts at the case's operating point (``residual_load``)."""
        f, _ = self.feeder(model)
        if engine_mode == "shared":
            warm = f.shared_solve_op_s if operating_point and f.shared_solve_op_s is not None else f.shared_solve_s
            solve = f.shared_first_solve_s if first else warm
        else:
            solve = f.first_solve_s if first else f.solve_s
        return solve + f.overhead_s

    @staticmethod
    def buses_per_rank(n_buses: int, ranks: int, clones_per_rank: int) -> int:
        """Boundary buses the busiest rank holds: its clones are consecutive in bus order, so they span the even
        share of the buses plus at most one bus cut at each end (and never more buses than clones)."""
        share = -(-n_buses // max(ranks, 1)) + (1 if ranks > 1 else 0)
        return max(1, min(clones_per_rank, n_buses, share))

    def first_extra_s(self, model: str, engine_mode: str, start: str, clones: int, buses: int) -> float:
        """What a rank of ``clones`` clones on ``buses`` boundary buses spends before its first warm iteration:
        start "solved", one start solve per bus (before connecting; the clones then start warm); otherwise every
        clone's first solve is a cold one."""
        if start == "solved":
            return buses * self.feeder(model)[0].start_solve_s
        return clones * max(0.0, self.solve_s(model, engine_mode, first=True) - self.solve_s(model, engine_mode))

    def startup_s(self, model: str, engine_mode: str, start: str, clones: int, buses: int, case_buses: int,
                  n_feeders: int) -> tuple[float, float]:
        """(start-up before the first iteration, extra time of the first iteration) of the busiest rank: the case
        load beside the compiles — and, start "solved", beside the start solves, which run before the ranks
        connect — plus the federation start; otherwise the cold first solves are the first iteration's extra."""
        compile_s = self.feeder(model)[0].compile_s * (1 if engine_mode == "shared" else clones)
        extra = self.first_extra_s(model, engine_mode, start, clones, buses)
        load_s = self.transmission(case_buses, n_feeders).load_s
        if start == "solved":
            return max(load_s, compile_s + extra) + self.federation_start_s, 0.0
        return max(load_s, compile_s) + self.federation_start_s, extra

    def iteration_s(self, feeder_model: str, engine_mode: str, clones_per_rank: int, n_values: int,
                    case_buses: int, operating_point: bool = False) -> float:
        """One coupling iteration: the busiest rank's re-solves, the power flow and the HELICS exchange."""
        return (clones_per_rank * self.solve_s(feeder_model, engine_mode, operating_point=operating_point)
                + self.transmission(case_buses, n_values).pf_s + self.exchange_s(n_values))

    def iterations_for(self, coupling: str, n_buses: int, method: str = "gauss-seidel") -> int:
        """Coupling iterations per step a plan assumes (see ``iteration_points``)."""
        if coupling == "loose":
            return 1
        if self.fixed_iterations is not None:
            return self.fixed_iterations
        a, b = self.iteration_law(method)
        # the law fits the expected count: rounded, not raised (a ceiling added up to one iteration to every
        # plan — Newton's 3, 4, 3 fit to 3.3, planned as 4)
        return max(1, math.floor(a * max(n_buses, 1) ** b + 0.5))

    def iteration_law(self, method: str = "gauss-seidel") -> tuple[float, float]:
        """(a, b) of I = a·buses^b, least squares in log–log over the method's ``iteration_points`` (a method
        without measurements falls back on Gauss–Seidel's: conservative)."""
        points = self.iteration_points.get(method) or self.iteration_points["gauss-seidel"]
        x = [math.log(max(b, 1)) for b, _ in points]
        y = [math.log(i) for _, i in points]
        if len(x) == 1:
            return math.exp(y[0]), 0.0
        mx, my = sum(x) / len(x), sum(y) / len(y)
        sxx = sum((v - mx) ** 2 for v in x)
        b = sum((u - mx) * (v - my) for u, v in zip(x, y)) / sxx if sxx else 0.0
        return math.exp(my - b * mx), b

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transmission_points"] = [list(p) for p in self.transmission_points]
        d["tds_points"] = [list(p) for p in self.tds_points]
        d["iteration_points"] = {m: [list(p) for p in pts] for m, pts in self.iteration_points.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CostModel:
        d = dict(d)
        d["feeders"] = {k: FeederCost(**v) for k, v in d["feeders"].items()}
        d["transmission_points"] = tuple(tuple(p) for p in d["transmission_points"])
        if "tds_points" in d:
            d["tds_points"] = tuple(tuple(p) for p in d["tds_points"])
        points = d["iteration_points"]
        if isinstance(points, list):  # a model.json from before the methods: Gauss–Seidel's
            points = {"gauss-seidel": points}
        d["iteration_points"] = {m: tuple(tuple(p) for p in pts) for m, pts in points.items()}
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path

    def with_feeder(self, model: str, **changes: float) -> CostModel:
        base, _ = self.feeder(model)
        return replace(self, feeders={**self.feeders, model: replace(base, **changes)})


def load_model(path: str | Path) -> CostModel:
    """A cost model written by ``hpcsim bench`` (``model.json``)."""
    try:
        return CostModel.from_dict(json.loads(Path(path).read_text()))
    except OSError as exc:
        raise PlanError(f"cost model {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"cost model {path}: not a model written by hpcsim bench ({exc})") from None


DEFAULT = CostModel(
    feeders={
        # the operating point, fitted on ACTIVSg2000 + 6,580 feeders as shipped (residual load, shared engines;
        # 2026-12-02, `hpcsim bench --fit RUN`): re-solve 21.7 ms per clone and exchange, start solve 0.230 s per
        # boundary bus, a clone's memory in a run 186 kB (its state, warm-start and control states, buffered rows).
        # fitted by the full `hpcsim bench` (benchmarks/results/2026-11-21/): one engine 32.7 MB; cold first solve
        # 90 ms, warm re-solve 16.8 ms (+1.75 ms per clone and iteration outside OpenDSS); shared engine: first
        # solve 118 ms, re-solve 25.9 ms where voltages move far (state swapped in, the Y matrix rebuilt when taps
        # differ; 138 kB per clone in the memory benchmark: 16 bytes x 8,531 nodes + taps); compile 0.1–0.36 s
        "ieee8500": FeederCost(rss_mb=32.7, compile_s=0.2, first_solve_s=0.090, solve_s=0.0168,
                               shared_clone_mb=0.186, shared_solve_s=0.0259, shared_first_solve_s=0.118,
                               overhead_s=0.00175, start_solve_s=0.230, shared_solve_op_s=0.0217),
        # measured: +2.1 MB per engine, compile 52 ms, first solve ≤ 22 ms, re-solve 0.5 ms (start solve: as a
        # first solve, not measured apart)
        "ieee34": FeederCost(rss_mb=2.1, compile_s=0.052, first_solve_s=0.022, solve_s=0.0005,
                             shared_clone_mb=0.003, shared_solve_s=0.001, shared_first_solve_s=0.022,
                             start_solve_s=0.022),
        # measured: +1.9 MB per engine, compile 47 ms, first solve ≤ 13 ms, re-solve 0.1 ms (start solve: as a
        # first solve)
        "ieee13": FeederCost(rss_mb=1.9, compile_s=0.047, first_solve_s=0.013, solve_s=0.0001,
                             shared_clone_mb=0.001, shared_solve_s=0.0005, shared_first_solve_s=0.013,
                             start_solve_s=0.013),
    },
    # fitted: a feeder-group process (Python, numpy, pyarrow, HELICS, opendssdirect) without its clones, from the
    # calibration run's peak memory
    rank_base_mb=195.0,
    broker_base_mb=8.0,  # helics_broker (zmq) idle
    handle_kb=2.1,  # measured: 10,000 subscriptions add 20.9 MB to a federate
    # PF: ACTIVSg200 fitted from the calibration runs (mean over their power flows), the others from the project
    # notes (median); load time and RSS measured (ANDES load + setup, then 3 PFs)
    transmission_points=(
        (200, 0.0118, 2.2, 151.0),  # ACTIVSg200
        (2_000, 0.024, 2.3, 169.0),  # ACTIVSg2000
        (10_000, 0.1, 7.8, 246.0),  # ACTIVSg10k
        (25_000, 0.29, 17.5, 384.0),  # ACTIVSg25k
        (70_000, 1.6, 50.0, 824.0),  # ACTIVSg70k
    ),
    # fitted (flat broker, hub + 2 echo federates, 126 / 1,000 / 6,580 values): 2.26 ms + 10.4 µs per value
    exchange_latency_s=2.26e-3,
    per_value_s=10.4e-6,
    federation_start_s=0.2,
    # measured at tolerance 1e-6: ACTIVSg200 bus 8 (1 bus, 3 clones), ACTIVSg200 (37 buses, 126 clones),
    # ACTIVSg2000 with clones scaled to the bus load (916 buses, 6,580 clones). Gauss–Seidel (2026-11-21, case
    # start): I ≈ 3.0·buses^0.26. Newton (2026-12-02, as shipped: solved start; ACTIVSg2000 with its residual
    # load and the generators at the published voltages): 3, 4, 3 — flat in the size
    iteration_points={"gauss-seidel": ((1, 3), (37, 8), (916, 18)), "newton": ((1, 3), (37, 4), (916, 3))},
    source="built in: fitted by hpcsim bench on a 2-core / 24 GB machine, 2026-11-21; operating point on "
           "ACTIVSg2000 + 6,580 feeders, 2026-12-02",
)
