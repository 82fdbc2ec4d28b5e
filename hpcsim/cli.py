"""Command-line interface: ``hpcsim <command> ...``.

Every library error (:class:`hpcsim.errors.HpcsimError`) becomes one line on stderr and its exit code
(2 for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from hpcsim import __version__
from hpcsim.errors import HpcsimError

log = logging.getLogger("hpcsim")
DEFAULT_FEEDER = "ieee8500"


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


# --- metadata -----------------------------------------------------------------------------------------------


def _feeder_mw(args: argparse.Namespace) -> float:
    from hpcsim.cases import resolve_feeder  # noqa: PLC0415
    from hpcsim.distribution import nominal_load_mw  # noqa: PLC0415

    if args.feeder_mw is not None:
        if not args.feeder_mw > 0:
            raise HpcsimError(f"--feeder-mw must be positive, got {args.feeder_mw}")
        return float(args.feeder_mw)
    return nominal_load_mw(resolve_feeder(args.feeder))


def cmd_metadata_generate(args: argparse.Namespace) -> int:
    from hpcsim import metadata  # noqa: PLC0415
    from hpcsim.cases import read_matpower  # noqa: PLC0415

    case = read_matpower(args.case)
    p_feeder = _feeder_mw(args)
    pd = dict(zip(case.bus_ids.tolist(), case.pd_mw.tolist()))
    bmap = metadata.generate(pd, p_feeder, max_buses=args.max_buses)
    if args.output:
        metadata.write(bmap, args.output)
        log.info("wrote %s: %d boundary buses, %d feeders (P_feeder = %.3f MW)",
                 args.output, bmap.n_buses, bmap.n_feeders, p_feeder)
    else:
        sys.stdout.write(bmap.to_text())
    return 0


def _read_checked(args: argparse.Namespace):
    from hpcsim import metadata  # noqa: PLC0415
    from hpcsim.cases import read_matpower  # noqa: PLC0415

    bmap = metadata.read(args.file)
    case = None
    if args.case:
        case = read_matpower(args.case)
        pd = dict(zip(case.bus_ids.tolist(), case.pd_mw.tolist()))
        metadata.check_against_case(bmap, pd, args.case, str(args.file))
    return bmap, case


def cmd_metadata_check(args: argparse.Namespace) -> int:
    bmap, _ = _read_checked(args)
    Console().print(f"{args.file}: valid boundary map, {bmap.n_buses} buses, {bmap.n_feeders} feeders")
    return 0


def cmd_metadata_show(args: argparse.Namespace) -> int:
    bmap, case = _read_checked(args)
    p_feeder = _feeder_mw(args)
    loads = case.load_of() if case is not None else {}
    table = Table(title=f"{args.file} ({bmap.n_buses} buses, {bmap.n_feeders} feeders, P_feeder {p_feeder:.3f} MW)")
    for col in ("bus", "PD MW", "K", "feeder MW total"):
        table.add_column(col, justify="right")
    for bus, k in bmap.clones().items():
        pd = f"{loads[bus][0]:.2f}" if bus in loads else "-"
        table.add_row(str(bus), pd, str(k), f"{k * p_feeder:.2f}")
    Console().print(table)
    return 0


# --- environment --------------------------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> int:
    from hpcsim.transmission import prepare  # noqa: PLC0415

    from hpcsim.dynamics.andes_der import prepare as prepare_dynamics  # noqa: PLC0415

    path = prepare(force=args.force)
    log.info("ANDES generated code ready in %s", path)
    path = prepare_dynamics(force=args.force)
    log.info("ANDES code with hpcsim's DER model ready in %s", path)
    return 0


# --- parser -------------------------------------------------------------------------------------------------


def _add_feeder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feeder", default=DEFAULT_FEEDER,
                   help="feeder model: ieee8500, ieee34, ieee13 or a .dss path (default %(default)s)")
    p.add_argument("--feeder-mw", type=float, default=None,
                   help="P_feeder in MW (default: the model's total nominal load, Σ Load kW)")


def common_options() -> argparse.ArgumentParser:
    """-v/-q, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only, no progress bar")
    return common


COMMON = common_options()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcsim", description="T&D co-simulation orchestrator: ANDES + OpenDSS over HELICS, local or SLURM."
    )
    parser.add_argument("--version", action="version", version=f"hpcsim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bar")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("prepare", parents=[COMMON], help="generate ANDES model code once for this environment")
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    p.set_defaults(func=cmd_prepare)

    md = sub.add_parser("metadata", parents=[COMMON], help="boundary maps (ANL metadata format)")
    mds = md.add_subparsers(dest="metadata_command", metavar="ACTION", required=True)

    g = mds.add_parser("generate", parents=[COMMON], help="boundary map from a case: PD > P_feeder, K = ceil(PD / P_feeder)")
    g.add_argument("--case", required=True, help="ACTIVSg200, ACTIVSg2000, ACTIVSg10k/25k/70k or a MATPOWER .m path")
    _add_feeder_options(g)
    g.add_argument("--max-buses", type=int, default=None, help="keep only the first N boundary buses")
    g.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: standard output)")
    g.set_defaults(func=cmd_metadata_generate)

    c = mds.add_parser("check", parents=[COMMON], help="validate a boundary map (exit 0 valid, 2 invalid)")
    c.add_argument("file", type=Path)
    c.add_argument("--case", default=None, help="also check the buses exist and carry load in this case")
    c.set_defaults(func=cmd_metadata_check)

    s = mds.add_parser("show", parents=[COMMON], help="table of a boundary map: bus, PD, K, feeder MW")
    s.add_argument("file", type=Path)
    s.add_argument("--case", default=None, help="case to read PD from")
    _add_feeder_options(s)
    s.set_defaults(func=cmd_metadata_show)

    _register_run_commands(sub)
    return parser


def _register_run_commands(sub) -> None:
    """Commands implemented in other modules register their own parsers."""
    from hpcsim.bench.cli import register as register_bench  # noqa: PLC0415
    from hpcsim.federation.cli import register as register_run  # noqa: PLC0415
    from hpcsim.hpc.cli import register as register_hpc  # noqa: PLC0415
    from hpcsim.output.cli import register as register_output  # noqa: PLC0415

    register_run(sub)
    register_hpc(sub)
    register_output(sub)
    register_bench(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args) or 0)
    except HpcsimError as exc:
        print(f"hpcsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpcsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
