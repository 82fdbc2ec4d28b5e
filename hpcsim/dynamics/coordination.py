"""Feeder voltage coordination for a DER study: tap settings that put every node inside the voltage limits.

Neither IEEE test feeder is inside 0.95–1.05 pu as published (IEEE 34: 0.905 pu at bus 890 behind the fixed
24.9/4.16 kV transformer; IEEE 8500: the substation regulator holds 126.5 V = 1.054 pu while secondaries sag to
0.93 pu), and 5 MW of DERs on a 1.8 MW feeder lifts voltages further. Before DERs are connected, a utility
re-coordinates the feeder: regulator set points and transformer no-load taps. :func:`coordinate` does that once,
at the study's operating point (source voltage of the first exchange, DERs at dispatch, load multiplier 1).

Levers (:func:`find_levers`): every transformer a ``RegControl`` drives (its controlled winding, its own tap
range and step), and every other transformer as a no-load tap changer on winding 1 (±2 steps of 2.5 %, the
usual distribution-transformer range).

Zones (:func:`zone_weights`): a tap scales the voltages downstream of it. Walking the network from the source
node by node, each node carries the signed weights of the taps upstream of it (+1 for a winding on the far side,
−1 for the near side); a transformer whose windings mix phases (delta–wye) gives its secondary nodes the mean of
its primary nodes' weights. Network devices (regulators, and taps whose zone is large or holds another tap) get
measured sensitivities — one solve per lever, because the whole feeder responds (constant-power loads, phase
coupling: one substation-regulator step moves the far end of the IEEE 8500 twice as much as its own bus). Small
leaf zones (service transformers) get the zone model ``ΔV_i = w_ik · V_i · step_k / tap_k`` (:func:`sensitivity`).

Choice (:func:`choose_steps`, pure), with S the sensitivities and x the integer steps:

    max t   s.t.   V_min,i + t ≤ V_i + (S x)_i ≤ V_max,i − t,   x_lo ≤ x ≤ x_hi,   t ≤ margin

where the per-node limits are the study's limits tightened by how far node i drifts over the run
(:func:`node_limits`): ``V_min,i = V_min + drop_i``, ``V_max,i = V_max − rise_i``, with drop and rise measured at
the run's extremes (lightest/heaviest load multiplier × lowest/highest source voltage, regulators and capacitors
acting: :func:`drift`) plus half a regulator band for nodes behind a regulator (:func:`band_allowance`). Without
extremes the limits are the study's own (a single operating point).

solved as a MILP (SciPy's HiGHS ``milp``) with the network devices integer and the small zones relaxed; the
small zones then get their exact integer step by enumeration (they are independent once the network steps are
fixed), and network moves that buy no clearance are undone one step at a time (fewest changes). The
linearization is refined by re-solving the feeder and repeating. Regulators finally get ``vreg`` equal to the
voltage they see at the chosen tap, a 1-V band and no line-drop compensation, so their control holds that tap at the
operating point and still acts when the operating point moves. The result is a list of OpenDSS ``Edit``
commands that turn the published feeder into the coordinated one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import sparse

from hpcsim.errors import DynamicsError

log = logging.getLogger(__name__)

FIXED_TAP_STEP = 0.025
FIXED_TAP_STEPS = 2
ROUNDS = 4  # linearize–MILP–apply rounds per pass
PASSES = 3  # passes while switching the controls back on moves a capacitor or a regulator
REG_BAND_V = 1.0  # regulator band after coordination (120-V base; above the 0.75-V tap step, so no hunting)
REFINE_STEPS = 3  # reach of a network device in refining rounds
LOCAL_BAND_PU = 0.03  # a small-zone tap gets a variable when its zone is this close to the target clearance
MEASURE_ZONE_NODES = 50  # taps with larger zones are network devices (measured sensitivities)
# The search is bounded by branch-and-bound nodes, not seconds: a wall-time limit (5 s, as it was) made the
# chosen taps depend on how busy the machine was (the IEEE 8500's MILPs stopped after 0–15 nodes), and with them
# the run. A node limit gives the same answer on any machine; the time limit is only a safety net.
MILP_NODE_LIMIT = 25
MILP_TIME_LIMIT_S = 120.0
MILP_GAP = 0.02
EXACT_MILP_COLUMNS = 60  # up to this many taps the MILP is solved with all of them integer
TRIM_TOLERANCE_PU = 0.0002  # clearance a network move must buy to be kept


@dataclass(frozen=True)
class Lever:
    """One tap: a winding of a transformer, its current tap, step and the integer steps it may move."""

    transformer: str
    winding: int
    tap: float
    step: float
    lo_steps: int
    hi_steps: int
    regcontrol: str = ""  # the RegControl driving it ("" for a fixed no-load tap)

    def moved(self, steps: int) -> Lever:
        return replace(self, tap=self.tap + steps * self.step)


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


# --- pure -----------------------------------------------------------------------------------------------------


Limit = float | np.ndarray  # one limit for every node, or one per node (limits tightened by the drift)
Extremes = tuple[tuple[float, float], ...]  # (load multiplier, source voltage pu) corners of a run


def clearance_pu(v_pu: np.ndarray, v_min_pu: Limit, v_max_pu: Limit) -> float:
    """Distance of the worst node to its nearer limit (negative when a node is outside)."""
    return float(np.min(np.minimum(v_pu - v_min_pu, v_max_pu - v_pu)))


def node_limits(v_min_pu: float, v_max_pu: float, drop_pu: np.ndarray, rise_pu: np.ndarray) -> tuple[np.ndarray,
                                                                                                       np.ndarray]:
    """Per-node limits at the operating point that keep a node inside [v_min, v_max] when the operating point
    moves: a node that sags ``drop`` (heaviest load, lowest source voltage) needs ``v ≥ v_min + drop``, one that
    swells ``rise`` (lightest load, highest source voltage) needs ``v ≤ v_max − rise``."""
    return v_min_pu + np.maximum(drop_pu, 0.0), v_max_pu - np.maximum(rise_pu, 0.0)


def sensitivity(v_pu: np.ndarray, weights: list[dict[int, float]], levers: list[Lever]) -> sparse.csr_matrix:
    """S (n nodes × m levers) of the zone model: pu change of node voltages per tap step."""
    rows, cols, vals = [], [], []
    for i, w in enumerate(weights):
        for k, wk in w.items():
            rows.append(i)
            cols.append(k)
            vals.append(wk * v_pu[i] * levers[k].step / levers[k].tap)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(weights), len(levers)))


def max_clearance(v_pu: np.ndarray, s: sparse.spmatrix, lo_steps: np.ndarray, hi_steps: np.ndarray,
                  integer: np.ndarray, v_min_pu: Limit, v_max_pu: Limit, margin_pu: float) -> tuple[np.ndarray, float]:
    """The MILP of the module docstring: steps x (integer where ``integer``) maximizing the clearance t. Many tap
    combinations tie, so HiGHS stops at a 2 % gap or after :data:`MILP_NODE_LIMIT` nodes with its best one."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n, m = s.shape
    ones = sparse.csr_matrix(np.ones((n, 1)))
    a = sparse.vstack([sparse.hstack([s, ones]), sparse.hstack([-s, ones])], format="csr")
    ub = np.concatenate([v_max_pu - v_pu, v_pu - v_min_pu])
    res = milp(np.concatenate([np.zeros(m), [-1.0]]), constraints=LinearConstraint(a, -np.inf, ub),
               bounds=Bounds(np.concatenate([lo_steps, [-1.0]]), np.concatenate([hi_steps, [margin_pu]])),
               integrality=np.concatenate([integer.astype(float), [0.0]]),
               options={"node_limit": MILP_NODE_LIMIT, "time_limit": MILP_TIME_LIMIT_S, "mip_rel_gap": MILP_GAP})
    if res.x is None:
        raise DynamicsError(f"voltage coordination MILP failed: {res.message}")
    log.debug("MILP %d x %d (%d integer): %s, t = %.5f, %s branch-and-bound nodes", a.shape[0], m,
              int(integer.sum()), res.message, res.x[-1], getattr(res, "mip_node_count", "?"))
    return res.x[:m], float(res.x[-1])


