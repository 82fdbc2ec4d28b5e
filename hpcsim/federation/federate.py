"""The one federate process entry point of every study kind, and the steady-state federate loops.

``python -m hpcsim.federation.federate CONFIG.json`` starts one federate; the role comes from the config:
``transmission`` and ``feeders`` (snapshot, QSTS; the loops below) or ``tds``, ``dfeeder`` and ``agc`` (a
dynamic study; the loops in :mod:`hpcsim.dynamics.drivers`).

Time and iterations. Step k of the study runs at HELICS times ``k + 1 + 2·i·ε`` for iterations i = 0, 1, …
(ε = 1 / (4·(max_iterations + 2)), so a step never reaches the next one):

- the transmission federate solves with the feeders' latest powers and publishes every boundary voltage at
  ``k + 1 + 2iε``, then asks for ``k + 1 + 2(i+1)ε``;
- every feeder group is event driven: it asks for the end of time and HELICS wakes it at the time of the new
  voltages; it solves its feeders and publishes their powers at that same time;
- HELICS grants the transmission federate its next time only after every group has answered, so each
  iteration uses every feeder's response (a Gauss–Seidel exchange with a barrier). The transmission federate
  re-solves, and the step has converged when the voltage change ``dv_pu`` (ANL: sqrt(Σ ΔVm² + ΔVa²)) and every
  feeder's power change ``ds_pu`` (ANL: |ΔS| / 100 MVA) are below the tolerance; at ``max_iterations`` it raises
  :class:`ConvergenceError`.
- loose coupling is the same with one exchange per step: the feeders see the step's voltages, the transmission
  side keeps the powers they answer for the next step.

HELICS's own ``ITERATE_IF_NEEDED`` was tried first: it lets each federate iterate on partial updates and can
end a step with a published change nobody read, which is why iterations are explicit time sub-steps here.

On any error the federate records it in ``<run>/errors/<name>.json``, raises a HELICS global error so the
whole federation stops, and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from hpcsim.console import setup_logging
from hpcsim.dynamics import drivers as dynamic_drivers
from hpcsim.dynamics.wiring import DYNAMIC_ROLES
from hpcsim.errors import ConvergenceError, FederateError, HpcsimError
from hpcsim.federation.helics_config import attach, create_federate, read_federate_config
from hpcsim.federation.rusage import peak_rss_mb

log = logging.getLogger("hpcsim.federate")


class Clock:
    """HELICS time of (step, iteration) and back."""

    def __init__(self, max_iterations: int):
        self.eps = 1.0 / (4.0 * (max_iterations + 2))

    def time(self, step: int, iteration: int, side: int = 0) -> float:
        return step + 1.0 + (2 * iteration + side) * self.eps

    def locate(self, t: float) -> tuple[int, int]:
        step = int(math.floor(t + 1e-9)) - 1
        return step, int(round((t - step - 1.0) / (2 * self.eps)))


def drive_transmission(fed, role, _cfg: dict) -> None:
    """Transmission loop: solve, publish voltages, wait for every feeder's answer, repeat until converged."""
    import helics as h

    cfg = role.cfg
    clock = Clock(cfg.max_iterations)
    iterative = cfg.coupling == "iterative"
    tol, max_it = cfg.tolerance, cfg.max_iterations
    first = int((cfg.resume or {}).get("from_step", 0))  # resumed: the steps before are written
    for step in range(first, len(cfg.times_s)):
        compute_s = exchange_s = 0.0
        it = 0
        t0 = time.perf_counter()
        h.helicsFederateRequestTime(fed, clock.time(step, 0))
        exchange_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        role.solve(step, it)
        role.publish()
        compute_s += time.perf_counter() - t0
        while True:
            t0 = time.perf_counter()
            h.helicsFederateRequestTime(fed, clock.time(step, it + 1))
            exchange_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            ds_pu = role.receive(first=it == 0)
            dv_pu = role.solve(step, it + 1, ds_pu)
            compute_s += time.perf_counter() - t0
            log.debug("step %d iteration %d: dV %.3g pu, dS %.3g pu", step, it, dv_pu, ds_pu)
            it += 1
            role.report_progress(step, it, dv_pu, ds_pu)
            if not iterative or max(dv_pu, ds_pu) <= tol:
                break
            if it >= max_it:
                raise ConvergenceError(
                    f"step {step} (t = {cfg.times_s[step]:g} s) did not converge in {max_it} iterations: "
                    f"dV {dv_pu:.3g} pu, dS {ds_pu:.3g} pu (100 MVA); tolerance {tol:g}"
                )
            t0 = time.perf_counter()
            role.publish()
            compute_s += time.perf_counter() - t0
        role.end_step(step, it, dv_pu, ds_pu, compute_s, exchange_s, peak_rss_mb())


