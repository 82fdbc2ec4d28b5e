"""The dask pieces every aggregation is built from, whatever the study kind: a lazy frame over one output table,
schema-safe ``map_partitions``, flat ``groupby().agg()``, the time at which a group reaches its extreme, and the
mean / standard deviation from partial sums. Steady (:mod:`hpcsim.output.aggregate`) and dynamic
(:mod:`hpcsim.output.dynamic`) aggregates are both written with them."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from hpcsim.output.readers import read_parts, table_meta
from hpcsim.output.runinfo import output_files
from hpcsim.output.summary import TRANSMISSION

FILES_PER_PARTITION = 128
ROLES = {TRANSMISSION: "transmission", "agc": "agc"}  # federate -> role; any other federate: feeders


def apply(df: dd.DataFrame, func, *args) -> dd.DataFrame:
    """``map_partitions`` with the output schema taken from ``func`` applied to the empty input (no guessing)."""
    return df.map_partitions(func, *args, meta=func(df._meta, *args))


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys)


def sort(df: dd.DataFrame, keys: list[str]) -> dd.DataFrame:
    """Each partition sorted by ``keys`` (a single-partition result is then sorted as a whole)."""
    return apply(df, _sorted, keys)


def _flattened(df: pd.DataFrame, names: dict[tuple[str, str], str]) -> pd.DataFrame:
    out = df.copy()
    out.columns = [names[c] for c in df.columns]
    return out.reset_index()


def grouped(df: dd.DataFrame, keys: str | list[str], spec: dict[str, tuple[str, str]],
            split_out: int = 1) -> dd.DataFrame:
    """``groupby(keys).agg(new=(column, how), ...)`` as flat columns (a column may be aggregated several ways).

    ``split_out`` is explicit: dask's automatic choice for several keys hash-shuffles even tiny results, and a
    single-partition result keeps the later merges broadcast joins. Named aggregation (and
    ``DataFrame.rename``) builds a rename expression that dask 2026.8's optimizer cannot
    carry through a later merge (KeyError "... not in index"), so the renaming is done inside the partitions.
    """
    names = {(col, how): new for new, (col, how) in spec.items()}
    if len(names) != len(spec):
        raise ValueError(f"grouped(): the same aggregation twice in {spec}")
    how: dict[str, list[str]] = {}
    for col, fn in spec.values():
        how.setdefault(col, []).append(fn)
    out = df.groupby(keys).agg(how, split_out=split_out)
    return apply(out, _flattened, names)


def table_frame(run_dir: Path, table: str) -> dd.DataFrame:
    """A dask DataFrame over one output table, one partition per ``FILES_PER_PARTITION`` part files (these tables
    hold a few rows per feeder and iteration; node voltages go through their own partial sums instead)."""
    meta = table_meta(table)
    files = output_files(run_dir, table)
    if not files:
        return dd.from_pandas(meta, npartitions=1)
    chunks = [files[i:i + FILES_PER_PARTITION] for i in range(0, len(files), FILES_PER_PARTITION)]
    parts = [dask.delayed(read_parts)([(fed, str(p)) for fed, p in chunk], table) for chunk in chunks]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def _extreme(df: pd.DataFrame, column: str) -> pd.DataFrame:
    return df.rename(columns={column: "_extreme"})


def time_at(df: dd.DataFrame, stats: dd.DataFrame, keys: list[str], column: str, extreme: str,
            name: str) -> dd.DataFrame:
    """Per ``keys`` group: the first ``time_s`` at which ``column`` of ``df`` equals the group's value in the
    ``extreme`` column of ``stats`` (e.g. when each feeder's minimum voltage occurred), as column ``name``."""
    target = apply(stats[[*keys, extreme]], _extreme, extreme)
    rows = df[[*keys, "time_s", column]].merge(target, on=keys, how="inner")
    return grouped(rows[rows[column] == rows["_extreme"]], keys, {name: ("time_s", "min")})


def moments(n: pd.Series, s1: pd.Series, s2: pd.Series, ddof: int) -> tuple[pd.Series, pd.Series]:
    """Mean and standard deviation of ``n`` values from Σd and Σd² of their deviations d = x − ref from a
    reference near them (so the variance keeps its precision): (mean of d, std); std NaN where n ≤ ddof."""
    n = n.astype("float64")
    var = ((s2 - s1 ** 2 / n) / (n - ddof)).clip(lower=0.0)
    return s1 / n, np.sqrt(var.where(n > ddof))


def _federate_columns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.insert(1, "role", df["federate"].map(ROLES).fillna("feeders"))
    rank = df["role"].map({role: i for i, role in enumerate(ROLES.values())}).fillna(len(ROLES))
    return df.assign(_rank=rank).sort_values(["_rank", "federate"]).drop(columns="_rank")


def federate_totals(steps: dd.DataFrame) -> dd.DataFrame:
    """Per federate, from the ``steps`` table every study kind writes: steps, iterations, compute and exchange
    seconds summed, peak RSS; with its ``role`` (transmission, agc or feeders), in that order."""
    totals = grouped(steps, "federate", {
        "steps": ("time_s", "count"), "iterations": ("iterations", "sum"), "compute_s": ("compute_s", "sum"),
        "exchange_s": ("exchange_s", "sum"), "peak_rss_mb": ("peak_rss_mb", "max")})
    return apply(totals, _federate_columns)
