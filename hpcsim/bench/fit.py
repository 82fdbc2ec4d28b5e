"""Fit the cost model (:class:`hpcsim.hpc.costs.CostModel`) to benchmark measurements, and check it.

Fit (from the calibration runs and the micro-benchmarks of one ``hpcsim bench``):

- per clone: cold first solve, warm re-solve and the overhead outside OpenDSS from the calibration run with
  separate engines; the shared-engine re-solve from the same study with shared engines;
- memory: one engine and one shared clone from :mod:`hpcsim.bench.memory`; the feeder-rank base from the
  calibration run's peak: (peak − transmission federate − broker − clones × engine) / workers;
- the ANDES power flow of the calibration case from its runs (other case sizes keep the built-in points);
- the HELICS exchange: latency + per value, least squares over :mod:`hpcsim.bench.exchange` (flat broker).

Check: :func:`predict_local` predicts the coupling loop, the start-up and the peak memory of a local run and
:func:`validate` compares them with runs that were *not* used in the fit — once given the run's own iteration
count (the per-iteration costs alone) and once with the model's iteration law (the model alone, as a plan).

    loop = I·(k·(t_warm + t_ovh) + t_pf + t_exchange(n)) + steps·t_pf  [+ k·(t_cold − t_warm), start not solved]
    start-up = max(t_load, t_compile + b·t_start) + t_federation       [start "solved"]
    memory = transmission + W · rank(k) + broker(2n + buses)

with k = ceil(n / W) clones and b of the boundary buses in the busiest of W workers, I coupling iterations in
all.

Operating point (:func:`fit_operating_point`, from a run of a study at the case's operating point — the suite's
``newton_sg2000``, or any finished run folder, ``hpcsim bench --fit RUN``): the shared-engine re-solve of such
studies (their voltages move ~1e-4 pu, the calibration's ~1e-2) and the start solve per boundary bus.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hpcsim.errors import StudyError
from hpcsim.hpc.costs import CostModel

TOLERANCE = 0.25  # predictions must be within 25 % of the measured figures


def fit_model(base: CostModel, *, calibration: dict, shared: dict | None, memory: dict[str, dict],
              exchange: tuple[float, float] | None, case_buses: int, feeder_model: str, source: str,
              iterations: dict[str, list[tuple[int, int]]] | None = None) -> CostModel:
    """A copy of ``base`` with the measured figures (see module docstring); ``calibration``/``shared`` are
    :func:`hpcsim.bench.runs.run_figures` dicts, ``memory`` maps engine mode -> a memory measurement;
    ``iterations``: per coupling method, (boundary buses, iterations) of measured runs — merged into the
    model's iteration points (a measured size replaces the built-in point of that size)."""
    f, _ = base.feeder(feeder_model)
    changes = {"first_solve_s": calibration["cold_solve_s"], "solve_s": calibration["warm_solve_s"],
               "overhead_s": calibration["clone_overhead_s"]}
    if shared is not None:
        changes["shared_solve_s"] = shared["warm_solve_s"]
        changes["shared_first_solve_s"] = shared["cold_solve_s"]
    if "separate" in memory:
        changes["rss_mb"] = memory["separate"]["per_clone_mb"]
    if "shared" in memory:
        changes["shared_clone_mb"] = memory["shared"]["per_clone_mb"]
    model = base.with_feeder(feeder_model, **changes)
    points = tuple((b, calibration["pf_s"], load, rss) if b == case_buses else (b, pf, load, rss)
                   for b, pf, load, rss in base.transmission_points)
    model = replace(model, transmission_points=points)
    if exchange is not None:
        model = replace(model, exchange_latency_s=exchange[0], per_value_s=exchange[1])
    if iterations:
        merged = {m: dict(pts) for m, pts in model.iteration_points.items()}
        for method, pts in iterations.items():
            merged.setdefault(method, {}).update(dict(pts))
        model = replace(model, iteration_points={m: tuple(sorted(p.items())) for m, p in merged.items() if p})
    n, w = calibration["feeders"], calibration["workers"]
    rest = (calibration["peak_rss_mb"] - model.transmission(case_buses, n).rss_mb
            - model.broker_mb(2 * n + calibration["buses"]) - n * model.feeder(feeder_model)[0].rss_mb)
    if rest > 0:
        model = replace(model, rank_base_mb=rest / w)
    fitted = {"calibration": {k: calibration[k] for k in ("study", "feeders", "workers", "iterations", "loop_s")},
              "feeder": {k: getattr(model.feeder(feeder_model)[0], k) for k in vars(f)},
              "rank_base_mb": model.rank_base_mb, "exchange": exchange}
    return replace(model, source=source, fitted=fitted)


