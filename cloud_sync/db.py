"""The cloud's database at the bottom floor: connections with the cloud's settings (one SQLite file per
tenant, WAL, synchronous NORMAL, a 30 s busy wait), write transactions, and the migration runner for a
list of parts. It knows no domain module: the schema's parts are listed in `cloud_sync/schema.py`, which
opens the database with them (`open_db`).

The SQLite logic itself (connection settings, transactions, the migration runner, `write_if_free`) is
`sitelink.sqlite`, shared with the site box; the names here are the cloud's callers' door to it.

The second engine: a target that is a `postgresql://` URL (`[db] url` in cloud.toml) opens PostgreSQL
through `cloud_sync.pg` instead, with the same surface (the domain code does not know which engine it
talks to). Development/test facility: when `MARKETSYNC_PG_TEST_URL` is set (the test suite's PostgreSQL leg
sets it, and subprocesses inherit it), every database a caller opens by file path is a schema of that
cluster named after the file's real path, so each test's fresh file is a fresh schema. Never set it in
service.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloud_sync import pg, pg_template
from sitelink import sqlite

TEST_URL_ENV = "MARKETSYNC_PG_TEST_URL"

# WAL pages before SQLite copies them back into the database file (SQLite's default is 1,000 = 4 MB): a batch
# of 1,000 orders writes a few MB of index pages, and a checkpoint after nearly every such commit copied and
# synced them again and again (bench/orders_ingest.py); 10,000 pages is a WAL of at most ~40 MB between them.
WAL_AUTOCHECKPOINT_PAGES = 10_000
BUSY_TIMEOUT_MS = 30_000  # how long a connection waits for SQLite's write lock (one writer at a time)


def target(path: str | Path) -> tuple[str, str | None]:
    """Where `path` leads: ("sqlite", None), or ("<postgresql url>", schema or None)."""
    if pg.is_url(path):
        return pg.reveal(path), None
    text = str(path)
    test_url = os.environ.get(TEST_URL_ENV)
    if test_url and text != ":memory:":
        return test_url, pg.schema_for(text)
    return "sqlite", None


def is_postgres(path_or_conn: object) -> bool:
    """Whether a database target (path/URL) or an open connection is PostgreSQL."""
    if isinstance(path_or_conn, (str, Path)):
        return target(path_or_conn)[0] != "sqlite"
    return getattr(path_or_conn, "engine", "sqlite") == "postgresql"


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the project's settings (WAL, foreign keys, Row factory); no migrations.
    A `postgresql://` URL (or the test facility, see the module doc) gives a PostgreSQL connection."""
    url, schema = target(path)
    if url != "sqlite":
        return pg.connect(url, schema=schema, timeout=timeout)  # type: ignore[return-value]
    conn = sqlite.connect(path, timeout=timeout, synchronous="NORMAL", busy_timeout_ms=BUSY_TIMEOUT_MS)
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    return conn


def connect_readonly(path: str | Path, *, timeout: float = 10.0) -> Any:
    """The store as a reader from outside the service sees it (`marketsync link status`, the demo's and the
    soak's looks): never created, never written. An SQLite file opens `mode=ro`; PostgreSQL (a URL, or the
    test facility's schema of a path) through `connect` with every transaction read-only. A file that exists
    on disk is read as the SQLite file it is, even under the test facility (an edge box's database, given to
    `link status --db`, is always SQLite). `FileNotFoundError` when there is no database there."""
    url, schema = target(path)
    if url != "sqlite" and not (not pg.is_url(path) and Path(path).is_file()):
        try:
            return pg.connect(url, schema=schema, timeout=timeout, create=False, read_only=True)
        except pg.NoSchema:
            raise FileNotFoundError(f"no database at {path}") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection, parts: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """Apply every pending migration of `parts` — (key, scripts) in order, each script applied once and
    recorded as (key, index) in `schema_migrations`; return the names applied ("key#index")."""
    applied: list[str] = []
    parts = list(parts)
    test_url = os.environ.get(TEST_URL_ENV)
    # the test facility's fresh schema: a copy of the set migrated once (cloud_sync.pg_template)
    if (test_url and is_postgres(conn) and conn.label == pg.redact(test_url)  # type: ignore[attr-defined]
            and conn.schema.startswith("t_")  # type: ignore[attr-defined]
            and pg_template.clone_into(test_url, conn.schema, parts,  # type: ignore[attr-defined]
                                       lambda name: _migrate_schema(test_url, name, parts))):
        return [f"{key}#{idx}" for key, scripts in parts for idx in range(len(scripts))]
    if is_postgres(conn):
        with transaction(conn):  # under the writer lock: two processes starting at once create it once
            conn.execute_native(PG_MIGRATIONS_TABLE)  # type: ignore[attr-defined]
        applied += _apply_pg(conn, pg.COMPAT_KEY, [pg.Native(s) for s in pg.COMPAT])
        for key, scripts in parts:
            applied += _apply_pg(conn, key, scripts)
        return applied
    for key, scripts in parts:
        applied += sqlite.apply_migrations(conn, key, scripts)
    return applied


