"""The cloud's database: one SQLite file per tenant, opened in WAL mode, and its migrations.

Each domain module that keeps tables declares them itself as `MIGRATIONS: list[str]` (each entry one
SQL script, applied once, in order, never edited after it has shipped; add a new entry to change a
table). `open_db` applies every pending migration of every module in `SCHEMA_MODULES` and records it
in `schema_migrations`, so a module joins the schema by being listed here.

The SQLite logic itself (connection settings, transactions, the migration runner, `write_if_free`) is
`sitelink.sqlite`, shared with the site box; the names here stay for the cloud's callers.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path

from sitelink import sqlite
from sitelink.sqlite import transaction, write_if_free

SCHEMA_MODULES = [
    "cloud_sync.nomenclature",
    "cloud_sync.catalog",
    "cloud_sync.stock",
    "cloud_sync.orders",
    "cloud_sync.pricing",
    "cloud_sync.price_rules",
    "cloud_sync.reports",
    "cloud_sync.alerts",
    "cloud_sync.webhooks",
    "cloud_sync.onec.store",
    "cloud_sync.users",
    "cloud_sync.secrets",
    "sitelink.store",
]


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the project's settings (WAL, foreign keys, Row factory); no migrations."""
    return sqlite.connect(path, timeout=timeout, synchronous="NORMAL", busy_timeout_ms=30000)


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the tenant database and bring its schema up to date."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration; return the names applied ("module#index")."""
    applied: list[str] = []
    for module_name in SCHEMA_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part is not built (yet): it joins the schema when it is
            raise
        applied += sqlite.apply_migrations(conn, module_name, getattr(module, "MIGRATIONS", []))
    return applied


__all__ = ["SCHEMA_MODULES", "connect", "migrate", "open_db", "transaction", "write_if_free"]
