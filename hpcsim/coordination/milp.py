"""The pure part of the coordination (numpy/SciPy only): clearances, drift-tightened limits, the zone model's
sensitivities and the tap-step MILP of one linearized round (see the package docstring for the problem)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


def choose_steps(p: StepProblem, settings: CoordinationSettings = DEFAULT) -> tuple[np.ndarray, float]:
    """Integer steps for one round and their predicted clearance (see the package docstring)."""
    exact = p.s.shape[1] <= settings.exact_milp_columns
    integer = np.arange(p.s.shape[1]) < (p.s.shape[1] if exact else p.n_network)
    x_rel, _ = max_clearance(p.v_pu, p.s, p.lo_steps, p.hi_steps, integer, p.v_min_pu, p.v_max_pu, p.margin_pu,
                             settings)
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
            if c >= best - settings.trim_tolerance_pu:
                x_net, x, best, changed = trial, xt, max(best, c), True
    return x, best