def _migrate_schema(url: str, schema: str, parts: list[tuple[str, Sequence[str]]]) -> None:
    conn = pg.connect(url, schema=schema)
    try:
        migrate(conn, parts)  # type: ignore[arg-type]
    finally:
        conn.close()


def _apply_pg(conn: Any, key: str, scripts: Sequence[str]) -> list[str]:
    """`sitelink.sqlite.apply_migrations` on PostgreSQL: an SQLite script is split and each statement
    translated; a `pg.Native` script (a module's `MIGRATIONS_PG` entry) runs as it is, whole."""
    done = {row[0] for row in conn.execute("SELECT idx FROM schema_migrations WHERE module=?", (key,))}
    applied: list[str] = []
    for idx, script in enumerate(scripts):
        if idx in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM schema_migrations WHERE module=? AND idx=?", (key, idx)).fetchone():
                continue  # another process applied it meanwhile
            native = script if isinstance(script, pg.Native) else None
            for statement in sqlite.statements(native.sqlite if native is not None else script):
                if pg.is_trigger(statement):
                    if native is None:
                        raise pg.OperationalError(f"{key}#{idx}: a trigger has no PostgreSQL version (MIGRATIONS_PG)")
                    continue
                conn.execute(statement)
            if native is not None:
                conn.execute_native(str(native))
            conn.execute("INSERT INTO schema_migrations(module, idx) VALUES (?, ?)", (key, idx))
        applied.append(f"{key}#{idx}")
    return applied


# schema_migrations on PostgreSQL (SQLite's has a datetime('now') default, a function `pg.COMPAT` creates)
PG_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (module TEXT NOT NULL, idx BIGINT NOT NULL,"
    " applied_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
    " PRIMARY KEY (module, idx))"
)


@contextmanager
def transaction(conn: Any, *, immediate: bool = True, keys: Iterable[str] | None = None) -> Iterator[Any]:
    """One write transaction (see `sitelink.sqlite.transaction`); on PostgreSQL BEGIN IMMEDIATE is BEGIN
    plus the database's advisory writer lock (`cloud_sync.pg`). `keys`: a keyed transaction (the writer lock
    shared, the keys' locks exclusive; on SQLite the same BEGIN IMMEDIATE)."""
    with sqlite.transaction(conn, immediate=immediate, keys=keys) as c:
        yield c


def keyed_or_whole(conn: Any, keys: Iterable[str] | None, work: Callable[[], Any]) -> Any:
    """`work()` in a keyed transaction of `keys` (see `transaction`); when it reaches a write its keys do not
    cover (`sitelink.sqlite.NeedsExclusive`: rolled back whole) it is done again in an ordinary transaction.
    `keys` None: an ordinary transaction at once. `work` must start from nothing each time (it is run twice)."""
    if keys is not None:
        try:
            with sqlite.transaction(conn, keys=keys):
                return work()
        except sqlite.NeedsExclusive:
            if conn.in_transaction:  # joined to an outer transaction: the outer one gives way
                raise
    with sqlite.transaction(conn):
        return work()


@contextmanager
def lock_wait(conn: Any, seconds: float) -> Iterator[Any]:
    """The connection waits for another writer at most `seconds` inside the block (SQLite: its busy timeout;
    PostgreSQL: the session's lock_timeout, for the writer lock, a key's or a row's), then as before; past the
    bound a write fails as `sqlite3.OperationalError` "database is locked" on either engine."""
    ms = max(1, int(seconds * 1000))
    postgres = is_postgres(conn)
    if postgres:
        conn.set_lock_wait(ms)
    else:
        conn.execute(f"PRAGMA busy_timeout={ms}")
    try:
        yield conn
    finally:
        if postgres:
            conn.set_lock_wait(None)
        else:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def write_if_free(conn: Any, sql: str, params: tuple = (), *, wait_ms: int = 100) -> bool:
    """Run one small write unless another writer holds the database (see `sitelink.sqlite.write_if_free`).
    On PostgreSQL: skipped when the writer lock is taken, else written at once in its own transaction."""
    if not is_postgres(conn):
        return sqlite.write_if_free(conn, sql, params, wait_ms=wait_ms)
    if conn.in_transaction:
        conn.execute(sql, params)
        return True
    conn.execute("BEGIN")
    try:
        if not conn.try_lock_immediate():
            conn.execute("ROLLBACK")
            return False
        conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return True


__all__ = ["connect", "connect_readonly", "is_postgres", "lock_wait", "migrate", "target", "transaction",
           "write_if_free"]
