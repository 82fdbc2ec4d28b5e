"""Real OpenDSS (opendssdirect.py) and ANDES on the project's feeders and ACTIVSg200."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hpcsim.cases import resolve_feeder, resolve_transmission_case
from hpcsim.distribution import CloneState, FeederEngine
from hpcsim.errors import CaseError
from hpcsim.transmission import PYCODE_PATH, TransmissionNetwork

pytestmark = pytest.mark.integration


def _clone(v_pu: float = 1.0, angle_deg: float = 0.0, load_mult: float = 1.0, name: str = "f") -> CloneState:
    return CloneState(name=name, bus=8, load_mult=load_mult, v_pu=v_pu, angle_deg=angle_deg)


@pytest.fixture(scope="module")
def ieee8500() -> FeederEngine:
    return FeederEngine(resolve_feeder("ieee8500"))


@pytest.fixture(scope="module")
def activsg200() -> TransmissionNetwork:
    return TransmissionNetwork(resolve_transmission_case("ACTIVSg200"), [8])


# --- OpenDSS ------------------------------------------------------------------------------------------------


def test_ieee8500_nominal_load(ieee8500):
    assert ieee8500.nominal_load_kw() == pytest.approx(10_773.17, abs=0.01)
    assert ieee8500.base_kv == pytest.approx(115.0)


def test_ieee8500_solve_at_1_05(ieee8500):
    r = ieee8500.solve(_clone(1.05, 0.0))
    assert 11.9 < r.p_mw < 12.05
    assert 0 < r.q_mvar < 3
    assert (r.v_source_pu, r.angle_deg, r.load_mult) == (1.05, 0.0, 1.0)
    # balanced source: positive-sequence power and total power agree closely
    assert r.p_total_mw == pytest.approx(r.p_mw, rel=1e-6)
    assert r.q_total_mvar == pytest.approx(r.q_mvar, rel=1e-4)


def test_p_equals_opendss_own_positive_sequence_power(ieee8500):
    for v_pu, angle in [(1.05, 0.0), (0.98, -12.0)]:
        r = ieee8500.solve(_clone(v_pu, angle))
        ieee8500.dss.Circuit.SetActiveElement("Vsource.source")
        seq = ieee8500.dss.CktElement.SeqPowers()  # kW, kvar pairs: zero, positive, negative of terminal 1
        p_dss, q_dss = -seq[2] / 1000.0, -seq[3] / 1000.0
        assert r.p_mw == pytest.approx(p_dss, rel=1e-6)
        assert r.q_mvar == pytest.approx(q_dss, rel=1e-6)


def test_lower_source_voltage_changes_power(ieee8500):
    high = ieee8500.solve(_clone(1.05))
    low = ieee8500.solve(_clone(0.95))
    assert abs(high.p_mw - low.p_mw) > 1e-3
    assert low.mean_v_pu < high.mean_v_pu


def test_load_multiplier_reduces_power(ieee8500):
    base = ieee8500.solve(_clone(1.0, load_mult=1.0))
    less = ieee8500.solve(_clone(1.0, load_mult=0.9))
    assert less.p_mw < base.p_mw - 0.5  # ≈ 10% of ≈ 12 MW
    assert less.load_mult == 0.9
    ieee8500.solve(_clone(1.0, load_mult=1.0))  # leave the shared engine at the default multiplier


def test_node_voltage_statistics(ieee8500):
    r = ieee8500.solve(_clone(1.02, -3.0), node_voltages=True)
    assert 0.8 < r.min_v_pu <= r.mean_v_pu <= r.max_v_pu < 1.2
    assert r.node_v_pu is not None
    assert len(r.node_v_pu) == len(ieee8500.node_names())
    live = r.node_v_pu[r.node_v_pu > 0.01]
    assert (live.min(), live.max()) == (r.min_v_pu, r.max_v_pu)
    assert ieee8500.solve(_clone(1.02, -3.0)).node_v_pu is None


@pytest.mark.usefixtures("ieee8500")  # a fourth engine, alive in the same process
def test_two_engines_in_one_process_are_independent():
    model = resolve_feeder("ieee8500")
    a, b, control = FeederEngine(model), FeederEngine(model), FeederEngine(model)
    assert a.dss is not b.dss
    a1 = a.solve(_clone(1.05, name="a"))
    b1 = b.solve(_clone(0.95, name="b"))
    assert abs(a1.p_mw - b1.p_mw) > 1e-3  # different source voltages, different answers
    a2 = a.solve(_clone(1.05, name="a"))
    # A's answer is its original one: up to OpenDSS's solution tolerance (re-solving from a converged state
    # moves the result by ~1e-5 relative)...
    assert a2.p_mw == pytest.approx(a1.p_mw, rel=1e-4)
    assert a2.q_mvar == pytest.approx(a1.q_mvar, rel=1e-3)
    # ...and exactly what an engine that never saw B gives for the same sequence of solves.
    c1 = control.solve(_clone(1.05, name="c"))
    c2 = control.solve(_clone(1.05, name="c"))
    assert (a1.p_mw, a1.q_mvar) == (c1.p_mw, c1.q_mvar)
    assert (a2.p_mw, a2.q_mvar) == (c2.p_mw, c2.q_mvar)
    # B was not moved by A either
    assert b.solve(_clone(0.95, name="b")).p_mw == pytest.approx(b1.p_mw, rel=1e-4)


def test_fresh_engines_give_identical_answers():
    model = resolve_feeder("ieee8500")
    clone = _clone(1.02, -12.5, load_mult=0.97)
    r1 = FeederEngine(model).solve(clone, node_voltages=True)
    r2 = FeederEngine(model).solve(clone, node_voltages=True)
    # every field but the wall time (FeederResult equality includes solve_s) and node voltages...
    assert replace(r1, solve_s=0.0) == replace(r2, solve_s=0.0)
    assert (r1.p_mw, r1.q_mvar, r1.p_total_mw, r1.q_total_mvar) == (r2.p_mw, r2.q_mvar, r2.p_total_mw, r2.q_total_mvar)
    np.testing.assert_array_equal(r1.node_v_pu, r2.node_v_pu)  # ...and node voltages, bit for bit


@pytest.mark.parametrize(("name", "p_range"), [("ieee34", (1.5, 2.5)), ("ieee13", (3.0, 4.0))])
def test_small_feeders_solve(name, p_range):
    engine = FeederEngine(resolve_feeder(name))
    r = engine.solve(_clone(1.0, name=name))
    assert p_range[0] < r.p_mw < p_range[1]
    assert 0.8 < r.min_v_pu <= r.mean_v_pu <= r.max_v_pu < 1.2
    assert engine.nominal_load_kw() > 0


# --- ANDES --------------------------------------------------------------------------------------------------


def test_activsg200_boundary_bus_8(activsg200):
    assert activsg200.s_base_mva == 100.0
    assert activsg200.boundary_buses == [8]
    assert activsg200.original_p_mw[8] == pytest.approx(23.74)
    assert activsg200.original_q_mvar[8] == pytest.approx(6.77)


def test_activsg200_load_raises_lower_voltage_and_restore(activsg200):
    net = activsg200
    net.set_boundary_loads(net.original_p_mw, net.original_q_mvar)
    assert net.solve() >= 0
    v0, a0 = net.boundary_voltages()
    all_v0 = np.asarray(net.ss.Bus.v.v).copy()
    assert v0.shape == a0.shape == (1,)
    assert 0.9 < v0[0] < 1.1

    net.set_boundary_loads({8: net.original_p_mw[8] + 50.0}, net.original_q_mvar)
    net.solve()
    v1, a1 = net.boundary_voltages()
    assert v1[0] < v0[0]
    assert a1[0] < a0[0]  # more load, the bus angle falls behind

    net.set_boundary_loads(net.original_p_mw, net.original_q_mvar)
    net.solve()
    v2, a2 = net.boundary_voltages()
    np.testing.assert_allclose(v2, v0, rtol=0, atol=1e-8)
    np.testing.assert_allclose(a2, a0, rtol=0, atol=1e-8)
    np.testing.assert_allclose(net.ss.Bus.v.v, all_v0, rtol=0, atol=1e-8)


def test_boundary_voltages_are_copies(activsg200):
    activsg200.solve()
    v, _ = activsg200.boundary_voltages()
    v[:] = 0
    assert activsg200.boundary_voltages()[0][0] > 0.9


def test_transmission_network_rejects_bad_boundary_buses():
    case = resolve_transmission_case("ACTIVSg200")
    with pytest.raises(CaseError, match="99999"):
        TransmissionNetwork(case, [99999])
    with pytest.raises(CaseError, match="bus 1 has no load"):
        TransmissionNetwork(case, [1])


def test_andes_code_lives_in_the_environment():
    assert PYCODE_PATH.is_relative_to(Path(sys.prefix))
    assert (PYCODE_PATH / "__init__.py").is_file()  # `hpcsim prepare` has run


def test_andes_writes_nothing_to_home_or_tmp(tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    script = textwrap.dedent(
        """
        from hpcsim.cases import resolve_transmission_case
        from hpcsim.transmission import TransmissionNetwork
        net = TransmissionNetwork(resolve_transmission_case("ACTIVSg200"), [8])
        net.solve()
        print(round(float(net.boundary_voltages()[0][0]), 6))
        """
    )
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "USERPROFILE": str(home)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 0.9 < float(proc.stdout.strip()) < 1.1
    assert not (home / ".andes").exists()
    assert list(home.iterdir()) == []
    assert list(tmp.iterdir()) == []  # no <tmp>/andes-XXXXXXXX log folder either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "tmp"]  # nothing in the working folder
