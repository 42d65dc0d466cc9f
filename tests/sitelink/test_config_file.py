"""The strict TOML table reader both services load their file with: types, unknown keys, secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from sitelink.config_file import ConfigError, Place, accepted, read, secret, written


@dataclass
class Inner:
    share: float = 1.0
    buffer: int = 0

    def check(self, place: Place) -> None:
        if self.buffer < 0:
            raise place.at("buffer").error("must be 0 or more")


@dataclass
class Section:
    refused: ClassVar[dict[str, str]] = {"token": "put it in token_env"}

    name: str = "x"
    port: int = 80
    ratio: float = 0.5
    percent: Decimal = Decimal(30)
    enabled: bool = True
    chat: str = field(default="", metadata={"also": (int,)})
    source: str | int | None = None
    tags: list[str] = field(default_factory=list)
    names: tuple[str, ...] = ()
    free: dict[str, Any] = field(default_factory=dict)
    password: str = secret("")
    inner: Inner = field(default_factory=Inner)
    keyed: dict[str, Inner] = field(default_factory=dict)
    items: list[Inner] = field(default_factory=list)
    maybe: Inner | None = None
    code_only: str = field(default="", metadata={"file": False})


@dataclass
class Needs:
    base_url: str
    login: str = ""


def fails(table: Any, cls: type = Section) -> str:
    with pytest.raises(ConfigError) as e:
        read(cls, table, Place("cloud.toml", "sec"))
    return str(e.value)


def test_values_are_typed_and_converted() -> None:
    s = read(Section, {"name": "a", "port": 8080, "ratio": 1, "percent": 12.5, "enabled": False, "chat": -100,
                       "source": 0, "tags": ["a"], "names": ["n"], "free": {"k": [1]},
                       "inner": {"share": 0.5}, "keyed": {"a": {"buffer": 2}}, "items": [{}, {"share": 1}],
                       "maybe": {}}, Place("f"))
    assert (s.name, s.port, s.ratio, s.percent, s.enabled, s.chat, s.source) == \
        ("a", 8080, 1.0, Decimal("12.5"), False, "-100", 0)
    assert isinstance(s.ratio, float) and s.names == ("n",) and s.free == {"k": [1]}
    assert s.inner == Inner(0.5, 0) and s.keyed == {"a": Inner(1.0, 2)} and len(s.items) == 2 and s.maybe == Inner()
    assert read(Section, {}, Place("f")) == Section()


def test_one_line_names_the_file_the_key_and_what_is_allowed() -> None:
    assert fails({"nmae": "x"}) == ("cloud.toml: sec.nmae: unknown key (allowed: chat, enabled, free, inner, items, "
                                    "keyed, maybe, name, names, password, percent, port, ratio, source, tags)")
    assert fails({"port": "fast"}) == 'cloud.toml: sec.port: must be a whole number, got "fast"'
    assert fails({"port": 1.5}) == "cloud.toml: sec.port: must be a whole number, got 1.5"
    assert fails({"port": True}) == "cloud.toml: sec.port: must be a whole number, got true"
    assert fails({"ratio": "0.5"}) == 'cloud.toml: sec.ratio: must be a number, got "0.5"'
    assert fails({"percent": "30"}) == 'cloud.toml: sec.percent: must be a number, got "30"'
    assert fails({"enabled": "no"}) == 'cloud.toml: sec.enabled: must be true or false, got "no"'
    assert fails({"name": 5}) == "cloud.toml: sec.name: must be text, got 5"
    assert fails({"chat": 1.5}) == "cloud.toml: sec.chat: must be text, got 1.5"
    assert fails({"source": True}) == "cloud.toml: sec.source: must be text or a whole number, got true"
    assert fails({"tags": "a"}) == 'cloud.toml: sec.tags: must be a list, got "a"'
    assert fails({"tags": ["a", 2]}) == "cloud.toml: sec.tags[2]: must be text, got 2"
    assert fails({"inner": 3}) == "cloud.toml: sec.inner: must be a table, got 3"
    assert fails({"inner": {"shares": 1}}) == "cloud.toml: sec.inner.shares: unknown key (allowed: buffer, share)"
    assert fails({"keyed": {"wb main": {"buffer": -1}}}) == 'cloud.toml: sec.keyed."wb main".buffer: must be 0 or more'
    assert fails({"items": [{}, {"share": "all"}]}) == 'cloud.toml: sec.items[2].share: must be a number, got "all"'
    assert fails({"code_only": "x"}).startswith("cloud.toml: sec.code_only: unknown key")
    assert fails({"token": "123:abc"}) == "cloud.toml: sec.token: put it in token_env"
    assert fails({}, Needs) == "cloud.toml: sec.base_url: required"
    assert fails([1, 2]) == "cloud.toml: sec: must be a table, got a list"
    assert fails({"port": "x" * 100}).endswith('got "' + "x" * 56 + "...")  # a long value is cut short


def test_a_secret_never_appears_in_the_line() -> None:
    for wrong in (12345678, ["hunter2-hunter2"], {"v": "hunter2-hunter2"}):
        line = fails({"password": wrong})
        assert line == "cloud.toml: sec.password: must be text" and "hunter2" not in line and "12345678" not in line
    assert "hunter2" not in fails({"passwrod": "hunter2-hunter2"})  # a misspelt key: named, its value not shown
    assert "hunter2" not in repr(read(Section, {"password": "hunter2-hunter2"}, Place("f")))


def test_accepted_and_written_keys() -> None:
    assert accepted(Needs) == {"base_url", "login"}
    keys = accepted(Section)
    assert {"name", "free", "inner.share", "keyed.*.buffer", "items.share", "maybe.buffer"} <= keys
    assert "code_only" not in keys and "inner" not in keys and "token" not in keys
    table = {"name": "a", "free": {"x": {"y": 1}}, "keyed": {"a": {"share": 1.0}, "b": {"buffer": 1}},
             "items": [{"buffer": 1}]}
    read(Section, table, Place("f"))
    assert written(Section, table) == {"name", "free", "keyed.*.share", "keyed.*.buffer", "items.buffer"}
