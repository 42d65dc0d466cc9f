"""The cloud's database at the bottom floor: connections with the project's settings (one SQLite file per
tenant, WAL), write transactions, and the migration runner. It knows no domain module: the schema's parts
are listed in `cloud_sync/schema.py`, which opens the database with them (`open_db`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the project's settings (WAL, foreign keys, Row factory); no migrations."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection, parts: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """Apply every pending migration of `parts` — (key, scripts) in order, each script applied once and
    recorded as (key, index) in `schema_migrations`; return the names applied ("key#index")."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " module TEXT NOT NULL, idx INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')),"
        " PRIMARY KEY (module, idx))"
    )
    applied: list[str] = []
    for key, scripts in parts:
        done = {row[0] for row in conn.execute("SELECT idx FROM schema_migrations WHERE module=?", (key,))}
        for idx, script in enumerate(scripts):
            if idx in done:
                continue
            with transaction(conn):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations(module, idx) VALUES (?, ?)", (key, idx))
            applied.append(f"{key}#{idx}")
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

