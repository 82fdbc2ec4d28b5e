"""Child processes of a run: started in their own session, watched, and always torn down.

Children die with the runner even if it is killed hard (``PR_SET_PDEATHSIG``, SIGKILL), and live in their own
session so a terminal's Ctrl-C reaches only the runner, which then stops them in order.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        # SIGKILL, not SIGTERM: a stopped (frozen) child would hold a SIGTERM pending forever
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class ProcessGroup:
    """Named child processes with their logs; ``stop_all`` on every exit path (use as a context manager)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        logf = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        self._logs.append(logf)
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent, env=env, cwd=cwd)
        self.procs[name] = proc
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
        return proc

    def failed(self) -> list[tuple[str, int]]:
        """(name, exit code) of children that ended with a non-zero status (negative = killed by a signal)."""
        return [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None and p.returncode != 0]

    def running(self, names: list[str] | None = None) -> list[str]:
        names = list(self.procs) if names is None else names
        return [n for n in names if self.procs[n].poll() is None]

    def rss_mb(self) -> float:
        total = 0
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    total += psutil.Process(p.pid).memory_info().rss
                except psutil.Error:
                    pass
        return total / 2**20

    def wait(self, names: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running(names):
                return True
            time.sleep(0.05)
        return False

    def stop_all(self, grace_s: float = 3.0) -> None:
        """SIGTERM every live child's session, SIGKILL what is left after ``grace_s``."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            _signal_group(p, signal.SIGTERM)
            _signal_group(p, signal.SIGCONT)  # a stopped child acts on the SIGTERM only once continued
        deadline = time.monotonic() + grace_s
        for p in live:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        for f in self._logs:
            f.close()
        self._logs.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
