"""What a cached coordination is keyed by: every input that changes its answer — the feeder model's files, its
engine and solve settings, the versions of the packages that compute it (the OpenDSS engine and its bindings,
SciPy's HiGHS, numpy), the code (every module of this package, and whatever else the caller names), the
:class:`CoordinationSettings` and the study's own inputs (DERs, operating point, extremes, limits).

:func:`cache_key` is pure (tested without OpenDSS); :func:`feeder_cache_key` gathers its parts for a feeder model.
Entries live in their own folder, ``hpcsim.cache.cache_dir(KIND)``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from hpcsim import cache
from hpcsim.cases import FeederModel
from hpcsim.coordination.settings import DEFAULT, CoordinationSettings

KIND = "coordination"  # the cache folder's name (hpcsim.cache.cache_dir)
PACKAGES = ("opendssdirect.py", "dss-python", "dss-python-backend", "scipy", "numpy")


def code_files(extra: Iterable[Path] = ()) -> list[Path]:
    """The modules of this package, and ``extra`` (other code the cached answer depends on)."""
    return sorted(Path(__file__).parent.glob("*.py")) + [Path(p) for p in extra]


def cache_key(*, feeder_files: str, engine: dict, versions: dict[str, str], code: str,
              settings: CoordinationSettings, inputs: dict) -> str:
    """The key of one coordination: ``feeder_files`` and ``code`` are digests (:func:`hpcsim.cache.files_digest`),
    ``engine`` the model's entry file, solve settings and source, ``versions`` package -> version string,
    ``inputs`` the study's own (DERs, source voltage, extremes, limits)."""
    return cache.key(feeder_files=feeder_files, engine=engine, versions=versions, code=code,
                     settings=asdict(settings), inputs=inputs)


def feeder_cache_key(model: FeederModel, inputs: dict, settings: CoordinationSettings = DEFAULT,
                     extra_code: Iterable[Path] = ()) -> str:
    """:func:`cache_key` of a coordination of ``model`` with this environment's packages and code."""
    return cache_key(feeder_files=cache.files_digest(p for p in model.folder.rglob("*") if p.is_file()),
                     engine={"entry": model.entry.name, "solve_settings": list(model.solve_settings),
                             "source": model.source},
                     versions=cache.package_versions(*PACKAGES), code=cache.files_digest(code_files(extra_code)),
                     settings=settings, inputs=inputs)
