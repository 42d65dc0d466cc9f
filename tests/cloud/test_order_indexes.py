"""The orders table carries only the indexes its pages and look-ups read (every new order writes each one:
bench/orders_ingest.py), and the manager's order list still reads a page in its order through an index,
filtered by account and/or status or not, without sorting every order."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_sync.db import transaction
from cloud_sync.orders import listing, waiting
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


@pytest.mark.sqlite_only("reads SQLite's query planner (EXPLAIN QUERY PLAN); PostgreSQL plans its own way")
def test_who_waits_for_stock_is_read_from_the_stage_index_alone(tmp_path: Path) -> None:
    """A batch of new orders reads the waiting orders' warehouses and moments from the index of orders by stage
    (no table row of an order fetched: with thousands waiting that was most of the reading), and still finds them."""
    conn = open_db(tmp_path / "cloud.sqlite")
    assert "orders_stage" not in _indexes(conn, "orders") and "orders_stage_at" in _indexes(conn, "orders")
    with transaction(conn):
        conn.executemany(
            "INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at, ship_by,"
            " warehouse, ingested_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,'main',0,0)",
            [(i, f"a:{i}", "a", "ozon", str(i), str(i), ("short", "reserved", "problem", "reserved")[i % 4], "new",
              "2026-11-01T10:00:00", f"2026-11-{1 + i % 28:02d}T12:00:00") for i in range(1, 2001)])
        conn.executemany("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, item_id, quantity, units,"
                         " price) VALUES (?,1,'c','o',?,1,1,'1')", [(i, f"it{i % 7}") for i in range(1, 2001)])
        conn.executemany("INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts)"
                         " VALUES (?,'main',?,0,0)", [(f"it{k}", k % 2) for k in range(7)])
    conn.execute("ANALYZE")
    plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + waiting.WAITERS_SQL))
    assert "COVERING INDEX orders_stage_at" in plan, plan
    found = waiting.Waiters(conn)
    assert found.any_of([("it1", "main")]) and not found.any_of([("it2", "main")])  # it2: none on hand
    wanted = {i for i in range(1, 2001) if i % 2 == 0 and i % 7 == 1}  # short or problem, waiting for it1
    assert found.candidates("it1", "main") == wanted


@pytest.mark.sqlite_only("reads SQLite's query planner (EXPLAIN QUERY PLAN); PostgreSQL plans its own way")
def test_the_list_by_date_and_the_dashboard_days_share_one_index(tmp_path: Path) -> None:
    """orders_created repeated orders_day's first column: one index of both (7 on the orders table), from which
    the list sorted by date (either way, filtered or not) reads a page in its order and the dashboard's days
    read a period without the table."""
    conn = open_db(tmp_path / "cloud.sqlite")
    found = _indexes(conn, "orders")
    assert "orders_created" not in found and "orders_day" in found and len(found) <= 7, found
    with transaction(conn):
        conn.executemany(
            "INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at, ship_by,"
            " ingested_ts, updated_ts) VALUES (?,?,?,?,?,?,'reserved',?,?,?,0,0)",
            [(i, f"a{i % 4}:{i}", f"a{i % 4}", "ozon", str(i), str(i), ("new", "packed")[i % 2],
              f"2026-11-{1 + i % 28:02d}T{i % 3:02d}:00:00", None) for i in range(1, 3001)])
    conn.execute("ANALYZE")
    seen: list[str] = []
    for kwargs in ({}, {"descending": True}, {"account": "a1", "descending": True}):
        conn.set_trace_callback(seen.append)
        got = listing.list_orders(conn, limit=50, sort="created", **kwargs)
        conn.set_trace_callback(None)
        keys = [(o["created_at"], o["id"]) for o in got]
        assert keys == sorted(keys, reverse=bool(kwargs.get("descending"))) and len(keys) == 50
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + seen[0]))
        seen.clear()
        assert "orders_day" in plan and "TEMP B-TREE" not in plan, (kwargs, plan)
    plan = " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT marketplace, substr(created_at, 1, 10), COUNT(*), SUM(status='packed')"
        " FROM orders WHERE created_at>=? AND created_at<? GROUP BY 1, 2", ("2026-11-01", "2026-11-08")))
    assert "COVERING INDEX orders_day" in plan, plan


@pytest.mark.sqlite_only("reads SQLite's query planner (EXPLAIN QUERY PLAN); PostgreSQL plans its own way")
def test_the_ledger_moves_keep_only_the_indexes_their_readings_name(tmp_path: Path) -> None:
    """stock_moves_ts is gone (every new order's reservation wrote it); an item's moves in flight and its history
    are still read through stock_moves_item, all moves in flight through their own index."""
    from cloud_sync.stock import ledger

    conn = open_db(tmp_path / "cloud.sqlite")
    assert _indexes(conn, "stock_moves") == {"stock_moves_item", "stock_moves_ref", "stock_moves_in_flight"}
    with transaction(conn):
        ledger.set_balances(conn, "main", {f"i{k}": 100 for k in range(50)})
        for k in range(500):
            ledger.site_delta(conn, "s1", "main", f"i{k % 50}", -1 if k % 2 else 1, "pick" if k % 2 else "receipt",
                              ref=f"o{k}")
    conn.execute("ANALYZE")
    plan = " ".join(r[3] for r in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT m.* {ledger._IN_FLIGHT_SQL} AND m.item_id=? AND m.warehouse=? ORDER BY m.id",
        (0, 0, "i1", "main")))
    assert "stock_moves_item" in plan, plan
    assert len(ledger.in_flight_moves(conn, "i1", "main")) == 10
    assert "stock_moves_item" in " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM stock_moves WHERE item_id=? ORDER BY id DESC LIMIT 20", ("i1",)))
