"""``summary.json`` of a run, built from the Parquet outputs the federates wrote (never from their memory).

``boundary`` and ``feeders`` hold the last time step (final iteration); a feeder's p/q is what that one feeder
draws (positive sequence), not scaled; a bus's p/q is the total it received. Angles in degrees.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hpcsim import metadata
from hpcsim.console import to_json
from hpcsim.dynamics.summary import build_summary as build_dynamic
from hpcsim.errors import OutputError
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


def _finite_or_inf(x: float | None) -> float | None:
    """A mismatch as a float: ``inf`` when there was no previous value (strict JSON writes it as null)."""
    if x is None or np.isnan(x):
        return None
    return float(x) if np.isfinite(x) else float("inf")


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
        for fed, t, it, dv, ds in zip(s["federate"], s["time_s"], s["iterations"], s["dv_pu"], s["ds_pu"]):
            rec = by_time.setdefault(t, {"time_s": t, "iterations": 0, "dv_pu": None, "ds_pu": None})
            if fed == TRANSMISSION:
                rec["iterations"] = int(it)
                rec["dv_pu"] = _finite_or_inf(dv)
            if ds is not None and not np.isnan(ds):
                rec["ds_pu"] = max(rec["ds_pu"] or 0.0, _finite_or_inf(ds))
        step_rows = [by_time[t] for t in sorted(by_time)]

    boundary = []
    for r in _final_rows(trans, "bus").to_pylist():
        boundary.append({"bus": r["bus"], "v_pu": r["v_pu"], "angle_deg": r["angle_deg"], "p_mw": r["p_mw"],
                         "q_mvar": r["q_mvar"], "residual_p_mw": r.get("residual_p_mw") or 0.0,
                         "residual_q_mvar": r.get("residual_q_mvar") or 0.0,
                         "feeders": feeder_bus_names.get(r["bus"], [])})
    boundary.sort(key=lambda b: b["bus"])

    feeder_rows = []
    for r in _final_rows(feeders, "feeder").to_pylist():
        feeder_rows.append({"name": r["feeder"], "bus": r["bus"], "model": model, "load_mult": r["load_mult"],
                            "p_mw": r["p_mw"],
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
            start = [x for x in (sel["startup_s"].to_pylist() if "startup_s" in sel.column_names else [])
                     if x is not None and not math.isnan(x)]
            per_fed[fed] = {"compute_s": total(sel, "compute_s"), "exchange_s": total(sel, "exchange_s"),
                            "peak_rss_mb": float(pc.max(sel["peak_rss_mb"]).as_py()),
                            "startup_s": start[0] if start else None}
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
        "boundary_p_mw": sum(b["p_mw"] for b in boundary),  # the feeders' part
        "boundary_q_mvar": sum(b["q_mvar"] for b in boundary),
        "residual_p_mw": sum(b["residual_p_mw"] for b in boundary),  # the static part (residual_load)
        "residual_q_mvar": sum(b["residual_q_mvar"] for b in boundary),
        "feeders": feeder_rows,
        "timing": {
            "transmission_solve_s": t_solve,
            # the transmission federate's compute beyond its power flows: setting loads, publishing 1 voltage per
            # boundary bus and reading 1 power (Newton: and a slope) per feeder, writing rows
            "transmission_io_s": max(per_fed.get(TRANSMISSION, {}).get("compute_s", 0.0) - t_solve, 0.0),
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


DESCRIPTION = "run.json"  # a run's static description, written before any federate starts


def verify_outputs(run_dir: Path, desc: dict, steps: pa.Table) -> list[str]:
    """What keeps a finished run from counting as converged, from its own outputs: errors recorded by a
    federate, planned steps without a transmission record, or (iterative coupling) a final mismatch above the
    tolerance. An empty list means the outputs show a converged run."""
    problems = [f"federate {p.stem} recorded an error" for p in sorted((run_dir / "errors").glob("*.json"))]
    rows = steps.filter(pc.equal(steps["federate"], TRANSMISSION)) if steps.num_rows else steps
    done = {t: (dv, ds) for t, dv, ds in zip(rows["time_s"].to_pylist(), rows["dv_pu"].to_pylist(),
                                             rows["ds_pu"].to_pylist())} if rows.num_rows else {}
    planned = [float(t) for t in desc.get("times_s", [])]
    missing = [t for t in planned if t not in done]
    if missing:
        problems.append(f"{len(missing)} of {len(planned)} steps have no transmission record (first t = "
                        f"{missing[0]:g} s)")
    if desc.get("coupling") == "iterative":
        tol = float(desc["tolerance"])
        above = [t for t, (dv, ds) in done.items() if not max(_or_inf(dv), _or_inf(ds)) <= tol]
        if above:
            problems.append(f"{len(above)} step(s) end above the tolerance {tol:g} (first t = {above[0]:g} s)")
    return problems


def _or_inf(x: float | None) -> float:
    return float("inf") if x is None or np.isnan(x) else float(x)


def build_run_summary(run_dir: str | Path, desc: dict, boundary, *, ran_ok: bool = True,
                      wall_s: float | None = None, peak_rss_mb: float | None = None, extra: dict | None = None) -> dict:
    """``summary.json`` of a steady-state run from its description (``run.json``), its boundary map and its
    Parquet outputs; one call for ``hpcsim run``, SLURM jobs and ``hpcsim summarize`` alike.

    ``converged`` holds when the federates ended well (``ran_ok``) *and* the outputs show it
    (:func:`verify_outputs`; the reasons otherwise are in ``problems``). Without ``wall_s`` (a re-run by
    ``helics run``) the wall time is the transmission federate's own loop time (compute + exchange);
    without ``peak_rss_mb`` it is the sum of every federate's peak.
    """
    run_dir = Path(run_dir)
    summary = build_summary(
        run_dir, study=desc["study"], coupling=desc["coupling"], converged=False, wall_s=0.0, peak_rss_mb=0.0,
        feeder_bus_names={b: list(n) for b, n in boundary.feeders_by_bus}, model=desc["model"],
        extra={k: v for k, v in desc.items() if k not in ("study", "coupling", "times_s")} | (extra or {}))
    problems = verify_outputs(run_dir, desc, read_table(run_dir / "outputs", "steps"))
    if not ran_ok:
        problems.insert(0, "a federate failed or the run was stopped")
    summary["converged"] = not problems
    summary["problems"] = problems
    fed = summary["timing"]["federates"]
    if wall_s is None:
        t = fed.get(TRANSMISSION, {})
        wall_s = t.get("compute_s", 0.0) + t.get("exchange_s", 0.0)
        summary["wall_s_source"] = "transmission federate loop (no runner measured this run)"
    summary["wall_s"] = float(wall_s)
    summary["peak_rss_mb"] = float(peak_rss_mb if peak_rss_mb is not None
                                   else sum(f["peak_rss_mb"] for f in fed.values()))
    return summary


def read_description(run_dir: Path) -> dict:
    """``<run>/run.json``; :class:`OutputError` if the folder has none (not an hpcsim run folder)."""
    path = Path(run_dir) / DESCRIPTION
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: no {DESCRIPTION} (not an hpcsim run folder, or one from before it was "
                          "written)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path}: unreadable: {exc}") from None


def summarize_run(run_dir: str | Path) -> dict:
    """Rebuild and write ``<run>/summary.json`` from the run folder alone (``hpcsim summarize``); the returned
    copy also names the ``run_dir``."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: no such run folder")
    desc = read_description(run_dir)
    if desc.get("kind") == "dynamic":
        summary = build_dynamic(run_dir, desc, completed=not any((run_dir / "errors").glob("*.json")))
    else:
        summary = build_run_summary(run_dir, desc, metadata.read(run_dir / "boundary_map.txt"))
    write_summary(run_dir, summary)
    return summary | {"run_dir": str(run_dir)}


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    """``<run>/summary.json``, strict JSON (a mismatch with no previous value, ``inf`` in memory, is null)."""
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(to_json(summary))
    os.replace(tmp, path)
    return path
