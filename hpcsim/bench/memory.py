"""Memory per feeder clone with one OpenDSS engine per clone ("separate") or one engine for all ("shared").

Each measurement runs in a fresh child process (``python -m hpcsim.bench.memory --model M --clones N --mode
MODE``, which prints one JSON line) so it starts from a clean interpreter. The child imports hpcsim's
distribution side and opendssdirect, then reads its resident set size (psutil, after ``gc.collect()`` and glibc's ``malloc_trim``) three
times: after the imports (``base_mb``), after the first clone was compiled and solved (``first_mb``), and after
every clone was solved (``total_mb``). Separate mode builds one :class:`FeederEngine` per clone; shared mode
one :class:`SharedEngine` that keeps each clone's small state. Clones get diverse source voltages
(0.97–1.05 pu), angles and load multipliers (0.6–1.0) from a seeded generator. The cost of one more clone is
``per_clone_mb = (total_mb − first_mb) / (clones − 1)``; the engine itself costs ``engine_mb = first_mb −
base_mb``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import subprocess
import sys

import psutil

from hpcsim.errors import HpcsimError, SolverError

log = logging.getLogger(__name__)
MODES = ("separate", "shared")
TIMEOUT_S = 300.0


def _validate(clones: int, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if clones < 2:
        raise ValueError(f"clones must be >= 2 (the cost per clone is measured beyond the first), got {clones}")


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) so RSS counts live memory, not the allocator's
    free lists; a no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb() -> float:
    gc.collect()
    _release_free_heap()
    return psutil.Process().memory_info().rss / 2**20


def measure_in_process(model: str, clones: int, mode: str, seed: int = 0) -> dict:
    """The measurement itself, in this process (meaningful only in a fresh one: see :func:`measure_clone_memory`)."""
    _validate(clones, mode)
    import numpy as np  # noqa: PLC0415 - the measuring child only (the suite imports this module)
    import opendssdirect  # noqa: F401 - loaded before the baseline so engine_mb is the engine alone

    from hpcsim.cases import resolve_feeder  # noqa: PLC0415 - the measuring child only (the suite imports this module)
    from hpcsim.distribution import (  # noqa: PLC0415 - the measuring child only (the suite imports this module)
        CloneState, FeederEngine, SharedEngine,
    )

    feeder = resolve_feeder(model)
    rng = np.random.default_rng(seed)
    states = [CloneState(f"clone_{k}", bus=1, load_mult=float(rng.uniform(0.6, 1.0)),
                         v_pu=float(rng.uniform(0.97, 1.05)), angle_deg=float(rng.uniform(-10.0, 10.0)))
              for k in range(clones)]
    base_mb = _rss_mb()
    engines: list = []  # kept alive until the last reading
    first_mb = 0.0
    for k, state in enumerate(states):
        if mode == "separate":
            engines.append(FeederEngine(feeder))
            engines[-1].solve(state)
        else:
            if not engines:
                engines.append(SharedEngine(feeder))
            engines[0].solve(state)
        if k == 0:
            first_mb = _rss_mb()
    total_mb = _rss_mb()
    return {"model": model, "mode": mode, "clones": clones, "base_mb": base_mb, "first_mb": first_mb,
            "total_mb": total_mb, "per_clone_mb": (total_mb - first_mb) / (clones - 1),
            "engine_mb": first_mb - base_mb}


def measure_clone_memory(model: str, clones: int, mode: str) -> dict:
    """RSS per feeder clone in a fresh child process.

    Returns ``{"model", "mode": "separate"|"shared", "clones", "base_mb" (after imports), "first_mb" (first clone
    compiled and solved), "total_mb" (all clones solved), "per_clone_mb" = (total − first) / (clones − 1),
    "engine_mb" = first − base}``. Raises ValueError for a bad mode or fewer than 2 clones, CaseError for an
    unknown model, SolverError if the child fails.
    """
    from hpcsim.cases import resolve_feeder  # noqa: PLC0415 - the measuring child only (the suite imports this module)

    _validate(clones, mode)
    resolve_feeder(model)  # an unknown model fails here, with the known names
    argv = [sys.executable, "-m", "hpcsim.bench.memory", "--model", model, "--clones", str(clones), "--mode", mode]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        raise SolverError(f"memory measurement {model}/{mode}/{clones} clones took more than {TIMEOUT_S:g} s "
                          f"({' '.join(argv)})") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SolverError(f"memory measurement {model}/{mode}/{clones} clones failed with exit code "
                          f"{proc.returncode}: {why}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise SolverError(f"memory measurement {model}/{mode}: unreadable output {lines[-1]!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.bench.memory",
                                     description="RSS per feeder clone; prints one JSON line")
    parser.add_argument("--model", required=True, help="feeder name (ieee8500, ieee34, ieee13) or .dss path")
    parser.add_argument("--clones", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    try:
        result = measure_in_process(args.model, args.clones, args.mode, args.seed)
    except (HpcsimError, ValueError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return getattr(exc, "exit_code", 2)
    print(json.dumps(result))  # the child's one output line, read by measure_clone_memory
    return 0


if __name__ == "__main__":
    sys.exit(main())
