"""Pure physics of the dynamic study: droop (eq. 5), ACE/PI/participation (eq. 6, Fig. 5), DER limits (eq. 14),
seeded series, and the VSM headroom LP (eqs. 9–13) on networks whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsim.cases import CASES_DIR
from hpcsim.dynamics import agc, der, droop, headroom
from hpcsim.errors import StudyError
from hpcsim.study import load_study

pytestmark = pytest.mark.unit

F0 = 60.0


# --- droop, eq. (5) -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("f_hz", [60.0, 59.983, 60.017, 59.99, 60.01])
def test_droop_is_zero_inside_the_deadband(f_hz):
    assert droop.droop_mw(f_hz, f0_hz=F0, db_uf_hz=0.017, db_of_hz=0.017, ddn_pu=20, s_rated_mva=0.9) == 0.0


def test_droop_outside_the_deadband_is_linear_from_its_edge_and_two_sided():
    # 5 % droop (Ddn = 20) on 0.9 MVA: 0.3 MW per Hz beyond the 0.017 Hz deadband
    p_under = droop.droop_mw(59.917, f0_hz=F0, db_uf_hz=0.017, db_of_hz=0.017, ddn_pu=20, s_rated_mva=0.9)
    p_over = droop.droop_mw(60.117, f0_hz=F0, db_uf_hz=0.017, db_of_hz=0.017, ddn_pu=20, s_rated_mva=0.9)
    assert p_under == pytest.approx(20 * 0.9 * 0.066 / 60)
    assert p_over == pytest.approx(-20 * 0.9 * 0.100 / 60)
    # continuous at the deadband edge, vectorized over frequencies and ratings
    f = np.array([59.983 - 1e-9, 59.5, 60.5])
    p = droop.droop_mw(f, f0_hz=F0, db_uf_hz=0.017, db_of_hz=0.017, ddn_pu=20, s_rated_mva=np.array([1.0, 2.0, 1.0]))
    assert p[0] == pytest.approx(0.0, abs=1e-8)
    assert p[1] == pytest.approx(2 * 20 * 0.483 / 60)
    assert p[2] == pytest.approx(-20 * 0.483 / 60)


def test_droop_rejects_negative_deadbands():
    with pytest.raises(ValueError):
        droop.droop_mw(59.9, f0_hz=F0, db_uf_hz=-0.01, db_of_hz=0.017, ddn_pu=20, s_rated_mva=1)


def test_governor_and_der_slopes_give_the_frequency_bias():
    # IEEE 14 (ANDES): five 100 MVA units with R = 0.05 -> 10000 MW/pu = 166.7 MW/Hz
    gov = droop.governor_slope_mw_per_hz(np.full(5, 100.0), np.full(5, 0.05), F0)
    assert gov == pytest.approx(10000 / 60)
    ders = droop.droop_slope_mw_per_hz(ddn_pu=20, s_rated_mva=np.full(20, 0.9), f0_hz=F0)
    assert ders == pytest.approx(6.0)
    assert agc.bias_mw_per_01hz(gov + ders) == pytest.approx(-(10000 / 60 + 6) / 10)
    with pytest.raises(ValueError):
        agc.bias_mw_per_01hz(0.0)
    with pytest.raises(ValueError):
        droop.governor_slope_mw_per_hz(np.ones(2), np.array([0.05, 0.0]), F0)


# --- ACE, PI, participation ---------------------------------------------------------------------------------
def test_ace_sign_and_size():
    b = -16.0  # MW / 0.1 Hz
    assert agc.ace_mw(59.9, f0_hz=F0, bias_mw_per_01hz=b) == pytest.approx(-16.0)  # deficit -> negative ACE
    assert agc.ace_mw(60.05, f0_hz=F0, bias_mw_per_01hz=b) == pytest.approx(8.0)
    assert agc.ace_in_deadband(59.996, -0.64, f0_hz=F0, deadband_hz=0.005) == 0.0
    assert agc.ace_in_deadband(59.99, -1.6, f0_hz=F0, deadband_hz=0.005) == -1.6


def test_pi_controller_integrates_and_holds_at_its_limit():
    pi = agc.PIController(kp=0.5, ki_per_s=0.1, dt_s=4.0)
    assert pi.step(-10.0) == pytest.approx(0.5 * 10 + 0.1 * 40)  # raise generation on a deficit
    assert pi.step(-10.0) == pytest.approx(0.5 * 10 + 0.1 * 80)
    assert pi.step(0.0) == pytest.approx(0.1 * 80)  # the integral holds the correction when ACE is zero
    limited = agc.PIController(kp=0.0, ki_per_s=1.0, dt_s=1.0, limit_mw=5.0)
    for _ in range(10):
        out = limited.step(-3.0)
    assert out == 5.0 and limited.integral_mw_s == pytest.approx(-3.0)  # no wind-up beyond the limit
    assert limited.step(3.0) == pytest.approx(0.0)  # so it comes off the limit at once


def test_participation_factors_match_the_paper():
    thermal, ders = agc.participation(np.array([1, 1, 1, 1, 1], bool), n_der=20, der_share=0.10)
    assert ders == pytest.approx(np.full(20, 0.005))
    assert thermal == pytest.approx(np.full(5, 0.18))
    assert thermal.sum() + ders.sum() == pytest.approx(1.0)
    thermal, ders = agc.participation(np.array([1, 0, 1, 1, 1], bool), n_der=20, der_share=0.10)
    assert thermal[1] == 0 and thermal.sum() == pytest.approx(0.9)  # a tripped unit gets nothing
    thermal, ders = agc.participation(np.ones(3, bool), n_der=0, der_share=0.10)
    assert thermal.sum() == pytest.approx(1.0) and ders.size == 0


def test_governor_paux_undoes_the_droop_gain():
    assert agc.governor_paux(np.array([10.0]), np.array([0.05]), np.array([100.0])) == pytest.approx([0.005])


# --- DER limits and series ----------------------------------------------------------------------------------
def test_der_output_is_the_minimum_of_eq_14():
    base, pfr, sfr = np.full(4, 0.5), np.array([0.1, 0.1, 0.1, -0.6]), np.array([0.2, 0.2, 0.2, 0.0])
    mppt, cap, vsm = np.array([0.9, 0.7, 0.9, 0.9]), np.full(4, 0.9), np.array([0.9, 0.9, 0.65, 0.9])
    assert der.output_mw(base, pfr, sfr, mppt, cap, vsm) == pytest.approx([0.8, 0.7, 0.65, 0.0])
    assert der.limit_mw(mppt, cap, vsm) == pytest.approx([0.9, 0.7, 0.65, 0.9])


def test_mppt_series_is_seeded_bounded_and_near_its_mean():
    a = der.mppt_series(20, 600, mean_mw=0.8, std_mw=0.04, p_cap_mw=0.9, seed=7)
    b = der.mppt_series(20, 600, mean_mw=0.8, std_mw=0.04, p_cap_mw=0.9, seed=7)
    assert a.shape == (601, 20) and np.array_equal(a, b)
    assert not np.array_equal(a, der.mppt_series(20, 600, mean_mw=0.8, std_mw=0.04, p_cap_mw=0.9, seed=8))
    assert a.min() >= 0 and a.max() <= 0.9
    assert a.mean() == pytest.approx(0.8, abs=0.01)
    lag1 = np.corrcoef(a[1:, 0], a[:-1, 0])[0, 1]
    assert lag1 == pytest.approx(der.MPPT_RHO, abs=0.1)


def test_load_multiplier_starts_at_one_with_the_requested_spread():
    m = der.load_multiplier_series(5000, std=0.02, seed=3)
    assert m[0] == 1.0 and m.std() == pytest.approx(0.02, rel=0.05) and m.mean() == pytest.approx(1.0, abs=1e-3)
    assert np.array_equal(m, der.load_multiplier_series(5000, std=0.02, seed=3))


# --- headroom LP, eqs. (9)-(13) -----------------------------------------------------------------------------
def _linear_network(r_pu_per_mw: np.ndarray, v0: float = 1.0):
    """A feeder whose node voltages rise linearly with the DER powers: V = v0 + R P (R: nodes × DERs), and whose
    only line carries 50 % + 10 %/MW of the total DER power."""
    def solve(p_mw: np.ndarray):
        return v0 + r_pu_per_mw @ p_mw, np.array([50.0 + 10.0 * p_mw.sum()])
    return solve


def test_headroom_single_der_on_a_radial_line_is_known_analytically():
    # one DER at the end of a line (dV/dP = 0.02 pu/MW at its node, 0.01 mid-way): at P = 0.5 MW the end node
    # is at 1.01 pu, so with V_max = 1.02 the DER may rise by 0.01 / 0.02 = 0.5 MW to 1.0 MW
    solve = _linear_network(np.array([[0.01], [0.02]]))
    s = headroom.sensitivity(solve, np.array([0.5]), dp_mw=0.05)
    assert s.dv_dp[:, 0] == pytest.approx([0.01, 0.02])
    hr = headroom.max_der_power(s, p_cap_mw=np.array([5.0]), v_min_pu=0.95, v_max_pu=1.02)
    assert hr.p_vsm_mw == pytest.approx([1.0])  # 1.0 + 0.02 * 1.0 = 1.02
    assert hr.headroom_mw == pytest.approx(0.5)
    capped = headroom.max_der_power(s, p_cap_mw=np.array([0.9]), v_min_pu=0.95, v_max_pu=1.02)
    assert capped.p_vsm_mw == pytest.approx([0.9]) and capped.rows == 0  # no voltage row can bind


def test_headroom_two_ders_share_a_node_and_the_lp_prefers_the_weaker_sensitivity():
    # node 0 sees DER a with 0.02 and DER b with 0.01 pu/MW; 0.03 pu of room -> all of it to b (3 MW) beats a
    solve = _linear_network(np.array([[0.02, 0.01]]), v0=1.0)
    s = headroom.sensitivity(solve, np.array([0.0, 0.0]), dp_mw=0.1)
    hr = headroom.max_der_power(s, p_cap_mw=np.array([5.0, 2.0]), v_min_pu=0.95, v_max_pu=1.03)
    # b at its 2 MW rating uses 0.02 pu; the remaining 0.01 pu gives a 0.5 MW
    assert hr.p_vsm_mw == pytest.approx([0.5, 2.0])
    assert hr.headroom_mw == pytest.approx(2.5)


def test_headroom_line_rating_binds_and_existing_violations_may_not_worsen():
    solve = _linear_network(np.array([[0.001, 0.001]]))
    s = headroom.sensitivity(solve, np.array([1.0, 1.0]), dp_mw=0.1)
    hr = headroom.max_der_power(s, p_cap_mw=np.array([9.0, 9.0]), v_min_pu=0.95, v_max_pu=1.05)
    assert hr.headroom_mw == pytest.approx(3.0)  # line: 50 + 10 * (2 + x) <= 100 -> x = 3 MW
    over = _linear_network(np.array([[0.01, 0.0], [0.0, 0.01]]), v0=1.06)  # both nodes already above 1.05
    s = headroom.sensitivity(over, np.array([0.5, 0.5]), dp_mw=0.1)
    hr = headroom.max_der_power(s, p_cap_mw=np.array([0.9, 0.9]), v_min_pu=0.95, v_max_pu=1.05)
    assert hr.headroom_mw == pytest.approx(0.0, abs=1e-9)
    assert hr.p_vsm_mw == pytest.approx([0.5, 0.5])


def test_sensitivity_leaves_the_circuit_at_its_linearization_point():
    calls = []

    def solve(p_mw):
        calls.append(p_mw.copy())
        return np.array([1.0 + 0.01 * p_mw.sum()]), np.array([0.0])

    headroom.sensitivity(solve, np.array([0.2, 0.3]), dp_mw=0.05)
    assert len(calls) == 4 and calls[-1] == pytest.approx([0.2, 0.3])
    with pytest.raises(ValueError):
        headroom.sensitivity(solve, np.array([0.2]), dp_mw=0.0)


# --- the [dynamics] study section -----------------------------------------------------------------------------
def _study(tmp_path, dynamics: str):
    path = tmp_path / "dyn.toml"
    path.write_text(f'name = "d"\n[transmission]\ncase = "ieee14/ieee14_full.xlsx"\n[dynamics]\n{dynamics}\n')
    return load_study(path)


def test_dynamics_section_parses_with_the_papers_defaults(tmp_path):
    s = _study(tmp_path, 'feeders = { 4 = "ieee34", 9 = "ieee8500" }\nder_span = { 4 = [0.0, 0.2] }\nstop_s = 60')
    d = s.dynamics
    assert d.feeders == ((4, "ieee34"), (9, "ieee8500"))
    assert d.tds_step_s(60.0) == pytest.approx(1 / 30) and d.tds_step_s(50.0) == pytest.approx(1 / 25)
    assert (d.exchange_s, d.control_s, d.agc_s, d.headroom_s) == (1, 0.5, 4, 10)
    assert d.span_for(4) == (0.0, 0.2) and d.span_for(9) == (0.1, 1.0)
    assert (d.ders_per_feeder, d.der_kva, d.der_kw, d.pfr_deadband_hz, d.der_agc_share) == (10, 900, 500, 0.017, 0.1)
    assert d.ticks == 120 and d.every(d.agc_s) == 8
    assert d.stop_s == 60.0 and d.ticks * d.control_s == pytest.approx(d.stop_s)  # 60 s of 0.5-s control ticks


def test_the_tds_step_is_cycles_of_the_cases_frequency_and_control_s_must_hold_whole_steps(tmp_path):
    d = _study(tmp_path, 'feeders = { 4 = "ieee34" }\ntds_step_cycles = 3\ncontrol_s = 0.5').dynamics
    d.check_step(60.0, "dyn.toml")  # 0.5 s = 10 steps of 3 cycles at 60 Hz
    with pytest.raises(StudyError, match=r"dyn.toml: \[dynamics\] control_s 0.5 must be a multiple of the TDS step "
                                         r"\(3 cycles of 50 Hz\)"):
        d.check_step(50.0, "dyn.toml")  # 0.5 s = 8.33 steps of 3 cycles at 50 Hz


def test_der_buses_name_the_interconnection_points_of_one_feeder(tmp_path):
    s = _study(tmp_path, 'feeders = { 4 = "ieee34", 9 = "ieee8500" }\nders_per_feeder = 2\n'
                         'der_buses = { 4 = ["800", "890"] }\nder_span = { 9 = [0.0, 1.0] }')
    d = s.dynamics
    assert d.buses_for(4) == ["800", "890"] and d.buses_for(9) == [] and d.span_for(9) == (0.0, 1.0)


@pytest.mark.parametrize("body, message", [
    ('stop_s = 10', "feeders is required"),
    ('feeders = { x = "ieee34" }', "not a bus number"),
    ('feeders = { 4 = "ieee34" }\nstop_s = 10.2', "multiple of control_s"),
    ('feeders = { 4 = "ieee34" }\nagc_s = 4.2', "agc_s"),
    ('feeders = { 4 = "ieee34" }\nder_span = [0.5, 0.2]', "der_span"),
    ('feeders = { 4 = "ieee34" }\nders_per_feeder = 2\nder_buses = { 4 = ["800"] }', "names 1 buses for"),
    ('feeders = { 4 = "ieee34" }\nders_per_feeder = 1\nder_buses = { 5 = ["800"] }', "bus 5 has no feeder"),
    ('feeders = { 4 = "ieee34" }\nders_per_feeder = 1\nder_buses = { 4 = [800] }', "list of feeder bus names"),
    ('feeders = { 4 = "ieee34" }\nders_per_feeder = 1\nder_buses = { 4 = ["800"] }\nder_span = [0.0, 0.2]',
     "both der_buses and der_span"),
    ('feeders = { 4 = "ieee34" }\ntrip_gen = "GENROU_2"\ntrip_s = 99', "trip_s"),
    ('feeders = { 4 = "ieee34" }\nder_kw = 1000', "der_kw"),
    ('feeders = { 4 = "ieee34" }\nfeeder_head = "up"', "feeder_head"),
    ('feeders = { 4 = "ieee34" }\nvoltage_margin_pu = 0.06', "voltage_margin_pu"),
    ('feeders = { 4 = "ieee34" }\nsource_swing_pu = -0.01', "source_swing_pu"),
    ('feeders = { 4 = "ieee34" }\ncoordinate_voltage = "yes"', "wrong type"),
    ('feeders = { 4 = "ieee34" }\nagc = 1', "wrong type"),
    ('feeders = { 4 = "ieee34" }\nbogus = 1', "unknown key"),
])
def test_dynamics_section_rejects_bad_values_in_one_line(tmp_path, body, message):
    with pytest.raises(StudyError, match=message) as err:
        _study(tmp_path, body)
    assert "\n" not in str(err.value)


def test_steady_state_studies_have_no_dynamics_section():
    assert load_study(CASES_DIR / "activsg200_ieee8500_bus8.toml").dynamics is None
