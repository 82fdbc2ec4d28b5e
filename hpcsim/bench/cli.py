"""``hpcsim bench [--quick] [--out DIR]``: run the benchmark suite and fit the performance model."""

from __future__ import annotations

import argparse
import logging
from datetime import datetime
from pathlib import Path

log = logging.getLogger("hpcsim")


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415
    from rich.markdown import Markdown  # noqa: PLC0415

    from hpcsim.bench.report import markdown  # noqa: PLC0415
    from hpcsim.bench.suite import FULL, QUICK, run_suite  # noqa: PLC0415
    from hpcsim.errors import StudyError  # noqa: PLC0415

    out = args.out or Path("bench") / f"{'quick' if args.quick else 'full'}-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out} exists and is not empty: give --out a new folder")
    result = run_suite(out.resolve(), QUICK if args.quick else FULL)
    Console().print(Markdown(markdown(result)))
    log.info("wrote %s, %s and %s", out / "bench.json", out / "bench.md", out / "model.json")
    return 0


def register(sub) -> None:
    from hpcsim.cli import COMMON  # noqa: PLC0415

    p = sub.add_parser("bench", parents=[COMMON],
                       help="benchmark suite: coupling overhead, scaling, memory, HELICS exchange; fits model.json")
    p.add_argument("--quick", action="store_true", help="one repeat, small micro-benchmarks (≈ 3 minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default bench/<quick|full>-<time>)")
    p.set_defaults(func=cmd_bench)
