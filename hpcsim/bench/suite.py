"""``hpcsim bench``: the benchmark suite, each figure a ratio to an ideal measured in the same run.

Runs (real brokers, ANDES and OpenDSS; each configuration ``repeats`` times, figures as min/median/max):

=============  ===========================================================  ==================================
name           what                                                         used for
=============  ===========================================================  ==================================
calibration    ACTIVSg200, 126 IEEE 8500 feeders, 2 workers, separate       coupling overhead; model fit
shared         the same with shared engines                                 shared re-solve cost; model fit
strong_1       the same study, 1 worker                                     strong scaling; model check
weak_1         ~63 feeders (first buses), 1 worker                          weak scaling (vs calibration); check
bus8           3 feeders (the ANL reference run), 2 workers                 model check (small)
sg2000         ACTIVSg2000, first 40 buses, shared, at the operating point  operating-point costs; model fit
gs_126         the 126-feeder study as shipped (engines auto), Gauss–Seidel  coupling methods, iteration law
newton_126     the same, Newton                                             coupling methods, iteration law
gs_sg2000      ACTIVSg2000, first 40 buses, as shipped, Gauss–Seidel         coupling methods (full), law
newton_sg2000  the same, Newton                                             coupling methods (full), law
=============  ===========================================================  ==================================

plus memory per clone in both engine modes (:mod:`hpcsim.bench.memory`) and the HELICS exchange per
iteration, flat vs root + 2 sub-brokers (:mod:`hpcsim.bench.exchange`). Results: ``<out>/bench.json``,
``<out>/bench.md`` and the fitted ``<out>/model.json`` (``hpcsim plan --predict --model``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import psutil

from hpcsim.bench import exchange, memory
from hpcsim.bench.exchange import fit_exchange
from hpcsim.bench.exchange_nodes import compare_layouts
from hpcsim.bench.fit import fit_model, fit_operating_point, validate
from hpcsim.bench.report import write_report
from hpcsim.bench.runs import measure_run
from hpcsim.cases import CASES_DIR
from hpcsim.console import Progress
from hpcsim.coupling import METHODS
from hpcsim.federation.layout import boundary_map_of
from hpcsim.hpc.costs import DEFAULT
from hpcsim.study import Study, load_study

log = logging.getLogger(__name__)

STUDY_126 = "activsg200_ieee8500.toml"
STUDY_BUS8 = "activsg200_ieee8500_bus8.toml"
STUDY_2000 = "activsg2000_ieee8500.toml"
MODEL = "ieee8500"
CASE_BUSES = {"activsg200_ieee8500": 200, "activsg200_ieee8500_bus8": 200, "activsg2000_ieee8500": 2000}


@dataclass(frozen=True)
class Config:
    name: str
    study: Study
    purpose: str


@dataclass(frozen=True)
class Scale:
    """How much the suite measures: ``--quick`` (one repeat, small micro-benchmarks) or the full suite."""

    repeats: int
    memory_clones: dict[str, int]
    exchange_values: tuple[int, ...]
    exchange_iterations: int
    with_2000: bool


QUICK = Scale(repeats=1, memory_clones={"separate": 4, "shared": 30}, exchange_values=(126, 2000),
              exchange_iterations=20, with_2000=False)
FULL = Scale(repeats=3, memory_clones={"separate": 8, "shared": 200}, exchange_values=(126, 1000, 6580),
             exchange_iterations=50, with_2000=True)


def _cases_study(name: str) -> Study:
    return load_study(CASES_DIR / name)


def _half_buses(study: Study) -> int:
    """Boundary buses whose clones add up closest to half the study's feeders (weak scaling at 1 worker)."""
    bmap = boundary_map_of(study)
    target, total, best = bmap.n_feeders / 2, 0, (math.inf, 1)
    for i, (_, names) in enumerate(bmap.feeders_by_bus, start=1):
        total += len(names)
        best = min(best, (abs(total - target), i))
    return best[1]


