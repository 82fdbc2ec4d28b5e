"""The pure FIDVR pieces (hpcsim/dynamics/fidvr.py) against hand-made voltage series, and the [dynamics] fault keys:
defaults leave a study without a fault unchanged, bad values give one StudyError naming the file and key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcsim.dynamics.fidvr import OFF, RUN, STALL, MotorParams, RideThrough, motor_blocks, recovery
from hpcsim.errors import StudyError
from hpcsim.study import load_study

pytestmark = pytest.mark.unit

M = MotorParams()
H = 1 / 60


def _drive(block, t, v):
    return [(float(tt), e) for tt, vv in zip(t, v) if (e := block.update(float(tt), float(vv), M))]


def test_motor_stalls_after_the_voltage_holds_below_v_stall_for_t_stall_then_trips():
    t = np.arange(0, 6, H)
    v = np.where((t >= 1.0) & (t < 1.0 + 5 * H), 0.01, 0.8)  # a 5-cycle sag, then a depressed plateau
    blk = motor_blocks(9, 15.0, (3.0,), 0.0)[0]
    events = _drive(blk, t, v)
    # low from t[60] = 1.0; 0.032 s later lies between samples 61 (1.0167) and 62 (1.0333): the stall is at 62
    assert events[0] == (pytest.approx(t[62]), "stall")
    assert events[1] == (pytest.approx(t[62] + 3.0, abs=H), "thermal trip")
    assert blk.state == OFF and len(events) == 2


def test_a_dip_shorter_than_t_stall_does_not_stall_and_the_timer_restarts():
    t = np.arange(0, 2, H)
    v = np.where((t > 0.99) & (t < 1.02), 0.3, 1.0)  # two samples low: 1/60 s < 0.032 s
    v[90:92] = 0.3  # again two samples, separately
    blk = motor_blocks(9, 15.0, (3.0,), 0.0)[0]
    assert _drive(blk, t, v) == [] and blk.state == RUN


def test_restart_only_for_the_restart_share_after_v_held_above_v_restart():
    blocks = motor_blocks(10, 9.0, (0.5, 1.0), 0.5)
    assert [b.restart for b in blocks] == [True, False] and all(b.p_mw == 4.5 for b in blocks)
    t = np.arange(0, 4, H)
    v = np.where((t >= 0.5) & (t < 0.6), 0.2, 1.0)
    ev = {b.name: _drive(b, t, v) for b in blocks}
    stall = ev["MD_10_1"][0][0]
    assert [e for _, e in ev["MD_10_1"]] == ["stall", "thermal trip", "restart"]
    # restart: V > 0.95 pu counted from the sample after the trip, held 0.3 s
    assert ev["MD_10_1"][2][0] == pytest.approx(stall + 0.5 + H + 0.3, abs=1e-6)
    assert [e for _, e in ev["MD_10_2"]] == ["stall", "thermal trip"] and blocks[1].state == OFF
    assert blocks[0].state == RUN


def test_stall_admittance_and_running_q():
    # 15 MW at pf 0.939 on 100 MVA: S = 0.15974 pu; Y = S / (0.1 + j0.1) = 0.7987 (1 - j)
    y = M.stall_admittance_pu(15.0, 100.0)
    assert y == pytest.approx(complex(15 / 0.939 / 100 * 5, -15 / 0.939 / 100 * 5))
    assert M.q_over_p() == pytest.approx(math.sqrt(1 - 0.939**2) / 0.939)
    assert STALL != RUN


def test_der_trip_after_more_than_t_trip_below_v_trip_and_ride_stays_on():
    t = np.arange(0, 2, H)
    v = np.where(t >= 1.0, 0.85, 1.0)
    trip, ride = RideThrough("D1", 9, "trip", 0.88, 0.16), RideThrough("D2", 9, "ride", 0.88, 0.16)
    got = [(float(x), e) for x, y in zip(t, v) if (e := trip.update(float(x), float(y)))]
    assert not [e for x, y in zip(t, v) if ride.update(float(x), float(y))] and ride.online
    # more than 0.16 s: 1.0 + 10/60 = 1.1667 is the first sample with t - 1.0 > 0.16
    assert got == [(pytest.approx(t[70]), "der trip")] and not trip.online
    short = RideThrough("D3", 9, "trip", 0.88, 0.16)
    v2 = np.where((t >= 1.0) & (t < 1.15), 0.5, 1.0)  # 0.15 s: rides through
    assert not [e for x, y in zip(t, v2) if short.update(float(x), float(y))] and short.online


def test_recovery_measures():
    t = np.round(np.arange(0, 5, 0.01), 6)
    v = np.ones_like(t)
    v[(t >= 1.0) & (t <= 1.08)] = 0.05
    v[(t > 1.08) & (t < 2.5)] = 0.8
    v[(t >= 1.5) & (t < 1.6)] = 0.6
    r = recovery(t, v, clear_s=1.08)
    assert r["recovery_s"] == pytest.approx(2.5 - 1.08)
    assert r["time_below_s"] == pytest.approx(2.5 - 1.09)  # samples 1.09 ... 2.49, 0.01 s each
    assert (r["nadir_pu"], r["nadir_s"], r["final_pu"]) == (0.6, pytest.approx(1.5), 1.0)
    assert recovery(t, np.ones_like(t), 1.08)["recovery_s"] == 0.0
    assert recovery(t, np.where(t > 1.08, 0.5, 1.0), 1.08)["recovery_s"] == math.inf


BASE = """
name = "f"
[transmission]
case = "ieee14/ieee14_full.xlsx"
[dynamics]
stop_s = 10.0
feeders = { 9 = "ieee13" }
"""


def _load(tmp_path, extra: str = ""):
    path = tmp_path / "study.toml"
    path.write_text(BASE + extra)
    return load_study(path)


def test_no_fault_by_default_and_one_motor_share_for_every_feeder(tmp_path):
    s = _load(tmp_path).dynamics
    assert s.fault_bus == 0 and s.motor_share == () and s.der_ride_through == "ride"
    s = _load(tmp_path, "fault_bus = 9\nmotor_share = 0.4\n").dynamics
    assert s.motor_share == ((9, 0.4),) and s.clear_s(60.0) == pytest.approx(1.1 + 5 / 60)
    s = _load(tmp_path, "fault_bus = 9\nmotor_share = { 9 = 0.5, 14 = 0.25, 10 = 0 }\n").dynamics
    assert s.motor_share == ((9, 0.5), (14, 0.25)) and s.motor_share_of(10) == 0.0


@pytest.mark.parametrize(("extra", "message"), [
    ("motor_share = 0.5\n", "motor_share needs a fault: set fault_bus"),
    ('der_ride_through = "trip"\n', "der_ride_through = 'trip' needs a fault"),
    ("fault_bus = 9\nmotor_share = 1.5\n", "motor_share 1.5 must be a share in [0, 1]"),
    ("fault_bus = 9\nmotor_share = { x = 0.5 }\n", "motor_share {'x': 0.5} must be a share"),
    ("fault_bus = 9\nfault_s = 12.0\n", "fault_s 12.0 must be inside the run (0, 10.0)"),
    ("fault_bus = 9\nfault_cycles = 0\n", "fault_cycles 0.0 must be in (0, 600)"),
    ("fault_bus = -3\n", "fault_bus -3 must be a bus number"),
    ("fault_bus = 9\nfault_x_pu = 0\n", "fault_x_pu 0.0 must be in (0, 10)"),
    ("fault_bus = 9\nload_break_pu = 1.2\n", "load_break_pu 1.2 must be in (0, 1)"),
    ("fault_bus = 9\nmotor_trip_s = []\n", "motor_trip_s [] must be a non-empty list of positive seconds"),
    ("fault_bus = 9\nmotor_trip_s = [3.0, -1]\n", "motor_trip_s [3.0, -1] must be a non-empty list"),
    ("fault_bus = 9\nmotor_pf = 0\n", "motor_pf 0.0 must be in (0, 1]"),
    ("fault_bus = 9\nmotor_v_stall_pu = 1.1\n", "motor_v_stall_pu 1.1 must be in (0, 1)"),
    ("fault_bus = 9\nmotor_r_stall_pu = 0\nmotor_x_stall_pu = 0\n", "must be >= 0 and not both 0"),
    ('fault_bus = 9\nder_ride_through = "cease"\n', "der_ride_through 'cease' must be 'ride' or 'trip'"),
    ("fault_bus = 9\nder_trip_v_pu = 0\n", "der_trip_v_pu 0.0 must be in (0, 1.2)"),
    ('fault_bus = "9"\n', "[dynamics] fault_bus = '9' has the wrong type"),
])
def test_bad_fault_keys_name_the_file_and_key(tmp_path, extra, message):
    with pytest.raises(StudyError) as err:
        _load(tmp_path, extra)
    assert "study.toml" in str(err.value) and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
