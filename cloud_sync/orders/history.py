"""How rows get into the orders' history (`order_events`, created by `cloud_sync.orders.records`) from a keyed
write transaction (`sitelink.sqlite.transaction`'s `keys`).

The history is read by id (the alerts' cursor, `cloud_sync.alerts.checks.scan_order_events`; the live feed,
`cloud_sync.orders.listing.events_after`): an id given must commit before any later one, or a reader that has
passed the later one never sees it. When every writer of the history was the store's one writer that held by
itself; keyed transactions run side by side, so theirs are written at their COMMIT, last, under one key taken
then (`ORDER_EVENTS_KEY`): one transaction's events after another's. An ordinary transaction excludes them
all and writes its own at once. Standalone (it imports no other part), so the stock sender's outcome writes
its `stock_pushed` row the same way.
"""

from __future__ import annotations

import sqlite3
from typing import Any

ORDER_EVENTS_KEY = "orders:events"

EVENT_SQL = ("INSERT OR IGNORE INTO order_events(order_id, ts, kind, detail, source, actor, key)"
             " VALUES (?,?,?,?,?,?,?)")  # rows (order_id, ts, kind, detail, source, actor, key), as log_event


def defer_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """`EVENT_SQL` rows: in a keyed transaction written at its COMMIT, after its other deferred writes (the
    levels, the dirty marks), under `ORDER_EVENTS_KEY` (see the module doc); in any other (SQLite's, an
    ordinary one) at once."""
    if getattr(conn, "lock_keys", None) is None:
        conn.executemany(EVENT_SQL, rows)
        return
    for row in rows:
        conn.defer("order_events", row, _flush_events, rank=2)  # type: ignore[attr-defined]


def _flush_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.take_key(ORDER_EVENTS_KEY)  # type: ignore[attr-defined]
    conn.executemany(EVENT_SQL, rows)
