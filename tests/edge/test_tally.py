"""Receipts, counts and picking as a worker does them: a marked unit scanned by its Честный знак DataMatrix
is the item, and a receipt and a count in progress at one station stay apart."""

from __future__ import annotations

import sqlite3

from edge_testkit import BAG, MUG, SHIRT, WAREHOUSE, marking, outbox, pick_task, send

from edge_agent import store
from edge_agent.tasks import inbox, station, stock


def scan(conn: sqlite3.Connection, st: str, code: str):  # type: ignore[no-untyped-def]
    with store.transaction(conn):
        return station.handle_scan(conn, send, st, code, WAREHOUSE)


def set_mode(conn: sqlite3.Connection, st: str, mode: str) -> None:
    with store.transaction(conn):
        station.set_mode(conn, st, mode)


def test_a_marking_code_scanned_in_a_receipt_or_a_count_is_the_item(conn) -> None:
    for mode in ("receipt", "count"):
        set_mode(conn, "tsd-1", mode)
        res = scan(conn, "tsd-1", marking(SHIRT, f"{mode[:3].upper()}0000000001"))
        assert res.ok and "Футболка" in res.message, res.message
        assert stock.scratch(conn, "tsd-1") == {SHIRT["item_id"]: 1}
    assert [t for t, _ in outbox(conn) if t == "scan"] == []  # no "unknown barcode" went up


def test_a_marking_code_scanned_while_picking_takes_the_unit(conn) -> None:
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(SHIRT, 2)]))
        station.open_task(conn, "tsd-1", "t1", "pick")
    res = scan(conn, "tsd-1", marking(SHIRT, "SER0000000001"))
    assert res.ok and res.kind == "picked", res.message
    assert conn.execute("SELECT picked FROM task_lines WHERE task_id = 't1'").fetchone()[0] == 1
    other = scan(conn, "tsd-1", marking(MUG, "SER0000000002"))  # another item's code: refused as such
    assert other.kind == "wrong_item" and "Кружка" in other.message


def test_a_half_done_receipt_is_not_counted_and_not_lost(conn) -> None:
    set_mode(conn, "pack-1", "receipt")
    for code in (MUG["barcode"], MUG["barcode"]):
        assert scan(conn, "pack-1", code).ok
    set_mode(conn, "pack-1", "count")  # the packer leaves the receipt for a count
    assert stock.scratch(conn, "pack-1") == {}
    assert scan(conn, "pack-1", BAG["barcode"]).ok
    with store.transaction(conn):
        stock.commit_count(conn, send, "pack-1", WAREHOUSE, "c1")
    set_mode(conn, "pack-1", "receipt")  # and comes back to the receipt
    assert stock.scratch(conn, "pack-1") == {MUG["item_id"]: 2}
    with store.transaction(conn):
        stock.commit_receipt(conn, send, "pack-1", WAREHOUSE, "r1")
    msgs = [(t, b["item_id"], b.get("delta", b.get("counted"))) for t, b in outbox(conn)]
    assert msgs == [("stock_count", BAG["item_id"], 1), ("stock_delta", MUG["item_id"], 2)]


def test_a_pad_kept_by_an_older_version_stays_with_the_stations_mode(conn) -> None:
    set_mode(conn, "pack-1", "count")
    with store.transaction(conn):
        conn.execute("UPDATE stations SET scratch = ? WHERE station = 'pack-1'", (f'{{"{BAG["item_id"]}": 3}}',))
    assert stock.scratch(conn, "pack-1") == {BAG["item_id"]: 3}
    assert scan(conn, "pack-1", BAG["barcode"]).ok
    assert stock.scratch(conn, "pack-1") == {BAG["item_id"]: 4}
    assert stock.scratch(conn, "pack-1", "receipt") == {}


def test_a_pickers_extra_scan_after_the_pick_never_packs_the_order(conn) -> None:
    """The picker scans the last item twice: the order stays picked — no label, no "packed", no stock
    taken off — and the picker hears that the unit is extra."""
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(MUG, 1)]))
        station.open_task(conn, "tsd-1", "t1", "pick")
    assert scan(conn, "tsd-1", MUG["barcode"]).kind == "done"
    again = scan(conn, "tsd-1", MUG["barcode"])
    assert (again.ok, again.kind) == (False, "extra") and "лишняя" in again.message
    assert conn.execute("SELECT state FROM tasks WHERE task_id = 't1'").fetchone()[0] == "picked"
    assert conn.execute("SELECT mode FROM stations WHERE station = 'tsd-1'").fetchone()[0] == "pick"
    assert conn.execute("SELECT COUNT(*) FROM print_jobs").fetchone()[0] == 0
    assert [b["state"] for t, b in outbox(conn) if t == "task_progress"] == ["picked"]
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t2", [(MUG, 1)]))
    res = scan(conn, "tsd-1", MUG["barcode"])  # the next order still to pick that needs it is picked
    assert res.kind == "done" and res.task_id == "t2"
    assert conn.execute("SELECT COUNT(*) FROM print_jobs").fetchone()[0] == 0


def test_one_unit_too_many_after_the_order_is_packed_is_called_extra(conn) -> None:
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(BAG, 2)]))
    for _ in range(2):
        scan(conn, "pack-1", BAG["barcode"])
    res = scan(conn, "pack-1", BAG["barcode"])
    assert (res.ok, res.kind) == (False, "extra")
    assert "уже упакован в заказ Nt1" in res.message and "лишняя" in res.message
    assert conn.execute("SELECT SUM(packed) FROM task_lines").fetchone()[0] == 2
