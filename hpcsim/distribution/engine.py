"""OpenDSS side: one engine per feeder clone, driven through opendssdirect.py.

A :class:`FeederEngine` compiles a feeder model once in its own OpenDSS context
(``opendssdirect.NewContext()``), then repeatedly: sets the source to a positive-sequence voltage from the
transmission side, applies the clone's load multiplier, solves, and returns the positive-sequence power the
feeder draws at its substation (equations (1)-(4) in :mod:`hpcsim.interface`).

The engine keeps no per-clone state besides what :class:`CloneState` names, so a later shared-engine mode can
swap that small state (multiplier, regulator taps, capacitor states) in and out of one compiled circuit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from hpcsim.cases import FeederModel
from hpcsim.errors import SolverError, one_line
from hpcsim.interface import positive_sequence_power

log = logging.getLogger(__name__)


@dataclass
class CloneState:
    """The small state that makes one clone differ from another of the same model."""

    name: str
    bus: int
    load_mult: float = 1.0
    v_pu: float = 1.0
    angle_deg: float = 0.0


@dataclass(frozen=True)
class ControlState:
    """The discrete state of a feeder's controls: regulator tap numbers and capacitor step states.

    Regulators and capacitor controls make a feeder's solution path dependent (a fresh engine and one that
    arrived at the same source voltage through other voltages can settle on different taps), so this state is
    part of a result, and what a shared engine must swap between clones.
    """

    reg_taps: tuple[int, ...] = ()
    cap_states: tuple[int, ...] = ()


@dataclass(frozen=True)
class SolvedState:
    """A solved operating point of a feeder model: its node-voltage vector and control state. Loaded into an
    engine of the same model (same node order) before a clone's first solve, it starts that solve near a
    solution instead of from the compiled state (:class:`WarmStarts`)."""

    voltages: np.ndarray = field(repr=False)
    control: ControlState


@dataclass(frozen=True)
class FeederResult:
    """One feeder solve. ``p_mw``/``q_mvar`` are the positive-sequence power the feeder draws."""

    name: str
    bus: int
    v_source_pu: float
    angle_deg: float
    load_mult: float
    p_mw: float
    q_mvar: float
    p_total_mw: float
    q_total_mvar: float
    min_v_pu: float
    mean_v_pu: float
    max_v_pu: float
    solve_s: float = field(compare=False)
    control: ControlState = field(default_factory=ControlState)
    node_v_pu: np.ndarray | None = field(default=None, repr=False, compare=False)
    ds_dv_mva: complex | None = None  # dS/d|V| at the source, MVA per pu, controls held (see power_slope)
    slope_s: float = field(default=0.0, compare=False)  # time of the sensitivity solve


SLOPE_DV_PU = 1e-3  # source-voltage step of the sensitivity solve (forward difference)
# OpenDSS's convergence tolerance on node voltages (pu): the models' 1e-6 while the coupling moves the boundary
# voltage, and FINE_TOLERANCE for the last exchanges. An IEEE 8500's power wanders between re-solves at the same
# voltage by ~1e-5 Mvar at 1e-6, by 8e-9 MW at 1e-8 and by 2e-10 MW at 1e-10 (a warm re-solve: 9, 13, 16
# OpenDSS iterations, all ~18 ms). Through the network that noise moves the boundary voltages, and the ANL
# mismatch sums them over every bus. It sums more than √N: the feeders' P noise adds up into the total load,
# whose change shifts every bus angle against the slack alike. On ACTIVSg2000 + 6,580 feeders, solved at 1e-8,
# the last exchanges moved the total load by ~1e-4 MW and every angle by ~5e-8 rad: 1.1-1.7e-6 pu in the ANL
# norm, a floor above the 1e-6 tolerance. The fine tolerance is used once a clone's source moved less than
# FINE_BELOW_DV_PU since its last solve: Newton's next error is ~C·ΔV² + the noise, and below a move of ~3e-3 pu
# (rms ~3e-4 over the boundary; C ≈ 2.5 on ACTIVSg2000) the coarse noise is the larger term.
COARSE_TOLERANCE = 1e-6
FINE_TOLERANCE = 1e-10
FINE_BELOW_DV_PU = 3e-3


def _new_context():
    import opendssdirect

    ctx = opendssdirect.NewContext()
    ctx.Basic.AllowChangeDir(False)  # compile must not chdir the whole process
    return ctx


class FeederEngine:
    """One compiled feeder in its own OpenDSS context; its solver failures raise :attr:`error`."""

    error: type[SolverError] = SolverError

    def __init__(self, model: FeederModel):
        self.model = model
        self.dss = _new_context()
        t0 = time.perf_counter()
        self._command(f'compile "{model.entry}"')
        for cmd in model.solve_settings:
            self._command(cmd)
        self.compile_s = time.perf_counter() - t0
        self._source = model.source.split(".", 1)[1]
        if not self.dss.Vsources.Name() or self.dss.Vsources.Count() < 1:
            raise SolverError(f"feeder {model.name}: no Vsource in {model.entry}")
        self.dss.Vsources.Name(self._source)
        self.base_kv = self.dss.Vsources.BasekV()

    def close(self) -> None:
        """Clear the circuit (OpenDSS keeps a context's ~33 MB of compiled feeder until told: an engine made
        and dropped in a loop, as an independent check does, otherwise grows the process by that much each)."""
        self.dss.Text.Command("clear")

    def __enter__(self) -> FeederEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, cmd: str) -> None:
        try:
            self.dss.Text.Command(cmd)
        except Exception as exc:  # noqa: BLE001 - opendssdirect raises DSSException with the engine's text
            raise self.error(f"feeder {self.model.name}: OpenDSS command {cmd!r} failed: {one_line(exc)}") from None

    def nominal_load_kw(self) -> float:
        """Σ kW of all Load elements (the model's nominal load, before losses)."""
        loads = self.dss.Loads
        total, i = 0.0, loads.First()
        while i:
            total += loads.kW()
            i = loads.Next()
        return total

    def solve(self, clone: CloneState, node_voltages: bool = False, slope: bool = False,
              start: SolvedState | None = None, tolerance: float = COARSE_TOLERANCE) -> FeederResult:
        """Set the source to the clone's boundary voltage and load multiplier, solve (to ``tolerance``), read
        the substation power; with ``slope`` also its voltage sensitivity (:meth:`power_slope`); from ``start``
        if given."""
        if start is not None:
            self.load_state(start)
        self.set_tolerance(tolerance)
        d = self.dss
        d.Vsources.Name(self._source)
        d.Vsources.PU(float(clone.v_pu))
        d.Vsources.AngleDeg(float(clone.angle_deg))
        d.Solution.LoadMult(float(clone.load_mult))
        t0 = time.perf_counter()
        # Drop control actions left pending by the previous solve (they would act on this one and make results
        # depend on what was solved before; also saves control iterations).
        d.Text.Command("reset controls")
        d.Solution.Solve()
        solve_s = time.perf_counter() - t0
        if not d.Solution.Converged():
            raise self.error(
                f"feeder {clone.name} ({self.model.name}) did not converge at V={clone.v_pu:.4f} pu, "
                f"angle={clone.angle_deg:.2f} deg, load multiplier {clone.load_mult:.3f}"
            )
        s_pos_mva, s_tot_mva = self.substation_power_mva()
        vmag = np.asarray(d.Circuit.AllBusMagPu())
        live = vmag[vmag > 0.01]
        result = FeederResult(
            name=clone.name,
            bus=clone.bus,
            v_source_pu=float(clone.v_pu),
            angle_deg=float(clone.angle_deg),
            load_mult=float(clone.load_mult),
            p_mw=float(s_pos_mva.real),
            q_mvar=float(s_pos_mva.imag),
            p_total_mw=float(s_tot_mva.real),
            q_total_mvar=float(s_tot_mva.imag),
            min_v_pu=float(live.min()),
            mean_v_pu=float(live.mean()),
            max_v_pu=float(live.max()),
            solve_s=solve_s,
            control=self.control_state(),
            node_v_pu=vmag if node_voltages else None,
        )
        return self.with_slope(clone, result) if slope else result

    def with_slope(self, clone: CloneState, result: FeederResult) -> FeederResult:
        """``result`` (the solve this engine holds) with its slope :meth:`power_slope` and the time it took."""
        t0 = time.perf_counter()
        ds_dv = self.power_slope(clone, complex(result.p_mw, result.q_mvar))
        return replace(result, ds_dv_mva=ds_dv, slope_s=time.perf_counter() - t0)

    def set_tolerance(self, tolerance: float) -> None:
        """OpenDSS's solution tolerance (pu), set only when it changes."""
        if getattr(self, "_tolerance", None) != tolerance:
            self._command(f"set tolerance={tolerance:g}")
            self._tolerance = tolerance

    def state(self) -> SolvedState:
        """The engine's present solution and control state (copies)."""
        return SolvedState(self.voltages().copy(), self.control_state())

    def load_state(self, state: SolvedState) -> None:
        """Start the next solve from ``state``: its voltages, taps and capacitor steps."""
        self.voltages()[:] = state.voltages
        self.apply_control_state(state.control)
        self.dss.YMatrix.SolutionInitialized(True)

    def voltages(self) -> np.ndarray:
        """A writable view of the engine's node-voltage vector (``YMatrix.VVector``; index 0 is ground)."""
        d = self.dss
        n = d.Circuit.NumNodes() + 1
        ffi = d.YMatrix._api_util.ffi
        return np.frombuffer(ffi.buffer(d.YMatrix.VVector(), 16 * n), dtype=np.complex128)

    def power_slope(self, clone: CloneState, s_mva: complex, dv_pu: float = SLOPE_DV_PU) -> complex:
        """dS/d|V| of the positive-sequence power the feeder draws, MVA per pu, at the solution just found:
        one solve at |V| + ``dv_pu`` with every regulator tap and capacitor step held (``SolveNoControl``), a
        forward difference. The solution is put back afterwards, so the next solve starts where it would have.

        Controls held is the feeder's local response: near a converged coupling the voltage moves by far less
        than a regulator band, so no tap moves (IEEE 8500 at 1.02 pu: dP/dV ≈ −3.6 MW/pu, the series losses;
        dQ/dV ≈ −20 Mvar/pu, its capacitor banks, Q ∝ V²)."""
        d = self.dss
        saved = self.voltages().copy()
        d.Vsources.Name(self._source)
        d.Vsources.PU(float(clone.v_pu) + dv_pu)
        d.Solution.SolveNoControl()
        converged = d.Solution.Converged()
        s_plus, _ = self.substation_power_mva()
        d.Vsources.PU(float(clone.v_pu))
        self.voltages()[:] = saved
        if not converged:
            raise SolverError(f"feeder {clone.name} ({self.model.name}): sensitivity solve at "
                              f"V={clone.v_pu + dv_pu:.4f} pu did not converge")
        return (s_plus - s_mva) / dv_pu

    def control_state(self) -> ControlState:
        d = self.dss
        taps, caps = [], []
        i = d.RegControls.First()
        while i:
            taps.append(int(d.RegControls.TapNumber()))
            i = d.RegControls.Next()
        i = d.Capacitors.First()
        while i:
            caps.extend(int(x) for x in d.Capacitors.States())
            i = d.Capacitors.Next()
        return ControlState(tuple(taps), tuple(caps))

    def apply_control_state(self, state: ControlState) -> None:
        """Put regulator taps and capacitor steps in ``state`` (same model: same element order).

        Only elements whose state differs are touched: every change invalidates the system Y matrix, and its
        refactorization dominates a warm re-solve.
        """
        d = self.dss
        current = self.control_state()
        if state.reg_taps != current.reg_taps:
            i, k = d.RegControls.First(), 0
            while i:
                if state.reg_taps[k] != current.reg_taps[k]:
                    d.RegControls.TapNumber(state.reg_taps[k])
                i, k = d.RegControls.Next(), k + 1
        if state.cap_states != current.cap_states:
            caps, pos = list(state.cap_states), 0
            i = d.Capacitors.First()
            while i:
                n = len(d.Capacitors.States())
                if caps[pos:pos + n] != list(current.cap_states[pos:pos + n]):
                    d.Capacitors.States(caps[pos:pos + n])
                pos += n
                i = d.Capacitors.Next()

    def freeze_controls(self, frozen: bool = True) -> None:
        """``controlmode=off`` keeps taps and capacitor steps where they are; ``static`` lets them act again."""
        self._command("set controlmode=off" if frozen else "set controlmode=static")

    def substation_power_mva(self) -> tuple[complex, complex]:
        """(positive-sequence, total) complex power flowing from the source into the feeder, MVA.

        OpenDSS reports terminal quantities flowing *into* the source element; the feeder draws the opposite.
        """
        d = self.dss
        d.Circuit.SetActiveElement(self.model.source)
        ncond = d.CktElement.NumConductors()
        v = np.asarray(d.CktElement.Voltages()).view(complex)[:3]
        i_into_source = np.asarray(d.CktElement.Currents()).view(complex)[:3]
        if ncond < 3:
            raise SolverError(f"feeder {self.model.name}: source {self.model.source} is not three-phase")
        i_feeder = -i_into_source
        s_pos = positive_sequence_power(v, i_feeder) / 1e6
        s_tot = complex(np.sum(v * np.conj(i_feeder))) / 1e6
        return complex(s_pos), s_tot

    def node_names(self) -> list[str]:
        return list(self.dss.Circuit.AllNodeNames())

    def solver(self, name: str) -> FeederEngine:  # noqa: ARG002 - same signature as SharedEngine's
        """The engine that solves clone ``name`` (this one: one engine per clone)."""
        return self


class SharedEngine:
    """Many clones of one feeder model on one compiled OpenDSS engine.

    Each clone keeps only its own small state — its last solution vector (one complex per node), regulator taps
    and capacitor steps; the source voltage and load multiplier come with every solve — and the engine swaps it
    in before each solve and out after. A clone's first solve starts from the freshly compiled state, as a
    separate engine's would, so results equal one-engine-per-clone (tested to 1e-9 MW with identical taps).
    Memory per clone: ~16 bytes x nodes (136 kB for the 8500-node feeder) instead of ~35 MB per engine.
    """

    def __init__(self, model: FeederModel):
        self.engine = FeederEngine(model)
        self.model = model
        self._initial = (self.engine.voltages().copy(), self.engine.control_state(),
                         bool(self.engine.dss.YMatrix.SolutionInitialized()))
        self._slots: dict[str, tuple[np.ndarray, ControlState, bool]] = {}

    def solve(self, clone: CloneState, node_voltages: bool = False, slope: bool = False,
              start: SolvedState | None = None, tolerance: float = COARSE_TOLERANCE) -> FeederResult:
        """Solve ``clone`` with its own state swapped in; its first solve starts from ``start`` if given (a
        warm start), else from the compiled state."""
        if clone.name not in self._slots and start is not None:
            self._slots[clone.name] = (start.voltages, start.control, True)
        v, control, initialized = self._slots.get(clone.name, self._initial)
        self.engine.voltages()[:] = v
        self.engine.apply_control_state(control)
        self.engine.dss.YMatrix.SolutionInitialized(initialized)
        result = self.engine.solve(clone, node_voltages=node_voltages, slope=slope, tolerance=tolerance)
        self._slots[clone.name] = (self.engine.voltages().copy(), result.control, True)
        return result

    def node_names(self) -> list[str]:
        return self.engine.node_names()

    def solver(self, name: str) -> FeederEngine:  # noqa: ARG002 - same signature as FeederEngine's
        """The engine that solves clone ``name`` (the one shared engine)."""
        return self.engine


class WarmStarts:
    """Warm first solves: the model solved once at an operating point — a clone's first boundary voltage and
    its bus's load multiplier — from the compiled state, whose solution and controls then start the first solve
    of every clone at that point (:meth:`FeederEngine.load_state`, or ``SharedEngine.solve(start=)``).

    The K clones of a bus share one such cold solve instead of paying one each (IEEE 8500: ~0.15 s cold, a
    warm first solve at the same point ~10 ms). The point depends on the clone alone — its bus's published
    voltage and multiplier — not on which clones share a worker or in which order they are solved, so an answer
    does not depend on the grouping. A warm start is a valid solution but may settle a regulator on another
    in-band tap than a cold start from the compiled state would (both are equilibria).

    The solve runs on an engine the caller gives: a clone's own engine before its first solve (separate
    engines) or the shared engine; either is put back into the compiled state first.
    """

    def __init__(self, compiled: FeederEngine):
        e = compiled
        self._compiled = (e.voltages().copy(), e.control_state(), bool(e.dss.YMatrix.SolutionInitialized()))
        self._states: dict[tuple[float, float, float], SolvedState] = {}
        self.solves = 0

    def solve_from_compiled(self, engine: FeederEngine, clone: CloneState) -> FeederResult:
        """Solve ``clone`` on ``engine`` put back into the compiled state first (voltages, controls): the
        answer depends on the operating point alone, not on what the engine solved before."""
        voltages, control, initialized = self._compiled
        engine.voltages()[:] = voltages
        engine.apply_control_state(control)
        engine.dss.YMatrix.SolutionInitialized(initialized)
        return engine.solve(clone)

    def state_for(self, engine: FeederEngine, v_pu: float, angle_deg: float, load_mult: float) -> SolvedState:
        """The solved state at (|V|, angle, multiplier), solved on ``engine`` from the compiled state the first
        time it is asked for."""
        key = (round(float(v_pu), 9), round(float(angle_deg), 6), round(float(load_mult), 9))
        if key not in self._states:
            self.solve_from_compiled(engine, CloneState("warm-start", 0, key[2], key[0], key[1]))
            self._states[key] = engine.state()
            self.solves += 1
        return self._states[key]
