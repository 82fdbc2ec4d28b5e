"""Figures of an aggregated run, from small synthetic aggregate tables (no solvers): formats and resolution,
identical clones collapsed with a count, the band in the legend, titles and legends inside the figure and clear
of the data, ∞ / missing mismatches, and large runs drawn quickly."""

from __future__ import annotations

import itertools
import time

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hpcsim.output import plots

pytestmark = pytest.mark.unit
BAND = (0.95, 1.05)


def synthetic(n_buses: int = 37, steps: int = 1, k_max: int = 8, seed: int = 3, node_stats: bool = False,
              iterations: int = 8, first_bus: int = 3) -> dict[str, pd.DataFrame]:
    """Aggregate tables of a run of ``n_buses`` boundary buses with 2..k_max identical clones each (schema of
    docs/outputs.md with dv_pu / ds_pu)."""
    rng = np.random.default_rng(seed)
    bus = first_bus + np.arange(n_buses) * 3
    k = rng.integers(2, k_max + 1, n_buses)
    times = np.arange(steps) * 3600.0
    mult = 0.8 + 0.2 * np.sin(np.arange(steps) / 3.0)
    base_min, base_max = rng.uniform(0.92, 0.945, n_buses), rng.uniform(1.045, 1.065, n_buses)
    b, fv, sysrows = [], [], []
    for t, m in zip(times, mult):
        pd_mw = k * rng.uniform(7.0, 10.7, n_buses) if t == 0 else b[0]["pd_case_mw"].to_numpy()
        frame = pd.DataFrame({"time_s": t, "bus": bus, "clones": k.astype("int32"), "iteration": 3, "v_pu": 1.02,
                              "angle_deg": -5.0, "p_mw": k * 12.0 * m, "q_mvar": k * 1.3 * m, "n_feeders": k,
                              "feeders_p_mw": k * 12.0 * m, "feeders_q_mvar": k * 1.3 * m, "pd_case_mw": pd_mw,
                              "qd_case_mvar": pd_mw * 0.28, "vm_case_pu": 1.02 - 0.001 * (np.arange(n_buses) % 7)})
        b.append(frame)
        sysrows.append({"time_s": t, "n_buses": n_buses, "p_dist_mw": frame["p_mw"].sum(),
                        "q_dist_mvar": frame["q_mvar"].sum(), "p_case_nominal_mw": pd_mw.sum(),
                        "q_case_nominal_mvar": pd_mw.sum() * 0.28, "load_mult": m})
        for i in range(n_buses):
            for j in range(k[i]):
                fv.append((t, f"dcase_tbdry_{bus[i]}_feeder_{j + 1}", bus[i], f"feeders_{j % 2:03d}",
                           base_min[i] - 0.03 * (m - 0.8), 1.008 - 0.01 * (m - 0.8), base_max[i]))
    fv = pd.DataFrame(fv, columns=["time_s", "feeder", "bus", "federate", "min_v_pu", "mean_v_pu", "max_v_pu"])
    fv["v_source_pu"] = 1.02
    fv["std_v_pu"] = 0.012 if node_stats else np.nan
    fv["n_nodes"] = pd.array([8531 if node_stats else pd.NA] * len(fv), "Int64")
    fv["n_outside"] = pd.array([40 if node_stats else pd.NA] * len(fv), "Int64")
    fv["source"] = "node_voltages" if node_stats else "feeders"
    its = []
    for t in times:
        for i in range(iterations + 1):
            its.append({"time_s": t, "iteration": i, "dv_pu": np.inf if i == 0 else 0.5 * 10.0 ** -i,
                        "ds_pu": np.nan if i == 0 else 0.07 * 10.0 ** -i, "solve_s": 0.01})
    its = pd.DataFrame(its)
    final = its.groupby("time_s").last().reset_index()
    st = pd.DataFrame({"time_s": times, "iterations": pd.array([iterations] * steps, "Int64"),
                       "dv_pu": final["dv_pu"], "ds_pu": final["ds_pu"], "federates": 3,
                       "feeders_compute_s": 1.0})
    fed = pd.DataFrame({"federate": ["transmission", "feeders_000", "feeders_001"],
                        "role": ["transmission", "feeders", "feeders"], "steps": steps, "iterations": steps * iterations,
                        "compute_s": [0.2, 25.0, 26.0], "exchange_s": [26.5, 2.0, 1.0], "peak_rss_mb": 2000.0})
    system = pd.DataFrame(sysrows)
    system["p_case_mw"] = system["p_case_nominal_mw"] * system["load_mult"]
    system["q_case_mvar"] = system["q_case_nominal_mvar"] * system["load_mult"]
    system["p_ratio"] = system["p_dist_mw"] / system["p_case_mw"]
    return {"boundary": pd.concat(b, ignore_index=True), "feeder_voltages": fv, "steps": st, "iterations": its,
            "federates": fed, "system": system}


