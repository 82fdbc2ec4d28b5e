"""The checked-in boundary maps are exactly what ``hpcsim metadata generate`` writes with P_feeder from OpenDSS.

Kept apart from tests/unit/test_metadata.py because P_feeder comes from compiling the IEEE 8500-node feeder
(a solver), which the unit tier must not need; the unit file checks the same bytes with ``--feeder-mw 10.773``.
"""

from __future__ import annotations

import os

import pytest

from hpcsim.cases import PROJECT_ROOT, resolve_feeder
from hpcsim.cli import main
from hpcsim.distribution import nominal_load_mw

pytestmark = pytest.mark.integration

METADATA_DIR = PROJECT_ROOT / "metadata"


def test_feeder_nominal_load_is_the_readme_figure():
    assert nominal_load_mw(resolve_feeder("ieee8500")) == pytest.approx(10.77317, abs=1e-5)


@pytest.mark.parametrize(
    ("extra", "name"),
    [([], "activsg200_ieee8500.txt"), (["--max-buses", "1"], "activsg200_ieee8500_bus8.txt")],
    ids=["full", "bus8"],
)
def test_checked_in_map_is_byte_identical_to_generate(tmp_path, capsys, extra, name):
    expected = (METADATA_DIR / name).read_bytes()
    out = tmp_path / name
    rc = main(["metadata", "generate", "--case", "ACTIVSg200", "--feeder", "ieee8500", "-o", str(out), *extra])
    assert rc == 0
    assert out.read_bytes() == expected
    assert os.listdir(tmp_path) == [name]

    capsys.readouterr()
    rc = main(["metadata", "generate", "--case", "ACTIVSg200", "--feeder", "ieee8500", *extra])
    stdout, _ = capsys.readouterr()
    assert rc == 0
    assert stdout.encode() == expected
