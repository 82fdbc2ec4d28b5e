"""Voltage coordination, pure parts: the zone model, the per-zone enumeration and the MILP round against brute
force on small synthetic feeders; the settings object and the cache key."""

from __future__ import annotations

import ast
import itertools
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from hpcsim import cache
from hpcsim.coordination import DEFAULT, CoordinationSettings, driver, milp
from hpcsim.coordination.cachekey import cache_key, code_files
from hpcsim.coordination.zones import Lever

pytestmark = pytest.mark.unit

V_MIN, V_MAX = 0.95, 1.05


def test_zone_model_sensitivity_is_weight_times_voltage_times_relative_step():
    levers = [Lever("reg", 2, 1.025, 0.00625, -20, 12, "creg"), Lever("xfm", 1, 1.0, 0.025, -2, 2)]
    v = np.array([1.0, 0.98, 0.96])
    weights = [{}, {0: 1.0}, {0: 1.0, 1: -1.0}]
    s = milp.sensitivity(v, weights, levers).toarray()
    np.testing.assert_allclose(s[0], [0.0, 0.0])
    np.testing.assert_allclose(s[1], [0.98 * 0.00625 / 1.025, 0.0])
    np.testing.assert_allclose(s[2], [0.96 * 0.00625 / 1.025, -0.96 * 0.025])


def test_zone_step_centres_its_nodes_and_prefers_the_smallest_move():
    # nodes 0.93..0.95: one step of +0.025 gives 0.955..0.975 (clearance 0.005), two give 0.98..1.0 (0.03)
    v = np.array([0.93, 0.95])
    y, c = milp.zone_steps(v, np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.01)
    assert (y, c) == (2, pytest.approx(0.01))  # capped at the margin, reached only with two steps
    y, c = milp.zone_steps(v, np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.004)
    assert (y, c) == (1, pytest.approx(0.004))  # one step already reaches the (smaller) margin
    y, _ = milp.zone_steps(np.array([0.99, 1.0]), np.full(2, 0.025), -2, 2, V_MIN, V_MAX, margin_pu=0.01)
    assert y == 0


