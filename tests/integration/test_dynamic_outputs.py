"""``hpcsim aggregate`` / ``hpcsim report`` on a real dynamic run: the tutorial study shortened to 5 s with a
second feeder (IEEE 13 at bus 9), three DERs per feeder, the headroom LPs and the AGC on (about 15 s to run on 2 cores). Every
aggregate is checked against a direct pyarrow / numpy computation on the raw Parquet tables (and the
frequency statistics against ``summary.json``, built by other code); then the figures, the report, the status
of a run without (or with a failed) summary, and bad run folders."""

from __future__ import annotations

import json
import shutil

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hpcsim.output.aggregate import aggregate_run
from hpcsim.output.parquet import read_table

from .helpers import hpcsim, write_study

pytestmark = pytest.mark.integration
STOP_S = 5.0
BAND = (0.95, 1.05)
FIGURES = ("frequency", "ace", "der_power", "feeder_voltage")


@pytest.fixture(scope="module")
def dyn_run(tmp_path_factory):
    """The short dynamic run, aggregated by `hpcsim aggregate --json` (default scheduler: threads)."""
    d = tmp_path_factory.mktemp("dynout")
    study = write_study(d / "short.toml", "dyn_ieee14_ieee34_tutorial.toml", name="dyn_outputs_short",
                        dynamics={"stop_s": STOP_S, "feeders": {"4": "ieee34", "9": "ieee13"},
                                  "ders_per_feeder": 3, "agc": True, "headroom": True})
    r = hpcsim("-q", "run", str(study), "--out", str(d / "run"))
    assert r.returncode == 0, r.stdout + r.stderr
    agg = hpcsim("-q", "aggregate", str(d / "run"), "--json")
    assert agg.returncode == 0, agg.stderr
    return d / "run", json.loads(agg.stdout)


def _raw(run, table: str) -> pa.Table:
    return read_table(run / "outputs", table)


def _agg(run, name: str, keys: list[str]) -> pd.DataFrame:
    return pd.read_parquet(run / "aggregate" / f"{name}.parquet").sort_values(keys).reset_index(drop=True)


def test_the_manifest_describes_the_dynamic_run(dyn_run):
    run, out = dyn_run
    m = out["manifest"]
    assert m["kind"] == "dynamic" and m["status"] == "completed", m
    assert m["simulated_s"] == pytest.approx(STOP_S) and m["stop_s"] == STOP_S
    assert m["n_feeders"] == 2 and m["n_der"] == 6 and m["agc"] is True and m["trip"] is None
    for table in ("frequency", "ace", "der", "feeder_voltage", "steps"):
        assert m["input_rows"][table] == _raw(run, table).num_rows > 0, table
    assert set(m["tables"]) == {"feeder_voltages", "feeders", "der_totals", "statistics", "federates"}
    assert json.loads((run / "aggregate" / "manifest.json").read_text()) == m


def test_feeder_envelope_over_the_run_is_the_raw_extremes(dyn_run):
    run, _ = dyn_run
    raw = _raw(run, "feeder_voltage")
    feeders = _agg(run, "feeders", ["bus"])
    assert feeders["feeder"].tolist() == ["ieee34", "ieee13"] and feeders["bus"].tolist() == [4, 9]
    for r in feeders.itertuples():
        sel = raw.filter(pc.equal(raw["feeder"], r.feeder))
        v_min, v_max = sel["v_min_pu"].to_numpy(), sel["v_max_pu"].to_numpy()
        t = sel["time_s"].to_numpy()
        assert r.min_v_pu == pc.min(sel["v_min_pu"]).as_py() and r.max_v_pu == pc.max(sel["v_max_pu"]).as_py()
        assert r.t_min_s == t[v_min == v_min.min()].min() and r.t_max_s == t[v_max == v_max.max()].min()
        assert r.exchanges == sel.num_rows == STOP_S + 1  # one exchange a second, t = 0 included
        assert r.exchanges_outside == int(((v_min < BAND[0]) | (v_max > BAND[1])).sum())
        np.testing.assert_allclose(r.mean_v_pu, sel["v_mean_pu"].to_numpy().mean(), rtol=1e-13)
        np.testing.assert_allclose([r.p_net_min_mw, r.p_net_max_mw], [pc.min(sel["p_net_mw"]).as_py(),
                                                                      pc.max(sel["p_net_mw"]).as_py()])
        hr = sel["headroom_mw"].to_numpy()
        assert r.lps == int(np.isfinite(hr).sum()) >= 1
        np.testing.assert_allclose(r.headroom_mean_mw, np.nanmean(hr), rtol=1e-13)
    # and the per-exchange table is the raw rows under the steady aggregate's names
    fv = _agg(run, "feeder_voltages", ["time_s", "bus"])
    want = raw.to_pandas().sort_values(["time_s", "bus"]).reset_index(drop=True)
    for ours, theirs in (("min_v_pu", "v_min_pu"), ("mean_v_pu", "v_mean_pu"), ("max_v_pu", "v_max_pu"),
                         ("std_v_pu", "v_std_pu"), ("p_der_mw", "p_der_mw")):
        np.testing.assert_array_equal(fv[ours], want[theirs], err_msg=ours)
    np.testing.assert_array_equal(fv["outside"], (want["v_min_pu"] < BAND[0]) | (want["v_max_pu"] > BAND[1]))