def write(tables: dict[str, pd.DataFrame], tmp_path) -> tuple:
    agg = tmp_path / "aggregate"
    agg.mkdir()
    for name, df in tables.items():
        df.to_parquet(agg / f"{name}.parquet", index=False)
    return agg, {"study": "synthetic", "band_pu": list(BAND), "tolerance": 1e-6, "coupling": "iterative"}


def figures(t: dict[str, pd.DataFrame], study: str = "synthetic", band=BAND, coupling: str = "iterative") -> dict:
    return {"voltage_envelope": plots.voltage_envelope_figure(t["feeder_voltages"], band, study),
            "boundary_power": plots.boundary_power_figure(t["boundary"], t["system"], study),
            "boundary_voltages": plots.boundary_voltage_figure(t["boundary"], band, study),
            "convergence": plots.convergence_figure(t["steps"], t["iterations"], study, 1e-6, coupling),
            "time_breakdown": plots.time_breakdown_figure(t["federates"], study)}


def drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def legends(fig) -> list:
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in legends(fig) for t in leg.get_texts()]


# --- pure helpers -------------------------------------------------------------------------------------------


def test_126_identical_clones_collapse_into_37_entries_with_their_counts():
    fv = synthetic(37, k_max=6)["feeder_voltages"]
    assert len(fv) > 37
    c = plots.collapse_identical(fv)
    assert len(c) == 37 and c["count"].sum() == len(fv)
    assert (c["n_buses"] == 1).all()
    assert c["min_v_pu"].is_monotonic_increasing  # lowest first
    per_bus = fv.groupby("bus").size()
    assert dict(zip(c["bus"], c["count"])) == per_bus.to_dict()
    row = c.iloc[0]
    assert plots.group_label(row.feeder, row.bus, row["count"], row.n_buses) == f"bus {row.bus} (×{row['count']})"


def test_collapse_tolerates_rounding_noise_but_not_real_differences():
    fv = pd.DataFrame({"time_s": 0.0, "feeder": list("abcd"), "bus": [1, 1, 1, 2],
                       "min_v_pu": [0.93, 0.93 + 1e-10, 0.93 + 2e-4, 0.93], "mean_v_pu": 1.0, "max_v_pu": 1.05,
                       "std_v_pu": np.nan})
    c = plots.collapse_identical(fv).set_index("feeder")
    assert c.loc["a", "count"] == 3 and c.loc["a", "n_buses"] == 2  # a, b and d agree to 1e-6 (d on another bus)
    assert c.loc["c", "count"] == 1
    assert plots.group_label("a", 1, 3, 2) == "bus 1 + 1 more (×3)"
    assert plots.group_label("c", 1, 1) == "c"


def test_clones_differing_in_one_step_are_not_identical():
    fv = synthetic(2, steps=3, k_max=2)["feeder_voltages"]
    fv.loc[(fv["feeder"] == "dcase_tbdry_3_feeder_2") & (fv["time_s"] == 3600.0), "min_v_pu"] -= 0.01
    g = plots.clone_groups(fv)
    assert g["dcase_tbdry_3_feeder_1"] != g["dcase_tbdry_3_feeder_2"]
    assert g["dcase_tbdry_6_feeder_1"] == g["dcase_tbdry_6_feeder_2"]
    assert len(plots.collapse_identical(fv)) == 3 * 3  # three entries at each of the three steps


