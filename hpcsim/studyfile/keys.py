"""A study file's key declared once: a dataclass field made by :func:`key` (section, TOML name, unit, help, what
TOML types it accepts, an optional converter). The reader (unknown sections and keys, type checks, int → float,
converters, required keys) and the key reference (docs/study-keys.md) both come from ``dataclasses.fields``.

The TOML types a key accepts follow from its annotation (``float`` takes integers too and is read as a float;
``bool`` is never an ``int``) unless the key says otherwise (``accepts=``), e.g. a profile given as a name or
a list. A converter ``convert(value, ctx)`` turns the TOML value into the field's value (paths relative to the
study file, per-bus tables) and raises :class:`StudyError` naming ``ctx.where`` and the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hpcsim.errors import StudyError

_META = "hpcsim.studyfile.key"
TOP = ""  # the section of the keys before any [table]
TOML_TYPES = {int: "integer", float: "float", bool: "boolean", str: "string", list: "array", dict: "table"}


@dataclass(frozen=True)
class Context:
    """Where a value comes from: the study file as named (for messages) and its folder (for relative paths)."""

    where: str
    base: Path


Converter = Callable[[Any, Context], Any]


@dataclass(frozen=True)
class Key:
    """The declaration of one key (the field's metadata)."""

    section: str
    help: str
    unit: str = ""
    toml: str | None = None  # the key's name in the file when it differs from the field's
    accepts: tuple[type, ...] | None = None  # TOML types; None: from the annotation
    convert: Converter | None = None
    shown: str | None = None  # the default as the reference states it, when the field's default is not it
    example: str | None = None  # a line of TOML, quoted when a required key is missing
    table: type | None = None  # the key is a whole [section] read by this declared dataclass


def key(section: str, default: Any = dataclasses.MISSING, *, help: str, **meta: Any) -> Any:
    """A dataclass field declaring a study key (no ``default``: the key is required)."""
    return dataclasses.field(default=default, metadata={_META: Key(section, help, **meta)})


@dataclass(frozen=True)
class Declared:
    """A declared key as the reader uses it: field, declaration, accepted TOML types, default."""

    field: str
    key: Key
    accepts: tuple[type, ...]
    default: Any

    @property
    def name(self) -> str:
        return self.key.toml or self.field

    @property
    def label(self) -> str:
        return f"[{self.key.section}] {self.name}" if self.key.section else self.name

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def takes(self, value: Any) -> bool:
        """Whether ``value`` has one of the accepted TOML types (a boolean is not an integer)."""
        return isinstance(value, self.accepts) and (not isinstance(value, bool) or bool in self.accepts)

    def read(self, value: Any, ctx: Context) -> Any:
        if self.key.convert is not None:
            return self.key.convert(value, ctx)
        return float(value) if float in self.accepts else value


def _accepts(hint: Any, where: str) -> tuple[type, ...]:
    """The TOML types of a plain annotation: ``float`` (integers too), ``int``, ``bool``, ``str``, ``X | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint is float:
        return (int, float)
    if hint in (int, bool, str):
        return (hint,)
    raise TypeError(f"{where}: annotation {hint} needs accepts= in its key()")


@cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The keys a dataclass declares, in declaration order (fields without :func:`key` are not keys)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        k = f.metadata.get(_META)
        if k is None:
            continue
        accepts = (dict,) if k.table else k.accepts or _accepts(hints[f.name], f"{cls.__name__}.{f.name}")
        out.append(Declared(f.name, k, accepts, f.default))
    return tuple(out)


@cache
def sections(cls: type) -> dict[str, dict[str, Declared]]:
    """Section → TOML name → key, in declaration order; a ``table`` key contributes its dataclass's keys."""
    out: dict[str, dict[str, Declared]] = {}
    for d in declared(cls):
        if d.key.table:
            out.setdefault(d.key.section, {}).update(sections(d.key.table)[d.key.section])
        else:
            out.setdefault(d.key.section, {})[d.name] = d
    return out


def check_document(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Unknown sections and keys, and each value's TOML type, for a whole file (tables included)."""
    known = sections(cls)
    for name, value in data.items():
        if isinstance(value, dict):
            if name == TOP or name not in known:
                raise StudyError(f"{where}: unknown section [{name}]; known: {', '.join(s for s in known if s)}")
            _check_table(known[name], value, f"[{name}] ", where)
        else:
            _check_table(known[TOP], {name: value}, "", where)


def _check_table(keys: Mapping[str, Declared], table: Mapping[str, Any], prefix: str, where: str) -> None:
    for name, value in table.items():
        if name not in keys:
            raise StudyError(f"{where}: unknown key {prefix}{name}; known: {', '.join(keys)}")
        if not keys[name].takes(value):
            raise StudyError(f"{where}: {prefix}{name} = {value!r} has the wrong type")


def by_section(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A checked file as section → table (the top-level keys under :data:`TOP`)."""
    return {TOP: {k: v for k, v in data.items() if not isinstance(v, dict)},
            **{k: v for k, v in data.items() if isinstance(v, dict)}}


def values(cls: type, tables: Mapping[str, Mapping[str, Any]], ctx: Context) -> dict[str, Any]:
    """The field values of the keys given (converted, in declaration order); a key not given keeps its
    dataclass default, a required one missing is an error."""
    out = {}
    for d in declared(cls):
        table = tables.get(d.key.section)
        given = table is not None if d.key.table else table is not None and d.name in table
        if not given:
            if d.required:
                example = f", e.g. {d.key.example}" if d.key.example else ""
                raise StudyError(f"{ctx.where}: {d.label} is required{example}")
            continue
        out[d.field] = d.read(table if d.key.table else table[d.name], ctx)
    return out


# --- the key reference -----------------------------------------------------------------------------------------


def _shown(d: Declared) -> str:
    if d.key.shown is not None:  # a TOML string is shown as code, prose as is
        return f"`{d.key.shown}`" if re.fullmatch(r'"[^"]*"', d.key.shown) else d.key.shown
    if d.required:
        return "required"
    v = d.default
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str):
        return f'`"{v}"`'
    if isinstance(v, int | float):
        return f"`{v!r}`"
    raise TypeError(f"{d.label}: default {v!r} needs shown= in its key()")


def _kinds(d: Declared) -> str:
    """The TOML types a key takes, in words (a float key takes integers too: "float")."""
    return " or ".join(TOML_TYPES[t] for t in d.accepts if not (t is int and float in d.accepts))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference(cls: type, title: str, intro: str) -> str:
    """The key reference of a declared dataclass as Markdown: per section, a table of key, type, default,
    unit and help."""
    lines = [f"# {title}", "", intro.strip(), ""]
    tables = {d.key.section: d for d in declared(cls) if d.key.table}
    for section, keys in sections(cls).items():
        lines += [f"## {f'[{section}]' if section else 'Top level'}", ""]
        if section in tables:
            lines += [f"{tables[section].key.help}. Without this section: {_shown(tables[section])}.", ""]
        lines += ["| key | type | default | unit | what |", "|---|---|---|---|---|"]
        for name, d in keys.items():
            lines.append(f"| `{name}` | {_kinds(d)} | {_cell(_shown(d))} | {d.key.unit} | {_cell(d.key.help)} |")
        lines.append("")
    return "\n".join(lines)


def key_rows(cls: type) -> list[dict[str, str]]:
    """The key reference as rows (``hpcsim study keys --json``)."""
    return [{"section": s, "key": name, "type": _kinds(d),
             "default": _shown(d).strip("`"), "unit": d.key.unit, "help": " ".join(d.key.help.split())}
            for s, keys in sections(cls).items() for name, d in keys.items()]


# --- converters shared by several keys -------------------------------------------------------------------------


def study_path(value: str, ctx: Context) -> Path:
    """A path given in a study file: relative to the study file's folder."""
    return (ctx.base / value).resolve()


def feeder_value(name: str, ctx: Context) -> str:
    """A feeder model: a name (``ieee8500``, kept) or a ``.dss`` path relative to the study file (made absolute)."""
    return str(study_path(name, ctx)) if name.endswith(".dss") else name
