"""The coordination driver on a compiled OpenDSS circuit: rounds of measure–MILP–apply per pass, the drift of
every node over the run's extremes, and the regulator settings that hold the chosen taps (:func:`coordinate`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hpcsim.coordination.milp import Limit, StepProblem, choose_steps, clearance_pu, node_limits, sensitivity
from hpcsim.coordination.settings import DEFAULT, CoordinationSettings
from hpcsim.coordination.zones import Lever, find_levers, zone_weights

log = logging.getLogger(__name__)

Extremes = tuple[tuple[float, float], ...]  # (load multiplier, source voltage pu) corners of a run


@dataclass
class Coordination:
    """What :func:`coordinate` did: the commands, the clearance reached and the envelopes before and after."""

    commands: list[str]
    margin_target_pu: float
    margin_pu: float  # distance of the worst node to its nearer limit after coordination (< 0: a violation)
    v_before_pu: tuple[float, float]
    v_after_pu: tuple[float, float]
    steps: dict[str, int] = field(default_factory=dict)  # "reg:<regcontrol>" / "tap:<transformer>" -> steps
    margin_extremes_pu: float | None = None  # worst clearance over the run's extremes, by the drift model

    def describe(self) -> dict:
        regs = sum(1 for k in self.steps if k.startswith("reg:"))
        return {"margin_target_pu": self.margin_target_pu, "margin_pu": self.margin_pu,
                "margin_extremes_pu": self.margin_extremes_pu,
                "v_before_pu": list(self.v_before_pu), "v_after_pu": list(self.v_after_pu),
                "regulators_moved": regs, "fixed_taps_moved": len(self.steps) - regs,
                "steps": self.steps, "commands": self.commands}


def _set_tap(dss, lever: Lever) -> None:
    dss.Transformers.Name(lever.transformer)
    dss.Transformers.Wdg(lever.winding)
    dss.Transformers.Tap(lever.tap)


def _regulated_volts(dss, lever: Lever, ptratio: float) -> float:
    """The voltage a RegControl compares with vreg: its winding's first conductor over the PT ratio (no LDC)."""
    dss.Circuit.SetActiveElement(f"Transformer.{lever.transformer}")
    nc = dss.CktElement.NumConductors()
    mags = dss.CktElement.VoltagesMagAng()[0::2]
    return float(mags[(lever.winding - 1) * nc]) / ptratio


def _hold_here_commands(dss, levers: list[Lever], settings: CoordinationSettings = DEFAULT) -> list[str]:
    """For every regulator: ``vreg`` = the voltage it sees now, the settings' band (1 V), no line-drop
    compensation."""
    out = []
    for lv in levers:
        if lv.regcontrol:
            dss.RegControls.Name(lv.regcontrol)
            volts = _regulated_volts(dss, lv, dss.RegControls.PTRatio())
            out.append(f"Edit RegControl.{lv.regcontrol} vreg={volts:.4f} band={settings.reg_band_v} "
                       f"R=0 X=0 revR=0 revX=0")
    return out


