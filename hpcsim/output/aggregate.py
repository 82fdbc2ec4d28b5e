"""Aggregate a run's Parquet outputs with dask, out of core, into ``<run>/aggregate/<name>.parquet/``.

Inputs are the hive folders ``<run>/outputs/<table>/federate=<name>/part-<step>.parquet`` (``hpcsim run`` and
SLURM jobs write the same layout). Part files are read by ``dask.delayed`` pyarrow tasks
(:mod:`hpcsim.output.readers`); ``node_voltages`` files are reduced inside those tasks to a row per feeder and
time (count, Σ(v−1), Σ(v−1)², min, max, count outside the band), so only those partial sums ever travel between
workers. Everything else is dask groupby/merge on the (small) per-iteration tables; results are written
with ``DataFrame.to_parquet`` in one ``dask.compute``. Nothing is collected into pandas on the client.

Aggregates (schema in docs/outputs.md):

- ``boundary``: per boundary bus and time, final iteration: v_pu, angle_deg, p_mw, q_mvar (Σ weight × feeder
  power, what the transmission model carried), residual_p_mw, residual_q_mvar (the static part beside the
  feeders, ``residual_load``), clones (K), and the feeders table's own Σ p/q at the bus;
- ``feeder_voltages``: per feeder and time: min/mean/max/std node voltage and nodes outside 0.95–1.05 pu (from
  ``node_voltages`` when written; otherwise min/mean/max of the feeders table and std/counts null);
- ``steps``: per time step: iterations and the final mismatches ``dv_pu`` and ``ds_pu``; ``iterations``: both
  mismatches of every iteration; ``federates``: compute and exchange time each;
- ``system``: per time step, distribution load at the boundary buses (feeders: p/q_dist; static residual:
  p/q_residual) vs the case's original PD/QD there
  (× the load-profile multiplier of the step).

These are a steady run's (snapshot, QSTS); a dynamic run's are built by :mod:`hpcsim.output.dynamic` from the same
pieces (:mod:`hpcsim.output.frames`), and :func:`aggregate_run` serves both, by the ``kind`` in ``run.json``
(:data:`KINDS`).

A run killed mid-way aggregates what it wrote: part files are complete (written atomically), ``*.tmp`` leftovers
are ignored, unreadable files are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpcsim.errors import OutputError
from hpcsim.output import dynamic
from hpcsim.output.frames import apply, federate_totals, grouped, moments, sort, table_frame
from hpcsim.output.readers import COLUMNS, NODE_PARTIAL, empty, node_partials
from hpcsim.output.runinfo import BAND_PU, TABLES, RunInfo, case_loads, output_files, read_run_info
from hpcsim.output.scheduler import dask_client
from hpcsim.output.summary import TRANSMISSION
from hpcsim.output.written import verify

log = logging.getLogger(__name__)

ROWS_PER_PARTITION = 2_000_000  # target size of a grouped result partition
ROWS_PER_TASK = 1_000_000  # node-voltage rows one task reduces (≈ 20 ms of reading per 100k rows)
AGGREGATES = ("boundary", "feeder_voltages", "steps", "iterations", "federates", "system")



@dataclass(frozen=True)
class AggregateResult:
    """Where the aggregates went and what they summarise (also written as ``aggregate/manifest.json``)."""

    folder: Path
    manifest: dict

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.parquet"


# --- pure pieces (unit tested) ------------------------------------------------------------------------------


def finish_node_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Combined partial sums -> min/mean/max/std (sample, ddof=1) of node voltage and the outside count."""
    mean_dv, std = moments(df["n"], df["s1"], df["s2"], ddof=1)  # deviations from 1 pu
    return pd.DataFrame({
        "time_s": df["time_s"], "feeder": df["feeder"],
        "node_min_v_pu": df["v_min"], "node_mean_v_pu": 1.0 + mean_dv, "node_max_v_pu": df["v_max"],
        "std_v_pu": std, "n_nodes": df["n"].astype("Int64"),
        "n_outside": df["n_out"].astype("Int64"),
    })