def drive_feeders(fed, role, _cfg: dict) -> None:
    """Feeder-group loop: woken by new boundary voltages, solve every feeder, publish their powers."""
    import helics as h

    clock = Clock(role.cfg.max_iterations)
    n = len(role.cfg.times_s)
    current, iterations = -1, 0
    compute_s = exchange_s = 0.0
    while True:
        t0 = time.perf_counter()
        granted = h.helicsFederateRequestTime(fed, h.HELICS_TIME_MAXTIME)
        exchange_s += time.perf_counter() - t0
        if granted >= h.HELICS_TIME_MAXTIME:
            break
        step, it = clock.locate(granted)
        log.debug("%s granted %.9f -> step %d iteration %d", role.name, granted, step, it)
        if step != current:
            if current >= 0:
                role.end_step(current, iterations, compute_s, exchange_s, peak_rss_mb())
                compute_s = exchange_s = 0.0
            current, iterations = step, 0
        if step >= n:
            raise FederateError(f"{role.name}: woken at HELICS time {granted} beyond the last step")
        t0 = time.perf_counter()
        role.respond(step, it)
        compute_s += time.perf_counter() - t0
        iterations += 1
    if current >= 0:
        role.end_step(current, iterations, compute_s, exchange_s, peak_rss_mb())


STEADY_ROLES = ("transmission", "feeders")  # a snapshot or QSTS study's federates
BOUNDARY_ROLES = ("transmission", "tds")  # the transmission side: it writes the federation's map


def make_role(cfg: dict):
    """The role object of any federate, by its config's ``role``."""
    if cfg["role"] == "transmission":
        from hpcsim.federation.roles import TransmissionRole  # noqa: PLC0415 - numpy, pyarrow: not in the exchange benchmark's federates

        return TransmissionRole(cfg)
    if cfg["role"] == "feeders":
        from hpcsim.federation.roles import FeederGroupRole  # noqa: PLC0415 - numpy, pyarrow: not in the exchange benchmark's federates

        return FeederGroupRole(cfg)
    if cfg["role"] in DYNAMIC_ROLES:
        return dynamic_drivers.make_role(cfg)
    raise FederateError(f"unknown federate role {cfg['role']!r} (one of {', '.join(STEADY_ROLES + DYNAMIC_ROLES)})")


def record_error(cfg: dict, exc: BaseException) -> None:
    folder = Path(cfg["run_dir"]) / "errors"
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"federate": cfg["name"], "type": type(exc).__name__, "message": str(exc),
               "traceback": traceback.format_exc()}
    if os.environ.get("SLURMD_NODENAME"):  # in a SLURM job: the node it ran on
        payload["node"] = os.environ["SLURMD_NODENAME"]
    (folder / f"{cfg['name']}.json").write_text(json.dumps(payload, indent=1))