def drift(dss, solve: Callable[[], np.ndarray], node_mask: np.ndarray, levers: list[Lever],
          extremes: Extremes, settings: CoordinationSettings = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """(drop, rise) per node, pu: how far each node sags below and swells above the present operating point at
    the ``extremes`` (load multiplier, source voltage pu) the run will see, with the regulators holding the present
    operating point (``vreg`` = what they see now, as the coordination leaves them) and acting, capacitors acting.
    Taps, capacitor states, load multiplier and source voltage are restored and the circuit re-solved with the
    controls off. (A regulator holds its voltage anywhere inside its band: :func:`band_allowance`.)"""
    mult, source_pu = dss.Solution.LoadMult(), dss.Vsources.PU()
    v0 = solve()[node_mask]
    regs = [lv for lv in levers if lv.regcontrol]
    taps = []
    for lv in regs:
        dss.Transformers.Name(lv.transformer)
        dss.Transformers.Wdg(lv.winding)
        taps.append(dss.Transformers.Tap())
    caps = []
    for c in dss.Capacitors.AllNames():
        dss.Capacitors.Name(c)
        caps.append((c, list(dss.Capacitors.States())))
    for cmd in _hold_here_commands(dss, levers, settings):
        dss.Text.Command(cmd)
    drop, rise = np.zeros(v0.size), np.zeros(v0.size)
    for m, v_source in extremes:
        dss.Text.Command("set controlmode=static")
        dss.Solution.LoadMult(float(m))
        dss.Vsources.PU(float(v_source))
        dv = solve()[node_mask] - v0
        drop, rise = np.maximum(drop, -dv), np.maximum(rise, dv)
        dss.Text.Command("set controlmode=off")
        for lv, tap in zip(regs, taps):
            _set_tap(dss, replace(lv, tap=tap))
        for c, states in caps:
            dss.Capacitors.Name(c)
            dss.Capacitors.States(states)
    dss.Solution.LoadMult(mult)
    dss.Vsources.PU(source_pu)
    solve()
    return drop, rise


def band_allowance(weights: list[dict[int, float]], levers: list[Lever], vreg_v: float = 120.0,
                   settings: CoordinationSettings = DEFAULT) -> np.ndarray:
    """Per node, pu: half the band of the regulator nearest upstream (0 where none is): a regulator sits anywhere
    inside its band, so the nodes it feeds may be that much lower or higher than at the band's centre."""
    half = settings.reg_band_v / 2 / vreg_v
    return np.array([half if any(levers[k].regcontrol and wk > 0 for k, wk in w.items()) else 0.0
                     for w in weights])


def coordinate(dss, source: str, solve: Callable[[], np.ndarray], node_mask: np.ndarray, *, v_min_pu: float,
               v_max_pu: float, margin_pu: float, extremes: Extremes = (),
               settings: CoordinationSettings = DEFAULT) -> Coordination:
    """Coordinate the active circuit at its current operating point (see the package docstring).

    ``solve()`` solves the circuit and returns ``Circuit.AllBusMagPu()``; ``node_mask`` selects the nodes the
    limits apply to. Taps are chosen with the controls frozen; when switching the controls back on moves a
    capacitor (its kvar setting sees the new flows) or a regulator, the coordination is repeated from there (at
    most ``settings.passes`` times). With ``extremes`` (the (load multiplier, source voltage) corners the run will
    reach, e.g. lightest load with the highest source voltage), each node's limits are tightened by how far it
    drifts there (:func:`drift`), so the clearance holds over the run, not only at the operating point. Leaves the
    circuit coordinated, controls on, solved.
    """
    v = solve()
    before = (float(v[node_mask].min()), float(v[node_mask].max()))
    # zones depend on the topology only (the lever order of find_levers is fixed): walked once for every pass
    levers = find_levers(dss, settings)
    weights = [w for w, keep in zip(zone_weights(dss, source, levers), node_mask) if keep]
    band = band_allowance(weights, levers, settings=settings)
    commands: dict[str, str] = {}
    steps: dict[str, int] = {}
    for n_pass in range(settings.passes):
        pass_commands, pass_steps = _coordinate_once(dss, solve, node_mask, weights, band, v_min_pu, v_max_pu,
                                                     margin_pu, n_pass > 0, extremes, settings)
        commands.update(pass_commands)
        for k, n in pass_steps.items():
            steps[k] = steps.get(k, 0) + n
        snap = _control_state(dss)
        dss.Text.Command("set controlmode=static")
        v = solve()
        moved = [a for a, b in zip(snap, _control_state(dss)) if a != b]
        if not moved:
            break
        log.debug("controls moved when switched back on: %s; coordinating again", moved)
    vm = v[node_mask]
    robust = None
    if extremes:  # the clearance the drift model promises over the extremes (conservative: band_allowance)
        drop, rise = drift(dss, solve, node_mask, levers, extremes, settings)  # which taps, not their positions
        robust = clearance_pu(vm, *node_limits(v_min_pu, v_max_pu, drop + band, rise + band))
        dss.Text.Command("set controlmode=static")
        solve()
    return Coordination(list(commands.values()), margin_pu, clearance_pu(vm, v_min_pu, v_max_pu), before,
                        (float(vm.min()), float(vm.max())), {k: n for k, n in steps.items() if n}, robust)


def _coordinate_once(dss, solve: Callable[[], np.ndarray], node_mask: np.ndarray, weights: list[dict[int, float]],
                     band: np.ndarray, v_min_pu: float, v_max_pu: float, margin_pu: float, refine: bool,
                     extremes: Extremes, settings: CoordinationSettings = DEFAULT
                     ) -> tuple[dict[str, str], dict[str, int]]:
    """One pass, controls frozen: rounds of measure–MILP–apply; regulators then hold their taps (vreg).
    ``weights``/``band``: the zones of the limited nodes and their regulator-band allowance (topology only)."""
    levers = find_levers(dss, settings)  # the taps as they are now
    network, local, members = _classify(levers, weights, settings)
    lo = np.array([lv.lo_steps for lv in levers])
    hi = np.array([lv.hi_steps for lv in levers])
    total = np.zeros(len(levers), dtype=int)
    dss.Text.Command("set controlmode=off")
    v = solve()
    lim: tuple[Limit, Limit] = (v_min_pu, v_max_pu)
    for r in range(settings.rounds):
        vs = v[node_mask]
        if extremes:
            drop, rise = drift(dss, solve, node_mask, levers, extremes, settings)
            lim = node_limits(v_min_pu, v_max_pu, drop + band, rise + band)
        clear = np.minimum(vs - lim[0], lim[1] - vs)
        cand = [k for k in local if clear[members[k]].min() < margin_pu + settings.local_band_pu]
        cols = network + cand
        col_of = {k: j for j, k in enumerate(cols)}
        current = [levers[k].moved(total[k]) for k in cols]
        s = sensitivity(vs, [{col_of[k]: w for k, w in wi.items() if k in col_of} for wi in weights],
                        current).tolil()
        for j in range(len(network)):  # network devices: the whole feeder responds, measure it
            _set_tap(dss, current[j].moved(1))
            s[:, j] = solve()[node_mask][:, None] - vs[:, None]
            _set_tap(dss, current[j])
        idx = np.array(cols, dtype=int)
        reach = None if not refine and r == 0 else settings.refine_steps  # later rounds refine: a few steps either way
        lo_k, hi_k = lo[idx] - total[idx], hi[idx] - total[idx]
        if reach is not None:
            lo_k, hi_k = np.maximum(lo_k, -reach), np.minimum(hi_k, reach)
        problem = StepProblem(vs, s.tocsc(), lo_k, hi_k, len(network), [np.asarray(members[k]) for k in cand],
                              *lim, margin_pu)
        x, predicted = choose_steps(problem, settings)
        if not x.any():
            break
        was = clearance_pu(vs, *lim)
        for k, xk in zip(idx, x):
            _set_tap(dss, levers[k].moved(total[k] + xk))
        v_new = solve()
        got = clearance_pu(v_new[node_mask], *lim)
        log.debug("coordination round: %d levers, %d steps, clearance %.4f -> %.4f (predicted %.4f)", len(cols),
                  int(np.abs(x).sum()), was, got, predicted)
        if got < min(was, margin_pu) + settings.trim_tolerance_pu:  # no better: keep the previous round's taps
            for k in idx:
                _set_tap(dss, levers[k].moved(total[k]))
            break
        total[idx] += x
        v = v_new
    solve()
    commands = {f"tx:{lv.transformer}:{lv.winding}":
                f"Edit Transformer.{lv.transformer} wdg={lv.winding} tap={lv.moved(t).tap:.6f}"
                for lv, t in zip(levers, total) if t or lv.regcontrol}  # every regulator: a fresh compile starts at 1
    for cmd in _hold_here_commands(dss, levers, settings):
        commands[f"rc:{cmd.split()[1]}"] = cmd
        dss.Text.Command(cmd)
    steps = {(f"reg:{lv.regcontrol}" if lv.regcontrol else f"tap:{lv.transformer}"): int(t)
             for lv, t in zip(levers, total) if t}
    return commands, steps


def _classify(levers: list[Lever], weights: list[dict[int, float]], settings: CoordinationSettings = DEFAULT
              ) -> tuple[list[int], list[int], list[list[int]]]:
    """(network levers, small leaf-zone levers, the nodes of each lever's zone). A lever is a network device
    when a RegControl drives it or its zone holds more than ``settings.measure_zone_nodes`` nodes or another
    lever."""
    members: list[list[int]] = [[] for _ in levers]
    for i, w in enumerate(weights):
        for k in w:
            members[k].append(i)
    size = [len(m) for m in members]
    innermost = [min(w, key=lambda k: size[k]) if w else -1 for w in weights]
    network, local = [], []
    for k, m in enumerate(members):
        if not m:
            continue
        leaf = all(innermost[i] == k for i in m)
        (local if leaf and not levers[k].regcontrol and len(m) <= settings.measure_zone_nodes else network).append(k)
    return network, local, members


def _control_state(dss) -> list:
    """Regulator tap numbers and capacitor step states."""
    out = []
    for t in dss.RegControls.AllNames():
        dss.RegControls.Name(t)
        out.append((t, dss.RegControls.TapNumber()))
    for c in dss.Capacitors.AllNames():
        dss.Capacitors.Name(c)
        out.append((c, tuple(dss.Capacitors.States())))
    return out