def test_der_totals_are_sums_of_the_der_rows(dyn_run):
    run, _ = dyn_run
    raw = _raw(run, "der")
    cols = ["p_base_mw", "p_pfr_mw", "p_sfr_mw", "p_mw", "p_limit_mw"]
    want = raw.group_by(["time_s", "feeder"]).aggregate([("der", "count"), *((c, "sum") for c in cols)])
    want = want.sort_by([("time_s", "ascending"), ("feeder", "ascending")])
    got = _agg(run, "der_totals", ["time_s", "feeder"])
    assert len(got) == want.num_rows and (got["n_der"] == 3).all()
    np.testing.assert_array_equal(got["n_der"], want["der_count"].to_numpy())
    for c in cols:
        np.testing.assert_allclose(got[c], want[f"{c}_sum"].to_numpy(), rtol=1e-12, atol=1e-15, err_msg=c)
    # the frequency response did something in 5 s of ±2.5 % load steps: PFR and SFR both moved
    assert got["p_pfr_mw"].abs().max() > 0 and got["p_sfr_mw"].abs().max() > 0
    # one total over the run, computed two ways
    np.testing.assert_allclose(got["p_mw"].sum(), pc.sum(raw["p_mw"]).as_py(), rtol=1e-12)


def test_frequency_and_ace_statistics_match_the_raw_tables_and_the_summary(dyn_run):
    run, _ = dyn_run
    stats = pd.read_parquet(run / "aggregate" / "statistics.parquet").set_index("quantity")
    summary = json.loads((run / "summary.json").read_text())
    freq = _raw(run, "frequency").sort_by("time_s")
    ace = _raw(run, "ace").sort_by("time_s")
    for quantity, table, column in (("frequency_hz", freq, "f_hz"), ("ace_mw", freq, "ace_mw"),
                                    ("agc_ace_mw", ace, "ace_mw"), ("acs_mw", ace, "acs_mw")):
        x, t = table[column].to_numpy(), table["time_s"].to_numpy()
        s = stats.loc[quantity]
        assert s["n"] == len(x) and s["min"] == x.min() and s["max"] == x.max(), quantity
        np.testing.assert_allclose([s["mean"], s["std"]], [x.mean(), x.std()], rtol=1e-9, atol=1e-12,
                                   err_msg=quantity)
        assert s["t_min_s"] == t[np.argmin(x)] and s["t_max_s"] == t[np.argmax(x)], quantity
        assert s["t_first_s"] == 0.0 and s["t_last_s"] == pytest.approx(STOP_S)
    f = summary["frequency"]
    s = stats.loc["frequency_hz"]
    np.testing.assert_allclose([s["mean"], s["std"], s["min"], s["max"], s["t_min_s"]],
                               [f["mean"], f["std"], f["min"], f["max"], f["nadir_s"]], rtol=1e-12)
    a, s = summary["ace"], stats.loc["ace_mw"]
    np.testing.assert_allclose([s["mean"], s["std"], s["min"], s["max"]], [a["mean"], a["std"], a["min"], a["max"]],
                               rtol=1e-9, atol=1e-12)


