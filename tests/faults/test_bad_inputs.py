"""The 121 bad inputs an outsider tried (``bad_inputs/README.md``, copied from the project's probes), each run as
the user ran it, in a copy of its folder: the exit status and the one-line message of ``bad_inputs/expected.toml``,
never a traceback, nothing left running, and no half-written run folder when the input is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import psutil
import pytest

from hpcsim.cases import PROJECT_ROOT

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent / "bad_inputs"
EXPECTED = tomllib.loads((HERE / "expected.toml").read_text())
BIN = Path(sys.executable).parent
TIMEOUT_S = 180


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def base1(tmp_path_factory) -> Path:
    """A finished run of the probes' study (bus 8, 3 feeders): what ``base1`` names in a command."""
    work = tmp_path_factory.mktemp("base")
    for name in ("study.toml", "map.txt"):
        shutil.copy(HERE / "c11_quiet_and_verbose" / name, work / name)
    r = subprocess.run(["hpcsim", "run", "study.toml", "--out", "base1", "-q"], cwd=work, env=_env(),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    return work / "base1"


def _script(command: str) -> str:
    command = command.replace("<project>", str(PROJECT_ROOT))
    return command[len("bash -c "):] if command.startswith("bash -c ") else command


def _left_running(folder: Path) -> list[str]:
    mark = str(folder)
    found = []
    for p in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if mark in " ".join(p.info["cmdline"] or []) or (p.info["cwd"] or "").startswith(mark):
                found.append(" ".join(p.info["cmdline"] or []))
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input(case: str, tmp_path: Path, request) -> None:
    want = EXPECTED[case]
    folder = tmp_path / case
    shutil.copytree(HERE / case, folder)
    if "base1" in want["command"]:
        shutil.copytree(request.getfixturevalue("base1"), folder / "base1")
    if "setup" in want:
        subprocess.run(["bash", "-c", want["setup"]], cwd=folder, check=True, env=_env())
    out_existed = (folder / "out").exists()
    r = subprocess.run(["bash", "-c", _script(want["command"])], cwd=folder, env=_env(), capture_output=True,
                       text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == want["exit"], f"{case}: exit {r.returncode}, stderr:\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if want["exit"] != 0:
        errors = [ln for ln in lines if ln.startswith("hpcsim: error:") or ": error:" in ln]
        assert len(errors) == 1 and lines[-1] == errors[0], f"{case}: not one error line:\n{r.stderr[-2000:]}"
        if not want.get("usage"):
            assert errors[0].startswith("hpcsim: error: "), errors[0]
        if "stderr" in want:  # the probes ran in the case's folder: compare with the paths relative to it
            assert want["stderr"] in errors[0].replace(f"{folder}/", ""), errors[0]
        assert len(errors[0]) < 600, errors[0]
    if want["exit"] == 2 and " --out out" in want["command"] and not out_existed:
        assert not (folder / "out").exists(), f"{case}: a refused input left a run folder"
    assert _left_running(folder) == []