def test_many_zones_at_once_equal_each_zone_enumerated_alone():
    """best_steps (every small zone in one pass, as evaluate() uses it) against a plain loop over each zone's
    steps with the same rule: largest capped clearance, then the smallest move, then the lower step."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 6, size=40)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n = int(sizes.sum())
    v = rng.uniform(0.93, 1.07, n)
    s = np.repeat(rng.choice([-1, 1], size=sizes.size) * rng.uniform(0.01, 0.03, sizes.size), sizes)
    lo_lim, hi_lim = rng.uniform(0.94, 0.96, n), rng.uniform(1.04, 1.06, n)
    lo, hi = -rng.integers(0, 3, sizes.size), rng.integers(0, 3, sizes.size)
    y, c = milp.best_steps(v, s, starts, lo, hi, lo_lim, hi_lim, 0.01)
    for j, (a, size) in enumerate(zip(starts, sizes)):
        r = slice(a, a + size)
        scored = [(min(float(np.min(np.minimum(v[r] + s[r] * k - lo_lim[r], hi_lim[r] - v[r] - s[r] * k))), 0.01),
                   -abs(k), -k, k) for k in range(lo[j], hi[j] + 1)]
        best = max(scored)
        assert (y[j], c[j]) == (best[3], pytest.approx(best[0], abs=1e-15))


def _brute_force(p: milp.StepProblem) -> float:
    """The best clearance over every integer combination of all levers (network and zone)."""
    s = p.s.toarray()
    best = -np.inf
    ranges = [range(int(lo), int(hi) + 1) for lo, hi in zip(p.lo_steps, p.hi_steps)]
    for x in itertools.product(*ranges):
        best = max(best, min(milp.clearance_pu(p.v_pu + s @ np.array(x), p.v_min_pu, p.v_max_pu), p.margin_pu))
    return best


def _feeder(seed: int, per_node: bool = False) -> milp.StepProblem:
    """A synthetic feeder: a regulator zone (all nodes), a second regulator on half of them, two service
    transformer zones of two nodes each; voltages spread so that nothing fits without moving taps. ``per_node``:
    limits tightened by a random drift per node (as over a run's extremes)."""
    rng = np.random.default_rng(seed)
    n = 12
    v = np.concatenate([rng.uniform(0.96, 1.06, 8), [0.925, 0.93], [1.055, 1.06]])
    s = np.zeros((n, 4))
    s[:, 0] = 0.0066 * v
    s[4:, 1] = 0.0066 * v[4:] * rng.uniform(1.0, 1.4, n - 4)  # measured: the far end moves more
    s[8:10, 2] = -0.025 * v[8:10]
    s[10:12, 3] = -0.025 * v[10:12]
    lim = (milp.node_limits(V_MIN, V_MAX, rng.uniform(0, 0.006, n), rng.uniform(0, 0.006, n)) if per_node
           else (V_MIN, V_MAX))
    return milp.StepProblem(v, sparse.csc_matrix(s), np.array([-4, -4, -2, -2]), np.array([4, 4, 2, 2]), 2,
                            [np.array([8, 9]), np.array([10, 11])], *lim, 0.01)


@pytest.mark.parametrize("per_node", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_a_round_finds_the_brute_force_clearance(seed, per_node):
    p = _feeder(seed, per_node)
    relaxed = replace(DEFAULT, exact_milp_columns=0)  # exercise the relaxed-zone path on a small problem
    x, predicted = milp.choose_steps(p, relaxed)
    got = min(milp.clearance_pu(p.v_pu + p.s @ x, p.v_min_pu, p.v_max_pu), p.margin_pu)
    assert predicted == pytest.approx(got, abs=1e-9)
    best = _brute_force(p)
    assert got >= best - 2 * DEFAULT.trim_tolerance_pu - 1e-9, (got, best)
    assert (p.lo_steps <= x).all() and (x <= p.hi_steps).all()


@pytest.mark.parametrize("per_node", [False, True])
def test_the_exact_milp_matches_brute_force(per_node):
    p = _feeder(11, per_node)
    x, predicted = milp.choose_steps(p)  # 4 columns: solved with every lever integer
    assert predicted == pytest.approx(_brute_force(p), abs=1e-7)


def test_node_limits_tighten_by_the_drift_each_way():
    lo, hi = milp.node_limits(V_MIN, V_MAX, np.array([0.01, 0.0, -0.002]), np.array([0.0, 0.004, 0.0]))
    np.testing.assert_allclose(lo, [0.96, 0.95, 0.95])  # a negative drift never loosens a limit
    np.testing.assert_allclose(hi, [1.05, 1.046, 1.05])
    # a node that sags 0.01 at the heaviest load must sit 0.01 higher to keep the same clearance
    assert milp.clearance_pu(np.array([0.965, 1.0, 1.0]), lo, hi) == pytest.approx(0.005)


def test_band_allowance_is_half_a_band_behind_a_regulator_only():
    levers = [Lever("reg", 2, 1.0, 0.00625, -16, 16, "creg"), Lever("xfm", 1, 1.0, 0.025, -2, 2)]
    a = driver.band_allowance([{}, {0: 1.0}, {1: 1.0}, {0: 1.0, 1: 1.0}, {0: -1.0}], levers)
    half = DEFAULT.reg_band_v / 2 / 120.0
    np.testing.assert_allclose(a, [0.0, half, 0.0, half, 0.0])  # the near side (weight -1) is not fed by it


def test_band_allowance_follows_the_settings_band():
    levers = [Lever("reg", 2, 1.0, 0.00625, -16, 16, "creg")]
    a = driver.band_allowance([{0: 1.0}], levers, settings=replace(DEFAULT, reg_band_v=2.0))
    np.testing.assert_allclose(a, [2.0 / 2 / 120.0])


def test_every_setting_is_a_documented_frozen_field():
    assert DEFAULT == CoordinationSettings()
    with pytest.raises(AttributeError):
        DEFAULT.rounds = 5  # frozen: the DEFAULT cannot drift
    tree = ast.parse((Path(milp.__file__).parent / "settings.py").read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CoordinationSettings").body
    documented = {a.target.id for a, doc in zip(body, body[1:]) if isinstance(a, ast.AnnAssign)
                  and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and len(doc.value.value) > 20}
    assert documented == {f.name for f in fields(CoordinationSettings)}  # a docstring per field


def _key(tmp_path: Path, *, settings: CoordinationSettings = DEFAULT, feeder: bytes = b"New Circuit.x",
         versions: dict | None = None) -> str:
    (tmp_path / "Master.dss").write_bytes(feeder)
    return cache_key(feeder_files=cache.files_digest([tmp_path / "Master.dss"]),
                     engine={"entry": "Master.dss", "solve_settings": ["set tolerance=1e-6"],
                             "source": "Vsource.source"},
                     versions=versions or {"opendssdirect.py": "0.9.4", "scipy": "1.17.1", "numpy": "2.4.6"},
                     code="c0de", settings=settings, inputs={"ders": ["b1"], "limits": [0.95, 1.05, 0.01]})


def test_the_cache_key_changes_with_each_input(tmp_path):
    base = _key(tmp_path)
    assert _key(tmp_path) == base  # deterministic
    for f in fields(CoordinationSettings):  # every setting, each changed on its own
        changed = replace(DEFAULT, **{f.name: getattr(DEFAULT, f.name) + 1})
        assert _key(tmp_path, settings=changed) != base, f.name
    assert _key(tmp_path, feeder=b"New Circuit.y") != base  # a feeder file's bytes
    assert _key(tmp_path, versions={"opendssdirect.py": "0.9.5", "scipy": "1.17.1", "numpy": "2.4.6"}) != base


def test_the_key_covers_every_module_of_the_package():
    names = {p.name for p in code_files()}
    assert {"__init__.py", "settings.py", "milp.py", "zones.py", "driver.py", "cachekey.py"} <= names
    assert Path(__file__) in code_files([Path(__file__)])
