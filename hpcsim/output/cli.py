"""``hpcsim aggregate`` and ``hpcsim report``: dask aggregation of a run folder, figures, and a report."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from hpcsim.cliopts import COMMON, add_json_option
from hpcsim.console import emit_json, emit_line
from hpcsim.errors import OutputError
from hpcsim.output.runinfo import BAND_PU, read_run_info

log = logging.getLogger("hpcsim")
FORMATS = ("png", "svg", "pdf")


def _aggregate(args: argparse.Namespace) -> tuple[Path, dict, dict]:
    """Aggregate (unless reusing), then draw the figures; returns (aggregate folder, manifest, figures)."""
    low, high = args.band
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise OutputError(f"--band {low:g} {high:g}: give two finite voltages LOW < HIGH in pu")
    read_run_info(args.run_dir)  # a bad folder fails here, before dask and matplotlib are imported
    from hpcsim.output.aggregate import (  # noqa: PLC0415 - off `hpcsim --help`: dask, pandas, pyarrow
        aggregate_run, load_manifest,
    )
    from hpcsim.output.plots import plot_run  # noqa: PLC0415 - off `hpcsim --help`: matplotlib

    if getattr(args, "reuse", False) and (args.run_dir / "aggregate" / "manifest.json").exists():
        manifest = load_manifest(args.run_dir)
    else:
        result = aggregate_run(args.run_dir, args.scheduler, band=tuple(args.band), slurm_jobs=args.slurm_jobs)
        manifest = result.manifest
    folder = args.run_dir / "aggregate"
    figures = {} if getattr(args, "no_plots", False) else plot_run(folder, manifest, fmt=args.format, dpi=args.dpi)
    return folder, manifest, figures


def cmd_aggregate(args: argparse.Namespace) -> int:
    folder, manifest, figures = _aggregate(args)
    if args.json:
        emit_json({"aggregate": folder, "manifest": manifest, "figures": figures})
        return 0
    tables = ", ".join(f"{name} ({t['rows']:,} rows)" for name, t in manifest["tables"].items())
    emit_line(f"{manifest['study']} ({manifest['status']}): {tables}")
    emit_line(f"wrote {folder}/")
    for path in figures.values():
        emit_line(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpcsim.output.report import (  # noqa: PLC0415 - off `hpcsim --help`: pandas, pyarrow
        build_sections, print_sections, write_markdown,
    )

    folder, manifest, figures = _aggregate(args)
    sections = build_sections(folder, manifest)
    path = write_markdown(args.run_dir, sections, figures, manifest)
    if args.json:
        emit_json({"report": path, "aggregate": folder, "manifest": manifest, "figures": figures,
                   "sections": [s.as_dict() for s in sections]})
        return 0
    print_sections(sections)
    emit_line(f"wrote {path}")
    return 0


def _dpi(value: str) -> int:
    try:
        dpi = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dpi {value!r} is not a whole number") from None
    if not 20 <= dpi <= 1200:
        raise argparse.ArgumentTypeError(f"--dpi {dpi} must be between 20 and 1200")
    return dpi


def _run_dir(value: str) -> Path:
    return Path(value).resolve()


def _scheduler(value: str) -> str:
    from hpcsim.output.scheduler import check_scheduler  # noqa: PLC0415 - off `hpcsim --help`: dask

    try:
        return check_scheduler(value)
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    def add_common(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("run_dir", type=_run_dir, metavar="RUN_DIR",
                       help="run folder (from hpcsim run or a SLURM job): RUN_DIR/outputs/<table>/federate=*/")
        p.add_argument("--scheduler", type=_scheduler, default="threads",
                       help="threads (dask's in-process thread pool, one thread per core; default: fastest on one "
                            "node), local (LocalCluster, one worker process per core), an existing scheduler ADDRESS "
                            "(tcp://host:8786), slurm (dask-jobqueue SLURMCluster) or sync (one thread, debugging)")
        p.add_argument("--slurm-jobs", type=int, default=1, help="worker jobs for --scheduler slurm (default 1)")
        p.add_argument("--band", type=float, nargs=2, default=list(BAND_PU), metavar=("LOW", "HIGH"),
                       help="voltage band in pu for the outside-node counts (default %(default)s)")
        p.add_argument("--format", choices=FORMATS, default="png", help="figure format (default %(default)s)")
        p.add_argument("--dpi", type=_dpi, default=110, help="figure resolution for png (default %(default)s)")
        add_json_option(p, what)

    a = sub.add_parser("aggregate", parents=[COMMON],
                       help="dask aggregation of a run's Parquet outputs into RUN_DIR/aggregate/ (tables + PNG)")
    add_common(a, "the manifest (status, row counts) and the paths written")
    a.add_argument("--no-plots", action="store_true", help="tables only")
    a.set_defaults(func=cmd_aggregate)

    r = sub.add_parser("report", parents=[COMMON],
                       help="summary tables of a run and RUN_DIR/report.md with the figures (aggregates first)")
    add_common(r, "the report's tables, the manifest and the paths written")
    r.add_argument("--reuse", action="store_true", help="use RUN_DIR/aggregate as it is if already there")
    r.set_defaults(func=cmd_report)
