"""The 1C exchange's own tables: exchange sessions, uploaded files, import jobs, 1C warehouses and
balances as 1C last stated them, offers naming items 1C has not described, orders handed to 1C and
the statuses 1C sent back.

Balances reach the cloud's stock ledger through `apply_balances` only: it keeps 1C's figures here
(`onec_balances`, what 1C said) and hands them to `cloud_sync.stock.ledger.set_balances_many`, so the
switch-over is this one function.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from cloud_sync.stock import ledger

MIGRATIONS = [
    """
    CREATE TABLE onec_sessions (
        id TEXT PRIMARY KEY,              -- the cookie value (also answered as sessid)
        login TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        last_seen TEXT NOT NULL DEFAULT (datetime('now')),
        initialized INTEGER NOT NULL DEFAULT 0,
        zip INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE onec_uploads (
        session_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        chunks INTEGER NOT NULL DEFAULT 0,
        sealed INTEGER NOT NULL DEFAULT 0,    -- its import began: no more chunks accepted
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (session_id, filename)
    );
    CREATE TABLE onec_import_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',  -- queued | running | success | failure
        reason TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '{}',
        started_at TEXT NOT NULL DEFAULT (datetime('now')),
        finished_at TEXT
    );
    CREATE INDEX onec_import_jobs_file ON onec_import_jobs(session_id, filename);
    CREATE TABLE onec_warehouses (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE onec_balances (
        item_id TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity TEXT NOT NULL,              -- Decimal as text, as 1C stated it
        updated_at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (item_id, warehouse_id)
    );
    CREATE TABLE onec_unknown_offers (
        offer_id TEXT PRIMARY KEY,           -- an offer whose item 1C has not described (yet)
        file TEXT NOT NULL,
        first_seen TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE onec_order_queue (
        order_id TEXT PRIMARY KEY,           -- orders waiting to go to 1C (until cloud_sync.orders feeds them)
        payload TEXT NOT NULL,               -- JSON of exchange.OrderFor1C
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE onec_order_deliveries (
        order_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,                 -- sent (in a query answer) | delivered (1C said success)
        session_id TEXT NOT NULL DEFAULT '',
        sent_at TEXT NOT NULL DEFAULT (datetime('now')),
        delivered_at TEXT
    );
    CREATE TABLE onec_order_statuses (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL,
        status TEXT NOT NULL,                -- shipped | cancelled | paid | confirmed
        onec_number TEXT NOT NULL DEFAULT '',
        requisites TEXT NOT NULL DEFAULT '{}',
        received_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX onec_order_statuses_order ON onec_order_statuses(order_id);
    """,
    # the status an order had when it went to 1C: a later change (cancelled...) sends it again
    "ALTER TABLE onec_order_deliveries ADD COLUMN version TEXT NOT NULL DEFAULT '';",
    # looked up by its key only: the key's own b-tree (WITHOUT ROWID), one b-tree less per balance written
    """
    CREATE TABLE onec_balances_new (
        item_id TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity TEXT NOT NULL,              -- Decimal as text, as 1C stated it
        updated_at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (item_id, warehouse_id)
    ) WITHOUT ROWID;
    INSERT INTO onec_balances_new(item_id, warehouse_id, quantity, updated_at)
        SELECT item_id, warehouse_id, quantity, updated_at FROM onec_balances;
    DROP TABLE onec_balances;
    ALTER TABLE onec_balances_new RENAME TO onec_balances;
    """,
    # the queue's order as a column of its own: it was SQLite's rowid, PostgreSQL's ctid (a row's place,
    # which an update moves: a refreshed order went to the end); the rows there keep the order they had
    """
    ALTER TABLE onec_order_queue ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE onec_order_queue SET seq = (SELECT COUNT(*) FROM onec_order_queue q WHERE q.rowid <= onec_order_queue.rowid);
    """,
]


class Balance(NamedTuple):
    """A balance as 1C states it: item, 1C warehouse, quantity (a plain tuple: 100,000s per package)."""

    item_id: str
    warehouse_id: str
    quantity: Decimal


def upsert_warehouses(conn: sqlite3.Connection, rows: Iterable[tuple[str, str]], *, keep_names: bool = False) -> None:
    """1C warehouses (id, name). `keep_names`: a warehouse only referenced keeps a name 1C gave before."""
    rows = list(rows)
    sql = ("INSERT INTO onec_warehouses(id, name) VALUES (?, ?) ON CONFLICT(id) DO "
           + ("NOTHING" if keep_names else "UPDATE SET name=excluded.name"))
    conn.executemany(sql, rows)


def apply_balances(conn: sqlite3.Connection, balances: list[Balance], *, ref: str = "",
                   as_of: float | None = None) -> list[str]:
    """Record 1C's balances (on hand per item and 1C warehouse) and hand them to the stock ledger.

    The ledger keeps whole units >= 0: a negative 1C balance goes in as 0 and a fractional one is
    rounded down; each such case comes back as a note (the exact figure stays in onec_balances)."""
    rows: list[tuple[str, str, str, int]] = []
    notes: list[str] = []
    for item_id, warehouse_id, stated in balances:
        qty = int(stated) if stated >= 0 else 0
        if qty != stated:
            notes.append(f"{item_id} at {warehouse_id}: 1C states {stated}, the ledger takes {qty}")
        rows.append((item_id, warehouse_id, str(stated), qty))
    apply_balance_rows(conn, rows, ref=ref, as_of=as_of)
    return notes


def apply_balance_rows(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int]], *, ref: str = "",
                       as_of: float | None = None, horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> None:
    """`apply_balances` for rows already made: (item_id, warehouse_id, quantity as 1C stated it (text),
    the ledger's whole units >= 0), as of the moment 1C formed them (None: now). A package formed before
    the last one applied to one of its warehouses is refused (`ledger.StaleBalance`), nothing written."""
    if not rows:
        return
    ledger.check_as_of(conn, [r[1] for r in rows], "1c", time.time() if as_of is None else as_of)
    now = conn.execute("SELECT datetime('now')").fetchone()[0]  # once per batch, not once per row
    conn.executemany(
        "INSERT INTO onec_balances(item_id, warehouse_id, quantity, updated_at) VALUES (?,?,?,?)"
        " ON CONFLICT(item_id, warehouse_id) DO UPDATE SET quantity=excluded.quantity, updated_at=excluded.updated_at",
        [(item_id, warehouse_id, text, now) for item_id, warehouse_id, text, _ in rows],
    )
    _to_ledger(conn, rows, ref, as_of, horizon_s)


def _to_ledger(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int]], ref: str,
               as_of: float | None = None, horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> None:
    """The one switch-over point to the cloud's stock ledger: `cloud_sync.stock.ledger.set_balances_many` (the
    ledger's warehouse key is the 1C warehouse id, source "1c"): a move for each new or changed level
    only, every warehouse marked as heard from, in a few set-based statements per batch."""
    if not rows:
        return
    ledger.set_balances_many(conn, [(item_id, warehouse_id, qty) for item_id, warehouse_id, _, qty in rows],
                             source="1c", ref=ref, as_of=as_of, horizon_s=horizon_s)


def balances(conn: sqlite3.Connection) -> dict[str, dict[str, Decimal]]:
    """{warehouse_id: {item_id: quantity}} as 1C last stated it."""
    out: dict[str, dict[str, Decimal]] = {}
    for row in conn.execute("SELECT item_id, warehouse_id, quantity FROM onec_balances"):
        out.setdefault(row[1], {})[row[0]] = Decimal(row[2])
    return out


def note_unknown_offers(conn: sqlite3.Connection, offer_ids: Iterable[str], file: str) -> None:
    conn.executemany("INSERT OR IGNORE INTO onec_unknown_offers(offer_id, file) VALUES (?, ?)",
                     [(o, file) for o in offer_ids])


def forget_unknown_offers(conn: sqlite3.Connection, item_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM onec_unknown_offers WHERE offer_id=?", [(i,) for i in item_ids])


def job_summary(row: sqlite3.Row) -> dict:
    return json.loads(row["summary"] or "{}")
