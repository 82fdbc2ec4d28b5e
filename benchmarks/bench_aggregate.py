"""Benchmark ``hpcsim aggregate`` on a synthetic run of full-study size (not a test).

Writes a run folder in the real layout and schemas — 126 IEEE 8500-node feeders (8,531 nodes each) × 96 steps
with node voltages ≈ 1.03·10^8 node rows, feeders split over ``--groups`` feeder-group federates — one file at a
time (memory stays at one file), then measures, on the same files and in the same process:

1. a plain pyarrow scan (``pq.read_table`` of the columns the aggregation reads, file by file), with the feeder
   names decoded to strings and, as the aggregation reads them, kept as a dictionary;
2. the per-file pyarrow reduction alone, serial (what each dask task does; no dask);
3. ``aggregate_run`` with each ``--scheduler`` (dask, all five aggregates written).

Reported: seconds, node rows/s, and peak RSS of this process plus its children (dask workers), sampled every
0.1 s. Figures are printed and written as JSON. The files are read from the page cache after generation (24 GB
machine), so this measures CPU cost, not disk bandwidth.

    .venv/bin/python benchmarks/bench_aggregate.py --out /tmp/hpcsim-bench --scheduler threads local
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from hpcsim import metadata
from hpcsim.output.aggregate import aggregate_run
from hpcsim.output.parquet import SCHEMAS
from hpcsim.output.readers import node_partial
from hpcsim.output.runinfo import output_files
from hpcsim.study import LOAD_PROFILES

log = logging.getLogger("bench_aggregate")
REPO = Path(__file__).resolve().parents[1]
BOUNDARY_MAP = REPO / "metadata" / "activsg200_ieee8500.txt"


def node_names() -> list[str]:
    """The 8,531 node names of the IEEE 8500-node feeder (compiled once with OpenDSS)."""
    from hpcsim.cases import resolve_feeder  # noqa: PLC0415
    from hpcsim.distribution import FeederEngine  # noqa: PLC0415

    return FeederEngine(resolve_feeder("ieee8500")).node_names()


def _write(folder: Path, table: str, federate: str, step: int, columns: dict) -> int:
    path = folder / "outputs" / table / f"federate={federate}" / f"part-{step:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table(columns, schema=SCHEMAS[table])
    pq.write_table(t, path, compression="zstd")  # the writer's settings (hpcsim.output.parquet.StepWriter)
    return t.num_rows


def generate(out: Path, n_feeders: int, n_steps: int, n_groups: int, seed: int = 1) -> dict:
    """Synthetic run folder; returns its parameters (also in ``<out>/bench_params.json``)."""
    params = {"feeders": n_feeders, "steps": n_steps, "groups": n_groups, "seed": seed}
    marker = out / "bench_params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        log.info("reusing %s", out)
        return params
    bmap = metadata.read(BOUNDARY_MAP)
    feeders = [(name, bus) for bus in bmap.buses for name in bmap.feeders_at(bus)][:n_feeders]
    buses = sorted({b for _, b in feeders})
    clones = {b: sum(1 for _, fb in feeders if fb == b) for b in buses}
    names = node_names()
    n_nodes = len(names)
    groups = [feeders[g::n_groups] for g in range(n_groups)]
    rng = np.random.default_rng(seed)
    # each feeder: a fixed voltage-drop shape along its nodes; the drop follows the load of the hour
    drop = {f: 0.09 * rng.random(n_nodes) ** 1.5 for f, _ in feeders}
    profile = LOAD_PROFILES["rts_winter_weekday"]
    times = [900.0 * k for k in range(n_steps)]
    mults = [profile[int(t // 3600) % 24] for t in times]
    node_col = pa.array(names, pa.string())
    rows, t0 = 0, time.perf_counter()
    for k, (t, mult) in enumerate(zip(times, mults)):
        v_bus = {b: 1.03 - 0.01 * mult + 0.002 * rng.standard_normal() for b in buses}
        for g, members in enumerate(groups):
            fed = f"feeders_{g:03d}"
            v = [(1.04 - drop[f] * mult + 0.002 * rng.standard_normal(n_nodes)).astype(np.float32) for f, _ in members]
            rows += _write(out, "node_voltages", fed, k, {
                "time_s": np.full(n_nodes * len(members), t), "feeder": np.repeat([f for f, _ in members], n_nodes),
                "node": pa.concat_arrays([node_col] * len(members)), "v_pu": np.concatenate(v)})
            cols = {c: [] for c in SCHEMAS["feeders"].names}
            for it in range(3):
                for (f, b), vf in zip(members, v):
                    vals = dict(time_s=t, iteration=it, feeder=f, bus=b, model="ieee8500", load_mult=mult,
                                v_source_pu=v_bus[b], angle_deg=-5.0, p_mw=11.9 * mult, q_mvar=1.2 * mult,
                                p_total_mw=11.95 * mult, q_total_mvar=1.25 * mult, min_v_pu=float(vf.min()),
                                mean_v_pu=float(vf.mean()), max_v_pu=float(vf.max()), solve_s=0.04)
                    for c in cols:
                        cols[c].append(vals.get(c))  # columns not modelled here (control state) stay null
            _write(out, "feeders", fed, k, cols)
            _write(out, "steps", fed, k, {"time_s": [t], "iterations": [3], "dv_pu": [None], "ds_pu": [1e-7], "compute_s": [1.5],
                                          "exchange_s": [0.2], "peak_rss_mb": [600.0]})
        trans = {c: [] for c in SCHEMAS["transmission"].names}
        for it in range(4):
            for b in buses:
                vals = dict(time_s=t, iteration=it, bus=b, clones=clones[b], v_pu=v_bus[b], angle_deg=-5.0,
                            p_mw=11.9 * mult * clones[b], q_mvar=1.2 * mult * clones[b], solve_s=0.005,
                            dv_pu=10.0 ** -(2 * it + 1), ds_pu=None if it == 0 else 10.0 ** -(2 * it))
                for c in trans:
                    trans[c].append(vals.get(c))
        _write(out, "transmission", "transmission", k, trans)
        _write(out, "steps", "transmission", k, {"time_s": [t], "iterations": [3], "dv_pu": [1e-7], "ds_pu": [1e-7],
                                                 "compute_s": [0.05], "exchange_s": [4.0], "peak_rss_mb": [300.0]})
        if (k + 1) % 16 == 0:
            log.info("generated %d/%d steps, %.2e node rows, %.0f s", k + 1, n_steps, rows, time.perf_counter() - t0)
    (out / "configs").mkdir(exist_ok=True)
    (out / "configs" / "transmission.json").write_text(json.dumps({
        "study": "bench", "case": "ACTIVSg200", "coupling": "iterative", "tolerance": 1e-6, "times_s": times,
        "profile": mults, "clones": {str(b): k for b, k in clones.items()}}))
    (out / "summary.json").write_text(json.dumps({"study": "bench", "case": "ACTIVSg200", "converged": True}))
    marker.write_text(json.dumps(params))
    return params


class PeakRss:
    """Peak RSS (MB) of this process plus all its descendants, sampled in a thread while the block runs."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peak_mb = every_s, 0.0
        self._stop = threading.Event()
        self._me = psutil.Process()

    def _sample(self) -> float:
        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._sample())


