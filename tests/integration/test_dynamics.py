"""Dynamic T&D frequency co-simulation end to end: real broker, ANDES TDS, OpenDSS feeders and the AGC federate.

Runs (module fixtures, about 1.5–2.5 minutes on 2 cores): scenario 1 (load variation, 60 s, AGC), scenario 2
with AGC (40 s: enough for the AGC to restore 60 Hz) and without (20 s: enough to settle), and the tutorial case
(15 s). Tolerances are explained where they are used.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hpcsim.dynamics import droop
from hpcsim.output.parquet import read_table

from ..pins import check_pinned, dynamic_answer
from .helpers import CASES, REPO, federate_process, hpcsim, start_hpcsim, wait_gone

pytestmark = pytest.mark.integration

F0 = 60.0
PAPER = {"f": {"mean": 59.999, "std": 0.026, "min": 59.936, "max": 60.054},
         "ace": {"mean": -0.172, "std": 4.174, "min": -10.371, "max": 8.833}}


def _derived(tmp_path, base: str, **changes) -> str:
    """A copy of a shipped dynamic study with ``key = value`` lines of its [dynamics] section replaced."""
    text = (CASES / base).read_text()
    for key, value in changes.items():
        line = f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text)
        assert n == 1, key
    path = tmp_path / base
    path.write_text(text)
    return str(path)


def _run(study: str, run_dir) -> dict:
    r = hpcsim("-q", "run", study, "--out", str(run_dir), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def load_variation(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dyn") / "load_variation"
    return run_dir, _run(str(CASES / "dyn_ieee14_load_variation.toml"), run_dir)


@pytest.fixture(scope="module")
def gentrip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trip")
    runs = {}
    for agc, base, stop in ((True, "dyn_ieee14_gentrip_agc.toml", 40.0),
                            (False, "dyn_ieee14_gentrip_noagc.toml", 20.0)):
        run_dir = tmp / f"agc_{agc}"
        runs[agc] = run_dir, _run(_derived(tmp, base, stop_s=stop), run_dir)
    return runs


def _frequency(run_dir):
    return read_table(run_dir / "outputs", "frequency").to_pandas().sort_values("time_s")


def _ders(run_dir):
    return read_table(run_dir / "outputs", "der").to_pandas().sort_values(["der", "time_s"])


def test_the_dynamic_answers_are_the_pinned_ones(load_variation, gentrip):
    check_pinned("dyn_ieee14_load_variation", dynamic_answer(load_variation[1]))
    for agc, (_, summary) in gentrip.items():
        check_pinned(f"dyn_ieee14_gentrip_{'agc' if agc else 'noagc'} (shortened)", dynamic_answer(summary))


# --- scenario 1 ----------------------------------------------------------------------------------------------
def test_load_variation_frequency_and_ace_are_in_the_range_of_table_i(load_variation):
    """Tolerance. Table I comes from one 60-s realization of a random load on the paper's IEEE 14-bus data; ours
    is one seeded realization on ANDES's IEEE 14-bus dynamic data (224 MW of load, five TGOV1 governors with
    R = 0.05). The frequency is a filtered version of 60 independent load steps with a few seconds of memory, so a
    60-s standard deviation has ~±20 % sampling error, and the two systems' frequency response differs (a
    transmission-only replica with the same controls gives σ_f = 0.034–0.042 Hz over seeds 1, 2, 3, 7; this run,
    seed 7, 0.034 Hz). Hence: mean within
    0.01 Hz of 60 Hz (paper: -0.001 Hz); standard deviations within a factor 2 of the paper's (0.013–0.052 Hz,
    2.1–8.3 MW); extremes within 2.5 times the paper's deviations; ACE = -10 B Δf consistent with its bias."""
    _, s = load_variation
    f, ace = s["frequency"], s["ace"]
    assert abs(f["mean"] - F0) < 0.01
    assert PAPER["f"]["std"] / 2 <= f["std"] <= PAPER["f"]["std"] * 2
    assert F0 - 2.5 * (F0 - PAPER["f"]["min"]) <= f["min"] < F0 < f["max"] <= F0 + 2.5 * (PAPER["f"]["max"] - F0)
    assert abs(ace["mean"]) < 2.0
    assert PAPER["ace"]["std"] / 2 <= ace["std"] <= PAPER["ace"]["std"] * 2
    assert ace["std"] == pytest.approx(-10 * ace["bias_mw_per_01hz"] * f["std"], rel=1e-6)
    # the bias is computed from the governors and DER droops, not typed: (5 x 100 MVA / 0.05 + 20 x 0.9 x 20) / 60
    assert ace["bias_mw_per_01hz"] == pytest.approx(-(5 * 100 / 0.05 + 20 * 0.9 * 20) / 60 / 10)
    # the summary's statistics are the frequency table's, recomputed here from the Parquet rows
    freq = _frequency(load_variation[0]).f_hz.to_numpy()
    assert (f["mean"], f["std"], f["min"], f["max"]) == pytest.approx(
        (freq.mean(), freq.std(), freq.min(), freq.max()), rel=0, abs=1e-12)


