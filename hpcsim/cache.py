"""Caches of computed facts about the inputs, each in a folder of its own and keyed by every input that changes
its answer (file contents, settings, package versions, the version of the code that computes it).

Default location: ``<python prefix>/share/hpcsim/cache/<kind>/`` (inside the environment, beside ANDES's
generated code; never in ``~``); ``$HPCSIM_CACHE`` moves it. A cache entry is a small JSON file written
atomically, so concurrent processes computing the same entry cannot leave a torn one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir(kind: str) -> Path:
    base = Path(os.environ.get("HPCSIM_CACHE") or Path(sys.prefix) / "share" / "hpcsim" / "cache")
    return base / kind


def files_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the contents (and names) of files, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def package_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def key(**parts) -> str:
    """A cache key: SHA-256 of the parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load(kind: str, entry: str) -> dict | None:
    path = cache_dir(kind) / f"{entry}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


def store(kind: str, entry: str, value: dict) -> Path:
    folder = cache_dir(kind)
    path = folder / f"{entry}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, indent=1))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only environment: compute every time, say so once
        log.warning("cannot write cache entry %s: %s", path, exc)
    return path
