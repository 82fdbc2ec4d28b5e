"""Typed role configs: what crosses the process boundary from the plan to a federate, declared once per role as a
frozen dataclass and serialised to the ``hpcsim`` section of its JSON config.

:func:`from_dict` is strict both ways — a key the role does not declare, or a declared key that is missing, is a
:class:`~hpcsim.errors.FederateError` naming the key and the role — so a plan and a federate from different versions
fail at start-up with one line instead of a ``KeyError`` in the middle of a run. Lists in JSON become tuples, nested
tables become the nested dataclasses their fields declare.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from hpcsim.errors import FederateError

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """The JSON-ready form of a role config (nested dataclasses to dicts, tuples to lists); an optional field
    (default ``None``) left at ``None`` is left out."""
    optional = {f.name for f in dataclasses.fields(config) if f.default is None}
    return {k: v for k, v in _plain(dataclasses.asdict(config)).items() if not (k in optional and v is None)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# added to a role's settings when its config file is read (hpcsim.federation.helics_config.role_config)
RUNTIME_KEYS = ("name", "broker_address")


def parse_role(configs: dict[str, type], document: dict) -> Any:
    """The typed config of a role's settings as read from its config file (``role`` picks the class; the keys
    the reader adds, :data:`RUNTIME_KEYS`, are not part of it)."""
    name = document.get("name", "?")
    if document.get("role") not in configs:
        raise FederateError(f"{name}: role {document.get('role')!r} is not one of {', '.join(configs)}")
    return from_dict(configs[document["role"]], {k: v for k, v in document.items() if k not in RUNTIME_KEYS},
                     f"{name} ({document['role']} config)")


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """A ``cls`` from its JSON form (see module docstring)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise FederateError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(declared))
    if unknown:
        raise FederateError(f"{where}: unknown key {unknown[0]!r} (this hpcsim declares {', '.join(sorted(declared))})")
    missing = [n for n, f in declared.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FederateError(f"{where}: missing key {missing[0]!r}")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args and (len(args) == 2 and args[1] is Ellipsis) else None
        if item is None:
            return tuple(value)
        return tuple(_convert(item, v, f"{where}[{k}]") for k, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(options[0], value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