def test_load_variation_writes_the_tables_summary_and_figures(load_variation):
    run_dir, s = load_variation
    out = run_dir / "outputs"
    freq = _frequency(run_dir)
    # every TDS step (two cycles; ANDES halves a step that does not converge, so a few may be shorter)
    steps = freq.time_s.diff().dropna()
    assert 60 * 30 + 1 <= len(freq) <= 60 * 30 + 20
    assert steps.max() < 1 / 30 + 2e-6 and steps.median() == pytest.approx(1 / 30, abs=2e-6)
    assert freq.load_mult.iloc[0] == 1.0 and freq.load_mult.std() == pytest.approx(0.02, rel=0.35)
    assert read_table(out, "ace").num_rows == 121  # every 0.5 s
    assert read_table(out, "der").num_rows == 20 * 121
    volts = read_table(out, "feeder_voltage").to_pandas()
    assert len(volts) == 2 * 61 and volts.headroom_mw.notna().sum() == 2 * 7  # LP every 10 s per feeder
    plan = json.loads((run_dir / "plan.json").read_text())
    for fd in s["feeders"]:  # scale = P_bus / P_feeder,gross, both computed
        assert fd["scale"] == pytest.approx(fd["p_bus_mw"] / fd["p_gross0_mw"])
    assert {fd["bus"]: fd["p_bus_mw"] for fd in s["feeders"]} == pytest.approx({4: 47.8, 9: 29.5})
    assert plan["balance"] == {"gen": "5", "p_before_mw": pytest.approx(35.0), "p_after_mw": pytest.approx(25.0)}
    tm = s["timing"]
    assert tm["andes_s"] > 0 and tm["opendss_solve_s"] > 0 and tm["lp_s"] > 0 and tm["sim_s_per_wall_s"] > 0
    # the transmission federate logs ANDES's wall time (the summary's andes_s) and its thread's CPU time
    m = re.search(r"ANDES integrated 60 s in (\S+) s, (\S+) s of it on the CPU",
                  (run_dir / "logs" / "transmission.log").read_text())
    assert m and float(m[1]) == pytest.approx(tm["andes_s"], abs=0.01) and 0 < float(m[2]) <= float(m[1]) + 0.01
    for png in ("frequency.png", "ace.png", "der_power.png", "feeder_voltage.png"):
        assert (run_dir / png).stat().st_size > 10_000, png


def _assert_within_limits(run_dir):
    d = _ders(run_dir)
    limit = np.minimum(np.minimum(d.p_mppt_mw, d.p_cap_mw), d.p_vsm_mw)
    # records are at the end of each 0.5-s interval with the limits in force during it (the inverter lag is
    # 20 ms); 0.5 kW of slack for ANDES's Newton tolerance (1e-4 pu on 100 MVA)
    assert (d.p_mw <= limit + 5e-4).all(), d[d.p_mw > limit + 5e-4].head()
    assert (d.p_mw >= -1e-9).all()
    assert np.allclose(d.p_limit_mw, limit, atol=1e-9)
    return d


def test_no_der_exceeds_its_limits(load_variation, gentrip):
    _assert_within_limits(load_variation[0])
    d = _assert_within_limits(gentrip[True][0])
    assert (d.p_mw > 0.55).any()  # ... while they do respond to the trip


def _volts(run_dir, bus):
    v = read_table(run_dir / "outputs", "feeder_voltage").to_pandas()
    return v[v.bus == bus].sort_values("time_s").reset_index(drop=True)


def _inside(v) -> np.ndarray:
    return ((v.v_min_pu >= 0.95) & (v.v_max_pu <= 1.05)).to_numpy()