def merge_voltage_sources(df: pd.DataFrame) -> pd.DataFrame:
    """Prefer node-voltage statistics; fall back to the feeders table's min/mean/max (std and counts null)."""
    has = df["n_nodes"].notna() if "n_nodes" in df else pd.Series(False, index=df.index)
    out = df[["time_s", "feeder", "bus", "federate", "v_source_pu"]].copy()
    for col in ("min_v_pu", "mean_v_pu", "max_v_pu"):
        node = df[f"node_{col}"] if f"node_{col}" in df else pd.Series(np.nan, index=df.index)
        out[col] = node.where(has, df[col])
    out["std_v_pu"] = df["std_v_pu"].where(has) if "std_v_pu" in df else np.nan
    for col in ("n_nodes", "n_outside"):
        out[col] = df[col].where(has).astype("Int64") if col in df else pd.array([pd.NA] * len(df), "Int64")
    out["source"] = np.where(has, "node_voltages", "feeders")
    return out.sort_values(["time_s", "feeder"])


def add_case_load(df: pd.DataFrame, loads: dict[int, tuple[float, float, float]]) -> pd.DataFrame:
    """Original PD/QD and published VM of the case at each row's bus (NaN when unknown)."""
    df = df.copy()
    df["pd_case_mw"] = df["bus"].map({b: pq_[0] for b, pq_ in loads.items()}).astype("float64")
    df["qd_case_mvar"] = df["bus"].map({b: pq_[1] for b, pq_ in loads.items()}).astype("float64")
    df["vm_case_pu"] = df["bus"].map({b: pq_[2] for b, pq_ in loads.items()}).astype("float64")
    return df.sort_values(["time_s", "bus"])


def add_profile(df: pd.DataFrame, load_mult: dict[float, float]) -> pd.DataFrame:
    """System totals: case load × the step's load-profile multiplier, and distribution / case ratios."""
    df = df.copy()
    df["load_mult"] = df["time_s"].map(load_mult).astype("float64")
    df["p_case_mw"] = df["p_case_nominal_mw"] * df["load_mult"]
    df["q_case_mvar"] = df["q_case_nominal_mvar"] * df["load_mult"]
    df["p_ratio"] = df["p_dist_mw"] / df["p_case_mw"]
    return df.sort_values("time_s")


# --- dask graph ---------------------------------------------------------------------------------------------


def final_iteration(df: dd.DataFrame, keys: list[str], split_out: int = 1) -> dd.DataFrame:
    """Rows of the last iteration of every ``keys`` group (whatever file they sit in)."""
    last = grouped(df, keys, {"final": ("iteration", "max")}, split_out)
    merged = df.merge(last, on=keys, how="inner")
    return merged[merged["iteration"] == merged["final"]].drop(columns=["final"])


