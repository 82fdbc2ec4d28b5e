"""``hpcsim run``: run a study locally (brokers and federates as real processes)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

log = logging.getLogger("hpcsim")


def cmd_run(args: argparse.Namespace) -> int:
    from hpcsim.federation.runner import run_study  # noqa: PLC0415
    from hpcsim.study import load_study  # noqa: PLC0415

    study = load_study(args.study).with_overrides(
        workers=args.workers, coupling=args.coupling, max_buses=args.max_buses,
        scale_mode=True if args.scale_mode else None, sub_brokers=args.sub_brokers,
        tolerance=args.tolerance, max_iterations=args.max_iterations,
    )
    if study.dynamics is not None:  # a dynamic frequency study (hpcsim.dynamics)
        from hpcsim.dynamics.runner import print_dynamic_summary, run_dynamic_study  # noqa: PLC0415

        print_dynamic_summary(run_dynamic_study(study, args.out, show_progress=not args.quiet))
        return 0
    summary = run_study(study, args.out, show_progress=not args.quiet)
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    console = Console()
    steps = summary["steps"]
    its = [s["iterations"] for s in steps]
    worst = max((s["max_mismatch"] for s in steps), default=float("nan"))
    tm = summary["timing"]
    console.print(
        f"[bold]{summary['study']}[/]: {'converged' if summary['converged'] else 'NOT converged'}, "
        f"{summary['coupling']} coupling, {len(steps)} step(s), iterations {min(its, default=0)}–{max(its, default=0)}, "
        f"worst final mismatch {worst:.2e}; wall {summary['wall_s']:.1f} s, peak RSS {summary['peak_rss_mb']:.0f} MB; "
        f"solves: transmission {tm['transmission_solve_s']:.2f} s, feeders {tm['feeder_solve_s']:.1f} s (all workers), "
        f"exchange {tm['exchange_s']:.2f} s"
    )
    table = Table(title="boundary buses (last step)")
    for col in ("bus", "K", "V pu", "angle deg", "P MW", "Q Mvar"):
        table.add_column(col, justify="right")
    for b in summary["boundary"][:40]:
        table.add_row(str(b["bus"]), str(len(b["feeders"])), f"{b['v_pu']:.5f}", f"{b['angle_deg']:.3f}",
                      f"{b['p_mw']:.3f}", f"{b['q_mvar']:.3f}")
    console.print(table)


def register(sub) -> None:
    from hpcsim.cli import COMMON  # noqa: PLC0415

    p = sub.add_parser("run", parents=[COMMON], help="run a study on this machine (real HELICS broker, ANDES and OpenDSS federates)")
    p.add_argument("study", type=Path, help="study file (cases/*.toml)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<study>-<timestamp>/)")
    p.add_argument("--workers", type=int, default=None, help="feeder-group federates (default: one per core)")
    p.add_argument("--coupling", choices=("loose", "iterative"), default=None)
    p.add_argument("--tolerance", type=float, default=None, help="iterative coupling tolerance (default 1e-6)")
    p.add_argument("--max-iterations", type=int, default=None)
    p.add_argument("--max-buses", type=int, default=None, help="keep only the first N boundary buses")
    p.add_argument("--scale-mode", action="store_true",
                   help="one feeder per bus, its power multiplied by K (TDcoSim / ANDES-tutorial style)")
    p.add_argument("--sub-brokers", type=int, default=None,
                   help="broker hierarchy: root + S sub-brokers, federates spread across them (default flat)")
    p.set_defaults(func=cmd_run)
