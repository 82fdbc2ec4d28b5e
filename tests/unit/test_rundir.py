"""Run folders (hpcsim.rundir): refused before any work when they cannot be made, unique by default."""

from __future__ import annotations

import os

import pytest

from hpcsim.errors import StudyError
from hpcsim.rundir import check_new_folder, create_folder, create_unique_folder

pytestmark = pytest.mark.unit


def test_new_and_empty_folders_are_accepted(tmp_path):
    assert check_new_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    (tmp_path / "empty").mkdir()
    assert create_folder(check_new_folder(tmp_path / "empty")).is_dir()


@pytest.mark.parametrize("make, path, why", [
    (lambda t: (t / "f").write_text("x"), "f", "exists and is not a folder"),
    (lambda t: (t / "f").write_text("x"), "f/sub", "is a file, not a folder"),
    (lambda t: ((t / "d").mkdir(), (t / "d" / "x").write_text("")), "d", "exists and is not empty"),
])
def test_folders_that_cannot_be_run_folders_are_one_line(tmp_path, make, path, why):
    make(tmp_path)
    with pytest.raises(StudyError, match=why) as exc:
        check_new_folder(tmp_path / path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("path", ["/proc/hpcsim-out", "/sys/kernel/hpcsim-out"])
def test_kernel_file_systems_are_refused(path):
    if not os.path.isdir(os.path.dirname(path)):
        pytest.skip(f"no {os.path.dirname(path)} here")
    with pytest.raises(StudyError, match="file system"):
        check_new_folder(path)


def test_default_run_folders_started_in_the_same_instant_differ(tmp_path):
    made = {create_unique_folder(tmp_path / "runs", "study") for _ in range(20)}
    assert len(made) == 20 and all(p.is_dir() and p.name.startswith("study-") for p in made)
