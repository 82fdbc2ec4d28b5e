"""The distribution side of a dynamic study: an OpenDSS feeder with DERs as phasor injections.

DER placement (:func:`place_ders`): an energy meter at the feeder head gives every bus its distance; the
three-phase medium-voltage buses (base above 1 kV, not the source bus) are sorted by distance and the DERs go to
evenly spaced positions of that list within ``span`` (0.1–1.0: from a tenth of the way out to the far end).
A study may instead name the buses (``der_buses``); each must be a three-phase bus of the feeder.

:class:`DerFeeder` compiles the feeder, adds one three-phase ``Generator`` per DER (constant P, unity power
factor, rated ``kVA``) and, each exchange, sets the source voltage, the DER powers computed by ANDES and the load
multiplier, solves (regulators and capacitors active) and reports the positive-sequence substation power, the
DER total and the node-voltage envelope. :meth:`DerFeeder.vsm_solver` is the solve callback of
:mod:`headroom`: controls frozen (``controlmode=off``), DER powers set, node voltages and line loadings read.

The source voltage is the transmission bus voltage times a fixed substation ratio: with ``feeder_head =
"model"`` the ratio puts the feeder head at the model's own source setting (1.05 pu for both IEEE feeders) at
the first exchange, as a fixed-tap substation transformer would; with ``"transmission"`` it is 1.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hpcsim.cases import resolve_feeder
from hpcsim.coordination import DEFAULT, Coordination, CoordinationSettings, coordinate
from hpcsim.distribution.engine import CloneState, FeederEngine
from hpcsim.errors import CaseError, DynamicsError

log = logging.getLogger(__name__)

METER = "hpcsim_head"


def place_ders(engine: FeederEngine, n: int, span: tuple[float, float]) -> list[str]:
    """Buses for ``n`` DERs spread by distance over the feeder's three-phase MV buses (see module docstring)."""
    d = engine.dss
    if not n:
        return []
    d.Lines.First()
    d.Text.Command(f"New EnergyMeter.{METER} element=Line.{d.Lines.Name()} terminal=1")
    d.Solution.Solve()
    source_bus = _source_bus(engine)
    candidates = []
    for bus, dist in zip(d.Circuit.AllBusNames(), d.Circuit.AllBusDistances()):
        d.Circuit.SetActiveBus(bus)
        if d.Bus.NumNodes() == 3 and d.Bus.kVBase() > 1.0 and bus != source_bus:
            candidates.append((float(dist), bus))
    d.Text.Command(f"EnergyMeter.{METER}.enabled=no")
    if not candidates:
        raise CaseError(f"feeder {engine.model.name} has no three-phase MV bus for DERs")
    candidates.sort()
    pos = np.linspace(span[0], span[1], n) * (len(candidates) - 1)
    return [candidates[int(round(p))][1] for p in pos]


def _source_bus(engine: FeederEngine) -> str:
    d = engine.dss
    d.Circuit.SetActiveElement(engine.model.source)
    return d.CktElement.BusNames()[0].split(".")[0]


@dataclass(frozen=True)
class FeederState:
    """One solve: substation power (positive sequence, one feeder, unscaled), DER total, voltage envelope."""

    p_net_mw: float
    q_net_mvar: float
    p_der_mw: float
    v_min_pu: float
    v_mean_pu: float
    v_std_pu: float
    v_max_pu: float
    solve_s: float

    @property
    def s_gross_mva(self) -> complex:
        """Eq. (4): the feeder's load seen without its DERs (which ANDES models itself): S_net + Σ P_DER."""
        return complex(self.p_net_mw + self.p_der_mw, self.q_net_mvar)


