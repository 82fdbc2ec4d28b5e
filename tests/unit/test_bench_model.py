"""The performance model: fitting from benchmark figures, local predictions, validation and the report."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from hpcsim.bench.fit import fit_model, fit_operating_point, predict_local, validate
from hpcsim.bench.report import markdown
from hpcsim.bench.suite import figures, median_run, spread
from hpcsim.errors import StudyError
from hpcsim.hpc.costs import DEFAULT

pytestmark = pytest.mark.unit


def _run(label="calibration", feeders=126, workers=2, mode="separate", iterations=8, loop_s=15.0, peak=4700.0):
    return {"label": label, "study": "activsg200_ieee8500", "feeders": feeders, "buses": 37, "workers": workers,
            "engine_mode": mode, "steps": 1, "iterations": iterations, "loop_s": loop_s, "wall_s": loop_s + 12,
            "startup_s": 12.0, "coupling": "iterative", "method": "gauss-seidel", "start": "case",
            "peak_rss_mb": peak, "cold_solve_s": 0.094, "warm_solve_s": 0.0177, "clone_overhead_s": 0.002,
            "pf_s": 0.0167, "overhead": 1.1, "imbalance": 1.0}


MEMORY = {"separate": {"per_clone_mb": 33.0}, "shared": {"per_clone_mb": 0.134}}


def _fitted():
    return fit_model(DEFAULT, calibration=_run(), shared=_run("shared", mode="shared") | {"warm_solve_s": 0.04, "cold_solve_s": 0.2},
                     memory=MEMORY, exchange=(1e-3, 20e-6), case_buses=200, feeder_model="ieee8500", source="t")


def test_fit_takes_every_measured_figure_and_derives_the_rank_base_from_the_peak():
    m = _fitted()
    f = m.feeders["ieee8500"]
    assert (f.first_solve_s, f.solve_s, f.overhead_s) == (0.094, 0.0177, 0.002)
    assert (f.shared_first_solve_s, f.shared_solve_s) == (0.2, 0.04)
    assert (f.rss_mb, f.shared_clone_mb) == (33.0, 0.134)
    assert (m.exchange_latency_s, m.per_value_s) == (1e-3, 20e-6)
    assert m.transmission(200, 0).pf_s == pytest.approx(0.0167)
    assert m.transmission(2000, 0).pf_s == pytest.approx(DEFAULT.transmission(2000, 0).pf_s)  # other sizes kept
    # the fitted base reproduces the calibration run's own peak exactly
    assert predict_local(m, _run(), 200, "ieee8500")["peak_rss_mb"] == pytest.approx(4700.0)
    assert m.source == "t" and m.fitted["calibration"]["feeders"] == 126


def test_local_prediction_is_cold_first_iteration_plus_warm_iterations_plus_power_flows():
    m = _fitted()
    run = _run(feeders=63, workers=1, iterations=5)
    k, f = 63, m.feeders["ieee8500"]
    pf = m.transmission(200, 63).pf_s
    it = k * (f.solve_s + f.overhead_s) + pf + m.exchange_s(63)
    expect = k * (f.first_solve_s - f.solve_s) + 5 * it + pf
    assert predict_local(m, run, 200, "ieee8500")["loop_s"] == pytest.approx(expect)
    shared = predict_local(m, run | {"engine_mode": "shared"}, 200, "ieee8500")
    assert shared["peak_rss_mb"] < predict_local(m, run, 200, "ieee8500")["peak_rss_mb"] / 5


def _operating_point_run(**changes):
    # 2 workers, 6,000 clones on 900 buses, 3 iterations: 18,000 clone-iterations whose solves (500 s of the
    # groups' rows) include 900 start solves of 0.2 s each
    return _run("sg2000_full", feeders=6_000, mode="shared", iterations=3, peak=2_000.0) | {
        "buses": 900, "start": "solved", "operating_point": True, "feeder_solve_s": 500.0,
        "clone_iterations": 18_000, "start_solves": 900, "start_solve_s": 0.2} | changes


def test_the_operating_point_fit_takes_the_loop_re_solve_the_start_solve_and_a_clone_s_memory_in_a_run():
    m = fit_operating_point(DEFAULT, _operating_point_run(), "ieee8500", 2000)
    f = m.feeders["ieee8500"]
    assert f.shared_solve_op_s == pytest.approx((500.0 - 900 * 0.2) / 18_000)  # the start solves taken out
    assert f.start_solve_s == 0.2
    # the memory left once the transmission, the broker and two ranks' base and engine are counted, per clone
    rest = (2_000.0 - DEFAULT.transmission(2000, 6_000).rss_mb - DEFAULT.broker_mb(2 * 6_000 + 900)
            - 2 * (DEFAULT.rank_base_mb + DEFAULT.feeders["ieee8500"].rss_mb))
    assert f.shared_clone_mb == pytest.approx(rest / 6_000)
    # so the fitted model gives the run's own peak back, and prices its loop at the operating-point re-solve
    run = _operating_point_run()
    assert predict_local(m, run, 2000, "ieee8500")["peak_rss_mb"] == pytest.approx(2_000.0)
    far = predict_local(m, run | {"operating_point": False}, 2000, "ieee8500")["loop_s"]
    near = predict_local(m, run, 2000, "ieee8500")["loop_s"]
    assert near < far and far - near == pytest.approx(3 * 3_000 * (f.shared_solve_s - f.shared_solve_op_s))
    # without memory: the clone's memory stays the memory benchmark's
    kept = fit_operating_point(DEFAULT, _operating_point_run(), "ieee8500", 2000, memory=False)
    assert kept.feeders["ieee8500"].shared_clone_mb == DEFAULT.feeders["ieee8500"].shared_clone_mb


@pytest.mark.parametrize("changes", [{"engine_mode": "separate"}, {"operating_point": False}])
def test_the_operating_point_fit_refuses_a_run_that_is_not_at_the_operating_point_on_shared_engines(changes):
    with pytest.raises(StudyError, match="shared-engine run with residual_load"):
        fit_operating_point(DEFAULT, _operating_point_run(**changes), "ieee8500", 2000)


def test_a_solved_start_moves_the_first_solves_into_the_start_up_one_per_bus():
    m = _fitted()
    case = _run(feeders=63, workers=1, iterations=5)
    solved = case | {"start": "solved"}
    f = m.feeders["ieee8500"]
    a, b = predict_local(m, case, 200, "ieee8500"), predict_local(m, solved, 200, "ieee8500")
    assert a["loop_s"] - b["loop_s"] == pytest.approx(63 * (f.first_solve_s - f.solve_s))
    # 37 buses on the one worker, each solved once from the compiled state, beside ANDES's case load
    tload = m.transmission(200, 63).load_s
    assert b["startup_s"] == pytest.approx(max(tload, f.compile_s * 63 + 37 * f.start_solve_s) + m.federation_start_s)
    assert b["wall_s"] == pytest.approx(b["startup_s"] + b["loop_s"])


def test_validation_predicts_the_iterations_from_the_law_as_well_as_from_the_run():
    m = _fitted()
    run = _run("a", feeders=63, workers=1, iterations=5) | {"method": "newton", "start": "solved"}
    row = validate(m, [run], {"activsg200_ieee8500": 200}, "ieee8500")[0]
    law = m.iterations_for("iterative", 37, "newton")
    assert row["iterations"] == 5 and row["iterations_predicted"] == law
    per_it = m.iteration_s("ieee8500", "separate", 63, 63, 200)
    assert row["loop_model_s_predicted"] - row["loop_s_predicted"] == pytest.approx((law - 5) * per_it)
    assert row["wall_s_predicted"] == pytest.approx(row["startup_s_predicted"] + row["loop_model_s_predicted"])


def test_validation_reports_signed_errors_and_the_25_percent_verdict():
    m = _fitted()
    good = _run("a", feeders=63, workers=1, iterations=5)
    pred = predict_local(m, good, 200, "ieee8500")
    rows = validate(m, [good | {"loop_s": pred["loop_s"] * 1.2, "peak_rss_mb": pred["peak_rss_mb"]},
                        good | {"label": "b", "loop_s": pred["loop_s"] / 2, "peak_rss_mb": pred["peak_rss_mb"]}],
                    {"activsg200_ieee8500": 200}, "ieee8500")
    assert rows[0]["loop_s_error"] == pytest.approx(1 / 1.2 - 1) and rows[0]["within"]
    assert rows[1]["loop_s_error"] == pytest.approx(1.0) and not rows[1]["within"]


def test_figures_and_report_from_a_synthetic_result():
    runs = {"calibration": [_run(loop_s=10.0), _run(loop_s=12.0), _run(loop_s=11.0)],
            "strong_1": [_run("strong_1", workers=1, loop_s=19.0)] * 3,
            "weak_1": [_run("weak_1", feeders=63, workers=1, loop_s=10.5)] * 3}
    result = {"runs": {k: {"purpose": "", "repeats": v} for k, v in runs.items()},
              "memory": {"separate": {"per_clone_mb": 33.0}, "shared": {"per_clone_mb": 0.132}},
              "exchange": [{"n_values": 126, "sub_brokers": s, "min_s": 1e-3, "median_s": 2e-3, "max_s": 3e-3}
                           for s in (0, 2)]}
    fig = figures(result)
    assert fig["strong_speedup"]["median"] == pytest.approx(19.0 / 11.0)
    assert fig["strong_efficiency"]["max"] == pytest.approx(19.0 / 10.0 / 2)
    assert fig["weak_efficiency"]["median"] == pytest.approx(1.0)  # both runs at 1.1 x their ideal
    assert fig["memory_ratio_separate_to_shared"] == pytest.approx(250.0)
    assert median_run(runs["calibration"])["loop_s"] == 11.0
    assert math.isnan(spread([math.nan])["median"])
    result |= {"figures": fig, "machine": {"cpu": "x", "cores": 2, "memory_gb": 24, "python": "3.11",
                                           "packages": {"helics": "3"}, "load_average_start": (1.0, 1, 1),
                                           "load_average_end": (1.5, 1, 1)},
               "scale": {"repeats": 3}, "elapsed_s": 60.0, "exchange_fit": {"latency_ms": 1.0, "per_value_us": 20},
               "validation": validate(replace(_fitted()), [runs["weak_1"][0]], {"activsg200_ieee8500": 200},
                                      "ieee8500")}
    md = markdown(result)
    assert "| coupling overhead" in md and "**1.1**" in md and "×250" in md
    assert "runs predicted within 25 %" in md
