"""Aggregates of a dynamic run (a study with a ``[dynamics]`` section), built with the same dask pieces as the
steady ones (:mod:`hpcsim.output.frames`) and written by the same entry point
(:func:`hpcsim.output.aggregate.aggregate_run`) into ``<run>/aggregate/<name>.parquet/``.

Inputs: the dynamic tables ``frequency`` (every TDS step), ``ace`` (every AGC sample), ``der`` (every DER each
control interval), ``feeder_voltage`` (every feeder each exchange) and ``steps`` (schemas in
:mod:`hpcsim.output.parquet`). Aggregates (schema in docs/outputs.md):

- ``feeder_voltages``: per feeder and exchange: the node-voltage envelope (min/mean/max/std, named as in the
  steady aggregate), ``outside`` (a node outside the band), net/DER power and headroom;
- ``feeders``: per feeder over the run: lowest and highest node voltage and when, exchanges with a node outside
  the band, net power range, mean DER output and headroom, headroom LPs solved;
- ``der_totals``: per feeder and control interval: DERs and Σ base, PFR (droop), SFR (AGC) and output power, with
  Σ of the limits (P_mppt, VSM, the applied limit) — MW of the feeder model as written, not × its scale;
- ``statistics``: per quantity (frequency, ACE at every TDS step; ACE, area control signal, thermal and DER
  shares at every AGC sample): samples, mean, population std (as ``summary.json``), min and max and their times;
- ``federates``: per federate: compute and exchange seconds, peak RSS (as for a steady run).
"""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd

from hpcsim.output.frames import apply, federate_totals, grouped, moments, sort, table_frame, time_at
from hpcsim.output.readers import COLUMNS
from hpcsim.output.runinfo import BAND_PU, DYNAMIC_TABLES, RunInfo

INPUTS = {t: COLUMNS[t] for t in DYNAMIC_TABLES}  # table -> the columns every part file must have
AGGREGATES = ("feeder_voltages", "feeders", "der_totals", "statistics", "federates")
VOLTS = {"v_min_pu": "min_v_pu", "v_mean_pu": "mean_v_pu", "v_max_pu": "max_v_pu", "v_std_pu": "std_v_pu"}
DER_SUMS = ("p_base_mw", "p_pfr_mw", "p_sfr_mw", "p_mw", "p_mppt_mw", "p_vsm_mw", "p_limit_mw")
# quantity -> (table, column, its reference: the nominal frequency or 0); the order of the statistics table
QUANTITIES = {"frequency_hz": ("frequency", "f_hz", "f0"), "ace_mw": ("frequency", "ace_mw", 0.0),
              "agc_ace_mw": ("ace", "ace_mw", 0.0), "acs_mw": ("ace", "acs_mw", 0.0),
              "agc_thermal_mw": ("ace", "p_thermal_mw", 0.0), "agc_der_mw": ("ace", "p_der_mw", 0.0)}
DONE_TOL_S = 1e-6


# --- pure pieces (unit tested) ------------------------------------------------------------------------------


def voltage_rows(df: pd.DataFrame, band: tuple[float, float]) -> pd.DataFrame:
    """``feeder_voltage`` rows with the steady aggregate's voltage names, ``outside`` (min or max outside the band)
    and ``lp`` (1 where a headroom LP ran: its value is finite)."""
    out = df.rename(columns=VOLTS)
    out["outside"] = (out["min_v_pu"] < band[0]) | (out["max_v_pu"] > band[1])
    out["lp"] = np.isfinite(out["headroom_mw"].to_numpy("float64")).astype("int64")
    cols = ["time_s", "feeder", "bus", "federate", "v_source_pu", *VOLTS.values(), "outside", "p_net_mw",
            "q_net_mvar", "p_der_mw", "p_gross_mw", "scale", "headroom_mw", "lp"]
    return out[cols]


def long_values(df: pd.DataFrame, table: str, refs: dict[str, float]) -> pd.DataFrame:
    """The :data:`QUANTITIES` of one table as long rows: quantity, time_s, value, d = value − ref and d²."""
    parts = []
    for name, (source, column, _) in QUANTITIES.items():
        if source == table:
            v = df[column].astype("float64")
            d = v - refs[name]
            parts.append(pd.DataFrame({"quantity": name, "time_s": df["time_s"].astype("float64"), "value": v,
                                       "d": d, "d2": d * d}))
    return pd.concat(parts, ignore_index=True)


def finish_statistics(df: pd.DataFrame, refs: dict[str, float]) -> pd.DataFrame:
    """Partial sums per quantity -> mean and population standard deviation, in :data:`QUANTITIES` order."""
    mean_d, std = moments(df["n"], df["s1"], df["s2"], ddof=0)
    out = pd.DataFrame({"quantity": df["quantity"], "n": df["n"].astype("int64"),
                        "mean": df["quantity"].map(refs).astype("float64") + mean_d, "std": std,
                        "min": df["min"], "t_min_s": df["t_min_s"], "max": df["max"], "t_max_s": df["t_max_s"],
                        "t_first_s": df["t_first_s"], "t_last_s": df["t_last_s"]})
    rank = out["quantity"].map({q: i for i, q in enumerate(QUANTITIES)})
    return out.assign(_rank=rank).sort_values("_rank").drop(columns="_rank")


