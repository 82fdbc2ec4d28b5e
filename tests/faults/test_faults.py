"""Faults injected into running federations (the bus-8 study as a 96-step QSTS, so it is still running when the
fault lands): a frozen feeder (SIGSTOP), the runner killed hard while a feeder is frozen, SIGTERM, the root
broker killed, a full disk. Each is checked for its exit status, the time it takes to end, what is left running
and that every output file the run wrote is readable and matches its writer's record."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from hpcsim.output.readers import COLUMNS
from hpcsim.output.written import verify
from tests.integration.helpers import federate_process, start_hpcsim, wait_for_step, wait_gone, write_study

pytestmark = pytest.mark.integration

STALL_S = 4


def day_study(tmp_path: Path) -> Path:
    return write_study(tmp_path / "qsts.toml", "activsg200_ieee8500_bus8.toml", name="bus8_qsts96",
                       coupling={"mode": "loose"},
                       time={"mode": "qsts", "start_s": 0, "stop_s": 86400, "step_s": 900,
                             "load_profile": "rts_winter_weekday"})


def outputs_intact(run_dir: Path) -> None:
    checked = verify(run_dir, dict(COLUMNS))
    assert checked.files > 0 and checked.ok, checked.problems


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / "run"
    proc = start_hpcsim(["-q", "run", str(day_study(tmp_path)), "--out", str(run_dir), "--stall-timeout",
                         str(STALL_S), *extra])
    wait_for_step(run_dir, 2, proc)
    return proc, run_dir


def test_a_frozen_feeder_ends_the_run_at_the_stall_timeout_and_nothing_is_left(tmp_path):
    proc, run_dir = start(tmp_path)
    victim = federate_process(run_dir, "feeders_001")
    t0 = time.monotonic()
    victim.send_signal(signal.SIGSTOP)
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, err
    (line,) = err.strip().splitlines()
    assert line.startswith("hpcsim: error: federate feeders_001") and "stopped" in line, line
    assert STALL_S <= elapsed < STALL_S + 10, elapsed
    assert wait_gone(run_dir) == []  # the stopped process too
    assert json.loads((run_dir / "summary.json").read_text())["converged"] is False
    outputs_intact(run_dir)


def test_the_runner_killed_hard_takes_a_frozen_feeder_with_it(tmp_path):
    proc, run_dir = start(tmp_path, "--stall-timeout", "600")
    federate_process(run_dir, "feeders_000").send_signal(signal.SIGSTOP)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_gone(run_dir, timeout_s=10) == []
    outputs_intact(run_dir)


def test_sigterm_exits_143_with_readable_outputs(tmp_path):
    proc, run_dir = start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "hpcsim: terminated (SIGTERM)"
    assert wait_gone(run_dir) == []
    outputs_intact(run_dir)


def test_losing_the_root_broker_ends_the_run_promptly(tmp_path):
    proc, run_dir = start(tmp_path)
    (broker,) = [p for p in psutil.process_iter(["cmdline", "cwd"])
                 if p.info["cwd"] == str(run_dir.resolve())
                 and any(a.startswith("--name=root_") for a in p.info["cmdline"] or [])]
    t0 = time.monotonic()
    broker.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "root_broker" in err.strip().splitlines()[-1]
    assert time.monotonic() - t0 < 15
    assert wait_gone(run_dir) == []
    outputs_intact(run_dir)


def test_a_full_disk_ends_the_run_with_the_cause_and_readable_outputs(tmp_path):
    disk = tmp_path / "small disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run_dir = disk / "run"
        proc = start_hpcsim(["-q", "run", str(day_study(tmp_path)), "--out", str(run_dir)])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 3, err
        line = err.strip().splitlines()[-1]
        assert line.startswith("hpcsim: error: ") and "No space left on device" in line, err
        assert wait_gone(run_dir) == []
        outputs_intact(run_dir)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        shutil.rmtree(disk, ignore_errors=True)
