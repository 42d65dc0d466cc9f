"""A service's TOML file read strictly into typed dataclasses, once, at load (cloud.toml and edge.toml both
use it, as both use `service_manager`).

Owns `read(cls, table, place)`: every key of a table must be a field of the dataclass `cls` (else
"unknown key (allowed: ...)") and every value of the field's type (else "must be a number, got ...").
The first problem stops the load with one `ConfigError` line naming the file and the key, e.g.
`cloud.toml: jobs.orders_poll_s: must be a number, got "fast"`. The value of a field made with
`secret()` never appears in such a line. `accepted(cls)` lists the keys a dataclass takes and
`written(cls, table)` the ones a table uses (the shipped files are tested against them).

Field types understood: str, int, float, bool, Decimal, `X | None` (None: not given), a union of
scalars (`str | int`), list[...], tuple[str, ...], dict[str, ...] (a table of free names), a nested
dataclass (a table) and Any. Field metadata: `secret` (never shown), `file=False` (set by the code, not
read from the file), `also=(int,)` (also accepted, converted to the field's type: a chat id written as a
number). A dataclass may declare `refused: ClassVar[dict[str, str]]` (a key and why it may not be
there) and `check(self, place)` for rules across its fields.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from dataclasses import MISSING, dataclass
from decimal import Decimal
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_WHAT = {str: "text", int: "a whole number", float: "a number", Decimal: "a number", bool: "true or false"}


class ConfigError(ValueError):
    """The configuration cannot be used: one line naming the file and the key, never a secret's value."""


@dataclass(frozen=True)
class Place:
    """Where a value sits: the file (as the person named it) and the dotted key path in it."""

    file: str
    path: str = ""

    def at(self, key: str) -> Place:
        key = key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)
        return Place(self.file, f"{self.path}.{key}" if self.path else key)

    def item(self, n: int) -> Place:
        """The n-th (from 1) table of an array of tables, or value of a list."""
        return Place(self.file, f"{self.path}[{n}]")

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.path}: {problem}" if self.path else f"{self.file}: {problem}")


def secret(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A field whose value is never shown: not in repr, not in an error line."""
    return dataclasses.field(default=default, default_factory=default_factory, repr=False,
                             metadata={"secret": True})


def shown(value: Any) -> str:
    """A value as an error line shows it: TOML-like, short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _file_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("file", True)}


def read(cls: type[T], table: Any, place: Place) -> T:
    """The dataclass `cls` from one TOML table; raises ConfigError at the first key that does not fit."""
    if not isinstance(table, dict):
        raise place.error(f"must be a table, got {shown(table)}")
    known = _file_fields(cls)
    refused: dict[str, str] = getattr(cls, "refused", {})
    for key in table:
        if key in refused:
            raise place.at(key).error(refused[key])
        if key not in known:
            raise place.at(key).error(f"unknown key (allowed: {', '.join(sorted(known))})")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name in table:
            values[name] = read_value(hints[name], table[name], place.at(name), f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise place.at(name).error("required")
    out = cls(**values)
    check = getattr(out, "check", None)
    if callable(check):
        check(place)
    return out


def read_value(tp: Any, value: Any, place: Place, meta: Any = None) -> Any:
    """One value checked against (and converted to) the type `tp`."""
    meta = meta or {}

    def bad(what: str) -> ConfigError:
        return place.error(f"must be {what}" if meta.get("secret") else f"must be {what}, got {shown(value)}")

    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return read_value(options[0], value, place, meta)
        for option in options:
            if _fits(option, value):
                return read_value(option, value, place, meta)
        raise bad(" or ".join(_WHAT.get(o, getattr(o, "__name__", str(o))) for o in options))
    if tp in _WHAT:
        if _fits(tp, value):
            return Decimal(str(value)) if tp is Decimal else tp(value)
        if type(value) in meta.get("also", ()):
            return tp(value)
        raise bad(_WHAT[tp])
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise bad("a list")
        items = [read_value(args[0], v, place.item(i), meta) for i, v in enumerate(value, 1)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("a table")
        return {str(k): read_value(args[1], v, place.at(str(k)), meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return read(tp, value, place)
    raise TypeError(f"{place.path}: a field type the config reader does not know: {tp!r}")


def _fits(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (float, Decimal):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _table_class(tp: Any) -> tuple[type, bool] | None:
    """(the dataclass, keyed by free names) when a field holds tables, else None."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _table_class(options[0]) if len(options) == 1 else None
    if dataclasses.is_dataclass(tp):
        return tp, False  # type: ignore[return-value]
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return args[0], False
    if origin is dict and args and dataclasses.is_dataclass(args[1]):
        return args[1], True
    return None


def accepted(cls: type, prefix: str = "") -> set[str]:
    """Every key path a dataclass takes, dotted; `*` stands for a free name (an account, a site)."""
    out: set[str] = set()
    hints = get_type_hints(cls)
    for name in _file_fields(cls):
        key = f"{prefix}.{name}" if prefix else name
        inner = _table_class(hints[name])
        if inner is None:
            out.add(key)
        else:
            out |= accepted(inner[0], f"{key}.*" if inner[1] else key)
    return out


def written(cls: type, table: dict[str, Any], prefix: str = "") -> set[str]:
    """The key paths a table (already read with `read`) uses, in the vocabulary of `accepted`."""
    out: set[str] = set()
    hints = get_type_hints(cls)
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        inner = _table_class(hints[name])
        if inner is None:
            out.add(key)
        elif inner[1]:
            for sub in value.values():
                out |= written(inner[0], sub, f"{key}.*")
        else:
            for sub in value if isinstance(value, list) else [value]:
                out |= written(inner[0], sub, key)
    return out