def recorded_failure(run_dir: Path, failed: list[tuple[str, int]] | None = None) -> HpcsimError | None:
    """The first real error a federate recorded in ``<run>/errors/`` (not the echo of another's failure), as an
    exception to raise; else, if ``failed`` names dead processes, a FederateError naming the first. None if
    there is nothing to report."""
    records = []
    for path in sorted((run_dir / "errors").glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    primary = [r for r in records if "another federate failed" not in r["message"]] or records
    if primary:
        r = primary[0]
        cls = ConvergenceError if r["type"] == "ConvergenceError" else FederateError
        where = f" on {r['node']}" if r.get("node") else ""
        return cls(f"federate {r['federate']}{where} failed: {r['type']}: {r['message']} (logs in {run_dir / 'logs'})")
    if failed:
        name, code = failed[0]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return FederateError(f"federate {name} {how}{_disk_note(run_dir)} (log: {run_dir / 'logs' / (name + '.log')})")
    return None


FULL_DISK_BYTES = 1 << 20  # below this much free space a federate could not write its error record either


def _disk_note(run_dir: Path) -> str:
    """Why a federate may have died without a record: the run folder's file system is full."""
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return ""
    return f": No space left on device for the run folder ({free // 1024} kB free)" if free < FULL_DISK_BYTES else ""


FEDERATE_MAP = "federate_map.json"


def write_federate_map(fed, run_dir: Path) -> None:
    """``<run>/federate_map.json``: HELICS's own view of the federation once every federate has entered
    executing mode (the root broker's ``federate_map`` query: brokers, their cores and federates), which says
    through which sub-broker each federate reached the root. Best effort: a failed query is logged, not fatal."""
    import helics as h

    try:
        query = h.helicsCreateQuery("root", "federate_map")
        try:
            text = h.helicsQueryExecute(query, fed)
        finally:
            h.helicsQueryFree(query)
        found = json.loads(text) if isinstance(text, str) else text  # pyhelics parses JSON answers itself
        (run_dir / FEDERATE_MAP).write_text(json.dumps(found, indent=1) + "\n")
    except Exception as exc:  # noqa: BLE001 - a diagnostic, not part of the answer
        log.warning("no %s: the federate_map query failed: %s", FEDERATE_MAP, exc)


def serve(path: str | Path, build_role, drive_of) -> int:
    """A federate's whole life from its config file: build its role (solvers load before it connects), create
    the HELICS federate from the file, attach the role to the interfaces HELICS registered, enter executing
    mode, ``drive_of(cfg)(fed, role, cfg)``, disconnect. Any failure is recorded in ``<run>/errors/``, raised as
    a HELICS global error so the whole federation stops, and turned into the exit code (3, or the error's
    own)."""
    import helics as h

    try:
        doc, cfg = read_federate_config(path)
    except HpcsimError as exc:  # nowhere to record it: the run folder is named in the file
        log.error("%s", exc)
        return exc.exit_code
    fed = None
    t0 = time.perf_counter()
    try:
        role = build_role(cfg)
        if hasattr(role, "prepare"):  # work that needs no federation (the start solves) before connecting
            role.prepare()
        fed = create_federate(path)
        role.register(*attach(fed, doc))
        if hasattr(role, "initialize"):  # values it publishes now reach the others at time 0
            h.helicsFederateEnterInitializingMode(fed)
            role.initialize()
        h.helicsFederateEnterExecutingMode(fed)
        role.startup_s = time.perf_counter() - t0
        if cfg["role"] in BOUNDARY_ROLES:
            write_federate_map(fed, Path(cfg["run_dir"]))
        drive_of(cfg)(fed, role, cfg)
        h.helicsFederateDisconnect(fed)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded and ends the federation
        if isinstance(exc, KeyboardInterrupt):
            exc = FederateError(f"{cfg['name']}: interrupted")
        log.error("%s: %s: %s", cfg["name"], type(exc).__name__, exc)
        record_error(cfg, exc)
        if fed is not None:
            try:
                h.helicsFederateGlobalError(fed, 1, f"{cfg['name']}: {type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the federation may already be gone
                pass
        return exc.exit_code if isinstance(exc, HpcsimError) else 3
    finally:
        if fed is not None:
            try:
                h.helicsFederateFree(fed)
            except Exception:  # noqa: BLE001
                pass


def _drive_of(cfg: dict):
    return {"transmission": drive_transmission, "feeders": drive_feeders, "tds": dynamic_drivers.drive_tds,
            "dfeeder": dynamic_drivers.drive_event, "agc": dynamic_drivers.drive_event}[cfg["role"]]


def run_federate(path: str | Path) -> int:
    """Run one federate of any study kind to completion from its config file; returns the exit code."""
    return serve(path, make_role, _drive_of)


def federate_main(run, prog: str, argv: list[str] | None = None) -> int:
    """Process entry of a federate: ``prog CONFIG.json``; logging set up, ``run(path)`` returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m {prog} CONFIG.json", file=sys.stderr)
        return 2
    setup_logging(logging.INFO)
    logging.getLogger("hpcsim").setLevel(logging.DEBUG if os.environ.get("HPCSIM_DEBUG") else logging.INFO)
    logging.getLogger("andes").setLevel(logging.WARNING)
    return run(argv[0])


def main(argv: list[str] | None = None) -> int:
    return federate_main(run_federate, "hpcsim.federation.federate", argv)


if __name__ == "__main__":
    sys.exit(main())
