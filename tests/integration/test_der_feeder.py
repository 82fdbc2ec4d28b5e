"""The DER feeder is the feeder engine with DERs: its solve depends only on its inputs and its physical state (taps
and capacitor steps), never on control actions left pending by the solve before — checked against a freshly
compiled feeder put in the same state (on IEEE 8500, skipping the engine's ``reset controls`` ends 4 of its 12
regulators on other taps and moves the head power by 1.7 kW)."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsim.cases import resolve_feeder
from hpcsim.distribution.der_feeder import DerFeeder, place_ders
from hpcsim.distribution.engine import CloneState, FeederEngine
from hpcsim.errors import DynamicsError

pytestmark = pytest.mark.integration

N_DERS = 10


def _fresh_in_state(feeder: str, buses: list[str], names: list[str], state) -> FeederEngine:
    """An independent circuit: compiled anew, the same DER generators added by hand, the taps and capacitor steps
    put in — and no solve before the one compared."""
    g = FeederEngine(resolve_feeder(feeder))
    d = g.dss
    for name, bus in zip(names, buses):
        d.Circuit.SetActiveBus(bus)
        kv_ll = d.Bus.kVBase() * np.sqrt(3.0)
        d.Text.Command(f"New Generator.{name} bus1={bus} phases=3 kV={kv_ll:.4f} kW=500 kVA=900 pf=1 model=1")
    g.apply_control_state(state)
    return g


@pytest.mark.parametrize("feeder", ["ieee8500", "ieee34"])
def test_a_der_feeder_solve_depends_on_its_state_not_on_the_solve_before(feeder):
    buses = place_ders(FeederEngine(resolve_feeder(feeder)), N_DERS, (0.0, 1.0))
    names = [f"DER_T_{k}" for k in range(N_DERS)]
    p_mw = np.full(N_DERS, 0.5)
    f = DerFeeder(feeder, buses, names, 900.0, 500.0)  # its own first solve at the model's source voltage
    for v_pu, mult in ((1.0218, 1.0), (0.995, 0.8)):
        state = f.control_state()
        st = f.solve_with_ders(v_pu, 0.0, p_mw, mult)
        g = _fresh_in_state(feeder, buses, names, state)
        ref = g.solve(CloneState("ref", 0, mult, v_pu, 0.0))
        assert f.control_state() == g.control_state(), f"{feeder} at {v_pu} pu: taps differ from a fresh solve"
        assert st.p_net_mw == pytest.approx(ref.p_mw, abs=1e-6)
        assert st.q_net_mvar == pytest.approx(ref.q_mvar, abs=1e-6)
        g.close()
    f.close()


def test_a_der_feeder_failure_is_a_dynamics_error_naming_the_feeder():
    f = DerFeeder("ieee13", [], [], 900.0, 500.0)
    with pytest.raises(DynamicsError, match="feeder ieee13: OpenDSS command 'New Bogus.x' failed"):
        f._command("New Bogus.x")