def zone_steps(v_pu: np.ndarray, s_zone: np.ndarray, lo_steps: int, hi_steps: int, v_min_pu: Limit,
               v_max_pu: Limit, margin_pu: float) -> tuple[int, float]:
    """(step, clearance): the integer step of one small-zone tap giving its nodes the largest clearance (capped
    at the margin), the smallest move among equals — exact, by enumeration."""
    best_c, best_y = -np.inf, 0
    for y in range(lo_steps, hi_steps + 1):
        c = min(clearance_pu(v_pu + s_zone * y, v_min_pu, v_max_pu), margin_pu)
        if c > best_c or (c == best_c and abs(y) < abs(best_y)):
            best_c, best_y = c, y
    return best_y, best_c


@dataclass(frozen=True)
class StepProblem:
    """One linearized round. Columns ``[:n_network]`` of ``s`` are network devices; column ``n_network + j`` is
    a small-zone tap acting on the rows ``zones[j]`` only. Limits are per node or one for all."""

    v_pu: np.ndarray
    s: sparse.csc_matrix
    lo_steps: np.ndarray
    hi_steps: np.ndarray
    n_network: int
    zones: list[np.ndarray]
    v_min_pu: Limit
    v_max_pu: Limit
    margin_pu: float

    def limits(self, rows) -> tuple[Limit, Limit]:
        """The limits of the nodes ``rows`` (an index or a mask)."""
        lo, hi = (np.broadcast_to(np.asarray(x, dtype=float), self.v_pu.shape)[rows]
                  for x in (self.v_min_pu, self.v_max_pu))
        return lo, hi

    def evaluate(self, x_net: np.ndarray, zone_s: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """All steps and the predicted clearance for network steps ``x_net``: every small zone takes the
        smallest step that reaches the clearance the worst of them (or the rest of the feeder) can reach."""
        nn = self.n_network
        v = self.v_pu + self.s[:, :nn] @ x_net
        in_zone = np.zeros(v.size, dtype=bool)
        for rows in self.zones:
            in_zone[rows] = True
        target = self.margin_pu
        if (~in_zone).any():
            target = min(target, clearance_pu(v[~in_zone], *self.limits(~in_zone)))
        for j, rows in enumerate(self.zones):
            target = min(target, zone_steps(v[rows], zone_s[j], int(self.lo_steps[nn + j]),
                                            int(self.hi_steps[nn + j]), *self.limits(rows), target)[1])
        x = np.concatenate([x_net, np.zeros(len(self.zones))]).astype(int)
        for j, rows in enumerate(self.zones):
            x[nn + j] = zone_steps(v[rows], zone_s[j], int(self.lo_steps[nn + j]), int(self.hi_steps[nn + j]),
                                   *self.limits(rows), target)[0]
        return x, target


def choose_steps(p: StepProblem) -> tuple[np.ndarray, float]:
    """Integer steps for one round and their predicted clearance (see the module docstring)."""
    integer = np.arange(p.s.shape[1]) < (p.n_network if p.s.shape[1] > EXACT_MILP_COLUMNS else p.s.shape[1])
    x_rel, _ = max_clearance(p.v_pu, p.s, p.lo_steps, p.hi_steps, integer, p.v_min_pu, p.v_max_pu, p.margin_pu)
    zone_s = [p.s[rows, p.n_network + j].toarray().ravel() for j, rows in enumerate(p.zones)]
    if integer.all():  # small: the MILP was exact
        x = np.round(x_rel).astype(int)
        return x, clearance_pu(p.v_pu + p.s @ x, p.v_min_pu, p.v_max_pu)
    x_net = np.round(x_rel[:p.n_network]).astype(int)
    x, best = p.evaluate(x_net, zone_s)
    changed = True
    while changed:
        changed = False
        for k in np.flatnonzero(x_net):
            trial = x_net.copy()
            trial[k] -= np.sign(trial[k])
            xt, c = p.evaluate(trial, zone_s)
            if c >= best - TRIM_TOLERANCE_PU:
                x_net, x, best, changed = trial, xt, max(best, c), True
    return x, best


# --- OpenDSS edge ---------------------------------------------------------------------------------------------


def find_levers(dss) -> list[Lever]:
    """Regulated windings (from each RegControl) and winding 1 of every other transformer (see docstring)."""
    levers: list[Lever] = []
    regulated = set()
    tx = dss.Transformers
    for rc in dss.RegControls.AllNames():
        dss.RegControls.Name(rc)
        name, wdg = dss.RegControls.Transformer().lower(), int(dss.RegControls.Winding())
        tx.Name(name)
        tx.Wdg(wdg)
        step = (tx.MaxTap() - tx.MinTap()) / max(tx.NumTaps(), 1)
        tap = tx.Tap()
        levers.append(Lever(name, wdg, tap, step, int(np.ceil((tx.MinTap() - tap) / step - 1e-9)),
                            int(np.floor((tx.MaxTap() - tap) / step + 1e-9)), rc.lower()))
        regulated.add(name)
    for name in tx.AllNames():
        if name.lower() in regulated:
            continue
        tx.Name(name)
        tx.Wdg(1)
        levers.append(Lever(name.lower(), 1, tx.Tap(), FIXED_TAP_STEP, -FIXED_TAP_STEPS, FIXED_TAP_STEPS))
    return levers


def _terminals(dss) -> list[list[str]]:
    """The active element's node names per terminal (ground conductors dropped)."""
    buses = [b.split(".")[0].lower() for b in dss.CktElement.BusNames()]
    order = dss.CktElement.NodeOrder()
    nc = dss.CktElement.NumConductors()
    return [[f"{bus}.{n}" for n in order[t * nc:(t + 1) * nc] if n > 0] for t, bus in enumerate(buses)]


def zone_weights(dss, source: str, levers: list[Lever]) -> list[dict[int, float]]:
    """For every node of ``Circuit.AllNodeNames()``: {lever index: signed weight} of the taps upstream of it."""
    lever_of = {(lv.transformer, lv.winding): k for k, lv in enumerate(levers)}
    elements: list[tuple[str, list[list[str]]]] = []
    by_bus: dict[str, list[int]] = {}
    pd = dss.PDElements
    ok = pd.First()
    while ok:
        name = pd.Name().lower()
        if dss.CktElement.Enabled() and not any(dss.CktElement.IsOpen(t + 1, 0)
                                                 for t in range(dss.CktElement.NumTerminals())):
            terms = _terminals(dss)
            if len(terms) >= 2:
                idx = len(elements)
                elements.append((name, terms))
                for t in terms:
                    for bus in {n.split(".")[0] for n in t}:
                        by_bus.setdefault(bus, []).append(idx)
        ok = pd.Next()
    dss.Circuit.SetActiveElement(source)
    src_nodes = _terminals(dss)[0]
    weights: dict[str, dict[int, float]] = {n: {} for n in src_nodes}
    seen_bus = {n.split(".")[0] for n in src_nodes}
    queue = deque(seen_bus)
    done = set()
    while queue:
        bus = queue.popleft()
        for idx in by_bus.get(bus, []):
            if idx in done:
                continue
            done.add(idx)
            name, terms = elements[idx]
            near = next(t for t, nodes in enumerate(terms) if any(n.split(".")[0] == bus for n in nodes))
            src = [weights.get(n, {}) for n in terms[near]]
            for t, nodes in enumerate(terms):
                if t == near:
                    continue
                own: dict[int, float] = {}
                if name.startswith("transformer."):
                    tname = name.split(".", 1)[1]
                    for w, sign in ((t + 1, 1.0), (near + 1, -1.0)):
                        if (tname, w) in lever_of:
                            own[lever_of[(tname, w)]] = sign
                pairwise = len(nodes) == len(terms[near]) and (not name.startswith("transformer.")
                                                                or len(nodes) == 1 or _same_conn(dss, name))
                mean = _mean(src)
                for j, node in enumerate(nodes):
                    if node in weights:
                        continue
                    base = src[j] if pairwise else mean
                    w = dict(base)
                    for k, sign in own.items():
                        w[k] = w.get(k, 0.0) + sign
                    weights[node] = w
                for b in {n.split(".")[0] for n in nodes}:
                    if b not in seen_bus:
                        seen_bus.add(b)
                        queue.append(b)
    return [weights.get(n.lower(), {}) for n in dss.Circuit.AllNodeNames()]


def _same_conn(dss, element: str) -> bool:
    """A transformer whose windings are all wye or all delta maps phase to phase (no 30° mixing)."""
    tx = dss.Transformers
    tx.Name(element.split(".", 1)[1])
    conns = set()
    for w in range(1, tx.NumWindings() + 1):
        tx.Wdg(w)
        conns.add(tx.IsDelta())
    return len(conns) == 1


def _mean(ws: list[dict[int, float]]) -> dict[int, float]:
    if not ws:
        return {}
    out: dict[int, float] = {}
    for w in ws:
        for k, v in w.items():
            out[k] = out.get(k, 0.0) + v / len(ws)
    return out


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


def _hold_here_commands(dss, levers: list[Lever]) -> list[str]:
    """For every regulator: ``vreg`` = the voltage it sees now, a 1-V band, no line-drop compensation."""
    out = []
    for lv in levers:
        if lv.regcontrol:
            dss.RegControls.Name(lv.regcontrol)
            volts = _regulated_volts(dss, lv, dss.RegControls.PTRatio())
            out.append(f"Edit RegControl.{lv.regcontrol} vreg={volts:.4f} band={REG_BAND_V} R=0 X=0 revR=0 revX=0")
    return out


def drift(dss, solve: Callable[[], np.ndarray], node_mask: np.ndarray, levers: list[Lever],
          extremes: Extremes) -> tuple[np.ndarray, np.ndarray]:
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
    for cmd in _hold_here_commands(dss, levers):
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


def band_allowance(weights: list[dict[int, float]], levers: list[Lever], vreg_v: float = 120.0) -> np.ndarray:
    """Per node, pu: half the band of the regulator nearest upstream (0 where none is): a regulator sits anywhere
    inside its band, so the nodes it feeds may be that much lower or higher than at the band's centre."""
    half = REG_BAND_V / 2 / vreg_v
    return np.array([half if any(levers[k].regcontrol and wk > 0 for k, wk in w.items()) else 0.0
                     for w in weights])


def coordinate(dss, source: str, solve: Callable[[], np.ndarray], node_mask: np.ndarray, *, v_min_pu: float,
               v_max_pu: float, margin_pu: float, extremes: Extremes = ()) -> Coordination:
    """Coordinate the active circuit at its current operating point (see the module docstring).

    ``solve()`` solves the circuit and returns ``Circuit.AllBusMagPu()``; ``node_mask`` selects the nodes the
    limits apply to. Taps are chosen with the controls frozen; when switching the controls back on moves a
    capacitor (its kvar setting sees the new flows) or a regulator, the coordination is repeated from there (at
    most :data:`PASSES` times). With ``extremes`` (the (load multiplier, source voltage) corners the run will
    reach, e.g. lightest load with the highest source voltage), each node's limits are tightened by how far it
    drifts there (:func:`drift`), so the clearance holds over the run, not only at the operating point. Leaves the
    circuit coordinated, controls on, solved.
    """
    v = solve()
    before = (float(v[node_mask].min()), float(v[node_mask].max()))
    # zones depend on the topology only (the lever order of find_levers is fixed): walked once for every pass
    levers = find_levers(dss)
    weights = [w for w, keep in zip(zone_weights(dss, source, levers), node_mask) if keep]
    band = band_allowance(weights, levers)
    commands: dict[str, str] = {}
    steps: dict[str, int] = {}
    for n_pass in range(PASSES):
        pass_commands, pass_steps = _coordinate_once(dss, solve, node_mask, weights, band, v_min_pu, v_max_pu,
                                                     margin_pu, n_pass > 0, extremes)
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
        drop, rise = drift(dss, solve, node_mask, levers, extremes)  # levers: which taps, not their positions
        robust = clearance_pu(vm, *node_limits(v_min_pu, v_max_pu, drop + band, rise + band))
        dss.Text.Command("set controlmode=static")
        solve()
    return Coordination(list(commands.values()), margin_pu, clearance_pu(vm, v_min_pu, v_max_pu), before,
                        (float(vm.min()), float(vm.max())), {k: n for k, n in steps.items() if n}, robust)


def _coordinate_once(dss, solve: Callable[[], np.ndarray], node_mask: np.ndarray, weights: list[dict[int, float]],
                     band: np.ndarray, v_min_pu: float, v_max_pu: float, margin_pu: float, refine: bool,
                     extremes: Extremes) -> tuple[dict[str, str], dict[str, int]]:
    """One pass, controls frozen: rounds of measure–MILP–apply; regulators then hold their taps (vreg).
    ``weights``/``band``: the zones of the limited nodes and their regulator-band allowance (topology only)."""
    levers = find_levers(dss)  # the taps as they are now
    network, local, members = _classify(levers, weights)
    lo = np.array([lv.lo_steps for lv in levers])
    hi = np.array([lv.hi_steps for lv in levers])
    total = np.zeros(len(levers), dtype=int)
    dss.Text.Command("set controlmode=off")
    v = solve()
    lim: tuple[Limit, Limit] = (v_min_pu, v_max_pu)
    for r in range(ROUNDS):
        vs = v[node_mask]
        if extremes:
            drop, rise = drift(dss, solve, node_mask, levers, extremes)
            lim = node_limits(v_min_pu, v_max_pu, drop + band, rise + band)
        clear = np.minimum(vs - lim[0], lim[1] - vs)
        cand = [k for k in local if clear[members[k]].min() < margin_pu + LOCAL_BAND_PU]
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
        reach = None if not refine and r == 0 else REFINE_STEPS  # later rounds refine: a few steps either way
        lo_k, hi_k = lo[idx] - total[idx], hi[idx] - total[idx]
        if reach is not None:
            lo_k, hi_k = np.maximum(lo_k, -reach), np.minimum(hi_k, reach)
        problem = StepProblem(vs, s.tocsc(), lo_k, hi_k, len(network), [np.asarray(members[k]) for k in cand],
                              *lim, margin_pu)
        x, predicted = choose_steps(problem)
        if not x.any():
            break
        was = clearance_pu(vs, *lim)
        for k, xk in zip(idx, x):
            _set_tap(dss, levers[k].moved(total[k] + xk))
        v_new = solve()
        got = clearance_pu(v_new[node_mask], *lim)
        log.debug("coordination round: %d levers, %d steps, clearance %.4f -> %.4f (predicted %.4f)", len(cols),
                  int(np.abs(x).sum()), was, got, predicted)
        if got < min(was, margin_pu) + TRIM_TOLERANCE_PU:  # no better: keep the previous round's taps
            for k in idx:
                _set_tap(dss, levers[k].moved(total[k]))
            break
        total[idx] += x
        v = v_new
    solve()
    commands = {f"tx:{lv.transformer}:{lv.winding}":
                f"Edit Transformer.{lv.transformer} wdg={lv.winding} tap={lv.moved(t).tap:.6f}"
                for lv, t in zip(levers, total) if t or lv.regcontrol}  # every regulator: a fresh compile starts at 1
    for cmd in _hold_here_commands(dss, levers):
        commands[f"rc:{cmd.split()[1]}"] = cmd
        dss.Text.Command(cmd)
    steps = {(f"reg:{lv.regcontrol}" if lv.regcontrol else f"tap:{lv.transformer}"): int(t)
             for lv, t in zip(levers, total) if t}
    return commands, steps


def _classify(levers: list[Lever], weights: list[dict[int, float]]) -> tuple[list[int], list[int], list[list[int]]]:
    """(network levers, small leaf-zone levers, the nodes of each lever's zone). A lever is a network device
    when a RegControl drives it or its zone holds more than :data:`MEASURE_ZONE_NODES` nodes or another lever."""
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
        (local if leaf and not levers[k].regcontrol and len(m) <= MEASURE_ZONE_NODES else network).append(k)
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
