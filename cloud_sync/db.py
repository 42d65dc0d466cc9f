"""The cloud's database: one SQLite file per tenant, opened in WAL mode, and its migrations.

Each domain module that keeps tables declares them itself as `MIGRATIONS: list[str]` (each entry one
SQL script, applied once, in order, never edited after it has shipped; add a new entry to change a
table). `open_db` applies every pending migration of every module in `SCHEMA_MODULES` and records it
in `schema_migrations`, so a module joins the schema by being listed here.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the tenant database and bring its schema up to date."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration; return the names applied ("module#index")."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " module TEXT NOT NULL, idx INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')),"
        " PRIMARY KEY (module, idx))"
    )
    applied: list[str] = []
    for module_name in SCHEMA_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part is not built (yet): it joins the schema when it is
            raise
        done = {row[0] for row in conn.execute("SELECT idx FROM schema_migrations WHERE module=?", (module_name,))}
        for idx, script in enumerate(getattr(module, "MIGRATIONS", [])):
            if idx in done:
                continue
            with transaction(conn):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations(module, idx) VALUES (?, ?)", (module_name, idx))
            applied.append(f"{module_name}#{idx}")
    return applied


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so two writers never
    deadlock on an upgrade). Nested use joins the outer transaction."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def write_if_free(conn: sqlite3.Connection, sql: str, params: tuple = (), *, wait_ms: int = 100) -> bool:
    """Run one small write unless another writer holds the database (a long import): then skip it and
    say so (False). For bookkeeping that may wait for a later request — a session's last_seen, a
    token's last use — so that a read-only request never waits for someone else's transaction."""
    waits = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
    try:
        conn.execute(sql, params)
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(waits)}")

