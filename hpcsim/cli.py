"""Command-line interface: ``hpcsim <command> ...``.

Every library error (:class:`hpcsim.errors.HpcsimError`) becomes one line on stderr and its exit code
(2 for bad input), never a traceback; any other exception becomes one "internal error" line naming a file with
its traceback, exit 1. Ctrl-C exits 130, SIGTERM 143.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

from hpcsim import __version__
from hpcsim.bench.cli import register as register_bench
from hpcsim.cliopts import COMMON, add_json_option, add_out_option
from hpcsim.console import Table, emit_json, emit_line, emit_table, setup_logging
from hpcsim.errors import HpcsimError, Terminated, raise_terminated
from hpcsim.federation.cli import register as register_run
from hpcsim.hpc.cli import register as register_hpc
from hpcsim.output.cli import register as register_output

log = logging.getLogger("hpcsim")
DEFAULT_FEEDER = "ieee8500"


def _setup_logging(verbose: int) -> None:
    setup_logging(logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG)


# --- metadata -----------------------------------------------------------------------------------------------


def _feeder_mw(args: argparse.Namespace) -> float:
    from hpcsim.cases import resolve_feeder  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.distribution import nominal_load_mw  # noqa: PLC0415 - off `hpcsim --help`: numpy

    if args.feeder_mw is not None:
        if not args.feeder_mw > 0:
            raise HpcsimError(f"--feeder-mw must be positive, got {args.feeder_mw}")
        return float(args.feeder_mw)
    return nominal_load_mw(resolve_feeder(args.feeder))


def cmd_metadata_generate(args: argparse.Namespace) -> int:
    from hpcsim import metadata  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.cases import read_matpower  # noqa: PLC0415 - off `hpcsim --help`: numpy

    case = read_matpower(args.case)
    p_feeder = _feeder_mw(args)
    pd = dict(zip(case.bus_ids.tolist(), case.pd_mw.tolist()))
    bmap = metadata.generate(pd, p_feeder, max_buses=args.max_buses)
    result = {"case": args.case, "feeder": args.feeder, "p_feeder_mw": p_feeder, "buses": bmap.n_buses,
              "feeders": bmap.n_feeders, "file": str(args.out) if args.out else None}
    if args.out:
        metadata.write(bmap, args.out)
        log.info("wrote %s: %d boundary buses, %d feeders (P_feeder = %.3f MW)",
                 args.out, bmap.n_buses, bmap.n_feeders, p_feeder)
    if args.json:
        emit_json(result | ({} if args.out else {"clones": {str(b): k for b, k in bmap.clones().items()}}))
    elif not args.out:
        sys.stdout.write(bmap.to_text())
    return 0


def _read_checked(args: argparse.Namespace):
    from hpcsim import metadata  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.cases import read_matpower  # noqa: PLC0415 - off `hpcsim --help`: numpy

    bmap = metadata.read(args.file)
    case = None
    if args.case:
        case = read_matpower(args.case)
        pd = dict(zip(case.bus_ids.tolist(), case.pd_mw.tolist()))
        metadata.check_against_case(bmap, pd, args.case, str(args.file))
    return bmap, case


def cmd_metadata_check(args: argparse.Namespace) -> int:
    try:
        bmap, _ = _read_checked(args)
    except HpcsimError as exc:
        if args.json:
            emit_json({"file": str(args.file), "valid": False, "error": str(exc), "case": args.case})
        raise
    if args.json:
        emit_json({"file": str(args.file), "valid": True, "buses": bmap.n_buses, "feeders": bmap.n_feeders,
                   "case": args.case})
    else:
        emit_line(f"{args.file}: valid boundary map, {bmap.n_buses} buses, {bmap.n_feeders} feeders")
    return 0


def cmd_metadata_show(args: argparse.Namespace) -> int:
    bmap, case = _read_checked(args)
    p_feeder = _feeder_mw(args)
    loads = case.load_of() if case is not None else {}
    rows = [{"bus": bus, "pd_mw": loads[bus][0] if bus in loads else None, "clones": k,
             "feeders_mw": k * p_feeder} for bus, k in bmap.clones().items()]
    if args.json:
        emit_json({"file": str(args.file), "buses": bmap.n_buses, "feeders": bmap.n_feeders,
                   "p_feeder_mw": p_feeder, "case": args.case, "rows": rows})
        return 0
    table = Table(f"{args.file} ({bmap.n_buses} buses, {bmap.n_feeders} feeders, P_feeder {p_feeder:.3f} MW)",
                  ["bus", "PD MW", "K", "feeder MW total"], align=["r"] * 4)
    for r in rows:
        table.rows.append([str(r["bus"]), "-" if r["pd_mw"] is None else f"{r['pd_mw']:.2f}", str(r["clones"]),
                           f"{r['feeders_mw']:.2f}"])
    emit_table(table)
    return 0


# --- environment --------------------------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> int:
    from hpcsim.transmission import prepare  # noqa: PLC0415 - off `hpcsim --help`: numpy
    from hpcsim.transmission.der_model import prepare as prepare_dynamics  # noqa: PLC0415 - off `hpcsim --help`

    path = prepare(force=args.force)
    log.info("ANDES generated code ready in %s", path)
    path = prepare_dynamics(force=args.force)
    log.info("ANDES code with hpcsim's DER model ready in %s", path)
    return 0


# --- study files --------------------------------------------------------------------------------------------


def cmd_study_keys(args: argparse.Namespace) -> int:
    from hpcsim.study import key_reference, key_table  # noqa: PLC0415

    if args.out:
        args.out.write_text(key_reference())
        log.info("wrote %s", args.out)
    if args.json:
        emit_json(key_table())
    elif not args.out:
        emit_line(key_reference().rstrip("\n"))
    return 0


# --- parser -------------------------------------------------------------------------------------------------


def _add_feeder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feeder", default=DEFAULT_FEEDER,
                   help="feeder model: ieee8500, ieee34, ieee13 or a .dss path (default %(default)s)")
    p.add_argument("--feeder-mw", type=float, default=None,
                   help="P_feeder in MW (default: the model's total nominal load, Σ Load kW)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcsim", description="T&D co-simulation orchestrator: ANDES + OpenDSS over HELICS, local or SLURM."
    )
    parser.add_argument("--version", action="version", version=f"hpcsim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress")
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
    add_out_option(g, "file to write (default: standard output)", alias="--output")
    add_json_option(g, "the map's figures (and, without -o, its buses and clone counts)")
    g.set_defaults(func=cmd_metadata_generate)

    c = mds.add_parser("check", parents=[COMMON], help="validate a boundary map (exit 0 valid, 2 invalid)")
    c.add_argument("file", type=Path, help="boundary map in the ANL text format")
    c.add_argument("--case", default=None, help="also check the buses exist and carry load in this case")
    add_json_option(c, "{file, valid, buses, feeders} (also when invalid, with the error)")
    c.set_defaults(func=cmd_metadata_check)

    s = mds.add_parser("show", parents=[COMMON], help="table of a boundary map: bus, PD, K, feeder MW")
    s.add_argument("file", type=Path, help="boundary map in the ANL text format")
    s.add_argument("--case", default=None, help="case to read PD from")
    _add_feeder_options(s)
    add_json_option(s, "the table")
    s.set_defaults(func=cmd_metadata_show)

    st = sub.add_parser("study", parents=[COMMON], help="study files")
    sts = st.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    k = sts.add_parser("keys", parents=[COMMON], help="every study key: section, type, default, unit, help "
                                                        "(Markdown, the text of docs/study-keys.md)")
    add_out_option(k, "write the Markdown to this file (docs/study-keys.md)")
    add_json_option(k, "the keys")
    k.set_defaults(func=cmd_study_keys)

    _register_run_commands(sub)
    return parser


def _register_run_commands(sub) -> None:
    """Commands implemented in other modules register their own parsers."""
    register_run(sub)
    register_hpc(sub)
    register_output(sub)
    register_bench(sub)


# options whose value is itself an option (``--sbatch --qos=high``): argparse would read the value as a flag
VALUE_IS_AN_OPTION = ("--sbatch",)


def _attach_option_values(argv: Sequence[str]) -> list[str]:
    """``--sbatch --qos=high`` -> ``--sbatch=--qos=high`` (the spelling argparse accepts)."""
    out, items = [], list(argv)
    i = 0
    while i < len(items):
        if items[i] in VALUE_IS_AN_OPTION and i + 1 < len(items):
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_option_values(sys.argv[1:] if argv is None else argv))
    _setup_logging(-1 if args.quiet else args.verbose)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)  # SIGTERM ends any command as Ctrl-C does, exit 143
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a reader that went away is seen below and not at interpreter exit
        return code
    except HpcsimError as exc:
        print(f"hpcsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("hpcsim: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("hpcsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of standard output went away (`hpcsim ... | head -1`): the work itself is done and
        # written; stop writing without a traceback (Python would report the pipe again at exit)
        _silence_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last guard: one line and a pointer to the traceback
        print(f"hpcsim: internal error: {type(exc).__name__}: {_first_line(exc)} (traceback in "
              f"{_write_traceback()}; please report it)", file=sys.stderr)
        return 1


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[:limit] + "…"


def _write_traceback() -> str:
    """Write the current exception's traceback to a file of its own; returns its path."""
    try:
        fd, path = tempfile.mkstemp(prefix="hpcsim-internal-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(f"hpcsim {__version__}: {' '.join(sys.argv)}\n")
            traceback.print_exc(file=f)
        return path
    except OSError:
        return "(not written: no temporary folder)"


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
