"""Parquet outputs with fixed schemas, written as hive-partitioned datasets.

Layout under ``<run>/outputs/``::

    <table>/federate=<name>/part-<step:05d>.parquet

One file per federate and time step, written to a temporary name and renamed, so a run that dies leaves
complete, readable files for every step it finished; each is then recorded (rows, SHA-256) in
``outputs/_written/`` for the readers to check (:mod:`hpcsim.output.written`). ``pyarrow.dataset`` and ``dask.dataframe.read_parquet``
read a table folder directly (``federate`` becomes a column).

Tables and columns (units in the names):

- ``transmission``: one row per boundary bus and iteration — time_s, iteration, bus, clones, v_pu, angle_deg,
  p_mw, q_mvar (total load the bus received from its feeders), residual_p_mw, residual_q_mvar (the static
  constant-power load kept beside them with ``residual_load``: case load − feeders' draw at the case voltage;
  0 without), solve_s, dv_pu (voltage mismatch of this solve
  against the voltages last published), ds_pu (the feeders' power mismatch of the powers this solve used).
- ``feeders``: one row per feeder and iteration — time_s, iteration, feeder, bus, model, load_mult,
  v_source_pu, angle_deg, p_mw, q_mvar (positive sequence, one feeder, unscaled), p_total_mw, q_total_mvar
  (sum over phases), min_v_pu, mean_v_pu, max_v_pu, solve_s, reg_taps and cap_states (the feeder's discrete
  control state after the solve: regulator tap numbers and capacitor steps, in OpenDSS element order),
  ds_dv_p_mw_per_pu, ds_dv_q_mvar_per_pu (Newton coupling: the slope dS/d|V| the feeder sent in this iteration,
  controls held; NaN when it sent none).
- ``steps``: one row per federate and time step — time_s, iterations, dv_pu and ds_pu (the federate's last:
  the transmission federate both, a feeder group ds_pu only), compute_s, exchange_s (time inside HELICS calls),
  peak_rss_mb, startup_s (in the federate's first row: from its start to HELICS executing mode — solver load,
  compile, start solves, connecting; NaN in the other rows).

The two coupling mismatches have one name everywhere (Parquet, aggregates, ``summary.json``): ``dv_pu`` =
sqrt(Σ ΔVm² + ΔVa²) over the boundary buses (pu, angles in rad) and ``ds_pu`` = max over feeders of
|ΔS| / 100 MVA (ANL conventions, :mod:`hpcsim.interface`).
- ``node_voltages`` (optional): time_s, feeder, node, v_pu — final iteration of each step only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hpcsim.output.written import record, sha256_of

SCHEMAS: dict[str, pa.Schema] = {
    "transmission": pa.schema([
        ("time_s", pa.float64()), ("iteration", pa.int32()), ("bus", pa.int64()), ("clones", pa.int32()),
        ("v_pu", pa.float64()), ("angle_deg", pa.float64()), ("p_mw", pa.float64()), ("q_mvar", pa.float64()),
        ("residual_p_mw", pa.float64()), ("residual_q_mvar", pa.float64()),
        ("solve_s", pa.float64()), ("dv_pu", pa.float64()), ("ds_pu", pa.float64()),
    ]),
    "feeders": pa.schema([
        ("time_s", pa.float64()), ("iteration", pa.int32()), ("feeder", pa.string()), ("bus", pa.int64()),
        ("model", pa.string()), ("load_mult", pa.float64()), ("v_source_pu", pa.float64()),
        ("angle_deg", pa.float64()), ("p_mw", pa.float64()), ("q_mvar", pa.float64()),
        ("p_total_mw", pa.float64()), ("q_total_mvar", pa.float64()), ("min_v_pu", pa.float64()),
        ("mean_v_pu", pa.float64()), ("max_v_pu", pa.float64()), ("solve_s", pa.float64()),
        ("reg_taps", pa.list_(pa.int16())), ("cap_states", pa.list_(pa.int8())),
        ("ds_dv_p_mw_per_pu", pa.float64()), ("ds_dv_q_mvar_per_pu", pa.float64()),
    ]),
    "steps": pa.schema([
        ("time_s", pa.float64()), ("iterations", pa.int32()), ("dv_pu", pa.float64()), ("ds_pu", pa.float64()),
        ("compute_s", pa.float64()), ("exchange_s", pa.float64()), ("peak_rss_mb", pa.float64()),
        ("startup_s", pa.float64()),
        # a feeder group's start solves (start "solved"; in its first step's row): boundary buses, seconds
        ("start_solves", pa.int32()), ("start_solve_s", pa.float64()),
    ]),
    "node_voltages": pa.schema([
        ("time_s", pa.float64()), ("feeder", pa.string()), ("node", pa.string()), ("v_pu", pa.float32()),
    ]),
    # dynamic studies (hpcsim.dynamics): every TDS step; every AGC sample; every DER each control interval;
    # every feeder each exchange (headroom columns NaN between LPs)
    "frequency": pa.schema([
        ("time_s", pa.float64()), ("f_hz", pa.float64()), ("ace_mw", pa.float64()), ("load_mult", pa.float64()),
    ]),
    "ace": pa.schema([
        ("time_s", pa.float64()), ("f_hz", pa.float64()), ("ace_mw", pa.float64()), ("ace_ctrl_mw", pa.float64()),
        ("acs_mw", pa.float64()), ("p_thermal_mw", pa.float64()), ("p_der_mw", pa.float64()),
    ]),
    "der": pa.schema([
        ("time_s", pa.float64()), ("der", pa.string()), ("feeder", pa.string()), ("bus", pa.int64()),
        ("p_base_mw", pa.float64()), ("p_pfr_mw", pa.float64()), ("p_sfr_mw", pa.float64()),
        ("p_mppt_mw", pa.float64()), ("p_vsm_mw", pa.float64()), ("p_cap_mw", pa.float64()),
        ("p_limit_mw", pa.float64()), ("p_mw", pa.float64()),
    ]),
    "feeder_voltage": pa.schema([
        ("time_s", pa.float64()), ("feeder", pa.string()), ("bus", pa.int64()), ("v_source_pu", pa.float64()),
        ("v_min_pu", pa.float64()), ("v_mean_pu", pa.float64()), ("v_std_pu", pa.float64()),
        ("v_max_pu", pa.float64()), ("p_net_mw", pa.float64()), ("q_net_mvar", pa.float64()),
        ("p_der_mw", pa.float64()), ("p_gross_mw", pa.float64()), ("scale", pa.float64()),
        ("headroom_mw", pa.float64()), ("solve_s", pa.float64()), ("vsm_s", pa.float64()), ("lp_s", pa.float64()),
    ]),
    # dynamic studies with a fault (FIDVR): the faulted, feeder and motor buses' voltage at every TDS step; per
    # motor bus at every step, the motors' P and Q as ANDES evaluates them and their block states; motor
    # stalls, thermal trips, restarts and DER trips
    "bus_voltage": pa.schema([("time_s", pa.float64()), ("bus", pa.int64()), ("v_pu", pa.float64())]),
    "motor": pa.schema([
        ("time_s", pa.float64()), ("bus", pa.int64()), ("v_pu", pa.float64()), ("p_mw", pa.float64()),
        ("q_mvar", pa.float64()), ("p_running_mw", pa.float64()), ("stalled", pa.int32()), ("tripped", pa.int32()),
    ]),
    "fidvr_event": pa.schema([
        ("time_s", pa.float64()), ("device", pa.string()), ("bus", pa.int64()), ("event", pa.string()),
    ]),
}


# Columns a writer may leave out (their value then): what only some runs have (Newton's slopes).
OPTIONAL = {"ds_dv_p_mw_per_pu": math.nan, "ds_dv_q_mvar_per_pu": math.nan, "residual_p_mw": 0.0, "residual_q_mvar": 0.0,
            "startup_s": math.nan, "start_solves": 0, "start_solve_s": math.nan}


class StepWriter:
    """Buffers rows of one federate for one table and writes a file per time step."""

    def __init__(self, out_dir: str | Path, table: str, federate: str):
        if table not in SCHEMAS:
            raise KeyError(f"unknown output table {table!r}")
        self.schema = SCHEMAS[table]
        self.out_dir, self.table, self.federate = Path(out_dir), table, federate
        self.folder = Path(out_dir) / table / f"federate={federate}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list] = {name: [] for name in self.schema.names}

    def add(self, **row) -> None:
        for name in self.schema.names:
            self._rows[name].append(row[name] if name not in OPTIONAL else row.get(name, OPTIONAL[name]))

    def extend(self, columns: dict[str, list]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        for name in self.schema.names:
            self._rows[name].extend(columns[name] if name not in OPTIONAL
                                    else columns.get(name, [OPTIONAL[name]] * n))

    def flush(self, step: int) -> Path | None:
        """Write the buffered rows as ``part-<step>.parquet`` (atomically) and clear the buffer."""
        if not self._rows[self.schema.names[0]]:
            return None
        table = pa.Table.from_pydict(self._rows, schema=self.schema)
        path = self.folder / f"part-{step:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="zstd")
        digest = sha256_of(tmp)
        os.replace(tmp, path)
        record(self.out_dir, self.table, self.federate, path, table.num_rows, digest)
        self._rows = {name: [] for name in self.schema.names}
        return path


def read_table(out_dir: str | Path, table: str) -> pa.Table:
    """Read a whole output table (all federates, all steps); empty table with the schema if none written."""
    import pyarrow.dataset as ds

    folder = Path(out_dir) / table
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        return SCHEMAS[table].empty_table()
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", exclude_invalid_files=True)
    return dataset.to_table()