def test_feeder_voltages_stay_within_limits_under_load_variation(load_variation):
    """Neither IEEE feeder is inside 0.95–1.05 pu as published (IEEE 34 bus 890 near 0.92 pu, IEEE 8500
    secondaries near 0.93 pu with its substation regulator at 1.054 pu), so the study coordinates their taps for
    the run (hpcsim.coordination): at the first operating point, with every node's limits tightened by
    how far it drifts at the run's extremes (lightest and heaviest load sample, ±0.005 pu at the transmission bus,
    half a regulator band). Checked: the published feeder is outside, the coordinated one starts inside with the
    reported clearance, and the run — 2 % random load steps, the source voltage moving with them — stays inside
    at every exchange with the clearance the model promised over the extremes. The IEEE 34 gets there with one of
    its DERs at bus 890, where the study file puts it (der_buses): with all ten in its first fifth, its 4.16-kV
    branch alone spans 0.083 pu inside one tap zone and no tap setting is guaranteed (hpcsim 0.9504–1.0504 pu)."""
    run_dir, s = load_variation
    plan = json.loads((run_dir / "plan.json").read_text())
    ieee34 = next(f for f in plan["feeders"] if f["bus"] == 4)
    assert ieee34["der_buses"] == ["800", "802", "802", "806", "806", "808", "812", "812", "814", "890"]
    for fd in s["feeders"]:
        co = fd["coordination"]
        assert fd["base_v_min_pu"] < 0.95  # the published feeder, without DERs, already violates the lower limit
        assert co["margin_pu"] >= 0.004
        assert len(co["extremes"]) == 4  # 2 load samples x 2 voltages
        assert co["margin_extremes_pu"] > 0.005, fd["feeder"]
        v = _volts(run_dir, fd["bus"])
        assert v.v_min_pu[0] >= 0.95 + co["margin_pu"] - 0.002 and v.v_max_pu[0] <= 1.05 - co["margin_pu"] + 0.002
        outside = v[~_inside(v)][["time_s", "v_min_pu", "v_max_pu"]]
        assert outside.empty, (fd["feeder"], outside.to_dict("records"))
        assert v.v_min_pu.min() >= 0.95 + co["margin_extremes_pu"] - 0.001, fd["feeder"]
        assert v.v_max_pu.max() <= 1.05 - co["margin_extremes_pu"] + 0.001, fd["feeder"]


@pytest.mark.parametrize("bus, message", [
    ("8900", "feeder ieee34 has no bus '8900' for DER DER_4_10"),
    ("890.1", "feeder ieee34: DER DER_4_10 at '890.1': give the bus name without node numbers (a DER is a "
              "three-phase generator)"),
    ("856", "feeder ieee34: bus '856' for DER DER_4_10 has 1 node(s); a DER is a three-phase generator"),
])
def test_a_der_bus_the_feeder_cannot_host_is_one_line_exit_2(tmp_path, bus, message):
    names = ["800", "802", "802", "806", "806", "808", "812", "812", "814", bus]
    text = (CASES / "dyn_ieee14_load_variation.toml").read_text()
    text, n = re.subn(r"(?m)^der_buses = .*$", f"der_buses = {{ 4 = {json.dumps(names)} }}", text)
    assert n == 1
    study = tmp_path / "bad_der_bus.toml"
    study.write_text(text)
    r = hpcsim("run", str(study), "--out", str(tmp_path / "run"), timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"hpcsim: error: {message}"], r.stderr
    assert not (tmp_path / "run").exists()


# --- scenario 2 ----------------------------------------------------------------------------------------------
def test_generation_trip_recovers_with_agc_and_not_without(gentrip):
    (_, on), (dir_off, off) = gentrip[True], gentrip[False]
    assert on["frequency"]["pre_event_hz"] == pytest.approx(F0, abs=1e-3)
    # same primary response (the AGC acts from 8.5 s): nadir about 0.4 Hz down, 1.5-2 s after the trip
    assert on["frequency"]["nadir_hz"] == pytest.approx(off["frequency"]["nadir_hz"], abs=1e-3)
    assert 59.4 < on["frequency"]["nadir_hz"] < 59.8 and 5.5 < on["frequency"]["nadir_s"] < 8.0
    # without AGC it settles below 60 Hz (40 MW / ~173 MW/Hz of governor and DER droop ~ 0.23-0.3 Hz) ...
    tail_off = _frequency(dir_off).query("time_s >= 15")
    assert 59.6 < tail_off.f_hz.mean() < 59.85 and tail_off.f_hz.std() < 0.005
    # ... with AGC it comes back to 60 Hz (within the AGC's 0.005 Hz deadband plus margin)
    assert abs(on["frequency"]["final_hz"] - F0) < 0.01
    assert on["ace"]["acs_mw_final"] == pytest.approx(40.0, rel=0.2)  # the AGC replaced the lost unit


