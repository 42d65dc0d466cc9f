"""The project's one SQLite helper, for all three stores: the cloud's database, the site's database and
the site link's tables kept inside either of them.

Owns how a connection is opened (`connect`: WAL journal, the `synchronous` level the caller asks for,
foreign keys, a busy timeout, `sqlite3.Row` rows, autocommit mode so transactions are explicit, usable
from any thread), the write transaction (`transaction`: BEGIN IMMEDIATE, nested use joins the outer
one), the splitter of SQL scripts (`statements`), the migration runner (`apply_migrations`, which
records every applied script in `schema_migrations(module, idx, applied_at)`), and `write_if_free` for
bookkeeping writes that must never wait for another writer.

Keyed write transactions (`transaction(conn, keys=[...])`, `need`, `NeedsExclusive`): a hot path whose writes
stay within known parts of the store (one site's link rows, one account's push queue) may name those parts as
keys. On SQLite this is the same BEGIN IMMEDIATE (one writer at a time, as always). On PostgreSQL
(`cloud_sync.pg`) such a transaction takes the store's writer lock shared and each key's lock exclusive, so
keyed transactions of different keys run at once while every ordinary transaction still excludes them all.
A write inside a keyed transaction that its keys do not cover says so with `need(conn, ...)`, which raises
`NeedsExclusive`; the caller rolls back and does the work again as an ordinary transaction.

`writers_waiting(conn)` says how many threads of this process are waiting in `transaction` for the write
lock of the same database file: a long writer (the site link draining a backlog) leaves them a gap
exactly when one waits, instead of pausing on a timer whether anyone waits or not.

It lives in `sitelink/` because both sides install sitelink; it imports nothing of the project.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " module TEXT NOT NULL, idx INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')),"
    " PRIMARY KEY (module, idx))"
)


class Connection(sqlite3.Connection):
    """A connection that knows its database file (`db_key`), so writers waiting for one file are counted."""

    db_key: str = ""


_waiting: dict[str, int] = {}  # database file -> threads of this process waiting in BEGIN IMMEDIATE
_waiting_lock = threading.Lock()


def writers_waiting(conn: sqlite3.Connection) -> int:
    """Threads of this process waiting in `transaction` for the write lock of `conn`'s database file
    (0 for a connection not made by `connect`)."""
    key = getattr(conn, "db_key", "")
    return _waiting.get(key, 0) if key else 0


def _wait_mark(key: str, step: int) -> None:
    with _waiting_lock:
        n = _waiting.get(key, 0) + step
        if n > 0:
            _waiting[key] = n
        else:
            _waiting.pop(key, None)


def connect(
    path: str | Path,
    *,
    timeout: float = 30.0,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int | None = None,
) -> sqlite3.Connection:
    """A connection with the project's settings: autocommit mode (transactions are explicit), WAL,
    `synchronous` (NORMAL; the site box uses FULL so a power cut loses no committed change), foreign
    keys on, `sqlite3.Row` rows, shared across threads. The busy timeout is `busy_timeout_ms`, or
    `timeout` seconds when not given. No migrations: see `apply_migrations`."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False,
                           factory=Connection)
    conn.db_key = os.path.realpath(path) if str(path) != ":memory:" else ""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={_synchronous(synchronous)}")
    conn.execute("PRAGMA foreign_keys=ON")
    busy = int(timeout * 1000) if busy_timeout_ms is None else int(busy_timeout_ms)
    conn.execute(f"PRAGMA busy_timeout={busy}")
    # fold(text): text in any case of any alphabet as one (SQLite's own lower() knows Latin letters only);
    # the cloud's triggers keep search columns folded with it, so a search is one LIKE in SQL
    conn.create_function("fold", 1, fold, deterministic=True)
    return conn


def fold(value: object) -> object:
    """Text case-folded (Cyrillic too); anything else as it is."""
    return value.casefold() if isinstance(value, str) else value


def _synchronous(level: str) -> str:
    level = level.upper()
    if level not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {level!r}")
    return level


class NeedsExclusive(Exception):
    """A keyed transaction (see `transaction`'s `keys`) reached a write its keys do not cover: roll it back
    and do the work again in an ordinary one (nothing of it may be kept)."""


def keys_held(conn: sqlite3.Connection) -> frozenset[str] | None:
    """The keys of the keyed transaction `conn` is in; None in an ordinary transaction, outside one, and always
    on SQLite (where every write transaction is the one writer)."""
    return getattr(conn, "lock_keys", None)


def need(conn: sqlite3.Connection, *keys: str) -> None:
    """Said before a write: the keys it stays within (none given: it needs the whole store, an ordinary
    transaction). Inside a keyed transaction that does not hold them all: `NeedsExclusive`. Anywhere else
    (SQLite, an ordinary transaction) nothing."""
    held = getattr(conn, "lock_keys", None)
    if held is not None and (not keys or not held.issuperset(keys)):
        raise NeedsExclusive(f"needs {', '.join(sorted(set(keys) - held)) if keys else 'the whole store'}")


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True,
                keys: Iterable[str] | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so two writers never
    deadlock on an upgrade); COMMIT at the end, ROLLBACK on any error. Nested use joins the outer
    transaction (also one the caller opened itself); joining a keyed one needs its keys (`need`).

    `keys`: the writes stay within these named parts of the store (see the module doc); on a connection that
    can take them (`begin_keyed`: PostgreSQL's) the transaction is keyed, elsewhere it is BEGIN IMMEDIATE."""
    if conn.in_transaction:
        if keys is None:
            need(conn)
        else:
            keys = tuple(keys)
            if keys:  # no keys: a single atomic statement, needing no more than the store's lock shared
                need(conn, *keys)
        yield conn
        return
    begin_keyed = getattr(conn, "begin_keyed", None) if keys is not None else None
    key = getattr(conn, "db_key", "") if immediate else ""
    if begin_keyed is not None and keys is not None:
        begin_keyed(keys)
    elif key:  # counted while it waits for the write lock (see `writers_waiting`)
        _wait_mark(key, 1)
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            _wait_mark(key, -1)
    else:
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
        flush = getattr(conn, "flush_deferred", None)  # PostgreSQL's deferred writes (`cloud_sync.pg`)
        if flush is not None:
            flush()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def statements(script: str) -> list[str]:
    """The complete SQL statements of a script, in order (semicolons inside strings or triggers are
    kept where they belong: a statement ends where SQLite says it is complete)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def apply_migrations(conn: sqlite3.Connection, key: str, scripts: Sequence[str]) -> list[str]:
    """Apply the scripts of `key` (a module's name) not applied yet, each in its own transaction with
    its row in `schema_migrations` (module=key, idx=its position); return what was applied
    ("key#idx"). A script is applied once, whoever opens the database first: an up-to-date database
    is only read, and a pending script is checked again under the write lock."""
    conn.execute(MIGRATIONS_TABLE)
    done = {row[0] for row in conn.execute("SELECT idx FROM schema_migrations WHERE module=?", (key,))}
    applied: list[str] = []
    for idx, script in enumerate(scripts):
        if idx in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM schema_migrations WHERE module=? AND idx=?", (key, idx)).fetchone():
                continue  # another connection applied it meanwhile
            for statement in statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations(module, idx) VALUES (?, ?)", (key, idx))
        applied.append(f"{key}#{idx}")
    return applied


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
