"""The code passes ruff with the project's configuration (pyproject.toml [tool.ruff]): every ``# noqa`` left in it
names a rule that is checked, and a function-local import is one of the heavy modules declared there or says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_ruff_check_passes_on_the_package_and_the_tests():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                        "hpcsim", "tests"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert "No module named ruff" not in r.stderr, "ruff is in the dev extra: pip install -e '.[dev]'"
    assert r.returncode == 0, f"ruff check hpcsim tests:\n{r.stdout}{r.stderr}"