def test_feeder_voltages_stay_within_limits_through_the_trip(gentrip):
    """Loads constant: every exchange of both coordinated feeders is inside 0.95–1.05 pu, the one right after the
    trip included, when the transmission voltage dips (bus 4 by ~0.05 pu; the paper's Fig. 14 shows the same dip).
    The plan previews the trip with the transmission alone and coordinates each feeder for that dip too: without
    it the IEEE 34's head zone (800–814, between the substation's fixed tap and regulator 1) fell to 0.93 pu."""
    for agc in (True, False):
        run_dir, s = gentrip[agc]
        trip_s = s["trip"]["t_s"]
        for fd in s["feeders"]:
            v = _volts(run_dir, fd["bus"])
            assert _inside(v).all(), (agc, fd["feeder"], v[~_inside(v)][["time_s", "v_min_pu", "v_max_pu"]])
            after = v[v.time_s > trip_s]
            dip = after.v_source_pu.iloc[0]
            assert dip < v.v_source_pu[0] - 0.02  # the source did dip at the first exchange after the trip
            # the coordination held the previewed dip as an extreme (same substation ratio: feeder_head)
            corners = [e[1] for e in fd["coordination"]["extremes"]]
            assert min(corners) == pytest.approx(dip, abs=0.005), (fd["feeder"], corners, dip)


def test_der_pfr_acts_first_then_sfr_takes_over(gentrip):
    d = _ders(gentrip[True][0])
    per_t = d.groupby("time_s")[["p_pfr_mw", "p_sfr_mw"]].mean()
    t_pfr = per_t.index[per_t.p_pfr_mw > 0.01][0]
    t_sfr = per_t.index[per_t.p_sfr_mw > 0.01][0]
    assert 5.0 < t_pfr < 6.0 and t_pfr < t_sfr  # droop within a second of the trip, AGC at its next cycle
    assert per_t.p_pfr_mw.max() > 0.05
    late = per_t.loc[per_t.index >= 35]
    assert late.p_pfr_mw.abs().max() < 0.005  # PFR phased out once the frequency is back in its deadband
    assert late.p_sfr_mw.mean() == pytest.approx(0.005 * 40.0, rel=0.25)  # 0.5 % of the AGC each
    # the DER droop is eq. (5) at ~0.3 MW/Hz per DER: at the nadir ~0.4 Hz below 60 Hz it gives ~0.1 MW
    assert per_t.p_pfr_mw.max() == pytest.approx(0.3 * (F0 - 0.017 - gentrip[True][1]["frequency"]["nadir_hz"]),
                                                 rel=0.3)


# --- scenario 3 ----------------------------------------------------------------------------------------------
def test_tutorial_case_scales_the_ieee34_feeder_to_bus_4(tmp_path):
    run_dir = tmp_path / "tutorial"
    s = _run(str(CASES / "dyn_ieee14_ieee34_tutorial.toml"), run_dir)
    check_pinned("dyn_ieee14_ieee34_tutorial", dynamic_answer(s))
    (fd,) = s["feeders"]
    assert fd["bus"] == 4 and fd["p_bus_mw"] == pytest.approx(47.8)
    assert fd["scale"] == pytest.approx(47.8 / fd["p_gross0_mw"]) and 20 < fd["scale"] < 30
    assert s["n_der"] == 0 and s["stop_s"] == 15.0 and read_table(run_dir / "outputs", "der").num_rows == 0
    volts = read_table(run_dir / "outputs", "feeder_voltage").to_pandas()
    assert len(volts) == 16 and volts.p_gross_mw.std() > 0  # the feeder follows the ±2.5 % load variation
    assert 0.005 < s["frequency"]["std"] < 0.1


