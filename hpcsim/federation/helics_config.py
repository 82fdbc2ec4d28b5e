"""Federate config files in HELICS's own JSON format, and the ``helics run`` runner file of a run.

Every federate of a run has one file, ``<run>/configs/<name>.json``: a standard HELICS federate config (name,
core type, broker address, interface network, flags, publications and subscriptions with their types and
units) that HELICS itself loads (:func:`create_federate` calls ``helicsCreateValueFederateFromConfig``), plus
one ``"hpcsim"`` section — the role's settings, which HELICS ignores. Paths in the ``hpcsim`` section are
relative to the run folder (``run_dir`` is ``".."``: the folder holding ``configs/``).

``<run>/runner.json`` lists the brokers and every federate with its command, directory and environment in the
format of ``helics run --path=<run>/runner.json`` (HELICS's runner, from the ``helics`` Python package); the
local runner starts exactly those commands, so ``helics run`` re-runs the same federation, and ``hpcsim
summarize <run>`` rebuilds its ``summary.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hpcsim.console import to_json
from hpcsim.errors import StudyError

RUN_DIR_FROM_CONFIG = ".."  # a federate config's run folder, relative to the config's own folder
LOG_LEVEL = "warning"


@dataclass(frozen=True)
class Interface:
    """A publication or subscription: its (global) key, HELICS data type and unit."""

    key: str
    type: str  # "complex", "double", "vector"
    unit: str = ""

    def publication(self) -> dict:
        return {"key": self.key, "type": self.type, "unit": self.unit, "global": True}

    def subscription(self) -> dict:
        return {"key": self.key, "type": self.type, "unit": self.unit}


def federate_config(name: str, role: Mapping, broker_address: str, publications: Iterable[Interface] = (),
                    subscriptions: Iterable[Interface] = (), *, uninterruptible: bool = False,
                    network: str = "local", interface: str | None = None) -> dict:
    """A federate's config file: HELICS's federate config and the role's settings under ``"hpcsim"``.

    ``uninterruptible``: granted exactly the time it asks for (the transmission side's barrier).
    ``network``: HELICS ``interface_network`` (``local`` = loopback, ``ipv4``); ``interface``: the address to
    bind (a node's own address on a cluster) instead.
    """
    cfg: dict = {"name": name, "core_type": "zmq", "broker_address": broker_address, "local_port": "os"}
    if interface:  # bind this node's own address (HELICS's --local_interface; no JSON key of its own)
        cfg["core_init_string"] = f"--local_interface={interface}"
    else:
        cfg["interface_network"] = network
    cfg.update({"terminate_on_error": True, "uninterruptible": bool(uninterruptible), "log_level": LOG_LEVEL,
                "publications": [i.publication() for i in publications],
                "subscriptions": [i.subscription() for i in subscriptions],
                "hpcsim": dict(role)})
    return cfg


def role_config(doc: Mapping, path: Path) -> dict:
    """The role settings of a federate config file, with its name and the run folder resolved (absolute)."""
    try:
        role = dict(doc["hpcsim"])
        role["name"] = doc["name"]
    except (KeyError, TypeError):
        raise StudyError(f"federate config {path}: not an hpcsim federate config (no 'name' / 'hpcsim')") from None
    run_dir = Path(role.get("run_dir", RUN_DIR_FROM_CONFIG))
    role["run_dir"] = str(run_dir if run_dir.is_absolute() else (path.parent / run_dir).resolve())
    role["broker_address"] = doc.get("broker_address", "")
    return role


def read_federate_config(path: str | Path) -> tuple[dict, dict]:
    """(the whole file, its role settings via :func:`role_config`)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"federate config {path}: {exc}") from None
    return doc, role_config(doc, path.resolve())


def write_config(path: Path, cfg: Mapping) -> Path:
    """Write a config pretty-printed (strict JSON), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(cfg) + "\n")
    os.replace(tmp, path)
    return path


def create_federate(path: str | Path):
    """The HELICS value federate of a config file, created by HELICS from the file itself."""
    import helics as h

    return h.helicsCreateValueFederateFromConfig(str(Path(path).resolve()))


def attach(fed, doc: Mapping) -> tuple[dict[str, object], dict[str, object]]:
    """(publication by key, subscription by key) of the interfaces HELICS registered from ``doc``."""
    import helics as h

    pubs = {p["key"]: h.helicsFederateGetPublication(fed, p["key"]) for p in doc.get("publications", ())}
    subs = {s["key"]: h.helicsFederateGetInputByTarget(fed, s["key"]) for s in doc.get("subscriptions", ())}
    return pubs, subs


# --- runner.json ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """One entry of ``runner.json``: a broker or a federate, its command line and where it runs."""

    name: str
    argv: tuple[str, ...]
    directory: str = "."
    env: tuple[tuple[str, str], ...] = ()
    host: str = "localhost"

    def entry(self) -> dict:
        out = {"name": self.name, "directory": self.directory, "exec": shlex.join(self.argv), "host": self.host}
        if self.env:
            out["env"] = dict(self.env)
        return out


def federate_process(name: str, module: str, config: str, python: str | None = None) -> Process:
    """A federate started as ``python -m MODULE configs/<name>.json`` in the run folder."""
    return Process(name, (python or sys.executable, "-m", module, config))


def runner_file(name: str, processes: Iterable[Process]) -> dict:
    """The ``helics run`` file: no automatic broker (hpcsim lists its own, with their names and ports)."""
    return {"name": name, "broker": False, "federates": [p.entry() for p in processes]}


def read_runner(run_dir: Path) -> list[Process]:
    """The processes of ``<run>/runner.json``."""
    path = run_dir / "runner.json"
    try:
        doc = json.loads(path.read_text())
        return [Process(f["name"], tuple(shlex.split(f["exec"])), f.get("directory", "."),
                        tuple(sorted(f.get("env", {}).items())), f.get("host", "localhost"))
                for f in doc["federates"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: not a readable runner file: {exc}") from None
