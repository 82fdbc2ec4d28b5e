"""``hpcsim bench [--quick] [--out DIR]``: run the benchmark suite and fit the performance model."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from pathlib import Path

from hpcsim.bench.report import markdown
from hpcsim.cliopts import COMMON, add_json_option, add_out_option
from hpcsim.console import Table, emit_json, emit_line, emit_table
from hpcsim.errors import OutputError, StudyError

log = logging.getLogger("hpcsim")


def cmd_bench(args: argparse.Namespace) -> int:
    from hpcsim.bench.suite import FULL, QUICK, run_suite  # noqa: PLC0415 - off `hpcsim --help`: numpy

    if args.check:
        return _check(args)
    if args.fit is not None or args.save_model is not None:
        raise StudyError("--fit and --save-model go with --check RUN_DIR (the runs the refitted model predicts)")
    out = args.out or Path("bench") / f"{'quick' if args.quick else 'full'}-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out} exists and is not empty: give --out a new folder")
    if args.slurm_nodes is not None and args.slurm_nodes < 2:
        raise StudyError(f"--slurm-nodes {args.slurm_nodes}: the exchange across nodes needs at least 2")
    result = run_suite(out.resolve(), QUICK if args.quick else FULL, args.slurm_nodes)
    if args.json:
        emit_json(result)
    else:
        emit_line(markdown(result).rstrip("\n"))
    log.info("wrote %s, %s and %s", out / "bench.json", out / "bench.md", out / "model.json")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Predict finished run folders with a cost model and compare (no benchmark is run)."""
    from hpcsim.bench.fit import fit_operating_point, validate  # noqa: PLC0415 - off `hpcsim --help`: the cost model (~13 ms)
    from hpcsim.hpc.costs import DEFAULT, load_model  # noqa: PLC0415 - off `hpcsim --help`: the cost model (~13 ms)

    model = load_model(args.model) if args.model else DEFAULT
    if args.fit is not None:
        if args.fit.resolve() in {r.resolve() for r in args.check}:
            raise StudyError(f"--fit {args.fit}: a run the model is fitted on cannot also be checked")
        point, feeder_model, case_buses = _run_point(args.fit)
        model = fit_operating_point(model, point, feeder_model, case_buses,
                                    source=f"{model.source}; operating point fitted on {args.fit.name}")
        if args.save_model is not None:
            log.info("wrote %s", model.save(args.save_model))
    rows = []
    for run_dir in args.check:
        point, feeder_model, case_buses = _run_point(run_dir)
        rows += validate(model, [point], {point["study"]: case_buses}, feeder_model)
    if args.json:
        emit_json({"model": model.source, "runs": rows})
        return 0
    table = Table(f"predicted vs measured (cost model: {model.source})",
                  ["run", "feeders", "workers", "engines", "iterations", "loop (run's iterations)", "error",
                   "start-up", "wall (model alone)", "error", "peak MB", "error"], align=["l"] + ["r"] * 11)
    for r in rows:
        table.rows.append([r["label"], str(r["feeders"]), str(r["workers"]), r["engine_mode"],
                           f"{r['iterations_predicted']} / {r['iterations']}", _pair(r, "loop_s"),
                           f"{r['loop_s_error']:+.0%}", _pair(r, "startup_s"), _pair(r, "wall_s"),
                           f"{r['wall_s_error']:+.0%}", _pair(r, "peak_rss_mb", unit=""),
                           f"{r['peak_rss_mb_error']:+.0%}"])
    emit_line("each cell: predicted / measured; 'loop' takes the run's own iteration count (the per-iteration "
              "costs alone), 'wall' the model's iteration law and start-up (as hpcsim plan predicts)")
    emit_table(table)
    return 0


def _run_point(run_dir: Path) -> tuple[dict, str, int]:
    """(:func:`hpcsim.bench.runs.run_figures` of a finished run folder, its feeder model, its case's buses)."""
    from hpcsim.bench.runs import run_figures  # noqa: PLC0415 - off `hpcsim --help`: numpy, pyarrow
    from hpcsim.cases import read_matpower  # noqa: PLC0415 - off `hpcsim --help`: numpy

    path = run_dir / "summary.json"
    if not path.is_file():
        raise OutputError(f"{run_dir}: no summary.json (not a finished hpcsim run folder)")
    summary = json.loads(path.read_text())
    if summary.get("kind") == "dynamic" or "n_feeders" not in summary:
        raise OutputError(f"{run_dir}: not a steady-state co-simulation run")
    point = run_figures(run_dir, summary) | {"label": run_dir.name}
    feeder_model = summary["feeders"][0]["model"] if summary.get("feeders") else "ieee8500"
    return point, feeder_model, len(read_matpower(summary["case"]).bus)


def _pair(row: dict, key: str, unit: str = " s") -> str:
    """``predicted / measured`` of one figure of a :func:`hpcsim.bench.fit.validate` row."""
    return f"{row[key + '_predicted']:.4g} / {row[key + '_measured']:.4g}{unit}"


def register(sub) -> None:
    p = sub.add_parser("bench", parents=[COMMON],
                       help="benchmark suite: coupling overhead, scaling, memory, HELICS exchange; fits model.json")
    p.add_argument("--quick", action="store_true", help="one repeat, small micro-benchmarks (≈ 3 minutes on 2 cores)")
    add_out_option(p, "output folder (default bench/<quick|full>-<time>)")
    p.add_argument("--slurm-nodes", type=int, default=None, metavar="N",
                   help="also measure the HELICS exchange across N nodes of the SLURM cluster this shell reaches "
                        "(flat vs a sub-broker per node; submits one small batch job per layout and size)")
    p.add_argument("--check", type=Path, action="append", default=[], metavar="RUN_DIR",
                   help="instead of benchmarking: predict these finished `hpcsim run` folders with the cost model "
                        "(--model) and compare with what they measured (repeatable)")
    p.add_argument("--model", type=Path, default=None, help="with --check: model.json (default: the built-in model)")
    p.add_argument("--fit", type=Path, default=None, metavar="RUN_DIR",
                   help="with --check: first fit the model's operating-point costs (shared re-solve, start solve) "
                        "on this finished run of a study with residual_load (not one of the checked runs)")
    p.add_argument("--save-model", type=Path, default=None, metavar="FILE",
                   help="with --fit: write the refitted model.json here")
    add_json_option(p, "bench.json (or, with --check, the predicted and measured figures)")
    p.set_defaults(func=cmd_bench)
