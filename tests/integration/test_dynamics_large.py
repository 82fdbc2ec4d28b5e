"""The large-system dynamic study end to end (issue #20 item 2): ANDES's NPCC 140-bus case with ten feeders (one IEEE
8500-node, five IEEE 34, four IEEE 13; 100 DERs), an 800-MW unit trip at 5 s, with AGC (60 s) and without (30 s:
settled). Each feeder is a federate process of its own. About 1.5-2 minutes on 2 cores (the first run coordinates
the feeders' taps, ~20 s, cached after).

The no-AGC settling frequency is checked against the steady-state frequency deviation computed here from the
case data (the xlsx sheets read with pandas), not from hpcsim: ``Δf = ΔP / (Σ S_n/(R f0) + Σ D S_n / f0)`` over the governors and
the machines' damping (NPCC's four external-area equivalents are classical machines with D = 1000 pu).
"""

from __future__ import annotations

import json

import andes
import pandas as pd
import pytest

from hpcsim.output.parquet import read_table

from .helpers import CASES
from .test_dynamics import _run

pytestmark = pytest.mark.integration

F0 = 60.0
TRIP, TRIP_MW = "GENROU_28", 800.0


@pytest.fixture(scope="module")
def npcc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("npcc")
    noagc = (CASES / "dyn_npcc_gentrip_noagc.toml").read_text().replace("stop_s = 60.0", "stop_s = 30.0")
    assert "stop_s = 30.0" in noagc
    (tmp / "noagc.toml").write_text(noagc)
    out = {}
    for agc, study in ((True, str(CASES / "dyn_npcc_gentrip_agc.toml")), (False, str(tmp / "noagc.toml"))):
        run_dir = tmp / f"agc_{agc}"
        out[agc] = run_dir, _run(study, run_dir)
    return out


def _frequency(run_dir):
    return read_table(run_dir / "outputs", "frequency").to_pandas().sort_values("time_s")


def _case() -> dict:
    """The case's sheets, read with pandas straight from ANDES's xlsx (neither ANDES nor hpcsim in between)."""
    sheets = pd.read_excel(andes.get_case("npcc/npcc.xlsx"), sheet_name=["GENROU", "GENCLS", "TGOV1"])
    for name, df in sheets.items():
        assert (df["u"] == 1).all(), name
    return sheets


def _ratings(case: dict) -> dict[str, float]:
    return {i: float(s) for m in ("GENROU", "GENCLS") for i, s in zip(case[m]["idx"], case[m]["Sn"])}


def _governor_mw_per_hz(case: dict, without: str = "") -> float:
    sn = _ratings(case)
    return sum(sn[syn] / float(r) / F0 for syn, r in zip(case["TGOV1"]["syn"], case["TGOV1"]["R"]) if syn != without)


def _expected_deviation_hz() -> float:
    case = _case()
    sn = _ratings(case)
    damping = sum(float(d) * sn[i] / F0 for m in ("GENROU", "GENCLS") for i, d in zip(case[m]["idx"], case[m]["D"])
                  if i != TRIP)
    return TRIP_MW / (_governor_mw_per_hz(case, without=TRIP) + damping)

def test_ten_feeders_each_a_federate_of_its_own(npcc):
    run_dir, s = npcc[True]
    plan = json.loads((run_dir / "plan.json").read_text())
    kinds = sorted(f["feeder"] for f in plan["feeders"])
    assert kinds.count("ieee8500") == 1 and kinds.count("ieee34") == 5 and kinds.count("ieee13") == 4
    assert s["n_der"] == 100
    configs = {p.stem for p in (run_dir / "configs").glob("feeder_*.json")}
    assert configs == {f"feeder_{f['bus']}" for f in plan["feeders"]}
    # every feeder answered every exchange, the first operating point included
    v = read_table(run_dir / "outputs", "feeder_voltage").to_pandas()
    assert v.groupby("bus").size().to_dict() == {f["bus"]: 61 for f in plan["feeders"]}  # t = 0..60 s
    # the AGC bias from the governors' droop on the machine's base (ANDES holds TGOV1.R on the system base) and the
    # DERs' (100 x D_dn 20 x 0.9 MVA / 60 Hz = 30 MW/Hz), computed here from the case data
    governors = _governor_mw_per_hz(_case())
    assert plan["bias_mw_per_01hz"] == pytest.approx(-(governors + 30.0) / 10, rel=1e-9)

def test_the_trip_recovers_with_agc_and_settles_below_without(npcc):
    (_, on), (dir_off, off) = npcc[True], npcc[False]
    # same primary response: the nadir ~0.06 Hz down, 3-5 s after the trip (the AGC's first cycles act a little)
    assert on["frequency"]["nadir_hz"] == pytest.approx(off["frequency"]["nadir_hz"], abs=0.01)
    assert 59.90 < off["frequency"]["nadir_hz"] < 59.97 and 7.0 < off["frequency"]["nadir_s"] < 12.0
    # with AGC it comes back to 60 Hz
    assert abs(on["frequency"]["final_hz"] - F0) < 0.01
    # without it settles below, at the deviation the governors and the machines' damping give
    tail = _frequency(dir_off).query("time_s >= 20")
    assert tail.f_hz.std() < 0.002
    deviation = F0 - tail.f_hz.mean()
    expected = _expected_deviation_hz()
    assert deviation == pytest.approx(expected, rel=0.15), (deviation, expected)
    assert F0 - on["frequency"]["final_hz"] < deviation / 5
