"""Dynamic-run aggregation without solvers: the pure pieces, the shared dask pieces they use, the run kind, and a
whole aggregate of a small synthetic dynamic run written with the real writer (dask's in-process scheduler)."""

from __future__ import annotations

import json

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from hpcsim.errors import OutputError
from hpcsim.output import dynamic, frames
from hpcsim.output.aggregate import aggregate_run
from hpcsim.output.parquet import StepWriter
from hpcsim.output.report import build_sections
from hpcsim.output.runinfo import read_run_info

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(11)


def test_dynamic_status():
    assert dynamic.dynamic_status(True, 5.0, 5.0) == "completed"
    assert dynamic.dynamic_status(True, 3.0, 5.0) == "incomplete (t = 3 of 5 s)"
    assert dynamic.dynamic_status(None, 3.5, 5.0) == "incomplete (t = 3.5 of 5 s, no summary.json)"
    assert dynamic.dynamic_status(None, 5.0, 5.0) == "incomplete (t = 5 of 5 s, no summary.json)"
    assert dynamic.dynamic_status(False, 5.0, 5.0) == "failed (t = 5 of 5 s)"


def test_moments_keep_their_precision_around_a_reference():
    x = 60.0 + RNG.normal(0.0, 1e-4, 2000)
    d = x - 60.0
    mean_d, std = frames.moments(pd.Series([len(x)]), pd.Series([d.sum()]), pd.Series([(d * d).sum()]), ddof=0)
    np.testing.assert_allclose(60.0 + mean_d[0], x.mean(), rtol=1e-15)
    np.testing.assert_allclose(std[0], x.std(), rtol=1e-9)
    _, one = frames.moments(pd.Series([1]), pd.Series([0.0]), pd.Series([0.0]), ddof=1)
    assert np.isnan(one[0])


def test_grouped_takes_several_aggregations_of_one_column_and_time_at_finds_the_extreme():
    pdf = pd.DataFrame({"k": ["a", "a", "b", "b", "b"], "time_s": [0.0, 1.0, 0.0, 1.0, 2.0],
                        "v": [2.0, 1.0, 3.0, 5.0, 5.0]})
    df = dd.from_pandas(pdf, npartitions=2)
    with dask.config.set(scheduler="sync"):
        g = frames.grouped(df, ["k"], {"lo": ("v", "min"), "hi": ("v", "max"), "n": ("v", "count")})
        t = frames.time_at(df, g, ["k"], "v", "hi", "t_hi_s").compute().set_index("k")
        g = g.compute().set_index("k")
    assert g.loc["a"].tolist() == [1.0, 2.0, 2] and g.loc["b"].tolist() == [3.0, 5.0, 3]
    assert t["t_hi_s"].to_dict() == {"a": 0.0, "b": 1.0}  # the first time of a tie
    with pytest.raises(ValueError, match="twice"):
        frames.grouped(df, "k", {"x": ("v", "min"), "y": ("v", "min")})


def test_voltage_rows_flag_the_band_and_the_lps():
    df = pd.DataFrame({"time_s": [0.0, 1.0], "feeder": ["f", "f"], "bus": [4, 4], "federate": ["g", "g"],
                       "v_source_pu": [1.0, 1.0], "v_min_pu": [0.96, 0.94], "v_mean_pu": [1.0, 1.0],
                       "v_std_pu": [0.01, 0.01], "v_max_pu": [1.04, 1.03], "p_net_mw": [1.0, 1.0],
                       "q_net_mvar": [0.0, 0.0], "p_der_mw": [0.5, 0.5], "p_gross_mw": [1.5, 1.5],
                       "scale": [2.0, 2.0], "headroom_mw": [0.3, np.nan]})
    out = dynamic.voltage_rows(df, (0.95, 1.05))
    assert out["outside"].tolist() == [False, True] and out["lp"].tolist() == [1, 0]
    assert out["min_v_pu"].tolist() == [0.96, 0.94] and "v_min_pu" not in out