def configurations(scale: Scale) -> list[Config]:
    base = _cases_study(STUDY_126)
    configs = [
        Config("calibration", base.with_overrides(workers=2, engine_mode="separate"), "overhead, fit"),
        Config("shared", base.with_overrides(workers=2, engine_mode="shared"), "fit"),
        Config("strong_1", base.with_overrides(workers=1, engine_mode="separate"), "strong scaling, check"),
        Config("weak_1", base.with_overrides(workers=1, engine_mode="separate", max_buses=_half_buses(base)),
               "weak scaling, check"),
        Config("bus8", _cases_study(STUDY_BUS8).with_overrides(workers=2, engine_mode="separate"), "check"),
    ]
    for method in METHODS:  # the coupling methods, each on the study as shipped
        configs.append(Config(f"{_short(method)}_126", base.with_overrides(workers=2, method=method), "methods"))
    if scale.with_2000:
        configs.append(Config("sg2000", _cases_study(STUDY_2000).with_overrides(workers=2, engine_mode="shared",
                                                                                max_buses=40), "check"))
        for method in METHODS:
            configs.append(Config(f"{_short(method)}_sg2000", _cases_study(STUDY_2000).with_overrides(
                workers=2, max_buses=40, method=method), "methods"))
    return configs


def _short(method: str) -> str:
    return "gs" if method == "gauss-seidel" else method


# the 2000-bus subset at the case's operating point (residual load, shared engines) fits the operating-point
# costs; newton_sg2000 is the same study as shipped, so neither checks the fit (the interconnection runs do:
# hpcsim bench --check)
OPERATING_POINT_RUN = "sg2000"
OPERATING_POINT_SAME = ("sg2000", "newton_sg2000")
METHOD_RUNS = {"gauss-seidel": ("gs_126", "gs_sg2000"), "newton": ("newton_126", "newton_sg2000")}


