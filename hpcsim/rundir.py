"""Run folders: checked before any work starts, created atomically, unique by default.

A run folder given with ``--out`` must be new or empty, under a folder this process can write, on a real file
system (not ``/proc``, ``/sys`` or ``/dev``). Without ``--out`` the folder is ``runs/<study>-<time to the
microsecond>``, created with ``mkdir`` (which fails if it exists), so two runs started in the same second never
share one.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from hpcsim.errors import StudyError

# File systems that hold no files of ours (kernel interfaces): a run folder there fails half-way.
PSEUDO_FS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "securityfs", "tracefs",
             "configfs", "pstore", "bpf", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "autofs"}


def _mount_fs(path: Path) -> str | None:
    """The file-system type of the mount holding ``path`` (from /proc/self/mounts; None where unknown)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fs = "", None
    target = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, fs = mount, parts[2]
    return fs


def check_new_folder(path: Path, flag: str = "--out") -> Path:
    """Refuse (exit 2, one line) a folder the run could not create or must not overwrite; returns it absolute."""
    path = Path(os.path.abspath(path))
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise StudyError(f"{flag} {path}: exists and is not a folder")
        if any(path.iterdir()):
            raise StudyError(f"output folder {path} exists and is not empty")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise StudyError(f"{flag} {path}: {parent} is a file, not a folder")
    fs = _mount_fs(parent.resolve())
    if fs in PSEUDO_FS:
        raise StudyError(f"{flag} {path}: {parent} is on a {fs} file system (kernel interface), not for files")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StudyError(f"{flag} {path}: cannot create folders in {parent} (no write permission)")
    return path


def create_folder(path: Path, flag: str = "--out") -> Path:
    """Create the (checked) run folder and its parents; an empty existing one is taken as it is."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"{flag} {path}: cannot create it: {exc.strerror}") from None
    if any(path.iterdir()):  # another process filled it since the check
        raise StudyError(f"output folder {path} exists and is not empty")
    return path


def create_unique_folder(parent: Path, stem: str) -> Path:
    """``parent/<stem>-<YYYYmmdd-HHMMSS-ffffff>``, created atomically; a suffix ``-2``, ``-3``… on a clash."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"cannot create {parent}: {exc.strerror}") from None
    for k in range(1, 1000):
        path = parent / (f"{stem}-{stamp}" if k == 1 else f"{stem}-{stamp}-{k}")
        try:
            path.mkdir()
            return path.resolve()
        except FileExistsError:
            continue
        except OSError as exc:
            raise StudyError(f"cannot create {path}: {exc.strerror}") from None
    raise StudyError(f"cannot find a free run folder name for {parent / stem}")
