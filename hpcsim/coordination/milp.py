"""The pure part of the coordination (numpy/SciPy only): clearances, drift-tightened limits, the zone model's
sensitivities and the tap-step MILP of one linearized round (see the package docstring for the problem)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from hpcsim.coordination.settings import DEFAULT, CoordinationSettings
from hpcsim.errors import DynamicsError

if TYPE_CHECKING:
    from hpcsim.coordination.zones import Lever

log = logging.getLogger(__name__)

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
                  integer: np.ndarray, v_min_pu: Limit, v_max_pu: Limit, margin_pu: float,
                  settings: CoordinationSettings = DEFAULT) -> tuple[np.ndarray, float]:
    """The MILP of the package docstring: steps x (integer where ``integer``) maximizing the clearance t. Many tap
    combinations tie, so HiGHS stops at the settings' gap (2 %) or node limit (25) with its best one."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n, m = s.shape
    ones = sparse.csr_matrix(np.ones((n, 1)))
    a = sparse.vstack([sparse.hstack([s, ones]), sparse.hstack([-s, ones])], format="csr")
    ub = np.concatenate([v_max_pu - v_pu, v_pu - v_min_pu])
    res = milp(np.concatenate([np.zeros(m), [-1.0]]), constraints=LinearConstraint(a, -np.inf, ub),
               bounds=Bounds(np.concatenate([lo_steps, [-1.0]]), np.concatenate([hi_steps, [margin_pu]])),
               integrality=np.concatenate([integer.astype(float), [0.0]]),
               options={"node_limit": settings.milp_node_limit, "time_limit": settings.milp_time_limit_s,
                        "mip_rel_gap": settings.milp_gap})
    if res.x is None:
        raise DynamicsError(f"voltage coordination MILP failed: {res.message}")
    log.debug("MILP %d x %d (%d integer): %s, t = %.5f, %s branch-and-bound nodes", a.shape[0], m,
              int(integer.sum()), res.message, res.x[-1], getattr(res, "mip_node_count", "?"))
    return res.x[:m], float(res.x[-1])


