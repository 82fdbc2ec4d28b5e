"""Per-file dask tasks of the aggregation: read the columns it needs from part files, and reduce node-voltage
files to partial sums. They run on the workers, so they take and return plain paths and pandas frames."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpcsim.output.parquet import SCHEMAS
from hpcsim.output.runinfo import BAND_PU

log = logging.getLogger(__name__)

LIVE_PU = 0.01  # nodes at or below this are de-energized and left out (the rule the feeders table uses)
# columns read from each table (the rest, e.g. the feeders' control state, is not aggregated)
COLUMNS = {
    "transmission": ["time_s", "iteration", "bus", "clones", "v_pu", "angle_deg", "p_mw", "q_mvar",
                     "residual_p_mw", "residual_q_mvar", "solve_s", "dv_pu", "ds_pu"],
    "feeders": ["time_s", "iteration", "feeder", "bus", "v_source_pu", "p_mw", "q_mvar", "min_v_pu", "mean_v_pu",
                "max_v_pu"],
    "steps": ["time_s", "iterations", "dv_pu", "ds_pu", "compute_s", "exchange_s", "peak_rss_mb"],
    # dynamic studies: every column but the feeders' solver timings (summary.json has those)
    "frequency": SCHEMAS["frequency"].names,
    "ace": SCHEMAS["ace"].names,
    "der": SCHEMAS["der"].names,
    "feeder_voltage": [c for c in SCHEMAS["feeder_voltage"].names if c not in ("solve_s", "vsm_s", "lp_s")],
}
NODE_PARTIAL = pa.schema([("feeder", pa.string()), ("time_s", pa.float64()), ("n", pa.int64()),
                          ("s1", pa.float64()), ("s2", pa.float64()), ("v_min", pa.float64()),
                          ("v_max", pa.float64()), ("n_out", pa.int64())])


def empty(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


def table_meta(table: str) -> pd.DataFrame:
    """Empty frame with the columns :func:`read_parts` returns for ``table``."""
    schema = pa.schema([SCHEMAS[table].field(c) for c in COLUMNS[table]])
    return empty(schema.append(pa.field("federate", pa.string())))


def read_columns(path: str, table: str) -> pa.Table:
    """The :data:`COLUMNS` of one part file, typed as in the schema; columns the file lacks (written before they
    were added to the schema) are null. ``ParquetFile.read`` costs a third of ``pq.read_table`` per small file."""
    pf = pq.ParquetFile(path)
    have = set(pf.schema_arrow.names)
    t = pf.read(columns=[c for c in COLUMNS[table] if c in have], use_threads=False)
    fields = [SCHEMAS[table].field(c) for c in COLUMNS[table]]
    arrays = [t.column(f.name).cast(f.type) if f.name in have else pa.nulls(t.num_rows, f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def read_parts(files: list[tuple[str, str]], table: str) -> pd.DataFrame:
    """Several part files of one table as one pandas frame with a ``federate`` column (see
    :func:`read_columns`); unreadable files are skipped with a warning."""
    tables = []
    for federate, path in files:
        try:
            t = read_columns(path, table)
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
            continue
        tables.append(t.append_column("federate", pa.array([federate] * t.num_rows, pa.string())))
    if not tables:
        return table_meta(table)
    return pa.concat_tables(tables).to_pandas()


def node_partial(path: str, band: tuple[float, float] = BAND_PU) -> pd.DataFrame:
    """Reduce one ``node_voltages`` file to partial sums per run of equal (feeder, time_s) rows.

    The writer stores each feeder's nodes contiguously, so a file reduces to one row per feeder with
    ``numpy.ufunc.reduceat`` over the runs — no hashing, no string decoding (``feeder`` is read as a dictionary).
    Rows in any other order are still correct: a key split over several runs gives several partial rows, which
    the dask groupby combines like partials from different files. Σ(v−1) and Σ(v−1)² are taken around 1 pu so
    that the variance recovered from them keeps its precision.
    """
    try:
        # single-threaded: parallelism comes from the dask tasks (pyarrow's pool on top would oversubscribe)
        t = pq.read_table(path, columns=["time_s", "feeder", "v_pu"], read_dictionary=["feeder"], use_threads=False)
    except (OSError, pa.ArrowInvalid) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return empty(NODE_PARTIAL)
    feeder = t.column("feeder").unify_dictionaries().combine_chunks()
    v = t.column("v_pu").to_numpy().astype(np.float64)
    times = t.column("time_s").to_numpy()
    idx = feeder.indices.to_numpy(zero_copy_only=False)
    live = v > LIVE_PU
    if not live.all():
        v, times, idx = v[live], times[live], idx[live]
    if not len(v):
        return empty(NODE_PARTIAL)
    starts = np.flatnonzero(np.r_[True, (idx[1:] != idx[:-1]) | (times[1:] != times[:-1])])
    d = v - 1.0
    outside = ((v < band[0]) | (v > band[1])).astype(np.int64)
    names = feeder.dictionary.to_numpy(zero_copy_only=False)
    return pd.DataFrame({
        "feeder": pd.array(names[idx[starts]], dtype=_meta_dtype("feeder")), "time_s": times[starts],
        "n": np.diff(np.r_[starts, len(v)]).astype(np.int64), "s1": np.add.reduceat(d, starts),
        "s2": np.add.reduceat(d * d, starts), "v_min": np.minimum.reduceat(v, starts),
        "v_max": np.maximum.reduceat(v, starts), "n_out": np.add.reduceat(outside, starts)})


@functools.cache
def _meta_dtype(column: str):
    return empty(NODE_PARTIAL)[column].dtype


def node_partials(paths: list[str], band: tuple[float, float] = BAND_PU) -> pd.DataFrame:
    """:func:`node_partial` of several files, concatenated (one dask task)."""
    return pd.concat([node_partial(p, band) for p in paths], ignore_index=True)