def machine_info() -> dict:
    """What the figures ran on."""
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("helics", "andes", "opendssdirect.py", "numpy", "pyarrow"):
        try:
            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing package is simply not reported
            versions[pkg] = None
    return {"host": platform.node(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions, "load_average_start": os.getloadavg()}


def spread(values: list[float]) -> dict:
    """min / median / max of repeated figures."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"min": math.nan, "median": math.nan, "max": math.nan, "n": 0}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def median_run(points: list[dict]) -> dict:
    """The repeat whose coupling loop is the median (its figures are consistent with each other)."""
    ordered = sorted(points, key=lambda p: p["loop_s"])
    return ordered[(len(ordered) - 1) // 2]


def run_suite(out_dir: Path, scale: Scale, slurm_nodes: int | None = None) -> dict:
    """Measure everything (see module docstring); writes bench.json, bench.md and model.json into ``out_dir``.
    With ``slurm_nodes``, also the exchange across that many nodes of the SLURM cluster the environment
    reaches, flat vs hierarchy (:mod:`hpcsim.bench.exchange_nodes`, one batch job per layout and size)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict = {"machine": machine_info(), "scale": vars(scale), "runs": {}}
    configs = configurations(scale)
    tasks = len(configs) * scale.repeats + len(scale.memory_clones) + 2 * len(scale.exchange_values)
    done = 0
    with Progress("bench", tasks) as bar:
        for cfg in configs:
            points = []
            for r in range(scale.repeats):
                bar.update(done, f"{cfg.name} ({r + 1}/{scale.repeats})")
                points.append(measure_run(cfg.study, out_dir / "runs" / f"{cfg.name}-{r}", cfg.name))
                done += 1
            result["runs"][cfg.name] = {"purpose": cfg.purpose, "repeats": points}
        result["memory"] = {}
        for mode, clones in scale.memory_clones.items():
            bar.update(done, f"memory, {mode} engines ({clones} clones)")
            result["memory"][mode] = memory.measure_clone_memory(MODEL, clones, mode)
            done += 1
        result["exchange"] = []
        for values in scale.exchange_values:
            for subs in (0, 2):
                bar.update(done, f"exchange, {values} values, {subs} sub-brokers")
                result["exchange"].append(exchange.measure_exchange(
                    values, sub_brokers=subs, iterations=scale.exchange_iterations, work_dir=out_dir / "exchange"))
                done += 1
        if slurm_nodes:
            bar.update(done, f"exchange across {slurm_nodes} SLURM nodes")
            result["exchange_nodes"] = compare_layouts(out_dir / "exchange_nodes", scale.exchange_values,
                                                       slurm_nodes, scale.exchange_iterations)
        bar.update(done, "fit")
    result["figures"] = figures(result)
    result["machine"]["load_average_end"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - t0
    _fit_and_check(result, out_dir)
    write_report(result, out_dir)
    return result


def figures(result: dict) -> dict:
    """The headline ratios, each as min/median/max over repeats."""
    runs = {name: r["repeats"] for name, r in result["runs"].items()}
    cal, one, weak = runs["calibration"], runs["strong_1"], runs["weak_1"]
    out = {
        "coupling_overhead": spread([p["overhead"] for p in cal]),
        "imbalance": spread([p["imbalance"] for p in cal]),
        "loop_s": {name: spread([p["loop_s"] for p in pts]) for name, pts in runs.items()},
        "wall_s": {name: spread([p["wall_s"] for p in pts]) for name, pts in runs.items()},
    }
    # strong scaling: the same 126 feeders on 1 and 2 workers (repeat i with repeat i)
    speedups = [a["loop_s"] / b["loop_s"] for a, b in zip(one, cal)]
    out["strong_speedup"] = spread(speedups)
    out["strong_efficiency"] = spread([s / 2 for s in speedups])
    # weak scaling: ~63 feeders per worker on 1 and on 2 workers. The two runs need different iteration counts
    # (fewer buses converge faster), so each is measured against its own ideal (same run):
    # efficiency = (ideal / loop on 2 workers) / (ideal / loop on 1 worker) = overhead_1 / overhead_2
    out["weak_efficiency"] = spread([w["overhead"] / c["overhead"] for w, c in zip(weak, cal)])
    mem = result["memory"]
    out["memory_per_clone_mb"] = {mode: m["per_clone_mb"] for mode, m in mem.items()}
    if {"separate", "shared"} <= mem.keys() and mem["shared"]["per_clone_mb"] > 0:
        out["memory_ratio_separate_to_shared"] = mem["separate"]["per_clone_mb"] / mem["shared"]["per_clone_mb"]
    out["exchange_ms"] = [{"values": e["n_values"], "sub_brokers": e["sub_brokers"], "min": e["min_s"] * 1e3,
                           "median": e["median_s"] * 1e3, "max": e["max_s"] * 1e3} for e in result["exchange"]]
    out["methods"] = {name: {"iterations": spread([p["iterations"] for p in runs[name]]),
                             "loop_s": out["loop_s"][name], "wall_s": out["wall_s"][name],
                             "loop_over_ideal": spread([p["overhead"] for p in runs[name]]),
                             "wall_over_ideal": spread([p["wall_s"] / p["ideal_s"] for p in runs[name]])}
                      for names in METHOD_RUNS.values() for name in names if name in runs}
    return out


def _iteration_points(runs: dict[str, list[dict]]) -> dict[str, list[tuple[int, int]]]:
    """(boundary buses, iterations of the median repeat) of each method's runs, for the iteration law."""
    return {method: [(median_run(runs[n])["buses"], median_run(runs[n])["iterations"]) for n in names if n in runs]
            for method, names in METHOD_RUNS.items()}


def _fit_and_check(result: dict, out_dir: Path) -> None:
    runs = {name: r["repeats"] for name, r in result["runs"].items()}
    flat = [e for e in result["exchange"] if e["sub_brokers"] == 0]
    lat = fit_exchange(flat) if len(flat) >= 2 else None
    result["exchange_fit"] = {"latency_ms": lat[0] * 1e3, "per_value_us": lat[1] * 1e6} if lat else None
    m = result["machine"]
    model = fit_model(DEFAULT, calibration=median_run(runs["calibration"]), shared=median_run(runs["shared"]),
                      memory=result["memory"], exchange=lat, case_buses=200, feeder_model=MODEL,
                      source=f"hpcsim bench on {m['host']} ({m['cores']} cores, {m['cpu']}), "
                             f"{time.strftime('%Y-%m-%d')}", iterations=_iteration_points(runs))
    fit_runs = ["calibration", "shared"]
    if OPERATING_POINT_RUN in runs:  # the full suite: the operating-point costs from the 2000-bus subset
        # not its memory: its 183 clones are ~35 MB of ~650 MB
        model = fit_operating_point(model, median_run(runs[OPERATING_POINT_RUN]) | {"label": OPERATING_POINT_RUN},
                                    MODEL, CASE_BUSES["activsg2000_ieee8500"], memory=False)
        fit_runs += OPERATING_POINT_SAME
    model.save(out_dir / "model.json")
    held_out = [median_run(pts) for name, pts in runs.items() if name not in fit_runs]
    result["model"] = model.to_dict()
    result["validation"] = validate(model, held_out, CASE_BUSES, MODEL)
