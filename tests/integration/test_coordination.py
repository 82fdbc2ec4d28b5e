"""Voltage coordination on the real IEEE feeders (OpenDSS): the published feeder is outside 0.95–1.05 pu at the
dynamic study's operating point, the coordinated one is inside, and an independent re-solve of a freshly compiled
feeder with the recorded OpenDSS commands reproduces it with the regulators holding their taps."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsim.cases import resolve_feeder
from hpcsim.distribution import FeederEngine
from hpcsim.coordination import driver, zones
from hpcsim.distribution.der_feeder import DerFeeder, place_ders

pytestmark = pytest.mark.integration

V_SOURCE_PU = 1.0191  # bus 4 of the IEEE 14-bus case at the dynamic study's first operating point


@pytest.fixture(scope="module")
def ieee34():
    buses = place_ders(FeederEngine(resolve_feeder("ieee34")), 10, (0.0, 0.2))
    names = [f"DER_{j}" for j in range(10)]
    f = DerFeeder("ieee34", buses, names, 900.0, 500.0)
    p = np.full(10, 0.5)
    published = f.solve_with_ders(V_SOURCE_PU, 0.0, p, 1.0)
    c = f.coordinate(V_SOURCE_PU, p, v_min_pu=0.95, v_max_pu=1.05, margin_pu=0.01)
    return buses, names, p, published, c, driver._control_state(f.dss)


def test_the_published_ieee34_is_outside_and_the_coordinated_one_inside(ieee34):
    _, _, _, published, c, _ = ieee34
    assert published.v_min_pu < 0.93  # bus 890 behind the fixed 24.9/4.16 kV transformer
    assert c.v_before_pu[0] == pytest.approx(published.v_min_pu, abs=1e-6)
    assert c.margin_pu >= 0.005
    assert 0.95 + c.margin_pu - 1e-9 <= c.v_after_pu[0] and c.v_after_pu[1] <= 1.05 - c.margin_pu + 1e-9
    assert any(cmd.startswith("Edit Transformer.xfm1 wdg=1") for cmd in c.commands)  # the 4.16 kV zone retapped


def test_a_fresh_feeder_with_the_commands_reproduces_the_coordination(ieee34):
    buses, names, p, _, c, coordinated = ieee34
    fresh = DerFeeder("ieee34", buses, names, 900.0, 500.0, c.commands)
    before = driver._control_state(fresh.dss)
    assert before == coordinated  # every regulator starts at its coordinated tap (a fresh compile starts at 0)
    st = fresh.solve_with_ders(V_SOURCE_PU, 0.0, p, 1.0)
    assert driver._control_state(fresh.dss) == before  # regulators hold the coordinated taps
    assert (st.v_min_pu, st.v_max_pu) == pytest.approx(c.v_after_pu, abs=1e-5)
    # independent check of the limits on every node, from OpenDSS directly
    v = np.asarray(fresh.dss.Circuit.AllBusMagPu())[fresh.node_mask]
    assert v.min() >= 0.95 and v.max() <= 1.05


def test_zones_follow_the_ieee34_topology():
    f = DerFeeder("ieee34", [], [], 0.0, 0.0)
    d = f.dss
    levers = zones.find_levers(d)
    names = [lv.regcontrol or lv.transformer for lv in levers]
    weights = dict(zip((n.lower() for n in d.Circuit.AllNodeNames()), zones.zone_weights(d, "Vsource.source", levers)))
    k = {n: names.index(n) for n in ("creg1a", "creg2a", "xfm1", "subxf")}
    assert weights["sourcebus.1"] == {}
    assert weights["800.1"] == {k["subxf"]: -1.0}  # behind the substation transformer (tap on its near winding)
    assert weights["890.1"] == {k["subxf"]: -1.0, k["creg1a"]: 1.0, k["creg2a"]: 1.0, k["xfm1"]: -1.0}
    assert k["creg1a"] not in weights["890.2"]  # single-phase regulators act on their own phase only
    network, local, _ = driver._classify(levers, [w for w, keep in zip(weights.values(), f.node_mask) if keep])
    assert names.index("xfm1") in local and names.index("subxf") in network


def test_drift_matches_an_independent_solve_at_each_extreme_and_restores_the_circuit():
    buses = place_ders(FeederEngine(resolve_feeder("ieee34")), 10, (0.0, 0.2))
    names = [f"DER_{j}" for j in range(10)]
    p = np.full(10, 0.5)
    f = DerFeeder("ieee34", buses, names, 900.0, 500.0)
    d = f.dss
    f.solve_with_ders(V_SOURCE_PU, 0.0, p, 1.0)
    d.Text.Command("set controlmode=off")
    levers = zones.find_levers(d)

    def solve():
        d.Solution.Solve()
        return np.asarray(d.Circuit.AllBusMagPu())

    v0, state = solve()[f.node_mask], driver._control_state(d)
    hold = driver._hold_here_commands(d, levers)
    extremes = ((0.94, V_SOURCE_PU * 1.005), (1.06, V_SOURCE_PU * 0.995))  # light load, high source; and back
    drop, rise = driver.drift(d, solve, f.node_mask, levers, extremes)
    # the circuit is as it was: taps, capacitors, load multiplier, source voltage, node voltages
    assert driver._control_state(d) == state and d.Solution.LoadMult() == 1.0
    assert d.Vsources.PU() == pytest.approx(V_SOURCE_PU)
    np.testing.assert_allclose(solve()[f.node_mask], v0, atol=1e-9)
    # a second, freshly compiled feeder at each extreme with the regulators told to hold the operating point
    dv = []
    for m, vs in extremes:
        g = DerFeeder("ieee34", buses, names, 900.0, 500.0)
        g.solve_with_ders(V_SOURCE_PU, 0.0, p, 1.0)
        for cmd in hold:
            g.dss.Text.Command(cmd)
        g.solve_with_ders(vs, 0.0, p, m)
        dv.append(g.node_voltages() - v0)
    np.testing.assert_allclose(drop, np.maximum(0.0, -np.minimum(*dv)), atol=2e-4)
    np.testing.assert_allclose(rise, np.maximum(0.0, np.maximum(*dv)), atol=2e-4)
    assert drop.max() > 0.005 and rise.max() > 0.005  # ±6 % load and ±0.5 % source move the far end
