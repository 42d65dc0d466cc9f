"""«Требует внимания» stays quick over 100,000 orders: its orders are read through the partial indexes
orders_waiting and orders_due whatever ANALYZE says of `stage` (with statistics from a day of only new
orders SQLite read every order: attention p95 58–148 ms in bench/ui.py)."""

from __future__ import annotations

import pytest

from cloud_sync.db import transaction
from cloud_sync.web.pages import attention


@pytest.mark.sqlite_only("reads SQLite's query planner (ANALYZE, EXPLAIN QUERY PLAN: the index SQLite reads);"
                         " PostgreSQL plans its own way")
def test_the_pages_orders_are_read_through_their_partial_indexes(cloud):
    _, conn, _ = cloud
    with transaction(conn):
        conn.executemany(
            "INSERT INTO orders(id, key, account, marketplace, native_id, stage, status, created_at, ship_by,"
            " ingested_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,0,0)",
            [(i, f"wb1:{i}", "wb1", "wildberries", str(i), "new", "new", "2026-11-01T10:00:00",
              f"2026-11-{1 + i % 28:02d}T12:00:00") for i in range(1, 3001)])
    conn.execute("ANALYZE")  # every order 'new': the statistics call the stage index useless
    plans = {
        "waiting": f"SELECT id FROM orders WHERE {attention.WAITING} ORDER BY COALESCE(ship_by, '9999'), id LIMIT 50",
        "due": f"SELECT id FROM orders WHERE {attention.DUE} AND ship_by < ? AND julianday(ship_by) < julianday(?)"
               " ORDER BY ship_by LIMIT 50",
    }
    for name, sql in plans.items():
        args = [] if name == "waiting" else ["2026-12-01", "2026-12-01"]
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert f"USING INDEX orders_{name}" in plan, plan
        assert "TEMP B-TREE" not in plan  # read in the page's order, not sorted after reading them all