class DerFeeder(FeederEngine):
    """A feeder engine with DER generators (see module docstring); its failures are :class:`DynamicsError`."""

    error = DynamicsError

    def __init__(self, feeder: str, der_buses: list[str], der_names: list[str], der_kva: float, der_kw: float,
                 settings: list[str] | tuple[str, ...] = ()):
        super().__init__(resolve_feeder(feeder))
        d = self.dss
        self.name = self.model.name
        self.source_pu_model = float(d.Vsources.PU())
        self.der_names = list(der_names)
        for name, bus in zip(der_names, der_buses):
            if "." in bus:
                raise CaseError(f"feeder {self.name}: DER {name} at {bus!r}: give the bus name without node numbers "
                                f"(a DER is a three-phase generator)")
            if d.Circuit.SetActiveBus(bus) < 0:
                raise CaseError(f"feeder {self.name} has no bus {bus!r} for DER {name}")
            if d.Bus.NumNodes() != 3:
                raise CaseError(f"feeder {self.name}: bus {bus!r} for DER {name} has {d.Bus.NumNodes()} node(s); "
                                f"a DER is a three-phase generator")
            kv_ll = d.Bus.kVBase() * np.sqrt(3.0)
            self._command(f"New Generator.{name} bus1={bus} phases=3 kV={kv_ll:.4f} kW={der_kw} kVA={der_kva} "
                          f"pf=1 model=1")
        for cmd in settings:  # a voltage coordination (hpcsim.coordination), as OpenDSS commands
            self._command(cmd)
        if settings:  # keep the coordinated taps: regulators must not re-tap at the model's own source voltage
            self.freeze_controls()
        d.Solution.Solve()
        self.freeze_controls(False)
        if not d.Solution.Converged():
            raise DynamicsError(f"feeder {self.name} with its DERs does not converge at its own source voltage")
        source_bus = _source_bus(self)
        names = d.Circuit.AllNodeNames()
        vmag = np.asarray(d.Circuit.AllBusMagPu())
        self.node_mask = np.array([n.split(".")[0] != source_bus for n in names]) & (vmag > 0.01)
        self.nodes = [n for n, keep in zip(names, self.node_mask) if keep]
        self.line_mask = np.array([n.lower().startswith("line.") for n in d.PDElements.AllNames()])
        self.ratio: float | None = None

    def set_der_kw(self, p_mw: np.ndarray) -> None:
        gens = self.dss.Generators
        for name, p in zip(self.der_names, p_mw):
            gens.Name(name)
            gens.kW(float(p) * 1000.0)

    def source_pu(self, v_bus_pu: float, mode: str) -> float:
        """The feeder source voltage for a transmission bus voltage (the substation ratio is fixed at first use)."""
        if self.ratio is None:
            self.ratio = self.source_pu_model / v_bus_pu if mode == "model" else 1.0
            log.info("%s: substation ratio %.5f (head %.4f pu at bus voltage %.4f pu)", self.name, self.ratio,
                     v_bus_pu * self.ratio, v_bus_pu)
        return v_bus_pu * self.ratio

    def solve_with_ders(self, v_source_pu: float, angle_deg: float, der_p_mw: np.ndarray,
                        load_mult: float) -> FeederState:
        """The DERs at ``der_p_mw``, then the engine's solve (:meth:`FeederEngine.solve`) at the source voltage and
        load multiplier; the voltage envelope is over the feeder's nodes without the source bus."""
        self.set_der_kw(der_p_mw)
        result = self.solve(CloneState(self.name, 0, float(load_mult), float(v_source_pu), float(angle_deg)))
        v = self.node_voltages()
        return FeederState(result.p_mw, result.q_mvar, float(np.sum(der_p_mw)), float(v.min()), float(v.mean()),
                           float(v.std()), float(v.max()), result.solve_s)

    def coordinate(self, v_source_pu: float, der_p_mw: np.ndarray, *, v_min_pu: float, v_max_pu: float,
                   margin_pu: float, extremes: tuple[tuple[float, float], ...] = (),
                   settings: CoordinationSettings = DEFAULT) -> Coordination:
        """Re-coordinate regulators and transformer taps at this operating point (load multiplier 1), robust to
        the (load multiplier, source voltage) ``extremes`` if given."""
        self.solve_with_ders(v_source_pu, 0.0, der_p_mw, 1.0)
        d = self.dss

        def solve() -> np.ndarray:
            d.Solution.Solve()
            if not d.Solution.Converged():
                raise DynamicsError(f"feeder {self.name}: a voltage-coordination solve did not converge")
            return np.asarray(d.Circuit.AllBusMagPu())

        t0 = time.perf_counter()
        c = coordinate(d, self.model.source, solve, self.node_mask, v_min_pu=v_min_pu, v_max_pu=v_max_pu,
                       margin_pu=margin_pu, extremes=extremes, settings=settings)
        moved = c.describe()
        log.info("%s: voltage coordination in %.1f s: %.4f–%.4f pu -> %.4f–%.4f pu (%d regulators, %d fixed taps "
                 "moved)", self.name, time.perf_counter() - t0, *c.v_before_pu, *c.v_after_pu,
                 moved["regulators_moved"], moved["fixed_taps_moved"])
        return c

    def node_voltages(self) -> np.ndarray:
        return np.asarray(self.dss.Circuit.AllBusMagPu())[self.node_mask]

    def line_loadings(self) -> np.ndarray:
        """Loading of every line in % of its normal rating (max over conductors), NaN-free."""
        pct = np.asarray(self.dss.PDElements.AllPctNorm(False))[self.line_mask]
        return np.nan_to_num(pct, nan=0.0, posinf=0.0)

    @contextlib.contextmanager
    def vsm_solver(self) -> Iterator:
        """The solve callback for :func:`hpcsim.dynamics.headroom.sensitivity`, controls frozen while it lives."""
        d = self.dss

        def solve(p_mw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            self.set_der_kw(p_mw)
            d.Solution.Solve()
            if not d.Solution.Converged():
                raise DynamicsError(f"feeder {self.name}: VSM perturbation solve did not converge")
            return self.node_voltages(), self.line_loadings()

        self.freeze_controls()
        try:
            yield solve
        finally:
            self.freeze_controls(False)


def base_envelope(feeder: str, v_source_pu: float) -> tuple[float, float]:
    """(min, max) node voltage of the published feeder without DERs at a source voltage."""
    lo, hi = replay_envelope(feeder, [v_source_pu], [1.0])
    return float(lo[0]), float(hi[0])


def replay_envelope(feeder: str, v_source_pu: list[float], load_mult: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) node voltage per exchange of the published feeder without DERs driven by the same source
    voltages and load multipliers as a run: the reference a DER-influenced envelope is judged against."""
    ref = DerFeeder(feeder, [], [], 0.0, 0.0)
    lo, hi = [], []
    for v, m in zip(v_source_pu, load_mult):
        st = ref.solve_with_ders(v, 0.0, np.zeros(0), m)
        lo.append(st.v_min_pu)
        hi.append(st.v_max_pu)
    return np.asarray(lo), np.asarray(hi)
