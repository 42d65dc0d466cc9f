"""The orders table carries only the indexes its pages and look-ups read (every new order writes each one:
bench/orders_ingest.py), and the manager's order list still reads a page in its order through an index,
filtered by account and/or status or not, without sorting every order."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_sync.db import transaction
from cloud_sync.orders import listing
from cloud_sync.schema import open_db


def _indexes(conn, table: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=?"
                                       " AND sql IS NOT NULL", (table,))}


def test_the_order_list_has_one_index_for_its_filters(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "cloud.sqlite")
    found = _indexes(conn, "orders")
    assert "orders_page_filtered" in found
    assert not found & {"orders_page", "orders_page_account", "orders_page_status"}, found
    assert len(found) <= 8, found  # was 10: three deadline-ordered ones written at random places per order
    assert "order_events_kind" not in _indexes(conn, "order_events")


@pytest.mark.sqlite_only("reads SQLite's query planner (EXPLAIN QUERY PLAN: the index SQLite reads, no temp"
                        " b-tree); PostgreSQL plans its own way")
def test_every_list_page_reads_the_orders_in_their_order(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "cloud.sqlite")
    with transaction(conn):
        conn.executemany(
            "INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at, ship_by,"
            " ingested_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,0,0)",
            [(i, f"a{i % 4}:{i}", f"a{i % 4}", "ozon", str(i), str(i), "reserved",
              ("new", "reserved", "packed", "cancelled")[i % 7 % 4], f"2026-11-01T{i % 24:02d}:00:00",
              None if i % 13 == 0 else f"2026-11-{1 + i % 28:02d}T12:00:00") for i in range(1, 3001)])
    conn.execute("ANALYZE")
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    calls = [{}, {"account": "a1"}, {"status": "cancelled"}, {"account": "a2", "status": "packed", "offset": 100},
             {"late": True}]
    for kwargs in calls:
        seen.clear()
        got = listing.list_orders(conn, limit=50, **kwargs)
        assert got
        if "account" in kwargs:
            assert {o["account"] for o in got} == {kwargs["account"]}
        if "status" in kwargs:
            assert {o["status"] for o in got} == {kwargs["status"]}
        sql = seen[0]
        conn.set_trace_callback(None)
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        conn.set_trace_callback(seen.append)
        assert "orders_page_filtered" in plan and "TEMP B-TREE" not in plan, (kwargs, plan)
    conn.set_trace_callback(None)
    # the same order the filters' own indexes gave: deadline (none last), status, id
    everything = listing.list_orders(conn, limit=5000)
    wanted = [o["id"] for o in everything if o["account"] == "a3" and o["status"] == "new"]
    assert [o["id"] for o in listing.list_orders(conn, account="a3", status="new", limit=5000)] == wanted
    for kind in ("served", "reduced", "delivered"):
        plan = " ".join(r[3] for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT COUNT(DISTINCT order_id) FROM order_events WHERE kind='{kind}'"))
        assert "order_events_counted" in plan, plan
