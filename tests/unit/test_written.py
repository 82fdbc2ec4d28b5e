"""Output records (hpcsim.output.written): what a writer wrote is what a reader finds, or the difference is named."""

from __future__ import annotations

import pytest

from hpcsim.output.parquet import StepWriter
from hpcsim.output.written import record_path, verify

pytestmark = pytest.mark.unit
TABLES = {"steps": ["time_s", "iterations"]}


def written_run(tmp_path, steps=3):
    out = tmp_path / "run" / "outputs"
    w = StepWriter(out, "steps", "transmission")
    for k in range(steps):
        w.add(time_s=float(k), iterations=2, dv_pu=1e-7, ds_pu=1e-7, compute_s=0.1, exchange_s=0.01,
              peak_rss_mb=100.0)
        w.flush(k)
    return tmp_path / "run", out / "steps" / "federate=transmission"


def test_an_intact_run_verifies(tmp_path):
    run, _ = written_run(tmp_path)
    checked = verify(run, TABLES)
    assert checked.ok and checked.files == 3


@pytest.mark.parametrize("damage, why", [
    (lambda f: f.write_bytes(b"not parquet at all"), "not a readable Parquet file"),
    (lambda f: f.unlink(), "missing (written by the run, not on disk)"),
])
def test_a_damaged_or_missing_file_is_named(tmp_path, damage, why):
    run, folder = written_run(tmp_path)
    damage(folder / "part-00001.parquet")
    checked = verify(run, TABLES)
    assert not checked.ok and len(checked.problems) == 1
    assert checked.problems[0].startswith("outputs/steps/federate=transmission/part-00001.parquet: ")
    assert why in checked.problems[0] and why in checked.line()


def test_a_file_swapped_for_another_valid_one_fails_its_checksum(tmp_path):
    run, folder = written_run(tmp_path)
    (folder / "part-00000.parquet").write_bytes((folder / "part-00002.parquet").read_bytes())
    (problem,) = verify(run, TABLES).problems
    assert "part-00000.parquet: damaged (checksum differs" in problem


def test_a_file_nobody_recorded_is_reported(tmp_path):
    run, folder = written_run(tmp_path)
    lines = record_path(run / "outputs", "steps", "transmission").read_text().splitlines()
    record_path(run / "outputs", "steps", "transmission").write_text("\n".join(lines[:2]) + "\n{torn")
    (problem,) = verify(run, TABLES).problems
    assert "part-00002.parquet: not recorded by its writer" in problem


def test_a_run_without_records_is_checked_from_its_footers(tmp_path):
    run, folder = written_run(tmp_path)
    record_path(run / "outputs", "steps", "transmission").unlink()
    assert verify(run, TABLES).ok
    (folder / "part-00001.parquet").write_bytes(b"junk")
    assert len(verify(run, TABLES).problems) == 1