def test_case_load_follows_the_load_profile_or_says_it_is_nominal():
    t = synthetic(3, steps=4)
    b, known = plots.case_load_at(t["boundary"], t["system"])
    assert known
    m = b["time_s"].map(t["system"].set_index("time_s")["load_mult"])
    np.testing.assert_allclose(b["pd_mw"], b["pd_case_mw"] * m)
    b, known = plots.case_load_at(t["boundary"], None)
    assert not known and (b["pd_mw"] == b["pd_case_mw"]).all()


def test_wrap_title_breaks_long_names_to_the_figure_width():
    text = "x" * 300 + ": feeder node voltages"
    lines = plots.wrap_title(text, 11.0, 12.0).split("\n")
    assert len(lines) > 2 and max(map(len, lines)) <= int(11.0 * 72 / (0.62 * 12.0))


# --- figures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_run_writes_every_figure_in_the_format(tmp_path, fmt, magic):
    agg, manifest = write(synthetic(5), tmp_path)
    out = plots.plot_run(agg, manifest, fmt=fmt, dpi=60)
    assert set(out) == {"voltage_envelope", "boundary_power", "boundary_voltages", "convergence", "time_breakdown"}
    for name, path in out.items():
        assert path == agg / f"{name}.{fmt}" and path.read_bytes().startswith(magic)


@pytest.mark.parametrize("dpi", [50, 130])
def test_png_pixels_are_figure_size_times_dpi(tmp_path, dpi):
    t = synthetic(6)
    agg, manifest = write(t, tmp_path)
    out = plots.plot_run(agg, manifest, fmt="png", dpi=dpi)
    for name, fig in figures(t).items():
        w_in, h_in = fig.get_size_inches()
        h_px, w_px = mpimg.imread(out[name]).shape[:2]
        assert abs(w_px - w_in * dpi) <= 1 and abs(h_px - h_in * dpi) <= 1, name


@pytest.mark.parametrize("band", [(0.95, 1.05), (0.9, 1.1)])
@pytest.mark.parametrize("steps", [1, 24])
def test_the_band_is_in_the_voltage_legend(band, steps):
    fig = plots.voltage_envelope_figure(synthetic(8, steps=steps)["feeder_voltages"], band, "s")
    assert f"band {band[0]:g}–{band[1]:g} pu" in legend_texts(fig)


def test_snapshot_bars_are_labelled_with_the_clone_counts():
    t = synthetic(37, k_max=6)
    fig = plots.voltage_envelope_figure(t["feeder_voltages"], BAND, "s")
    bars = fig.axes[1]
    labels = [tick.get_text() for tick in bars.get_yticklabels()]
    assert len(labels) == plots.LOWEST_GROUPS and all("(×" in s for s in labels)
    assert f"of {37}" in bars.get_title()


@pytest.mark.parametrize("steps", [1, 24])
def test_titles_and_legends_stay_inside_the_figure_and_off_the_data(steps):
    study = "a_very_long_study_name_without_spaces_" * 6 + " and with words" * 10
    tables = synthetic(40, steps=steps, first_bus=2003)  # wide bus labels squeeze the axes and their titles
    for name, fig in figures(tables, study=study).items():
        renderer = drawn(fig)
        page = fig.bbox
        title = fig._suptitle.get_window_extent(renderer)
        assert page.x0 - 1 <= title.x0 and title.x1 <= page.x1 + 1 and title.y1 <= page.y1 + 1, name
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        for leg in legends(fig):
            box = leg.get_window_extent(renderer)
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0, name
            assert not any(box.overlaps(ax) for ax in boxes), f"{name}: legend over an axes"
            assert not box.overlaps(title), name
        for ax in fig.axes:  # titles, labels, tick labels, annotations, as drawn: nothing clipped at the edges
            box = ax.get_tightbbox(renderer)
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, f"{name}: {ax.get_title()!r} clipped"
            assert page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, f"{name}: {ax.get_title()!r} clipped"
        for ax in fig.axes:  # tick labels (bus and feeder names) do not run into each other
            ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
            assert not any(a.overlaps(b) for a, b in itertools.pairwise(ticks)), name