def dynamic_status(completed: bool | None, simulated_s: float, stop_s: float) -> str:
    """'completed', 'failed (t = x of y s)' or 'incomplete (t = x of y s[, no summary.json])'."""
    at = f"t = {simulated_s:g} of {stop_s:g} s"
    if completed is False:
        return f"failed ({at})"
    if simulated_s < stop_s - DONE_TOL_S:
        return f"incomplete ({at}{', no summary.json' if completed is None else ''})"
    return "completed" if completed else f"incomplete ({at}, no summary.json)"


# --- dask graph ---------------------------------------------------------------------------------------------


def _with_times(stats: dd.DataFrame, values: dd.DataFrame, keys: list[str], pairs: dict[str, tuple[str, str]]
                ) -> dd.DataFrame:
    """``stats`` with, per ``name: (column, extreme)``, the first time ``column`` of ``values`` reached the
    group's value in the ``extreme`` column of ``stats``."""
    for name, (column, extreme) in pairs.items():
        stats = stats.merge(time_at(values, stats, keys, column, extreme, name), on=keys, how="left")
    return stats


def statistics_frame(run_dir: Path, refs: dict[str, float]) -> dd.DataFrame:
    values = dd.concat([apply(table_frame(run_dir, t), long_values, t, refs) for t in ("frequency", "ace")])
    stats = grouped(values, ["quantity"], {
        "n": ("value", "count"), "min": ("value", "min"), "max": ("value", "max"), "s1": ("d", "sum"),
        "s2": ("d2", "sum"), "t_first_s": ("time_s", "min"), "t_last_s": ("time_s", "max")})
    stats = _with_times(stats, values, ["quantity"], {"t_min_s": ("value", "min"), "t_max_s": ("value", "max")})
    return apply(stats, finish_statistics, refs)


def build_dynamic_aggregates(info: RunInfo, rows: dict[str, int],  # noqa: ARG001 - every kind's builder takes it
                             band: tuple[float, float] = BAND_PU) -> dict[str, dd.DataFrame]:
    """The lazy aggregate frames of a dynamic run (nothing computed yet); ``rows`` as for the steady ones."""
    run_dir = info.run_dir
    volts = apply(table_frame(run_dir, "feeder_voltage"), voltage_rows, band)
    keys = ["feeder", "bus"]
    feeders = grouped(volts, keys, {
        "exchanges": ("time_s", "count"), "min_v_pu": ("min_v_pu", "min"), "max_v_pu": ("max_v_pu", "max"),
        "mean_v_pu": ("mean_v_pu", "mean"), "exchanges_outside": ("outside", "sum"),
        "p_net_mean_mw": ("p_net_mw", "mean"), "p_net_min_mw": ("p_net_mw", "min"),
        "p_net_max_mw": ("p_net_mw", "max"), "p_der_mean_mw": ("p_der_mw", "mean"),
        "headroom_mean_mw": ("headroom_mw", "mean"), "lps": ("lp", "sum"), "scale": ("scale", "max")})
    feeders = sort(_with_times(feeders, volts, keys, {"t_min_s": ("min_v_pu", "min_v_pu"),
                                                      "t_max_s": ("max_v_pu", "max_v_pu")}), ["bus"])
    ders = grouped(table_frame(run_dir, "der"), ["time_s", *keys],
                   {"n_der": ("der", "count"), **{c: (c, "sum") for c in DER_SUMS}})
    refs = {q: (info.dynamic.f0_hz if ref == "f0" else ref) for q, (_, _, ref) in QUANTITIES.items()}
    return {"feeder_voltages": sort(volts.drop(columns="lp"), ["time_s", "bus"]), "feeders": feeders,
            "der_totals": sort(ders, ["time_s", "bus"]), "statistics": statistics_frame(run_dir, refs),
            "federates": federate_totals(table_frame(run_dir, "steps"))}


def dynamic_manifest(info: RunInfo, folder: Path) -> dict:
    """The dynamic run's part of ``manifest.json``: status, simulated and planned seconds, the run's settings."""
    stats = pd.read_parquet(folder / "statistics.parquet", columns=["quantity", "t_last_s"])
    last = stats.loc[stats["quantity"] == "frequency_hz", "t_last_s"]
    simulated_s = float(last.iloc[0]) if len(last) else 0.0
    d = info.dynamic
    return {"status": dynamic_status(d.completed, simulated_s, d.stop_s), "stop_s": d.stop_s,
            "simulated_s": simulated_s, "f0_hz": d.f0_hz, "n_feeders": d.n_feeders, "n_der": d.n_der,
            "agc": d.agc, "trip": d.trip}
