"""Options shared by every subcommand, declared once: ``-v``/``-q``, ``--json`` and ``-o/--out``.

The sub-CLIs (``federation/cli.py``, ``hpc/cli.py``, ``output/cli.py``, ``bench/cli.py``) take these from here,
not from :mod:`hpcsim.cli`, so imports point down from the top-level parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def common_options() -> argparse.ArgumentParser:
    """-v/-q, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only, no progress")
    return common


COMMON = common_options()


def add_json_option(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on standard output")


def add_out_option(p: argparse.ArgumentParser, help: str, required: bool = False, alias: str | None = None,
                   default: Path | None = None) -> None:
    """The one spelling of an output folder or file across commands: ``-o/--out``; ``alias`` is a former
    spelling, still accepted and not shown in ``--help``."""
    p.add_argument("-o", "--out", dest="out", type=Path, required=required, default=default, metavar="PATH",
                   help=help)
    if alias:
        p.add_argument(alias, dest="out", type=Path, help=argparse.SUPPRESS)