def test_infinite_and_missing_mismatches_are_marked():
    t = synthetic(3, steps=1)
    fig = plots.convergence_figure(t["steps"], t["iterations"], "s", 1e-6, "iterative")
    texts = legend_texts(fig)
    assert any("∞" in s for s in texts) and any("missing" in s for s in texts)
    assert any("pu of 100 MVA" in s for s in texts) and "tolerance 1e-06" in texts
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "pu" in ax.get_ylabel()
    ymin, ymax = ax.get_ylim()
    assert ymin < 1e-6 < ymax  # the tolerance is on the axis


def test_multi_step_convergence_with_unfinished_steps_and_inf_values():
    t = synthetic(3, steps=6)
    s = t["steps"].copy()
    s.loc[0, "dv_pu"] = np.inf  # loose coupling: no previous step
    s.loc[5, ["iterations", "dv_pu", "ds_pu"]] = [pd.NA, np.nan, np.nan]  # the run died in the last step
    for coupling in ("iterative", "loose"):
        fig = plots.convergence_figure(s, t["iterations"], "s", 1e-6, coupling)
        drawn(fig)
        texts = legend_texts(fig)
        assert any("∞" in x for x in texts) and "step not finished" in texts
        assert ("tolerance 1e-06" in texts) == (coupling == "iterative")
    all_nan = s.assign(dv_pu=np.nan, ds_pu=np.nan)
    drawn(plots.convergence_figure(all_nan, None, "s", None, None))
    one = synthetic(2, steps=1, iterations=0)  # a snapshot with a single solve (no exchange): ΔV ∞, ΔS missing
    fig = plots.convergence_figure(one["steps"], one["iterations"], "s", 1e-6, "iterative")
    drawn(fig)
    assert any("∞" in x for x in legend_texts(fig))


def test_boundary_power_shows_case_load_and_the_median_ratio():
    t = synthetic(37)
    fig = plots.boundary_power_figure(t["boundary"], t["system"], "s")
    b = t["boundary"]
    mult = t["system"]["load_mult"].iloc[0]  # the case load of the step: PD × load profile
    median = (b["p_mw"] / (b["pd_case_mw"] * mult)).median()
    texts = legend_texts(fig)
    assert f"P vs PD (MW): median ratio {median:.2f}" in texts and "PD case (MW)" in texts
    assert any("1 : 1" in x for x in texts)
    assert f"{(b['p_mw'].sum() / b['pd_case_mw'].sum() / mult):.2f} × PD" in fig.get_suptitle()
    # several steps: totals over time against the case × load profile
    t = synthetic(37, steps=24)
    fig = plots.boundary_power_figure(t["boundary"], t["system"], "s")
    assert "PD case × load profile (MW)" in legend_texts(fig)
    # no case loads: still drawn
    b = t["boundary"].assign(pd_case_mw=np.nan, qd_case_mvar=np.nan)
    fig = plots.boundary_power_figure(b, t["system"], "s")
    drawn(fig)
    assert "case PD/QD unknown" in fig.get_suptitle()


def test_ten_thousand_feeders_draw_in_a_few_seconds(tmp_path):
    t = synthetic(1500, k_max=12, seed=1, node_stats=True)
    assert len(t["feeder_voltages"]) >= 10_000
    agg, manifest = write(t, tmp_path)
    start = time.perf_counter()
    plots.plot_run(agg, manifest, fmt="png", dpi=80)
    assert time.perf_counter() - start < 10.0


def test_boundary_voltages_against_the_case_name_the_worst_bus():
    t = synthetic(40)
    b = t["boundary"].copy()
    b.loc[b["bus"] == b["bus"].iloc[5], "v_pu"] = 1.071  # one bus pushed 0.05+ pu off the case's VM
    fig = plots.boundary_voltage_figure(b, BAND, "s")
    worst = int(b["bus"].iloc[5])
    title = fig.axes[1].get_title()
    expected = 1.071 - float(b["vm_case_pu"].iloc[5])
    assert f"max |V − VM| {expected:.2g} pu (bus {worst})" in title
    assert "case's published VM" in legend_texts(fig)
    no_case = plots.boundary_voltage_figure(b.drop(columns=["vm_case_pu"]), BAND, "s")
    assert "unknown" in no_case.axes[1].get_title()