def node_stats(run_dir: Path, band: tuple[float, float], total_rows: int, split_out: int = 1) -> dd.DataFrame | None:
    """Per (feeder, time_s) node-voltage statistics: each task reduces ~NODE_ROWS_PER_TASK rows of files to partial
    sums, dask combines the partials."""
    files = [str(p) for _, p in output_files(run_dir, "node_voltages")]
    if not files:
        return None
    per_task = max(1, ROWS_PER_TASK * len(files) // max(total_rows, 1))
    parts = [dask.delayed(node_partials)(files[i:i + per_task], band) for i in range(0, len(files), per_task)]
    partial = dd.from_delayed(parts, meta=empty(NODE_PARTIAL), verify_meta=False)
    how = {"n": "sum", "s1": "sum", "s2": "sum", "v_min": "min", "v_max": "max", "n_out": "sum"}
    combined = grouped(partial, ["feeder", "time_s"], {c: (c, fn) for c, fn in how.items()}, split_out)
    return apply(combined, finish_node_stats)


def build_aggregates(info: RunInfo, rows: dict[str, int], band: tuple[float, float] = BAND_PU
                     ) -> dict[str, dd.DataFrame]:
    """The lazy aggregate frames of a run (nothing computed yet); ``rows``: rows per input table (from the Parquet footers, :func:`hpcsim.output.written.verify`)."""
    run_dir = info.run_dir
    # (feeder, time) groups are at most the feeders table's rows; keep each result partition to ~ROWS_PER_PARTITION
    split = max(1, math.ceil(rows["feeders"] / ROWS_PER_PARTITION))
    t_split = max(1, math.ceil(rows["transmission"] / ROWS_PER_PARTITION))
    trans_all = table_frame(run_dir, "transmission")
    trans = final_iteration(trans_all, ["time_s", "bus"], t_split)
    iterations = grouped(trans_all, ["time_s", "iteration"], {"dv_pu": ("dv_pu", "max"), "ds_pu": ("ds_pu", "max"),
                                                              "solve_s": ("solve_s", "max")}, t_split)
    iterations = sort(iterations, ["time_s", "iteration"])
    feeders = final_iteration(table_frame(run_dir, "feeders"), ["time_s", "feeder"], split)
    steps = table_frame(run_dir, "steps")

    at_bus = grouped(feeders, ["time_s", "bus"], {"n_feeders": ("feeder", "count"), "feeders_p_mw": ("p_mw", "sum"),
                                                   "feeders_q_mvar": ("q_mvar", "sum")})
    boundary = trans[["time_s", "bus", "clones", "iteration", "v_pu", "angle_deg", "p_mw", "q_mvar",
                      "residual_p_mw", "residual_q_mvar"]].merge(
        at_bus, on=["time_s", "bus"], how="left")
    boundary = apply(boundary, add_case_load, case_loads(info.case))

    volts = feeders[["time_s", "feeder", "bus", "federate", "v_source_pu", "min_v_pu", "mean_v_pu", "max_v_pu"]]
    nodes = node_stats(run_dir, band, rows["node_voltages"], split)
    if nodes is not None:
        # a feeder group writes a step's feeders rows before its node voltages, so a left join keeps everything
        volts = volts.merge(nodes, on=["time_s", "feeder"], how="left")
    volts = apply(volts, merge_voltage_sources)

    per_step = grouped(apply(steps, _split_roles), "time_s", {
        "iterations": ("t_iterations", "max"), "dv_pu": ("t_dv_pu", "max"),
        "ds_pu": ("any_ds_pu", "max"), "federates": ("federate", "count"),
        "feeders_compute_s": ("d_compute_s", "max")})
    per_step = apply(per_step, _step_columns)

    system = grouped(boundary, "time_s", {
        "n_buses": ("bus", "count"), "p_dist_mw": ("p_mw", "sum"), "q_dist_mvar": ("q_mvar", "sum"),
        "p_residual_mw": ("residual_p_mw", "sum"), "q_residual_mvar": ("residual_q_mvar", "sum"),
        "p_case_nominal_mw": ("pd_case_mw", "sum"), "q_case_nominal_mvar": ("qd_case_mvar", "sum")})
    system = apply(system, add_profile, info.load_mult_of())
    return {"boundary": boundary, "feeder_voltages": volts, "steps": per_step, "iterations": iterations,
            "federates": federate_totals(steps), "system": system}


def _split_roles(df: pd.DataFrame) -> pd.DataFrame:
    """Steps rows with the transmission's and the feeder groups' values in separate columns (NaN elsewhere)."""
    is_t = df["federate"] == TRANSMISSION
    return pd.DataFrame({
        "time_s": df["time_s"], "federate": df["federate"],
        "t_iterations": df["iterations"].where(is_t).astype("float64"),
        "t_dv_pu": df["dv_pu"].where(is_t), "any_ds_pu": df["ds_pu"],
        "d_compute_s": df["compute_s"].where(~is_t),
    })


def _step_columns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["iterations"] = df["iterations"].round().astype("Int64")
    cols = ["time_s", "iterations", "dv_pu", "ds_pu", "federates", "feeders_compute_s"]
    return df[cols].sort_values("time_s")


# --- entry point --------------------------------------------------------------------------------------------


def _rows(folder: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))


