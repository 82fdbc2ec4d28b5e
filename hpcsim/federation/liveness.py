"""Is a local federation still alive? The runner's watchdog, polled with the processes.

HELICS does not end a federation whose member stops answering (a frozen process keeps its sockets open; a
vanished sub-broker is not reported either, measured), so the runner judges from outside, every poll:

- a child process that has been *stopped* (SIGSTOP, a debugger, a frozen node) for ``timeout_s`` is named as the
  cause;
- a federation whose progress record (``progress.json``) has not changed for ``timeout_s`` while its processes
  together used less than :data:`IDLE_CPU_FRACTION` of one core is stuck (everyone waits on someone). A long
  solve is not a stall: it keeps a core busy.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import psutil

DEFAULT_STALL_TIMEOUT_S = 60.0
IDLE_CPU_FRACTION = 0.05  # of one core, over the window: HELICS processes waiting on each other use ~0


class Liveness:
    def __init__(self, progress_file: Path, timeout_s: float = DEFAULT_STALL_TIMEOUT_S):
        self.progress_file = progress_file
        self.timeout_s = timeout_s
        self._stopped_since: dict[int, float] = {}
        self._progress: bytes | None = None
        self._progress_at = time.monotonic()
        self._cpu: deque[tuple[float, float]] = deque()
        self._cpu_of: dict[int, float] = {}  # last CPU seconds of every process seen (so an exit does not subtract)

    def check(self, procs: dict[str, int]) -> str | None:
        """``procs``: name -> pid of the live children. Returns the cause of a stall, or None."""
        now = time.monotonic()
        for name, pid in procs.items():
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    status = p.status()
                    self._cpu_of[pid] = max(self._cpu_of.get(pid, 0.0), _cpu_s(p))
                for child in p.children(recursive=True):
                    self._cpu_of[child.pid] = max(self._cpu_of.get(child.pid, 0.0), _cpu_s(child))
            except psutil.Error:
                continue
            if status == psutil.STATUS_STOPPED:
                since = self._stopped_since.setdefault(pid, now)
                if now - since >= self.timeout_s:
                    return (f"federate {name} (pid {pid}) has been stopped for {now - since:.0f} s (SIGSTOP or "
                            f"frozen; the stall timeout is {self.timeout_s:g} s)")
            else:
                self._stopped_since.pop(pid, None)
        cpu = sum(self._cpu_of.values())
        try:
            current = self.progress_file.read_bytes()
        except OSError:
            current = None
        if current != self._progress:
            self._progress, self._progress_at = current, now
        self._cpu.append((now, cpu))
        while len(self._cpu) > 1 and self._cpu[1][0] <= now - self.timeout_s:
            self._cpu.popleft()
        idle_for = now - self._progress_at
        if idle_for >= self.timeout_s and self._cpu[0][0] <= now - self.timeout_s + 1.0:
            used = cpu - self._cpu[0][1]
            window = now - self._cpu[0][0]
            if used < IDLE_CPU_FRACTION * window:
                return (f"no progress for {idle_for:.0f} s and no federate computing ({used:.1f} s of CPU in "
                        f"{window:.0f} s): the federation is stuck (stall timeout {self.timeout_s:g} s)")
        return None


def _cpu_s(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0