def measure(label: str, func: Callable[[], object], rows: int) -> dict:
    with PeakRss() as mem:
        t0 = time.perf_counter()
        func()
        seconds = time.perf_counter() - t0
    result = {"what": label, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": mem.peak_mb,
              "load_avg_1min_after": os.getloadavg()[0]}
    log.info("%s: %.1f s, %.3g rows/s, peak RSS %.0f MB (load average %.1f)", label, seconds, result["rows_per_s"],
             mem.peak_mb, result["load_avg_1min_after"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hpcsim-bench"), help="run folder to generate/reuse")
    p.add_argument("--feeders", type=int, default=126)
    p.add_argument("--steps", type=int, default=96)
    p.add_argument("--groups", type=int, default=8, help="feeder-group federates (files per step)")
    p.add_argument("--scheduler", nargs="+", default=["threads", "local"])
    p.add_argument("--json", type=Path, default=None, help="figures file (default OUT/bench_aggregate.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    logging.getLogger("distributed").setLevel(logging.ERROR)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params = generate(out, args.feeders, args.steps, args.groups)
    gen_s = time.perf_counter() - t0
    files = [str(path) for _, path in output_files(out, "node_voltages")]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(os.path.getsize(f) for f in files)
    log.info("%d node_voltages files, %d rows, %.2f GB", len(files), rows, size / 1e9)

    def scan(**kw) -> None:
        n = sum(pq.read_table(f, columns=["time_s", "feeder", "v_pu"], **kw).num_rows for f in files)
        assert n == rows

    results = [measure("pyarrow scan (time_s, feeder, v_pu), strings decoded", scan, rows),
               measure("pyarrow scan, feeder as dictionary (the aggregation's read)",
                       lambda: scan(read_dictionary=["feeder"]), rows),
               measure("pyarrow per-file reduction, serial (no dask)", lambda: [node_partial(f) for f in files], rows)]
    for sched in args.scheduler:
        results.append(measure(f"hpcsim aggregate --scheduler {sched}", lambda s=sched: aggregate_run(out, s), rows))
    report = {"params": params, "node_rows": rows, "files": len(files), "bytes": size, "generate_s": gen_s,
              "cpus": os.cpu_count(), "machine": platform.platform(), "results": results}
    path = args.json or out / "bench_aggregate.json"
    path.write_text(json.dumps(report, indent=1))

    table = Table(title=f"{rows:,} node rows in {len(files)} files ({size / 1e9:.2f} GB), {os.cpu_count()} cores")
    for col in ("what", "s", "rows/s", "peak RSS MB", "load avg"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in results:
        table.add_row(r["what"], f"{r['seconds']:.1f}", f"{r['rows_per_s']:.3g}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['load_avg_1min_after']:.1f}")
    Console().print(table)
    Console().print(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