def test_federate_totals_are_the_steps_rows(dyn_run):
    run, _ = dyn_run
    steps = _raw(run, "steps").to_pandas()
    fed = pd.read_parquet(run / "aggregate" / "federates.parquet")
    assert fed["federate"].tolist() == ["transmission", "agc", "feeder_4", "feeder_9"]
    assert fed["role"].tolist() == ["transmission", "agc", "feeders", "feeders"]
    want = steps.groupby("federate").agg(steps=("time_s", "count"), compute_s=("compute_s", "sum"))
    fed = fed.set_index("federate")
    np.testing.assert_array_equal(fed["steps"], want.loc[fed.index, "steps"])
    np.testing.assert_allclose(fed["compute_s"], want.loc[fed.index, "compute_s"], rtol=1e-12)


def test_figures_and_report(dyn_run):
    run, out = dyn_run
    assert set(out["figures"]) == set(FIGURES)
    for name in FIGURES:
        img = mpimg.imread(run / "aggregate" / f"{name}.png")
        assert img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 0.01, name
    r = hpcsim("-q", "report", str(run), "--scheduler", "sync", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    titles = [s["title"] for s in doc["sections"]]
    assert titles[:2] == ["Run", "Frequency and AGC"] and "Feeders over the run" in titles
    assert any(t.startswith("DER output per feeder") for t in titles) and titles[-1].startswith("Time per federate")
    stats = next(s for s in doc["sections"] if s["title"] == "Frequency and AGC")
    nadir = pd.read_parquet(run / "aggregate" / "statistics.parquet").set_index("quantity").loc["frequency_hz", "min"]
    assert stats["rows"][0][4] == f"{nadir:.4f}" and "nadir" in stats["note"]
    text = (run / "report.md").read_text()
    assert "**completed**" in text and "## Feeders over the run" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert sorted(links) == sorted(f"aggregate/{n}.png" for n in FIGURES)
    assert all((run / link).is_file() for link in links)
    svg = hpcsim("-q", "report", str(run), "--reuse", "--format", "svg")
    assert svg.returncode == 0 and "Frequency and AGC" in svg.stdout, svg.stderr
    assert (run / "aggregate" / "frequency.svg").is_file()


def test_status_of_a_run_without_or_with_a_failed_summary(dyn_run, tmp_path):
    run, _ = dyn_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("aggregate", "report.md"))
    (copy / "summary.json").unlink()
    m = aggregate_run(copy, "sync").manifest
    assert m["status"] == f"incomplete (t = {STOP_S:g} of {STOP_S:g} s, no summary.json)"
    (copy / "summary.json").write_text(json.dumps({"study": "x", "completed": False}))
    assert aggregate_run(copy, "sync").manifest["status"] == f"failed (t = {STOP_S:g} of {STOP_S:g} s)"


def _one_line_error(r, *names: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("hpcsim: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(n in lines[0] for n in names), lines[0]


def test_bad_dynamic_run_folders_fail_in_one_line(dyn_run, tmp_path):
    run, _ = dyn_run
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged, ignore=shutil.ignore_patterns("aggregate", "report.md"))
    part = sorted((damaged / "outputs" / "der").rglob("part-*.parquet"))[0]
    part.write_bytes(b"not parquet")
    for cmd in ("aggregate", "report"):
        _one_line_error(hpcsim("-q", cmd, str(damaged)), str(damaged), part.name, "damaged")
    assert not (damaged / "aggregate" / "manifest.json").exists()
    empty = tmp_path / "empty"
    shutil.copytree(run, empty, ignore=shutil.ignore_patterns("outputs", "aggregate", "report.md"))
    _one_line_error(hpcsim("-q", "aggregate", str(empty)), str(empty), "no co-simulation outputs", "frequency")
    torn = tmp_path / "torn"
    shutil.copytree(run, torn, ignore=shutil.ignore_patterns("aggregate", "report.md"))
    (torn / "run.json").write_text("{")
    _one_line_error(hpcsim("-q", "report", str(torn)), str(torn / "run.json"), "dynamic run")
