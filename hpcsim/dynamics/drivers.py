"""The federate loops of a dynamic study's roles (run by :func:`hpcsim.federation.federate.run_federate`, the
one federate entry point of every study kind).

The transmission loop steps the control intervals as an uninterruptible federate (granted exactly the time it
asks for, i.e. after every other federate has answered the previous interval); feeders and the AGC are event
driven (they ask for the end of time and are woken by new values). See :mod:`hpcsim.dynamics.roles`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from hpcsim.dynamics.configs import TIME_OFFSET
from hpcsim.errors import FederateError
from hpcsim.federation.rusage import peak_rss_mb

log = logging.getLogger("hpcsim.dynamics.drivers")


def make_role(cfg: dict):
    """The role object of a dynamic federate (``tds``, ``dfeeder`` or ``agc``)."""
    from hpcsim.dynamics import roles  # noqa: PLC0415 - ANDES and OpenDSS load only in the federate that needs them

    kinds = {"tds": roles.TdsRole, "dfeeder": roles.FeederRole, "agc": roles.AgcRole}
    return kinds[cfg["role"]](cfg)


def drive_tds(fed, role, _cfg: dict) -> None:
    """Transmission: for every control interval, read answers, publish, then ask HELICS for the next interval
    *asynchronously* and integrate to it meanwhile, so the others' work overlaps the integration."""
    import helics as h

    dt, ticks = role.cfg.control_s, role.cfg.ticks
    progress = Path(role.cfg.run_dir) / "progress.json"
    t0 = time.perf_counter()
    h.helicsFederateRequestTime(fed, TIME_OFFSET)
    exchange_s = time.perf_counter() - t0
    loop_andes_s = 0.0
    for tick in range(ticks + 1):
        t_s = tick * dt
        t0 = time.perf_counter()
        role.receive(tick)
        role.publish(tick, t_s)
        if tick == 0:
            role.record(t_s)
        other_s = time.perf_counter() - t0
        andes_s = 0.0
        if tick < ticks:
            h.helicsFederateRequestTimeAsync(fed, t_s + dt + TIME_OFFSET)
            andes_s = role.advance(t_s + dt)
            t0 = time.perf_counter()
            role.record(t_s + dt)  # the state at the end of the interval, with the limits that were in force
            other_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            h.helicsFederateRequestTimeComplete(fed)  # granted once every other federate has answered
            exchange_s += time.perf_counter() - t0
        role.timing(t_s, andes_s, exchange_s + other_s, peak_rss_mb())  # coupling: HELICS + values + rows
        exchange_s = 0.0
        role.maybe_flush(tick, last=tick == ticks)
        loop_andes_s += andes_s
        if tick % role.cfg.exchange_ticks == 0 or tick == ticks:
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(json.dumps({"tick": tick, "ticks": ticks, "t_s": t_s}))
            os.replace(tmp, progress)
    log.info("ANDES integrated %g s in %.2f s, %.2f s of it on the CPU (the rest preempted by other processes)",
             ticks * dt, loop_andes_s, role.grid.cpu_s)


def drive_event(fed, role, _cfg: dict) -> None:
    """Feeder or AGC: woken by new values, answer, until the transmission federate leaves. A role may spend part
    of its answer waiting in HELICS (a feeder's deferred answer); that time counts as exchange, not compute.
    Parquet rows are written after the next time request is out, so writing them never holds the federation
    (the transmission federate's next grant waits for this federate's request)."""
    import helics as h

    dt = role.cfg.control_s
    last_tick = -1
    while True:
        h.helicsFederateRequestTimeAsync(fed, h.HELICS_TIME_MAXTIME)
        if last_tick >= 0:
            role.maybe_flush(last_tick)
        t0 = time.perf_counter()
        granted = h.helicsFederateRequestTimeComplete(fed)
        exchange_s = time.perf_counter() - t0
        if granted >= h.HELICS_TIME_MAXTIME:
            break
        t_s = granted - TIME_OFFSET
        tick = int(round(t_s / dt))
        if tick <= last_tick or tick > role.cfg.ticks:
            raise FederateError(f"{role.name}: woken at HELICS time {granted} (tick {tick}, last {last_tick})")
        last_tick = tick
        t0 = time.perf_counter()
        waited_s = role.respond(fed, tick, t_s)
        role.timing(t_s, time.perf_counter() - t0 - waited_s, exchange_s + waited_s, peak_rss_mb())
    role.maybe_flush(last_tick, last=True)