def _synthetic_dynamic_run(run_dir, summary: bool = True):
    """Two feeders (one with two DERs), 3 s of 0.5-s TDS steps, no AGC samples."""
    out = run_dir / "outputs"
    freq = StepWriter(out, "frequency", "transmission")
    der = StepWriter(out, "der", "transmission")
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    f_hz = 60.0 + RNG.normal(0.0, 0.01, len(times))
    for k, t in enumerate(times):
        freq.add(time_s=t, f_hz=f_hz[k], ace_mw=-10.0 * (f_hz[k] - 60.0), load_mult=1.0)
        for name in ("DER_4_01", "DER_4_02"):
            der.add(time_s=t, der=name, feeder="ieee34", bus=4, p_base_mw=0.5, p_pfr_mw=-0.01 * k, p_sfr_mw=0.002,
                    p_mppt_mw=0.8, p_vsm_mw=0.9, p_cap_mw=0.9, p_limit_mw=0.8, p_mw=0.5 - 0.01 * k + 0.002)
    freq.flush(0)
    der.flush(0)
    for bus, feeder in ((4, "ieee34"), (9, "ieee13")):
        fv = StepWriter(out, "feeder_voltage", f"feeder_{bus}")
        steps = StepWriter(out, "steps", f"feeder_{bus}")
        for k, t in enumerate(times[::2]):
            fv.add(time_s=t, feeder=feeder, bus=bus, v_source_pu=1.0, v_min_pu=0.97 - 0.01 * k, v_mean_pu=1.0,
                   v_std_pu=0.01, v_max_pu=1.02, p_net_mw=1.0 + k, q_net_mvar=0.1, p_der_mw=1.0 if bus == 4 else 0.0,
                   p_gross_mw=2.0, scale=10.0, headroom_mw=0.2 if k == 0 else np.nan, solve_s=0.01, vsm_s=0.0,
                   lp_s=0.0)
            steps.add(time_s=t, iterations=1, dv_pu=np.nan, ds_pu=np.nan, compute_s=0.1, exchange_s=0.2,
                      peak_rss_mb=100.0)
            fv.flush(k)
            steps.flush(k)
    desc = {"schema": 2, "study": "syn_dyn", "kind": "dynamic", "case": "ieee14/ieee14_full.xlsx", "stop_s": 3.0,
            "agc": False, "trip": {"gen": "GENROU_2", "t_s": 1.0}, "n_der": 2, "f0_hz": 60.0,
            "feeders": [{"bus": 4}, {"bus": 9}]}
    (run_dir / "run.json").write_text(json.dumps(desc))
    if summary:
        (run_dir / "summary.json").write_text(json.dumps({"study": "syn_dyn", "completed": True}))
    return run_dir, f_hz


def test_synthetic_dynamic_run_aggregates(tmp_path):
    run, f_hz = _synthetic_dynamic_run(tmp_path / "run")
    info = read_run_info(run)
    assert info.kind == "dynamic" and info.dynamic.trip == "GENROU_2 at 1 s" and info.dynamic.n_feeders == 2
    result = aggregate_run(run, "sync", band=(0.95, 1.05))
    m = result.manifest
    assert m["kind"] == "dynamic" and m["status"] == "completed" and m["simulated_s"] == 3.0
    assert m["tables"]["der_totals"]["rows"] == 7 and m["input_rows"]["ace"] == 0
    feeders = pd.read_parquet(result.path("feeders")).set_index("feeder")
    assert feeders.loc["ieee34", "min_v_pu"] == pytest.approx(0.94) and feeders.loc["ieee34", "t_min_s"] == 3.0
    assert feeders.loc["ieee13", "exchanges"] == 4 and feeders.loc["ieee13", "exchanges_outside"] == 1  # 0.94 pu
    assert feeders.loc["ieee34", "lps"] == 1 and feeders.loc["ieee34", "headroom_mean_mw"] == pytest.approx(0.2)
    ders = pd.read_parquet(result.path("der_totals")).sort_values("time_s")
    assert ders["n_der"].tolist() == [2] * 7 and ders["p_base_mw"].tolist() == [1.0] * 7
    np.testing.assert_allclose(ders["p_pfr_mw"], [-0.02 * k for k in range(7)], atol=1e-15)
    stats = pd.read_parquet(result.path("statistics")).set_index("quantity")
    assert stats.index.tolist() == ["frequency_hz", "ace_mw"]  # no AGC samples: no AGC rows
    np.testing.assert_allclose(stats.loc["frequency_hz", ["mean", "std"]].to_numpy(float),
                               [f_hz.mean(), f_hz.std()], rtol=1e-12)
    assert stats.loc["frequency_hz", "t_min_s"] == 0.5 * np.argmin(f_hz)
    fed = pd.read_parquet(result.path("federates"))
    assert fed["role"].tolist() == ["feeders", "feeders"] and fed["steps"].tolist() == [4, 4]
    sections = build_sections(result.folder, m)
    assert [sec.title for sec in sections][:3] == ["Run", "Frequency and AGC", "Feeders over the run"]
    assert ["AGC, trip", "off, GENROU_2 at 1 s"] in sections[0].rows


def test_dynamic_run_kind_and_its_errors(tmp_path):
    run, _ = _synthetic_dynamic_run(tmp_path / "run", summary=False)
    assert read_run_info(run).dynamic.completed is None
    (run / "run.json").unlink()  # the kind then comes from the outputs, but the description is missing
    with pytest.raises(OutputError, match=r"run\.json: no description of this dynamic run \(missing or unreadable\)"):
        read_run_info(run)
    (run / "run.json").write_text(json.dumps({"kind": "quantum"}))
    with pytest.raises(OutputError, match="unknown run kind 'quantum'"):
        read_run_info(run)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"kind": "dynamic", "stop_s": 1.0}))
    with pytest.raises(OutputError, match=r"no co-simulation outputs \(expected .*frequency\|feeder_voltage/"):
        read_run_info(bare)
