"""The request context of the cloud's web app: what every view reads and nothing else.

* `Context` (kept in `app.extensions["marketsync"]` by `create_app`): the config, the database path,
  the account adapters, the site link, the stock pusher and the jobs; `ctx()` is the one of the app
  serving the request.
* `get_db()`: the request's own SQLite connection (opened on first use, kept in `g`, closed by
  `close_db` at the app context's teardown; WAL: readers never wait for the writers).
* `ApiError` and the small helpers the JSON API reads a request with (a JSON body, whole-number query
  parameters, required fields): a wrong request is a 400 (or the given status) naming what is wrong.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, request

from cloud_sync.config import CloudConfig
from cloud_sync.db import connect
from marketplaces.base import Marketplace

EXTENSION = "marketsync"


@dataclass
class Context:
    cfg: CloudConfig
    db_path: str
    adapters: Mapping[str, Marketplace] = field(default_factory=dict)  # a service.accounts.AccountAdapters
    link: Any = None
    pusher: Any = None
    jobs: Any = None

    def wake(self) -> None:
        """Tell the stock pusher something changed (it sends the new numbers now, not on its next round)."""
        if self.pusher is not None:
            self.pusher.wake()


class ApiError(Exception):
    """A request the API refuses: answered as {"error": message} with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def ctx() -> Context:
    return current_app.extensions[EXTENSION]


def get_db() -> sqlite3.Connection:
    """The request's connection (one per request, opened on first use)."""
    if "ms_db" not in g:
        g.ms_db = connect(ctx().db_path)
    return g.ms_db


def close_db(_exc: BaseException | None = None) -> None:
    """Close the request's connection, if it opened one (the app context's teardown)."""
    conn = g.pop("ms_db", None)
    if conn is not None:
        conn.close()


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object")
    return data


def whole_arg(name: str, default: int) -> int:
    """A whole-number query parameter, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"query parameter {name!r} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ApiError(f"query parameter {name!r} must not be negative")
    return value


def required(data: dict[str, Any], *names: str) -> list[Any]:
    """The values of fields that must be there, in order, or a 400 naming the missing ones."""
    missing = [n for n in names if n not in data]
    if missing:
        raise ApiError(f"missing field(s): {', '.join(missing)}")
    return [data[n] for n in names]


def text_field(data: dict[str, Any], name: str) -> str:
    """A required field that must be a string (a list or an object there is a 400, not a crash)."""
    value = required(data, name)[0]
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ApiError(f"{name} must be a string")
    return str(value)


def whole_field(data: dict[str, Any], name: str, default: int | None = None) -> int:
    """A whole-number field (a number or its digits as text), or a 400 naming it."""
    value = data.get(name, default) if default is not None else required(data, name)[0]
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(f"{name} must be a whole number, got {value!r}") from None