def fit_operating_point(model: CostModel, run: dict, feeder_model: str, case_buses: int, memory: bool = True,
                        source: str | None = None) -> CostModel:
    """A copy of ``model`` whose operating-point figures come from ``run`` (a :func:`hpcsim.bench.runs.run_figures`
    dict of a shared-engine study with ``residual_load``): the re-solve per clone and iteration of its coupling
    loop (its start solves taken out: they belong to the start-up) and its start solve per bus; ``memory``: also
    a clone's memory in a run — (peak − transmission − broker − W·(rank base + engine)) / clones: its state plus
    what a run keeps per clone (warm-start and control states, buffered rows), more than the memory
    benchmark's bare state. Fit memory on a run whose clones dominate its memory (thousands)."""
    if run["engine_mode"] != "shared" or not run["operating_point"]:
        raise StudyError(f"{run['label']}: fitting the operating-point costs needs a shared-engine run with "
                         f"residual_load (this one: {run['engine_mode']} engines, residual_load "
                         f"{str(run['operating_point']).lower()})")
    starts = run["start_solves"] * run["start_solve_s"] if run["start_solves"] else 0.0
    changes = {"shared_solve_op_s": (run["feeder_solve_s"] - starts) / max(run["clone_iterations"], 1)}
    if run["start_solves"]:
        changes["start_solve_s"] = run["start_solve_s"]
    if memory:
        n, w = run["feeders"], run["workers"]
        rest = (run["peak_rss_mb"] - model.transmission(case_buses, n).rss_mb - model.broker_mb(2 * n + run["buses"])
                - w * (model.rank_base_mb + model.feeder(feeder_model)[0].rss_mb))
        if rest > 0:
            changes["shared_clone_mb"] = rest / n
    fitted = model.with_feeder(feeder_model, **changes)
    record = {**model.fitted, "operating_point": {k: run[k] for k in ("label", "study", "feeders", "buses",
                                                                      "iterations", "loop_s")} | changes}
    return replace(fitted, fitted=record, source=source or model.source)


def predict_local(model: CostModel, run: dict, case_buses: int, feeder_model: str,
                  iterations: int | None = None) -> dict:
    """Predicted coupling loop, start-up and wall (s) and peak memory (MB) of a local run with ``run``'s shape;
    ``iterations`` (all steps together) defaults to the run's own count."""
    n, w, mode = run["feeders"], run["workers"], run["engine_mode"]
    k = math.ceil(n / w)
    its = run["iterations"] if iterations is None else iterations
    tcost = model.transmission(case_buses, n)
    startup, first_extra = model.startup_s(feeder_model, mode, run.get("start", "case"), k,
                                           model.buses_per_rank(run["buses"], w, k), case_buses, n)
    loop = (first_extra + its * model.iteration_s(feeder_model, mode, k, n, case_buses, run.get("operating_point", False))
            + run["steps"] * tcost.pf_s)
    mem = tcost.rss_mb + model.ranks_mb(feeder_model, mode, w, n) + model.broker_mb(2 * n + run["buses"])
    return {"loop_s": loop, "startup_s": startup, "wall_s": startup + loop, "peak_rss_mb": mem}


def validate(model: CostModel, runs: list[dict], case_buses: dict[str, int], feeder_model: str) -> list[dict]:
    """For each run (not used in the fit): predicted vs measured iterations, loop per iteration, loop, start-up,
    wall and peak memory, with relative errors. The loop is predicted twice: with the run's own iteration count
    (``loop_s``: the per-iteration costs alone) and with the model's iteration law (``loop_model_s``, as
    ``hpcsim plan`` does); ``wall_s`` uses the law too — the prediction from the model alone."""
    rows = []
    for run in runs:
        buses = case_buses[run["study"]]
        its = run["iterations"]
        its_model = run["steps"] * model.iterations_for(run.get("coupling", "iterative"), run["buses"],
                                                        run.get("method", "gauss-seidel"))
        pred = predict_local(model, run, buses, feeder_model)
        alone = predict_local(model, run, buses, feeder_model, iterations=its_model)
        row = {"label": run["label"], "feeders": run["feeders"], "workers": run["workers"],
               "engine_mode": run["engine_mode"], "iterations": its, "iterations_predicted": its_model}
        measured = {"loop_s": run["loop_s"], "loop_model_s": run["loop_s"], "startup_s": run["startup_s"],
                    "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"]}
        predicted = {"loop_s": pred["loop_s"], "loop_model_s": alone["loop_s"], "startup_s": alone["startup_s"],
                     "wall_s": alone["wall_s"], "peak_rss_mb": alone["peak_rss_mb"]}
        for key in measured:
            row[f"{key}_measured"] = measured[key]
            row[f"{key}_predicted"] = predicted[key]
            row[f"{key}_error"] = predicted[key] / measured[key] - 1.0 if measured[key] else math.nan
        row["within"] = all(abs(row[f"{k}_error"]) <= TOLERANCE for k in ("loop_s", "peak_rss_mb"))
        row["within_alone"] = all(abs(row[f"{k}_error"]) <= TOLERANCE for k in ("wall_s", "peak_rss_mb"))
        rows.append(row)
    return rows
