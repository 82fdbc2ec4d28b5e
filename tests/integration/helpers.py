"""Shared helpers for integration tests that start real federations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "cases"
BUS8_STUDY = CASES / "activsg200_ieee8500_bus8.toml"
HPCSIM = [sys.executable, "-m", "hpcsim.cli"]


def run_processes(run_dir: Path) -> list[psutil.Process]:
    """Live processes that belong to a run: federates (config under run_dir) and its brokers (by name)."""
    marks = [str(run_dir)]
    brokers = run_dir / "configs" / "brokers.json"
    if brokers.exists():
        marks += [f"--name={b['name']}" for b in json.loads(brokers.read_text())]
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmd for m in marks) and p.pid != os.getpid():
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
    import tomllib  # noqa: PLC0415

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
            lines += [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def hpcsim(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCSIM, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def resolve_alone(feeder: dict, v_pu: float, angle_deg: float, model: str = "ieee8500"):
    """An independent OpenDSS solve of one reported feeder: a fresh engine, the feeder's reported regulator taps
    and capacitor steps frozen, its source at the given boundary voltage."""
    from hpcsim.cases import FEEDERS  # noqa: PLC0415
    from hpcsim.distribution import CloneState, ControlState, FeederEngine  # noqa: PLC0415

    engine = FeederEngine(FEEDERS[model])
    engine.apply_control_state(ControlState(tuple(feeder["reg_taps"]), tuple(feeder["cap_states"])))
    engine.freeze_controls()
    return engine.solve(CloneState("alone", feeder["bus"], feeder.get("load_mult", 1.0), v_pu, angle_deg))


# the coupling tolerance (1e-6 on 100 MVA = 1e-4 MW) plus OpenDSS's own solution noise at tolerance 1e-6
POWER_ATOL_MW = 2e-4
