"""The site's SQLite file: tasks, task lines, scans, cached labels, catalog, bins, waves, marking codes, counts,
returns.

The same file holds the site link's outbox and inbox (sitelink creates those tables), so a change and
the message it causes commit in one transaction. WAL journal with synchronous=FULL: a box that loses
power mid-write keeps every committed change and none of a half-written one. Every function here takes
an open connection and runs inside the caller's transaction (`with transaction(conn): ...`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sitelink import sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (
    item_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', barcode TEXT, bin TEXT,
    marking_required INTEGER NOT NULL DEFAULT 0, gtin TEXT
);
CREATE TABLE IF NOT EXISTS item_barcodes (code TEXT PRIMARY KEY, item_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, marketplace TEXT NOT NULL, account TEXT,
    number TEXT, native_id TEXT, warehouse TEXT, deadline TEXT,
    state TEXT NOT NULL DEFAULT 'new',   -- new | picking | picked | packed | short | cancelled | handed_over
    packer TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_order ON tasks(order_id);
CREATE TABLE IF NOT EXISTS task_lines (
    task_id TEXT NOT NULL, line_no INTEGER NOT NULL, item_id TEXT NOT NULL, barcode TEXT,
    barcodes TEXT NOT NULL DEFAULT '[]', name TEXT NOT NULL DEFAULT '', quantity INTEGER NOT NULL,
    bin TEXT, marking_required INTEGER NOT NULL DEFAULT 0,
    picked INTEGER NOT NULL DEFAULT 0, short INTEGER NOT NULL DEFAULT 0, packed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, line_no)
);
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, station TEXT, code TEXT NOT NULL,
    task_id TEXT, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS labels (
    order_id TEXT PRIMARY KEY, format TEXT NOT NULL, data_b64 TEXT NOT NULL,
    width_mm REAL, height_mm REAL, barcode_text TEXT, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS marking_codes (
    code_id TEXT PRIMARY KEY,           -- GTIN + serial: the identity of a Честный знак code
    full_code TEXT NOT NULL, gtin TEXT NOT NULL, serial TEXT NOT NULL,
    task_id TEXT NOT NULL, order_id TEXT NOT NULL, item_id TEXT NOT NULL, ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS marking_checks (  -- what Честный знак said of each packed code
    code_id TEXT PRIMARY KEY, full_code TEXT NOT NULL, gtin TEXT NOT NULL, serial TEXT NOT NULL,
    task_id TEXT NOT NULL, order_id TEXT NOT NULL,
    state TEXT NOT NULL,                -- ok | unchecked (packed while it could not be reached) | refused
    reason TEXT NOT NULL DEFAULT '', ts REAL NOT NULL, checked_ts REAL
);
CREATE TABLE IF NOT EXISTS print_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | done
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, file TEXT, created_at REAL NOT NULL, done_at REAL
);
CREATE TABLE IF NOT EXISTS handovers (
    handover_id TEXT PRIMARY KEY, marketplace TEXT NOT NULL, account TEXT, supply_id TEXT, qr_b64 TEXT,
    order_ids TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open', created_at REAL NOT NULL, closed_at REAL
);
CREATE TABLE IF NOT EXISTS handover_scans (
    handover_id TEXT NOT NULL, order_id TEXT NOT NULL, code TEXT NOT NULL, extra INTEGER NOT NULL,
    ts REAL NOT NULL, PRIMARY KEY (handover_id, order_id)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, handover_id TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL, data_b64 TEXT NOT NULL, width_mm REAL, height_mm REAL,
    job_id INTEGER,   -- its print job on the label printer (NULL: a sheet, printed from the page)
    received_at REAL NOT NULL, UNIQUE (handover_id, kind)
);
CREATE TABLE IF NOT EXISTS returns (
    return_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, number TEXT, marketplace TEXT,
    lines TEXT NOT NULL DEFAULT '[]',   -- [{item_id, quantity, barcode, name}] as the cloud expects them
    state TEXT NOT NULL DEFAULT 'expected',   -- expected | open (being taken in) | received
    announced INTEGER NOT NULL DEFAULT 1,     -- 1: the cloud said to expect it, 0: a parcel back unannounced
    parcel_codes TEXT NOT NULL DEFAULT '[]',  -- codes on the parcel that find it when scanned
    kind TEXT, reason TEXT, created_at REAL NOT NULL, received_at REAL, received_by TEXT
);
CREATE INDEX IF NOT EXISTS returns_order ON returns(order_id);
CREATE TABLE IF NOT EXISTS return_units (
    id INTEGER PRIMARY KEY AUTOINCREMENT, return_id TEXT NOT NULL, item_id TEXT NOT NULL, code TEXT NOT NULL,
    defective INTEGER NOT NULL DEFAULT 0, ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stock_moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, item_id TEXT NOT NULL, delta INTEGER NOT NULL,
    reason TEXT NOT NULL, ref TEXT
);
CREATE TABLE IF NOT EXISTS counts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, item_id TEXT NOT NULL, counted INTEGER NOT NULL,
    ref TEXT, counted_by TEXT
);
CREATE TABLE IF NOT EXISTS stations (
    station TEXT PRIMARY KEY, task_id TEXT, mode TEXT NOT NULL DEFAULT 'tasks', scratch TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS item_bins (   -- bins set at the site (receipt, count): they win over 1C's until 1C
    item_id TEXT PRIMARY KEY,             -- changes its own (catalog.bin)
    bin TEXT NOT NULL, set_at REAL NOT NULL, set_by TEXT, ref TEXT
);
CREATE TABLE IF NOT EXISTS waves (        -- a combined pick of many orders: walked by bin, sorted into totes
    wave_id TEXT PRIMARY KEY,
    task_ids TEXT NOT NULL,               -- JSON list: an order's tote is its place in it (1, 2, ...)
    created_at REAL NOT NULL, created_by TEXT
);
CREATE TABLE IF NOT EXISTS site_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS page_scans (scan_id TEXT PRIMARY KEY, result TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS page_scans_ts ON page_scans (ts);
-- the labels rendered ahead are listed after every print: by these, without reading a label's bytes (its
-- received_at lies past them in the row: ~1.5 MB of overflow pages read for 1,000 labels, 12-30 ms a look)
CREATE INDEX IF NOT EXISTS labels_version ON labels (order_id, format, received_at);
CREATE INDEX IF NOT EXISTS print_jobs_kind_order ON print_jobs (kind, order_id);
CREATE INDEX IF NOT EXISTS print_jobs_state ON print_jobs (state);
"""

