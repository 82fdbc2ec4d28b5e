"""One measured co-simulation run: wall time against the ideal, its parts, and what a cost model needs.

A study is run for real (:func:`hpcsim.federation.runner.run_study`: brokers, ANDES, OpenDSS feeder groups)
and its own Parquet outputs are read back. Definitions (all measured inside the same run):

- ``loop_s``: the coupling loop, Σ over steps of the transmission federate's compute + HELICS time (from its
  first time request to the end of the last iteration; start-up — case load, feeder compiles, federation
  start — is ``startup_s = wall_s - loop_s``);
- ``ideal_s = Σ feeder solve time / workers + Σ transmission solve time`` — perfect balance, zero coupling
  cost; ``overhead = loop_s / ideal_s``;
- ``imbalance = max over groups of Σ solve / (Σ solve / workers)`` — the part of the overhead that is uneven
  work, not coupling;
- per clone and iteration: the cold first solve (iteration 0 of step 0), the warm re-solve (the other
  iterations), and the overhead outside OpenDSS (a group's compute time minus its solves: reading voltages,
  publishing powers, Parquet rows);
- ``start_solve_s``: per boundary bus, a start solve (start "solved": the groups' recorded start-solve seconds
  over the buses they solved; NaN for runs without them).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from hpcsim.federation.layout import TRANSMISSION
from hpcsim.federation.runner import run_study
from hpcsim.output.parquet import read_table
from hpcsim.study import Study

log = logging.getLogger(__name__)


def measure_run(study: Study, run_dir: Path, label: str) -> dict:
    """Run ``study`` into ``run_dir`` and return its measured figures (see module docstring)."""
    summary = run_study(study, run_dir, show_progress=False)
    point = run_figures(run_dir, summary)
    point["label"] = label
    log.info("%s: %d feeders, %d workers, %s engines: loop %.2f s, ideal %.2f s (x%.2f), %d iterations, "
             "peak %.0f MB", label, point["feeders"], point["workers"], point["engine_mode"], point["loop_s"],
             point["ideal_s"], point["overhead"], point["iterations"], point["peak_rss_mb"])
    return point


def run_figures(run_dir: Path, summary: dict) -> dict:
    """The figures of a finished run folder (its ``summary.json`` content and Parquet outputs)."""
    out = Path(run_dir) / "outputs"
    steps = read_table(out, "steps").to_pandas()
    feeders = read_table(out, "feeders").to_pandas()
    trans = steps[steps.federate == TRANSMISSION]
    groups = steps[steps.federate != TRANSMISSION]
    workers = int(summary["workers"])
    loop_s = float((trans.compute_s + trans.exchange_s).sum())
    solve_total = float(feeders.solve_s.sum())
    t_solve = float(summary["timing"]["transmission_solve_s"])
    n_pf = int(summary_iterations(summary) + len(summary["steps"]))  # one PF per iteration + the first
    ideal_s = solve_total / workers + t_solve
    first_step = feeders.time_s == feeders.time_s.min()
    cold = feeders[first_step & (feeders.iteration == 0)].solve_s
    warm = feeders[~(first_step & (feeders.iteration == 0))].solve_s
    by_group = feeders.assign(group=feeders.feeder.map(_group_of(run_dir))).groupby("group").solve_s.sum()
    clone_iterations = len(feeders)
    n_start = int(groups.start_solves.sum()) if "start_solves" in groups else 0
    start_solve_s = float(groups.start_solve_s.sum()) / n_start if n_start else math.nan
    group_compute = float(groups.compute_s.sum())
    return {
        "study": summary["study"],
        "feeders": int(summary["n_feeders"]),
        "buses": int(summary["n_buses"]),
        "workers": workers,
        "engine_mode": summary.get("engine_mode", "separate"),
        "steps": len(summary["steps"]),
        "coupling": summary.get("coupling", "iterative"),
        "method": summary.get("method", "gauss-seidel"),
        "start": summary.get("start", "case"),
        "operating_point": bool(summary.get("residual_load", False)),
        "iterations": summary_iterations(summary),
        "converged": bool(summary["converged"]),
        "wall_s": float(summary["wall_s"]),
        "loop_s": loop_s,
        "startup_s": float(summary["wall_s"]) - loop_s,
        "feeder_solve_s": solve_total,
        "transmission_solve_s": t_solve,
        "pf_s": t_solve / max(n_pf, 1),
        "ideal_s": ideal_s,
        "overhead": loop_s / ideal_s if ideal_s > 0 else math.nan,
        "imbalance": float(by_group.max() / (solve_total / workers)) if solve_total > 0 else math.nan,
        "cold_solve_s": float(cold.mean()) if len(cold) else math.nan,
        "warm_solve_s": float(warm.mean()) if len(warm) else math.nan,
        "clone_overhead_s": max(group_compute - solve_total, 0.0) / max(clone_iterations, 1),
        "start_solve_s": start_solve_s,
        "start_solves": n_start,
        "clone_iterations": clone_iterations,
        "peak_rss_mb": float(summary["peak_rss_mb"]),
        "boundary_p_mw": float(summary.get("boundary_p_mw", np.nan)),
        "boundary_pd_mw": float(summary.get("boundary_pd_mw", np.nan)),
    }


def summary_iterations(summary: dict) -> int:
    """Coupling iterations of a run: the sum over its time steps."""
    return int(sum(s["iterations"] for s in summary["steps"]))


def _group_of(run_dir: Path) -> dict[str, str]:
    """Feeder name -> the feeder group (worker) that solved it, from the run's federate configs."""
    owner = {}
    for path in sorted((Path(run_dir) / "configs").glob("feeders_*.json")):
        cfg = json.loads(path.read_text())
        owner.update({f["name"]: cfg["name"] for f in cfg["hpcsim"]["feeders"]})
    return owner