def run_status(info: RunInfo, steps_done: int) -> str:
    """'converged', 'not converged' or 'incomplete (k of n steps)' — from summary.json and the steps written."""
    planned = info.planned_steps
    if info.converged is True and (planned is None or steps_done >= planned):
        return "converged"
    if info.converged is False:
        return f"not converged ({steps_done} of {planned or '?'} steps)"
    return f"incomplete ({steps_done} of {planned or '?'} steps, no summary.json)"


def steady_manifest(info: RunInfo, folder: Path) -> dict:
    """The steady run's part of ``manifest.json``: status, planned and written steps, coupling."""
    steps = pd.read_parquet(folder / "steps.parquet", columns=["time_s", "iterations"])
    steps_done = int(steps["iterations"].notna().sum())
    return {"status": run_status(info, steps_done), "planned_steps": info.planned_steps,
            "steps_written": steps_done, "coupling": info.coupling, "tolerance": info.tolerance}


@dataclass(frozen=True)
class Kind:
    """What aggregating a study kind takes: its input tables (-> columns every part file must have), the lazy
    aggregate frames, and its fields of the manifest (read back from the written aggregates)."""

    inputs: dict[str, list[str]]
    build: Callable[[RunInfo, dict[str, int], tuple[float, float]], dict[str, dd.DataFrame]]
    manifest: Callable[[RunInfo, Path], dict]


KINDS = {
    "steady": Kind({t: COLUMNS[t] for t in TABLES if t in COLUMNS} | {"node_voltages": ["time_s", "v_pu"]},
                   build_aggregates, steady_manifest),
    "dynamic": Kind(dynamic.INPUTS, dynamic.build_dynamic_aggregates, dynamic.dynamic_manifest),
}


def aggregate_run(run_dir: str | Path, scheduler: str = "threads", band: tuple[float, float] = BAND_PU,
                  slurm_jobs: int = 1) -> AggregateResult:
    """Aggregate a run folder of any kind into ``<run>/aggregate/`` and write ``manifest.json``; returns where it
    went."""
    t0 = time.perf_counter()
    info = read_run_info(Path(run_dir).resolve())
    kind = KINDS[info.kind]
    checked = verify(info.run_dir, kind.inputs)
    if not checked.ok:
        raise OutputError(f"{info.run_dir}: {checked.line()}; nothing aggregated")
    folder = info.run_dir / "aggregate"
    folder.mkdir(exist_ok=True)
    rows = {table: checked.rows.get(table, 0) for table in kind.inputs}  # the footers verify() read
    with dask.config.set({"dataframe.convert-string": False}), dask_client(scheduler, slurm_jobs=slurm_jobs) as label:
        frames = kind.build(info, rows, band)
        writes = []
        for name, frame in frames.items():
            target = folder / f"{name}.parquet"
            if target.exists():
                shutil.rmtree(target)
            writes.append(frame.to_parquet(target, write_index=False, compute=False))
        log.info("aggregating %s (%s run, %s input rows) with the %s scheduler", info.run_dir, info.kind,
                 f"{sum(rows.values()):,}", label)
        try:
            dask.compute(*writes)
        except (OSError, pa.ArrowException) as exc:
            raise OutputError(f"{info.run_dir}: aggregation failed: {exc}") from exc
    manifest = {
        "study": info.study, "case": info.case, "kind": info.kind, **kind.manifest(info, folder),
        "band_pu": list(band), "scheduler": label, "elapsed_s": time.perf_counter() - t0, "input_rows": rows,
        "tables": {name: {"path": f"{name}.parquet", "rows": _rows(folder / f"{name}.parquet")} for name in frames},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("wrote %s (%s, %.1f s)", folder, manifest["status"], manifest["elapsed_s"])
    return AggregateResult(folder, manifest)


def load_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "aggregate" / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: not aggregated yet (no {path}); run `hpcsim aggregate {run_dir}`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path}: unreadable: {exc}") from None