_write_lock = threading.RLock()
_commits = 0  # write transactions committed in this process: the version of what a page is shown


def connect(db_path: str | Path) -> sqlite3.Connection:
    """Open the site's database (creating it and its tables), in WAL mode, safe across threads."""
    conn = open_conn(db_path)
    with transaction(conn):
        _create(conn)
    return conn


def open_conn(db_path: str | Path) -> sqlite3.Connection:
    """A connection with the site's settings (WAL, synchronous=FULL); the site link opens its own with it."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    return sqlite.connect(db_path, timeout=30, synchronous="FULL", busy_timeout_ms=30000)


# columns added after a table was first made: (table, column, declaration), added where missing
ADDED_COLUMNS = (
    ("task_lines", "title", "TEXT NOT NULL DEFAULT ''"),  # the marketplace card's own title of the item
    # the deadline the task came with, when the marketplace moved it since (`task_deadline`): the page says so
    ("tasks", "deadline_was", "TEXT"),
)


def _create(conn: sqlite3.Connection) -> None:
    """The site's tables, created when missing on every open (no `schema_migrations` row of their own),
    and the columns added since (`ADDED_COLUMNS`) on a file made by an older version."""
    for statement in sqlite.statements(SCHEMA):
        conn.execute(statement)
    for table, column, decl in ADDED_COLUMNS:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error). Nested use joins the outer transaction.
    The site's threads take turns on the one connection (a process-wide lock), and every commit is
    counted (`commits`)."""
    global _commits
    with _write_lock:
        outer = not conn.in_transaction
        with sqlite.transaction(conn):
            yield conn
        if outer:
            _commits += 1


def commits() -> int:
    """How many write transactions this process has committed: read under `locked()` together with the
    data, it dates a snapshot, so a page can tell an answer that overtook a newer one on the way."""
    return _commits


@contextmanager
def locked() -> Iterator[None]:
    """Hold the connection for a series of reads, so no other thread's transaction interleaves."""
    with _write_lock:
        yield


def now() -> float:
    return time.time()


def row(conn: sqlite3.Connection, sql: str, *args: Any) -> sqlite3.Row | None:
    return conn.execute(sql, args).fetchone()


def rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[sqlite3.Row]:
    return conn.execute(sql, args).fetchall()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def kept_secret(conn: sqlite3.Connection, key: str) -> str:
    """A random secret made once and kept in the site's database (e.g. what signs the page's sessions,
    so a restart of the agent does not log every packer out mid-task)."""
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO site_meta (key, value) VALUES (?, ?)", (key, secrets.token_hex(32)))
        return str(conn.execute("SELECT value FROM site_meta WHERE key = ?", (key,)).fetchone()[0])
