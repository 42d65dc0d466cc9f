"""The cloud's database at the bottom floor: connections with the cloud's settings (one SQLite file per
tenant, WAL, synchronous NORMAL, a 30 s busy wait), write transactions, and the migration runner for a
list of parts. It knows no domain module: the schema's parts are listed in `cloud_sync/schema.py`, which
opens the database with them (`open_db`).

The SQLite logic itself (connection settings, transactions, the migration runner, `write_if_free`) is
`sitelink.sqlite`, shared with the site box; the names here are the cloud's callers' door to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from sitelink import sqlite
from sitelink.sqlite import transaction, write_if_free

# WAL pages before SQLite copies them back into the database file (SQLite's default is 1,000 = 4 MB): a batch
# of 1,000 orders writes a few MB of index pages, and a checkpoint after nearly every such commit copied and
# synced them again and again (bench/orders_ingest.py); 10,000 pages is a WAL of at most ~40 MB between them.
WAL_AUTOCHECKPOINT_PAGES = 10_000


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the project's settings (WAL, foreign keys, Row factory); no migrations."""
    conn = sqlite.connect(path, timeout=timeout, synchronous="NORMAL", busy_timeout_ms=30000)
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    return conn


def migrate(conn: sqlite3.Connection, parts: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """Apply every pending migration of `parts` — (key, scripts) in order, each script applied once and
    recorded as (key, index) in `schema_migrations`; return the names applied ("key#index")."""
    applied: list[str] = []
    for key, scripts in parts:
        applied += sqlite.apply_migrations(conn, key, scripts)
    return applied


__all__ = ["connect", "migrate", "transaction", "write_if_free"]