def zone_clearances(v_pu: np.ndarray, s_pu: np.ndarray, starts: np.ndarray, lo_steps: np.ndarray,
                    hi_steps: np.ndarray, v_min_pu: np.ndarray, v_max_pu: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, clearance per step and zone) of many small-zone taps at once: zone j holds the rows
    ``starts[j]:starts[j+1]`` of the flat node arrays (its voltages, its tap's sensitivity, its limits) and may move
    ``lo_steps[j]..hi_steps[j]`` (``-inf`` outside that range)."""
    steps = np.arange(int(lo_steps.min()), int(hi_steps.max()) + 1) if len(starts) else np.zeros(0, dtype=int)
    c = np.full((steps.size, len(starts)), -np.inf)
    for i, y in enumerate(steps):
        v = v_pu + s_pu * int(y)
        c[i] = np.minimum.reduceat(np.minimum(v - v_min_pu, v_max_pu - v), starts)
    c[(steps[:, None] < lo_steps) | (steps[:, None] > hi_steps)] = -np.inf
    return steps, c


def pick_steps(steps: np.ndarray, c: np.ndarray, cap_pu: float) -> tuple[np.ndarray, np.ndarray]:
    """(step, clearance) of each zone of :func:`zone_clearances`: the step giving the largest clearance capped at
    ``cap_pu``, the smallest move among equals (the lower step of a ± tie) — exact, by enumeration."""
    best_c = np.full(c.shape[1], -np.inf)
    best_y = np.zeros(c.shape[1], dtype=int)
    for y, row in zip(steps.tolist(), np.minimum(c, cap_pu)):
        better = (row > best_c) | ((row == best_c) & (abs(y) < np.abs(best_y)))
        best_c[better], best_y[better] = row[better], y
    return best_y, best_c


def best_steps(v_pu: np.ndarray, s_pu: np.ndarray, starts: np.ndarray, lo_steps: np.ndarray,
               hi_steps: np.ndarray, v_min_pu: np.ndarray, v_max_pu: np.ndarray, cap_pu: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(step, clearance) of many small-zone taps at once (:func:`zone_clearances`, then :func:`pick_steps`)."""
    return pick_steps(*zone_clearances(v_pu, s_pu, starts, lo_steps, hi_steps, v_min_pu, v_max_pu), cap_pu)


def zone_steps(v_pu: np.ndarray, s_zone: np.ndarray, lo_steps: int, hi_steps: int, v_min_pu: Limit,
               v_max_pu: Limit, margin_pu: float) -> tuple[int, float]:
    """(step, clearance): the integer step of one small-zone tap giving its nodes the largest clearance (capped
    at the margin), the smallest move among equals — exact, by enumeration (:func:`best_steps` for one zone)."""
    lo, hi = (np.broadcast_to(np.asarray(x, dtype=float), v_pu.shape) for x in (v_min_pu, v_max_pu))
    y, c = best_steps(v_pu, s_zone, np.zeros(1, dtype=int), np.array([lo_steps]), np.array([hi_steps]), lo, hi,
                      margin_pu)
    return int(y[0]), float(c[0])


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

    @cached_property
    def _flat_zones(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the small zones' rows end to end, where each zone starts in them, the rows in no small zone)."""
        sizes = np.array([len(r) for r in self.zones], dtype=int)
        rows = np.concatenate([np.zeros(0, dtype=int), *self.zones]).astype(int)
        outside = np.ones(self.v_pu.size, dtype=bool)
        outside[rows] = False
        return rows, np.cumsum(sizes) - sizes, outside

    def evaluate(self, x_net: np.ndarray, zone_s: np.ndarray) -> tuple[np.ndarray, float]:
        """All steps and the predicted clearance for network steps ``x_net``: every small zone takes the
        smallest step that reaches the clearance the worst of them (or the rest of the feeder) can reach.
        ``zone_s``: each small zone's tap sensitivity on its rows, end to end (the order of ``zones``)."""
        nn = self.n_network
        v = self.v_pu + self.s[:, :nn] @ x_net
        rows, starts, outside = self._flat_zones
        target = self.margin_pu
        if outside.any():
            target = min(target, clearance_pu(v[outside], *self.limits(outside)))
        lo, hi = self.lo_steps[nn:].astype(int), self.hi_steps[nn:].astype(int)
        v_rows, (lim_lo, lim_hi) = v[rows], self.limits(rows)
        # the clearance every zone can reach caps the target; then each takes the smallest step reaching it
        steps, c = zone_clearances(v_rows, zone_s, starts, lo, hi, lim_lo, lim_hi)
        if c.size:
            target = min(target, float(pick_steps(steps, c, target)[1].min()))
        x = np.concatenate([x_net, np.zeros(len(self.zones))]).astype(int)
        x[nn:] = pick_steps(steps, c, target)[0]
        return x, target


def choose_steps(p: StepProblem, settings: CoordinationSettings = DEFAULT) -> tuple[np.ndarray, float]:
    """Integer steps for one round and their predicted clearance (see the package docstring)."""
    exact = p.s.shape[1] <= settings.exact_milp_columns
    integer = np.arange(p.s.shape[1]) < (p.s.shape[1] if exact else p.n_network)
    x_rel, _ = max_clearance(p.v_pu, p.s, p.lo_steps, p.hi_steps, integer, p.v_min_pu, p.v_max_pu, p.margin_pu,
                             settings)
    zone_s = np.concatenate([p.s[rows, p.n_network + j].toarray().ravel() for j, rows in enumerate(p.zones)]
                            or [np.zeros(0)])
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
            if c >= best - settings.trim_tolerance_pu:
                x_net, x, best, changed = trial, xt, max(best, c), True
    return x, best
