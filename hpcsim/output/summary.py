"""``summary.json`` of a run, built from the Parquet outputs the federates wrote (never from their memory).

``boundary`` and ``feeders`` hold the last time step (final iteration); a feeder's p/q is what that one feeder
draws (positive sequence), not scaled; a bus's p/q is the total it received. Angles in degrees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hpcsim.output.parquet import read_table

TRANSMISSION = "transmission"


def _final_rows(table: pa.Table, key: str) -> pa.Table:
    """Rows of the last time step, final iteration of each ``key``."""
    if table.num_rows == 0:
        return table
    t_last = pc.max(table["time_s"]).as_py()
    at = table.filter(pc.equal(table["time_s"], t_last))
    it_max = at.group_by(key).aggregate([("iteration", "max")])
    lookup = dict(zip(it_max[key].to_pylist(), it_max["iteration_max"].to_pylist()))
    mask = [lookup[k] == i for k, i in zip(at[key].to_pylist(), at["iteration"].to_pylist())]
    return at.filter(pa.array(mask))


def build_summary(run_dir: str | Path, *, study: str, coupling: str, converged: bool, wall_s: float,
                  peak_rss_mb: float, feeder_bus_names: dict[int, list[str]], model: str,
                  extra: dict | None = None) -> dict:
    out = Path(run_dir) / "outputs"
    trans = read_table(out, "transmission")
    feeders = read_table(out, "feeders")
    steps = read_table(out, "steps")

    step_rows = []
    if steps.num_rows:
        s = steps.to_pydict()
        by_time: dict[float, dict] = {}
        for fed, t, it, mm in zip(s["federate"], s["time_s"], s["iterations"], s["mismatch"]):
            rec = by_time.setdefault(t, {"time_s": t, "iterations": 0, "max_mismatch": 0.0})
            if fed == TRANSMISSION:
                rec["iterations"] = int(it)
            rec["max_mismatch"] = max(rec["max_mismatch"], float(mm) if np.isfinite(mm) else float("inf"))
        step_rows = [by_time[t] for t in sorted(by_time)]

    boundary = []
    for r in _final_rows(trans, "bus").to_pylist():
        boundary.append({"bus": r["bus"], "v_pu": r["v_pu"], "angle_deg": r["angle_deg"], "p_mw": r["p_mw"],
                         "q_mvar": r["q_mvar"], "feeders": feeder_bus_names.get(r["bus"], [])})
    boundary.sort(key=lambda b: b["bus"])

    feeder_rows = []
    for r in _final_rows(feeders, "feeder").to_pylist():
        feeder_rows.append({"name": r["feeder"], "bus": r["bus"], "model": model, "p_mw": r["p_mw"],
                            "q_mvar": r["q_mvar"], "v_source_pu": r["v_source_pu"], "angle_deg": r["angle_deg"],
                            "min_v_pu": r["min_v_pu"], "max_v_pu": r["max_v_pu"], "reg_taps": r["reg_taps"],
                            "cap_states": r["cap_states"]})
    order = {n: i for i, names in enumerate(feeder_bus_names.values()) for n in names}
    feeder_rows.sort(key=lambda f: (order.get(f["name"], 0), f["name"]))

    def total(table: pa.Table, col: str, where=None) -> float:
        if table.num_rows == 0:
            return 0.0
        if where is not None:
            table = table.filter(where(table))
        return float(pc.sum(table[col]).as_py() or 0.0)

    t_rows = steps.filter(pc.equal(steps["federate"], TRANSMISSION)) if steps.num_rows else steps
    d_rows = steps.filter(pc.not_equal(steps["federate"], TRANSMISSION)) if steps.num_rows else steps
    per_fed = {}
    if steps.num_rows:
        for fed in sorted(set(steps["federate"].to_pylist())):
            sel = steps.filter(pc.equal(steps["federate"], fed))
            per_fed[fed] = {"compute_s": total(sel, "compute_s"), "exchange_s": total(sel, "exchange_s"),
                            "peak_rss_mb": float(pc.max(sel["peak_rss_mb"]).as_py())}
    d_exchange = [v["exchange_s"] for k, v in per_fed.items() if k != TRANSMISSION]
    # Transmission solve time counts each PF once per iteration (every bus row of an iteration repeats it).
    t_solve = 0.0
    if trans.num_rows:
        it_rows = trans.group_by(["time_s", "iteration"]).aggregate([("solve_s", "max")])
        t_solve = float(pc.sum(it_rows["solve_s_max"]).as_py())
    summary = {
        "study": study,
        "converged": bool(converged),
        "coupling": coupling,
        "wall_s": float(wall_s),
        "peak_rss_mb": float(peak_rss_mb),
        "steps": step_rows,
        "boundary": boundary,
        "boundary_p_mw": sum(b["p_mw"] for b in boundary),
        "feeders": feeder_rows,
        "timing": {
            "transmission_solve_s": t_solve,
            "feeder_solve_s": total(feeders, "solve_s"),
            # coupling cost on the critical path: the busiest feeder group's time inside HELICS calls
            "exchange_s": min(d_exchange) if d_exchange else total(t_rows, "exchange_s"),
            "federates": per_fed,
        },
    }
    if d_rows.num_rows == 0 and not feeders.num_rows:
        summary["timing"]["exchange_s"] = 0.0
    if extra:
        summary.update(extra)
    return summary


def build_run_summary(run_dir: str | Path, *, study: str, coupling: str, case: str, model: str, scale_mode: bool,
                      boundary, converged: bool, wall_s: float, peak_rss_mb: float, workers: int,
                      sub_brokers: int, extra: dict | None = None) -> dict:
    """:func:`build_summary` plus the run's description; one call for ``hpcsim run`` and SLURM jobs alike.

    ``boundary`` is the run's :class:`hpcsim.metadata.BoundaryMap`.
    """
    return build_summary(
        run_dir, study=study, coupling=coupling, converged=converged, wall_s=wall_s, peak_rss_mb=peak_rss_mb,
        feeder_bus_names={b: list(n) for b, n in boundary.feeders_by_bus}, model=model,
        extra={"case": case, "scale_mode": scale_mode, "workers": workers, "sub_brokers": sub_brokers,
               "n_feeders": boundary.n_feeders, "n_buses": boundary.n_buses, **(extra or {})},
    )


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=True))
    os.replace(tmp, path)
    return path
