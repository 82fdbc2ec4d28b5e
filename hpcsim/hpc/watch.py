"""The job's node watchdog: ``python -m hpcsim.hpc.watch RUN_DIR --root-port P --notify PID``.

A node that is lost mid-run (power, kernel, its processes killed) takes its sub-broker and feeder ranks with
it. The federates left wait for their answers, and HELICS does not report a vanished child broker; SLURM
notices only after ``SlurmdTimeout`` (300 s by default) and then requeues or cancels the job. So the job script
starts this watchdog on node 0: every ``--interval`` seconds it opens (and closes at once) a TCP connection to
each node's sub-broker, at the address and port the federates use (``HPCSIM_NODE_ADDRS``, ``HPCSIM_SUB_PORT``).
A node whose sub-broker answered once and then fails ``--misses`` checks in a row, while the root broker still
answers (the federation has not ended by itself), is lost: the watchdog records why in
``<run>/errors/watchdog.json`` (the node, its address, the federates placed on it) and sends SIGUSR1 to the
job script, which stops every step and exits 3 with that cause.

It also ends a job that stops progressing (``--stall-timeout``: ``progress.json`` unchanged that long while the
brokers answer, e.g. a frozen feeder rank on any node), with the same record and signal. The job script renders
the timeout from the plan: at least 60 s, and 5 × the predicted start-up plus one iteration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from hpcsim.console import setup_logging
from hpcsim.hpc.rank import ENV_ADDRS, ENV_NODES, ENV_SUB_PORT

log = logging.getLogger("hpcsim.watch")

INTERVAL_S = 5.0
MISSES = 2
CONNECT_TIMEOUT_S = 3.0


def probe(addr: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """None if something accepts a TCP connection at ``addr:port``, else why not."""
    try:
        with socket.create_connection((addr, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def federates_on(plan_path: Path, node: int) -> list[str]:
    """The federates the plan places on ``node`` (the transmission federate on node 0, feeder ranks)."""
    from hpcsim.federation.layout import TRANSMISSION, group_name  # noqa: PLC0415 - the node watchdog stays numpy-free

    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    n = plan["nodes"][node]
    names = [TRANSMISSION] if node == 0 else []
    return names + [group_name(r) for r in range(n["first_rank"], n["first_rank"] + n["ranks"])]


STALLED = -1  # what watch() returns when the federation stopped progressing


def _progress_mark(run_dir: Path) -> tuple[int, int] | None:
    try:
        st = (run_dir / "progress.json").stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def _record(run_dir: Path, record: dict) -> None:
    folder = run_dir / "errors"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "watchdog.json").write_text(json.dumps(record, indent=1))
    log.error("%s", record["message"])


def watch(run_dir: Path, nodes: list[str], addrs: list[str], sub_port: int, root_port: int, plan_path: Path,
          interval_s: float = INTERVAL_S, misses: int = MISSES, stall_timeout_s: float = 0.0) -> int | None:
    """Probe until a node is lost (returns its index), the federation stops progressing (``progress.json``
    unchanged for ``stall_timeout_s`` while every broker answers: :data:`STALLED`; 0 = not checked) or the
    federation ends by itself (None)."""
    seen = [False] * len(nodes)
    missed = [0] * len(nodes)
    why = [""] * len(nodes)
    mark, mark_at = _progress_mark(run_dir), time.monotonic()
    while True:
        now_mark = _progress_mark(run_dir)
        if now_mark != mark:
            mark, mark_at = now_mark, time.monotonic()
        if stall_timeout_s > 0 and time.monotonic() - mark_at >= stall_timeout_s:
            if probe(addrs[0], root_port) is not None:
                log.info("the root broker is gone: the federation ended by itself")
                return None
            try:
                last = (run_dir / "progress.json").read_text().strip()
            except OSError:
                last = "none recorded yet"
            _record(run_dir, {"federate": "watchdog", "node": nodes[0], "type": "Stalled", "federates": [],
                              "message": f"no progress for {time.monotonic() - mark_at:.0f} s (stall timeout "
                                         f"{stall_timeout_s:g} s; last progress: {last}) while the brokers "
                                         f"answer: a federate is frozen or deadlocked"})
            return STALLED
        for i, addr in enumerate(addrs):
            reason = probe(addr, sub_port)
            if reason is None:
                seen[i], missed[i] = True, 0
            elif seen[i]:
                missed[i] += 1
                why[i] = reason
        lost = [i for i in range(len(nodes)) if missed[i] >= misses]
        if lost:
            if probe(addrs[0], root_port) is not None:
                log.info("the root broker is gone too: the federation ended by itself")
                return None
            i = lost[0]
            names = federates_on(plan_path, i)
            message = (f"{nodes[i]} ({addrs[i]}) stopped answering: its sub-broker at tcp://{addrs[i]}:{sub_port} "
                       f"failed {missed[i]} checks {interval_s:g} s apart ({why[i]}) while the federation ran; "
                       f"the federates on it ({', '.join(names) or 'none placed'}) are lost (node down, or its "
                       f"processes killed)")
            _record(run_dir, {"federate": f"sub{i}_broker", "node": nodes[i], "type": "NodeLost",
                              "message": message, "federates": names})
            return i
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.hpc.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--root-port", type=int, required=True, help="the root broker's port (on node 0)")
    parser.add_argument("--plan", type=Path, default=None, help="plan.json (default: beside the run folder)")
    parser.add_argument("--notify", type=int, default=None, metavar="PID", help="send SIGUSR1 here when a node is lost")
    parser.add_argument("--interval", type=float, default=INTERVAL_S, help="seconds between checks (default %(default)s)")
    parser.add_argument("--misses", type=int, default=MISSES, help="failed checks in a row that lose a node")
    parser.add_argument("--stall-timeout", type=float, default=0.0, metavar="S",
                        help="end the job when progress.json has not changed for S seconds (0: never)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    nodes = os.environ.get(ENV_NODES, "").split()
    addrs = os.environ.get(ENV_ADDRS, "").split()
    port = os.environ.get(ENV_SUB_PORT, "")
    if not nodes or len(addrs) != len(nodes) or not port.isdigit():
        print(f"hpcsim: error: watch: {ENV_NODES}, {ENV_ADDRS} and {ENV_SUB_PORT} must be set by the job script",
              file=sys.stderr)
        return 2
    plan = args.plan or args.run_dir.parent / "plan.json"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the job script ends it when the steps are done
    lost = watch(args.run_dir, nodes, addrs, int(port), args.root_port, plan, args.interval, args.misses,
                 args.stall_timeout)
    if lost is None:
        return 0
    if args.notify:
        try:
            os.kill(args.notify, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    return 3


if __name__ == "__main__":
    sys.exit(main())