# --- the ANDES DER model on its own --------------------------------------------------------------------------
DERFR_CHECK = textwrap.dedent("""
    import json, numpy as np
    from hpcsim.transmission.dynamic import DynamicGrid, DerGroup
    g = DynamicGrid("ieee14/ieee14_full.xlsx", ders=[DerGroup(4, ("a", "b"), 900.0, 500.0)],
                    bus_loads={4: (47.8, 10.0)}, droop_gain_pu=20.0, deadband_hz=0.017,
                    pmx_mw=np.array([0.8, 0.8]), balance_gen="5", trip_gen="GENROU_2", trip_s=1.0,
                    tds_step_s=1 / 30, governors=["TGOV1_1"])
    busf = list(g.ss.BusFreq.idx.v).index("BusFreq_der_4")
    rows = []
    for k in range(1, 13):
        if k == 9:
            g.set_der_limits(np.array([0.52, 0.8]))
        g.advance(k * 0.5)
        st = g.der_state_mw()
        rows.append({"t": k * 0.5, "f_bus": float(g.ss.BusFreq.f.v[busf] * 60),
                     **{n: v.tolist() for n, v in st.items()}})
    print(json.dumps({"rows": rows, "steps": int(g.ss.dae.kcount), "t": float(g.ss.dae.t)}))
""")


def test_the_andes_der_model_implements_eq_5_and_eq_14():
    r = subprocess.run([sys.executable, "-c", DERFR_CHECK], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rows = out["rows"]
    # every 0.5-s interval ends on a two-cycle step (no extra near-zero step to close a float gap): 15 steps
    # each, plus the steps around the trip's switch time
    assert out["t"] == pytest.approx(6.0, abs=1e-9) and 12 * 15 <= out["steps"] <= 12 * 15 + 3
    for row in rows:
        want = droop.droop_mw(row["f_bus"], f0_hz=F0, db_uf_hz=0.017, db_of_hz=0.017, ddn_pu=20, s_rated_mva=0.9)
        assert row["p_pfr"] == pytest.approx([want] * 2, abs=1e-6)  # eq. (5) on the measured bus frequency
    assert rows[0]["p_base"] == pytest.approx([0.5, 0.5])
    assert max(r["p_pfr"][0] for r in rows) > 0.05  # under-frequency after the trip: the DERs go up
    capped, free = rows[-1]["p"]
    assert capped == pytest.approx(0.52, abs=1e-4)  # eq. (14): held at the limit set at 4.5 s ...
    assert free == pytest.approx(0.5 + rows[-1]["p_pfr"][1], abs=1e-4)  # ... while the other follows its droop


# --- a federate dies ------------------------------------------------------------------------------------------
def test_a_dying_feeder_federate_ends_the_dynamic_run_promptly_and_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_hpcsim(["-q", "run", _derived(tmp_path, "dyn_ieee14_ieee34_tutorial.toml", stop_s=120.0),
                         "--out", str(run_dir)])
    deadline = time.monotonic() + 120
    while True:  # until the transmission federate reports 12 s simulated (rows are written every 10 s)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        try:
            if json.loads((run_dir / "progress.json").read_text())["t_s"] >= 12.0:
                break
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    t_kill = time.monotonic()
    federate_process(run_dir, "feeder_4").kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "feeder_4" in lines[0] and "signal 9" in lines[0], err
    assert time.monotonic() - t_kill < 10
    assert wait_gone(run_dir) == []  # broker, transmission and AGC federates stopped too
    assert json.loads((run_dir / "summary.json").read_text())["completed"] is False
    # what was written before the failure (the first 10 s) is whole and readable
    freq = read_table(run_dir / "outputs", "frequency").to_pandas()
    assert freq.time_s.max() >= 10.0 - 1e-9 and len(freq) >= 10 * 30


def test_summarize_rebuilds_a_dynamic_summary_from_the_run_folder_alone(load_variation, tmp_path):
    """run.json + the outputs give back every physics block of the summary the runner wrote."""
    run_dir, summary = load_variation
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("summary.json"))
    r = hpcsim("summarize", str(copy), "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    for block in ("frequency", "ace", "der", "feeders", "settings", "trip", "n_der", "study", "kind"):
        assert again[block] == summary[block], block
    assert again["completed"] is True
    assert json.loads((copy / "runner.json").read_text())["federates"][0]["name"] == "root_broker"
