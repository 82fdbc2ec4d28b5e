"""Shared helpers for integration tests that start real federations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psutil
import pytest

from hpcsim.cases import FEEDERS
from hpcsim.checks import (
    POWER_ATOL_MW,  # noqa: F401 - the tolerance the tests use too
    check_answer,
    check_feeder,
)
from hpcsim.distribution import FeederEngine

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "cases"
BUS8_STUDY = CASES / "activsg200_ieee8500_bus8.toml"
HPCSIM = [sys.executable, "-m", "hpcsim.cli"]


def run_processes(run_dir: Path) -> list[psutil.Process]:
    """Live processes that belong to a run: any started in the run folder (the local runner starts every broker
    and federate there), naming the run folder on their command line, or carrying one of its brokers' names
    (from runner.json)."""
    marks = [str(run_dir)]
    runner = run_dir / "runner.json"
    if runner.exists():
        marks += [tok for f in json.loads(runner.read_text())["federates"] for tok in f["exec"].split()
                  if tok.startswith("--name=")]
    return processes_matching(marks, cwd=run_dir)


def processes_matching(marks: list[str], cwd: Path | None = None) -> list[psutil.Process]:
    """Live processes (not zombies, not this one) whose command line contains one of ``marks`` or whose working
    folder is ``cwd``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status", "cwd"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            here = cwd is not None and p.info["cwd"] is not None and Path(p.info["cwd"]) == Path(cwd).resolve()
            if p.info["status"] != psutil.STATUS_ZOMBIE and (here or any(m in cmd for m in marks)) \
                    and p.pid != os.getpid():
                found.append(p)
        except psutil.Error:
            continue
    return found


def wait_gone(run_dir: Path, timeout_s: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = run_processes(run_dir)
        if not left:
            return []
        time.sleep(0.1)
    return run_processes(run_dir)


def write_study(path: Path, base: str, **sections: dict) -> Path:
    """A study TOML derived from a shipped one, with sections replaced (paths made absolute)."""
    data = tomllib.loads((CASES / base).read_text())
    if "boundary_map" in data.get("distribution", {}):
        data["distribution"]["boundary_map"] = str((CASES / data["distribution"]["boundary_map"]).resolve())
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    lines = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value) -> str:
    """A TOML value: booleans in lower case, tables inline (``{ "4" = "ieee34" }``), the rest as JSON writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def hpcsim(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCSIM, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def resolve_alone(feeder: dict, v_pu: float, angle_deg: float, model: str = "ieee8500", controls: bool = False):
    """An independent OpenDSS solve of one reported feeder: a fresh engine, the feeder's reported regulator taps
    and capacitor steps, its source at the given boundary voltage; the controls held, or (``controls``) acting
    from the held solution (then an equilibrium leaves every tap and step where it is)."""
    with FeederEngine(FEEDERS[model]) as engine:
        held, acting = check_feeder(engine, feeder, v_pu, angle_deg)
    return acting if controls else held


def independent_checks(summary: dict, case: str = "ACTIVSg200", model: str = "ieee8500",
                       v_atol_pu: float = 1e-6) -> None:
    """The checks every converged answer must pass, independently of the coupling that produced it
    (:func:`hpcsim.checks.check_answer`: every feeder compiled afresh and re-solved alone at its bus's reported
    voltage with its reported taps and capacitor steps draws the reported power, and from there, controls
    acting, nothing moves; ANDES alone with the reported boundary loads gives the reported voltages)."""
    report = check_answer(summary, case, model, summary.get("gen_voltage", "setpoint"), v_atol_pu=v_atol_pu)
    assert report.feeders_checked == len(summary["feeders"]) > 0
    assert report.ok, report.problems


def qsts_study(tmp_path: Path, **extra) -> Path:
    """The bus-8 study as a 24-step hourly QSTS (loose coupling, seeded 2 % clone diversity)."""
    return write_study(tmp_path / "qsts.toml", "activsg200_ieee8500_bus8.toml", name="bus8_qsts",
                       coupling={"mode": "loose"},
                       time={"mode": "qsts", "start_s": 0, "stop_s": 86400, "step_s": 3600,
                             "load_profile": "rts_winter_weekday"},
                       diversity={"load_mult_std": 0.02, "seed": 7}, **extra)


def start_hpcsim(args: list[str], **kw) -> subprocess.Popen:
    """``hpcsim ARGS`` in the background, text pipes."""
    return subprocess.Popen([*HPCSIM, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Block until the run's progress file reports ``step`` finished steps (the run must stay alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads((run_dir / "progress.json").read_text())["step"] >= step:
                return
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail(f"run did not reach step {step}")


def federate_process(run_dir: Path, name: str) -> psutil.Process:
    """The one live process running federate ``name`` of a run (started in the run folder with its config)."""
    found = [p for p in psutil.process_iter(["cmdline", "cwd"])
             if p.info["cwd"] and Path(p.info["cwd"]) == Path(run_dir).resolve()
             and f"configs/{name}.json" in (p.info["cmdline"] or [])]
    assert len(found) == 1, found
    return found[0]

