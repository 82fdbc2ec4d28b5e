"""``hpcsim run`` (run a study locally) and ``hpcsim summarize`` (rebuild a run folder's ``summary.json``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hpcsim.cliopts import COMMON, add_json_option, add_out_option
from hpcsim.console import Table, emit_json, emit_line, emit_table, format_row
from hpcsim.errors import CheckError, StudyError

log = logging.getLogger("hpcsim")
SHOW_BUSES = 40  # boundary rows in the text summary (all of them in summary.json / --json)


DYNAMIC_OVERRIDES = {"sub_brokers", "stall_timeout_s"}  # the `run` options a dynamic study honours


def cmd_run(args: argparse.Namespace) -> int:
    from hpcsim.federation.runner import resume_study, run_study  # noqa: PLC0415 - off `hpcsim --help`: numpy, pyarrow
    from hpcsim.study import load_study  # noqa: PLC0415 - off `hpcsim --help`: numpy

    overrides = {k: v for k, v in dict(
        workers=args.workers, coupling=args.coupling, method=args.method, acceleration=args.acceleration,
        max_buses=args.max_buses,
        scale_mode=True if args.scale_mode else None, sub_brokers=args.sub_brokers,
        stall_timeout_s=args.stall_timeout,
        tolerance=args.tolerance, max_iterations=args.max_iterations,
    ).items() if v is not None}
    if args.resume is not None:
        if args.study is not None or args.out is not None or overrides:
            raise StudyError("--resume RUN takes no study, --out or settings: the run folder has them")
        summary = resume_study(args.resume, show_progress=not args.quiet)
        emit_json(summary) if args.json else print_summary(summary)
        return 0
    if args.study is None:
        raise StudyError("give a study file (or --resume RUN)")
    study = load_study(args.study).with_overrides(**overrides)
    if study.dynamics is not None:  # a dynamic frequency study (hpcsim.dynamics)
        ignored = sorted(set(overrides) - DYNAMIC_OVERRIDES)
        if ignored:  # the dynamic federation has its own exchange schedule and one federate per feeder
            flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
            raise StudyError(f"{args.study}: {flags}: not for a dynamic study (its [dynamics] section sets the "
                             f"exchange schedule, and each feeder is a federate of its own)")
        from hpcsim.dynamics.runner import (  # noqa: PLC0415 - off `hpcsim --help`: numpy, pyarrow
            print_dynamic_summary, run_dynamic_study,
        )

        summary = run_dynamic_study(study, args.out, show_progress=not args.quiet)
        emit_json(summary) if args.json else print_dynamic_summary(summary)
        return 0
    summary = run_study(study, args.out, show_progress=not args.quiet, overrides=overrides)
    emit_json(summary) if args.json else print_summary(summary)
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from hpcsim.output.summary import summarize_run  # noqa: PLC0415 - off `hpcsim --help`: numpy, pyarrow

    summary = summarize_run(args.run_dir)
    if args.json:
        emit_json(summary)
    elif summary.get("kind") == "dynamic":
        from hpcsim.dynamics.runner import print_dynamic_summary  # noqa: PLC0415 - off `hpcsim --help`: numpy, pyarrow

        print_dynamic_summary(summary)
    else:
        print_summary(summary)
    return 0


def summary_line(summary: dict) -> str:
    """The one-line verdict of a steady-state run (also what ``hpcsim jobs status`` reports)."""
    steps = summary["steps"]
    its = [s["iterations"] for s in steps]
    worst_dv = max((s["dv_pu"] for s in steps if s["dv_pu"] is not None), default=None)
    worst_ds = max((s["ds_pu"] for s in steps if s["ds_pu"] is not None), default=None)
    tm = summary["timing"]
    fmt = lambda x: "–" if x is None else f"{x:.2e}"  # noqa: E731
    return (f"{summary['study']}: {'converged' if summary['converged'] else 'NOT converged'}, "
            f"{summary['coupling']} coupling, {len(steps)} step(s), iterations {min(its, default=0)}-"
            f"{max(its, default=0)}, worst final dV {fmt(worst_dv)} pu, dS {fmt(worst_ds)} pu (100 MVA); "
            f"wall {summary['wall_s']:.1f} s, peak RSS {summary['peak_rss_mb']:.0f} MB; solves: transmission "
            f"{tm['transmission_solve_s']:.2f} s, feeders {tm['feeder_solve_s']:.1f} s (all workers), exchange "
            f"{tm['exchange_s']:.2f} s; {summary.get('run_dir', '')}".rstrip("; "))


def print_summary(summary: dict) -> None:
    emit_line(summary_line(summary))
    buses = summary["boundary"]
    shown = buses[:SHOW_BUSES]
    more = f" (first {len(shown)} of {len(buses)}; all in summary.json)" if len(buses) > len(shown) else ""
    table = Table(f"boundary buses (last step){more}", ["bus", "K", "V pu", "angle deg", "P MW", "Q Mvar"],
                  align=["r"] * 6)
    for b in shown:
        table.rows.append(format_row([b["bus"], len(b["feeders"]), b["v_pu"], b["angle_deg"], b["p_mw"],
                                      b["q_mvar"]], ["", "", ".5f", ".3f", ".3f", ".3f"]))
    emit_table(table)


def cmd_check(args: argparse.Namespace) -> int:
    from hpcsim.checks import check_run  # noqa: PLC0415 - off `hpcsim --help`: numpy

    if args.sample is not None and args.sample < 1:
        raise StudyError(f"--sample {args.sample}: give at least 1 feeder")
    report = check_run(args.run_dir, sample=args.sample, seed=args.seed)
    if args.json:
        emit_json(report.as_dict())
    else:
        pub = ("" if report.published_worst_bus is None else
               f"; every transmission bus within {report.published_max_dv_pu:.2g} pu of the case's published solution "
               f"(worst bus {report.published_worst_bus})")
        emit_line(f"{args.run_dir}: {report.feeders_checked} of {report.feeders_total} feeders re-solved alone: "
                  f"power within {max(report.max_dp_mw, report.max_dq_mvar):.2g} MW/Mvar, "
                  f"{len(report.controls_moved)} would move a control; the transmission alone: boundary voltages "
                  f"within {report.transmission_max_dv_pu:.2g} pu{pub} ({report.check_s:.0f} s)")
    if not report.ok:
        raise CheckError(f"{args.run_dir}: " + "; ".join(report.problems))
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", parents=[COMMON],
                       help="run a study on this machine (real HELICS broker, ANDES and OpenDSS federates)")
    p.add_argument("study", type=Path, nargs="?", default=None, help="study file (cases/*.toml)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue the killed QSTS run in folder RUN from its last completed step (same study, "
                        "same settings, same folder)")
    add_out_option(p, "run folder to create (default runs/<study>-<timestamp>/)")
    p.add_argument("--workers", type=int, default=None, help="feeder-group federates (default: one per core)")
    p.add_argument("--coupling", choices=("loose", "iterative"), default=None,
                   help="loose: one exchange per step; iterative: exchange until the mismatch is below the "
                        "tolerance (default: the study's [coupling] mode)")
    p.add_argument("--method", choices=("gauss-seidel", "newton"), default=None,
                   help="iterative coupling method: gauss-seidel (constant-power boundary loads, the ANL scheme) or "
                        "newton (boundary loads matched to the feeders' power and slope) (default: the study's)")
    p.add_argument("--acceleration", choices=("none", "anderson"), default=None,
                   help="Anderson acceleration of the boundary voltages on top of the method (default: the study's, "
                        "none)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="iterative coupling tolerance, per unit (default: the study's, 1e-6)")
    p.add_argument("--max-iterations", type=int, default=None,
                   help="iterative coupling: give up (exit 4) after this many exchanges in a step "
                        "(default: the study's, 30)")
    p.add_argument("--max-buses", type=int, default=None, help="keep only the first N boundary buses")
    p.add_argument("--scale-mode", action="store_true",
                   help="one feeder per bus, its power multiplied by K (TDcoSim / ANDES-tutorial style)")
    p.add_argument("--stall-timeout", type=float, default=None, metavar="S",
                   help="end the run (exit 3) when it makes no progress and no federate computes for S seconds, "
                        "or a federate stays stopped that long (default [run] stall_timeout_s, 60)")
    p.add_argument("--sub-brokers", type=int, default=None,
                   help="broker hierarchy: root + S sub-brokers, federates spread across them (default flat)")
    add_json_option(p, "the run's summary (summary.json)")
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("summarize", parents=[COMMON],
                       help="rebuild RUN_DIR/summary.json from its outputs (after `helics run --path=RUN_DIR/"
                            "runner.json`, or a job killed before its last step) and print it")
    s.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder (from hpcsim run or a SLURM job)")
    add_json_option(s, "the summary")
    s.set_defaults(func=cmd_summarize)

    c = sub.add_parser("check", parents=[COMMON],
                       help="check a converged run independently: every feeder (or --sample N) re-solved alone at "
                            "its reported voltage, taps and capacitor steps; the transmission alone with the "
                            "reported loads (exit 0 pass, 5 fail)")
    c.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a converged steady-state run folder")
    c.add_argument("--sample", type=int, default=None, metavar="N", help="check N feeders drawn at random (seeded)")
    c.add_argument("--seed", type=int, default=0, help="seed of the --sample draw (default %(default)s)")
    add_json_option(c, "the check report")
    c.set_defaults(func=cmd_check)
