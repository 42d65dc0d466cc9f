"""Pick, pack, handover, receipts and counts against a real site database and the real outbox."""

from __future__ import annotations

import json
import sqlite3

import pytest
from edge_testkit import (
    BAG,
    MUG,
    SHIRT,
    SOCKS,
    WAREHOUSE,
    deliver_label,
    marking,
    outbox,
    pick_task,
    print_waiting,
    send,
)

from edge_agent import store
from edge_agent.tasks import handover, inbox, pack, pick, station, stock
from edge_agent.tasks.common import TaskError, task_lines


def add(conn: sqlite3.Connection, body: dict) -> None:
    with store.transaction(conn):
        assert inbox.apply_pick_task(conn, body)


def scan(conn: sqlite3.Connection, st: str, code: str):
    with store.transaction(conn):
        return station.handle_scan(conn, send, st, code, WAREHOUSE)


def state(conn: sqlite3.Connection, task_id: str) -> str:
    return conn.execute("SELECT state FROM tasks WHERE task_id = ?", (task_id,)).fetchone()[0]


def test_pick_walks_bins_in_order_confirms_by_bin_or_item_and_reports_short(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 2), (SOCKS, 1), (BAG, 3)]))
    assert [ln["bin"] for ln in task_lines(conn, "t1")] == ["A-01", "B-01", "C-09"]
    with store.transaction(conn):
        station.open_task(conn, "tsd-1", "t1", "pick")
    assert pick.current_line(conn, "t1")["item_id"] == SOCKS["item_id"]
    assert scan(conn, "tsd-1", "a-01").kind == "picked"  # the bin takes the whole line
    assert scan(conn, "tsd-1", MUG["barcode"]).ok
    assert state(conn, "t1") == "picking"
    res = scan(conn, "tsd-1", MUG["barcode"])
    assert res.ok and pick.current_line(conn, "t1")["item_id"] == BAG["item_id"]
    assert scan(conn, "tsd-1", MUG["barcode"]).kind == "extra"
    assert scan(conn, "tsd-1", BAG["barcode"]).ok
    with store.transaction(conn):
        res = pick.report_short(conn, send, "t1", 3)
    assert "2" in res.message
    assert state(conn, "t1") == "picked"
    (msg_type, body), = [m for m in outbox(conn) if m[0] == "task_progress"]
    assert body["state"] == "short"
    bag = next(ln for ln in body["lines"] if ln["item_id"] == BAG["item_id"])
    assert (bag["picked"], bag["short"]) == (1, 2)
    # the 2 units not found leave on-hand at the cloud too: a writeoff against the order, sent before the progress
    kinds = [t for t, _ in outbox(conn)]
    (wo,) = [b for t, b in outbox(conn) if t == "stock_delta"]
    assert (wo["item_id"], wo["delta"], wo["reason"], wo["ref"]) == (BAG["item_id"], -2, "writeoff", "o-t1")
    assert kinds.index("stock_delta") < kinds.index("task_progress")


def test_pack_refuses_wrong_and_unknown_items_loudly_and_reports_them(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 1)]))
    add(conn, pick_task("t2", [(BAG, 1)], deadline="2026-11-28T10:00:00Z"))
    with store.transaction(conn):
        station.open_task(conn, "pack-1", "t1", "pack")
    res = scan(conn, "pack-1", BAG["barcode"])
    assert (res.ok, res.kind) == (False, "wrong_item")
    assert "НЕ ТОТ ТОВАР" in res.message and "Nt2" in res.message
    res = scan(conn, "pack-1", "4600000000000")
    assert (res.ok, res.kind) == (False, "unknown")
    scans_up = [b for t, b in outbox(conn) if t == "scan"]
    assert [b["code"] for b in scans_up] == [BAG["barcode"], "4600000000000"]
    assert all(b["order_id"] == "o-t1" for b in scans_up)
    assert state(conn, "t1") == "new"  # nothing counted
    assert conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0] == 2


def test_pack_completion_is_one_transaction_packed_delta_and_label_job(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 2), (SOCKS, 1)]))
    with store.transaction(conn):
        station.open_task(conn, "pack-1", "t1", "pack")
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "packed"
    assert scan(conn, "pack-1", SOCKS["barcode"]).kind == "packed"
    assert not [m for m in outbox(conn) if m[0] == "task_progress"]
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    assert state(conn, "t1") == "packed"
    msgs = outbox(conn)
    assert [t for t, _ in msgs] == ["task_progress", "stock_delta", "stock_delta"]
    assert msgs[0][1]["state"] == "packed"
    deltas = {b["item_id"]: (b["delta"], b["reason"], b["ref"]) for t, b in msgs[1:]}
    assert deltas == {MUG["item_id"]: (-2, "pick", "o-t1"), SOCKS["item_id"]: (-1, "pick", "o-t1")}
    jobs = conn.execute("SELECT order_id, kind, state FROM print_jobs").fetchall()
    assert [tuple(j) for j in jobs] == [("o-t1", "label", "pending")]
    with pytest.raises(TaskError), store.transaction(conn):  # a packed order takes no more scans
        pack.pack_scan(conn, send, "t1", MUG["barcode"], WAREHOUSE)


def test_completion_rolls_back_whole_when_the_outbox_write_fails(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 1)]))

    def failing_send(c, msg_type, body):
        if msg_type == "stock_delta":
            raise OSError("disk full")
        return send(c, msg_type, body)

    with pytest.raises(OSError), store.transaction(conn):
        pack.pack_scan(conn, failing_send, "t1", MUG["barcode"], WAREHOUSE)
    assert state(conn, "t1") == "new"
    assert task_lines(conn, "t1")[0]["packed"] == 0
    assert outbox(conn) == []
    assert conn.execute("SELECT COUNT(*) FROM print_jobs").fetchone()[0] == 0


def test_marked_goods_need_a_valid_unused_code_with_the_items_gtin(conn) -> None:
    add(conn, pick_task("t1", [(SHIRT, 2)]))
    add(conn, pick_task("t2", [(SHIRT, 1)]))
    with store.transaction(conn):
        station.open_task(conn, "pack-1", "t1", "pack")
    assert scan(conn, "pack-1", SHIRT["barcode"]).kind == "need_marking"
    assert scan(conn, "pack-1", marking(MUG, "SERIAL0000001")).kind == "wrong_item"  # GTIN of another item
    assert scan(conn, "pack-1", f"01{SHIRT['barcode'].zfill(14)}21SERIAL0000001").kind == "bad_marking"
    assert scan(conn, "pack-1", marking(SHIRT, "SERIAL0000001", sep="<GS>")).kind == "packed"
    res = scan(conn, "pack-1", marking(SHIRT, "SERIAL0000001"))
    assert (res.kind, "в этой посылке" in res.message) == ("used_marking", True)
    assert scan(conn, "pack-1", marking(SHIRT, "SERIAL0000002")).kind == "done"
    progress = next(b for t, b in outbox(conn) if t == "task_progress")
    assert len(progress["marking_codes"]) == 2 and progress["marking_codes"][0].startswith("01")
    # the same code in another order: refused, naming the order it went into
    with store.transaction(conn):
        station.open_task(conn, "pack-1", "t2", "pack")
    res = scan(conn, "pack-1", marking(SHIRT, "SERIAL0000002"))
    assert res.kind == "used_marking" and "o-t1" in res.message
    assert [b["code"] for t, b in outbox(conn) if t == "scan"][-1] == marking(SHIRT, "SERIAL0000002")


def test_scan_at_idle_station_opens_the_earliest_task_needing_the_item(conn) -> None:
    add(conn, pick_task("late", [(MUG, 1)], deadline="2026-11-30T10:00:00Z"))
    add(conn, pick_task("early", [(MUG, 1)], deadline="2026-11-27T08:00:00Z"))
    res = scan(conn, "pack-2", MUG["barcode"])
    assert res.kind == "done" and res.task_id == "early"
    assert scan(conn, "pack-2", MUG["barcode"]).task_id == "late"
    assert scan(conn, "pack-2", MUG["barcode"]).kind == "extra"  # nobody needs one more: the one just packed has its own


def test_cancel_frees_marking_codes_or_returns_packed_goods(conn) -> None:
    add(conn, pick_task("t1", [(SHIRT, 2)]))
    add(conn, pick_task("t2", [(MUG, 1)]))
    scan(conn, "pack-1", marking(SHIRT, "SERIAL0000009"))
    scan(conn, "pack-2", MUG["barcode"])
    with store.transaction(conn):
        inbox.apply_cancel(conn, send, {"task_id": "t1", "order_id": "o-t1"}, WAREHOUSE)
        inbox.apply_cancel(conn, send, {"task_id": "t2", "order_id": "o-t2"}, WAREHOUSE)
    assert conn.execute("SELECT COUNT(*) FROM marking_codes").fetchone()[0] == 0
    back = [b for t, b in outbox(conn) if t == "stock_delta" and b["reason"] == "return"]
    assert [(b["item_id"], b["delta"]) for b in back] == [(MUG["item_id"], 1)]
    assert conn.execute("SELECT state FROM print_jobs").fetchone()[0] == "done"
    assert scan(conn, "pack-1", marking(SHIRT, "SERIAL0000009")).kind == "info"  # no open task needs it


def test_handover_flags_extra_and_missing_and_closing_prints_the_act(conn, tmp_path) -> None:
    for t in ("a", "b", "c", "x"):
        add(conn, pick_task(t, [(MUG, 1)]))
        deliver_label(conn, f"o-{t}")
        assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"  # only packed parcels are handed over
    assert len(print_waiting(conn, tmp_path)) == 4  # ... with their labels printed
    with store.transaction(conn):
        inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "wildberries", "supply_id": "WB-GI-1",
                                    "order_ids": ["o-a", "o-b", "o-c"]})
        station.set_mode(conn, "pack-1", "handover", "h1")
    assert scan(conn, "pack-1", "o-a").ok
    assert scan(conn, "pack-1", "Nb").ok  # the order number works too
    res = scan(conn, "pack-1", "o-x")
    assert (res.ok, res.kind) == (False, "extra")
    assert scan(conn, "pack-1", "o-a").kind == "extra"
    assert scan(conn, "pack-1", "nonsense").kind == "unknown"
    s = handover.summary(conn, "h1")
    assert (s["scanned"], s["missing"], s["extra"]) == (["o-a", "o-b"], ["o-c"], ["o-x"])
    with pytest.raises(TaskError, match="не хватает 1"), store.transaction(conn):
        handover.close(conn, send, "h1")
    with store.transaction(conn):
        handover.close(conn, send, "h1", force=True)
    handed = [b for t, b in outbox(conn) if t == "task_progress" and b["state"] != "packed"]
    assert [(b["order_id"], b["state"], b["handover_id"]) for b in handed] == [
        ("o-a", "handed_over", "h1"), ("o-b", "handed_over", "h1")]
    job = conn.execute("SELECT kind, payload FROM print_jobs WHERE kind != 'label'").fetchone()
    assert job[0] == "act" and json.loads(job[1])["missing"] == ["o-c"]


def test_receipt_and_count_produce_stock_delta_and_stock_count(conn) -> None:
    with store.transaction(conn):
        station.set_mode(conn, "pack-1", "receipt")
    for code in (MUG["barcode"], MUG["barcode"], BAG["barcode"]):
        assert scan(conn, "pack-1", code).ok
    assert scan(conn, "pack-1", "000").kind == "unknown"
    with store.transaction(conn):
        stock.commit_receipt(conn, send, "pack-1", WAREHOUSE, "r1")
        station.set_mode(conn, "pack-1", "count")
    scan(conn, "pack-1", SOCKS["barcode"])
    with store.transaction(conn):
        stock.set_quantity(conn, "pack-1", BAG["item_id"], 7)
        stock.commit_count(conn, send, "pack-1", WAREHOUSE, "c1", "Анна")
    msgs = [(t, b) for t, b in outbox(conn) if t in ("stock_delta", "stock_count")]
    assert [(t, b["item_id"], b.get("delta", b.get("counted"))) for t, b in msgs] == [
        ("stock_delta", MUG["item_id"], 2), ("stock_delta", BAG["item_id"], 1),
        ("stock_count", SOCKS["item_id"], 1), ("stock_count", BAG["item_id"], 7)]
    with pytest.raises(TaskError), store.transaction(conn):
        stock.commit_count(conn, send, "pack-1", WAREHOUSE, "c2")


def test_down_messages_are_checked_before_they_are_applied(conn) -> None:
    with pytest.raises(inbox.Unusable), store.transaction(conn):
        inbox.apply_pick_task(conn, {"task_id": "t9", "order_id": "o", "marketplace": "ozon",
                                     "lines": [{"item_id": "x", "quantity": 0}]})
    assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0  # nothing half-applied
    body = pick_task("t1", [(MUG, 1)], label={"format": "png", "data_b64": "aGk="})
    add(conn, body)
    with store.transaction(conn):
        assert not inbox.apply_pick_task(conn, body)  # the same task again: ignored
    assert conn.execute("SELECT format FROM labels WHERE order_id='o-t1'").fetchone()[0] == "png"


def test_stock_delta_names_the_warehouse_the_cloud_reserved_in(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 1)], warehouse="kazan-fbs"))
    add(conn, pick_task("t2", [(BAG, 1)]))
    scan(conn, "pack-1", MUG["barcode"])
    scan(conn, "pack-1", BAG["barcode"])
    assert [b["warehouse"] for t, b in outbox(conn) if t == "stock_delta"] == ["kazan-fbs", WAREHOUSE]


def test_short_at_the_packing_table_ships_what_is_there(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 2), (BAG, 1)]))
    scan(conn, "pack-1", MUG["barcode"])
    scan(conn, "pack-1", BAG["barcode"])
    with store.transaction(conn):
        res = pack.report_short(conn, send, "t1", 1, WAREHOUSE)
    assert res.kind == "done" and state(conn, "t1") == "packed"
    progress = [b for t, b in outbox(conn) if t == "task_progress"]
    assert [b["state"] for b in progress] == ["short", "packed"]
    assert [(b["item_id"], b["delta"], b["reason"]) for t, b in outbox(conn) if t == "stock_delta"] == [
        (MUG["item_id"], -1, "writeoff"), (MUG["item_id"], -1, "pick"), (BAG["item_id"], -1, "pick")]
    add(conn, pick_task("t2", [(SOCKS, 1)]))
    with store.transaction(conn):
        res = pack.report_short(conn, send, "t2", 1, WAREHOUSE)
    assert state(conn, "t2") == "short"  # nothing to ship: no label, no pick delta; the missing unit written off
    assert [(b["item_id"], b["delta"], b["reason"]) for t, b in outbox(conn)
            if t == "stock_delta" and b["ref"] == "o-t2"] == [(SOCKS["item_id"], -1, "writeoff")]
    assert conn.execute("SELECT COUNT(*) FROM print_jobs WHERE order_id='o-t2'").fetchone()[0] == 0


def test_only_a_packed_parcel_is_handed_over(conn, tmp_path) -> None:
    """An order not packed yet, or cancelled, is refused at the courier's table and never reported handed
    over; one cancelled after it was scanned in stays behind when the handover closes."""
    for t in ("a", "c", "d"):
        add(conn, pick_task(t, [(MUG, 1)]))
        deliver_label(conn, f"o-{t}")
        assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    assert len(print_waiting(conn, tmp_path)) == 3
    add(conn, pick_task("b", [(MUG, 1)]))  # not packed yet
    with store.transaction(conn):
        inbox.apply_cancel(conn, send, {"task_id": "c", "order_id": "o-c"}, WAREHOUSE)
        inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "wildberries",
                                    "order_ids": ["o-a", "o-b", "o-c", "o-d"]})
        station.set_mode(conn, "pack-1", "handover", "h1")
    packed = {r[0] for r in conn.execute("SELECT order_id FROM tasks WHERE state = 'packed'")}
    assert packed == {"o-a", "o-d"}
    not_packed = scan(conn, "pack-1", "Nb")
    assert (not_packed.ok, not_packed.kind) == (False, "not_packed") and "НЕ УПАКОВАН" in not_packed.message
    cancelled = scan(conn, "pack-1", "o-c")
    assert (cancelled.ok, cancelled.kind) == (False, "cancelled") and "ОТМЕНЁН" in cancelled.message
    assert scan(conn, "pack-1", "o-a").ok and scan(conn, "pack-1", "o-d").ok
    with store.transaction(conn):
        inbox.apply_cancel(conn, send, {"task_id": "d", "order_id": "o-d"}, WAREHOUSE)  # the buyer changed their mind
    with store.transaction(conn):
        handover.close(conn, send, "h1", force=True)
    handed = [b["order_id"] for t, b in outbox(conn) if t == "task_progress" and b["state"] == "handed_over"]
    assert handed == ["o-a"]
    states = dict(conn.execute("SELECT order_id, state FROM tasks").fetchall())
    assert states == {"o-a": "handed_over", "o-b": "new", "o-c": "cancelled", "o-d": "cancelled"}
    assert json.loads(conn.execute("SELECT payload FROM print_jobs WHERE kind = 'act'").fetchone()[0])["count"] == 1


def test_a_label_is_printed_again_only_for_a_packed_order_and_not_twice_in_the_queue(conn) -> None:
    add(conn, pick_task("t1", [(MUG, 2)]))
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "packed"
    with pytest.raises(TaskError, match="не упакован"), store.transaction(conn):
        pack.reprint_label(conn, "t1")
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    with pytest.raises(TaskError, match="уже ждёт"), store.transaction(conn):
        pack.reprint_label(conn, "t1")
    with store.transaction(conn):
        conn.execute("UPDATE print_jobs SET state = 'done'")
        pack.reprint_label(conn, "t1")
    assert [r[0] for r in conn.execute("SELECT state FROM print_jobs ORDER BY id")] == ["done", "pending"]


def test_a_parcel_whose_label_has_not_printed_is_refused_and_the_packer_told_why(conn, tmp_path) -> None:
    """Packed is not enough: the courier takes a parcel only once its label printed. The packer hears why
    it cannot go yet (the marketplace's label has not come / the printer has a problem) and can print it
    from the courier's table; closing names each parcel missing and why."""
    for t in ("a", "b", "c"):
        add(conn, pick_task(t, [(MUG, 1)]))
        assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    deliver_label(conn, "o-a")
    deliver_label(conn, "o-c")
    assert len(print_waiting(conn, tmp_path)) == 2  # o-b's label has not come from the marketplace
    with store.transaction(conn):
        inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "ozon", "order_ids": ["o-a", "o-b", "o-c"]})
        station.set_mode(conn, "pack-1", "handover", "h1")
    res = scan(conn, "pack-1", "Nb")
    assert (res.ok, res.kind, res.data["label"], res.data["reprint"]) == (False, "no_label", "waiting_label", False)
    assert "ЭТИКЕТКА ЗАКАЗА Nb НЕ НАПЕЧАТАНА" in res.message and "ещё не пришла" in res.message
    assert scan(conn, "pack-1", "o-a").ok
    s = handover.summary(conn, "h1")
    assert s["missing_why"] == {"o-b": "этикетка не напечатана", "o-c": "не отсканирована"}
    assert s["labels"] == {"o-a": "printed", "o-b": "waiting_label", "o-c": "printed"}
    with pytest.raises(TaskError) as refused, store.transaction(conn):
        handover.close(conn, send, "h1")
    assert "не хватает 2 посылки: Nb — этикетка не напечатана; Nc — не отсканирована" in str(refused.value)

    # the label comes, but the printer is out of paper: told so, and the label can be tried again
    deliver_label(conn, "o-b")
    with store.transaction(conn):
        conn.execute("UPDATE print_jobs SET error = 'Принтер без этикеток — заправьте новый рулон' "
                     "WHERE order_id = 'o-b'")
    res = scan(conn, "pack-1", "o-b")
    assert (res.kind, res.data["label"], res.data["reprint"]) == ("no_label", "printer_problem", True)
    assert "заправьте новый рулон" in res.message
    with store.transaction(conn):
        assert "в очереди" in handover.reprint(conn, "o-b")  # no second job while one waits
    assert conn.execute("SELECT COUNT(*) FROM print_jobs WHERE order_id = 'o-b'").fetchone()[0] == 1
    assert len(print_waiting(conn, tmp_path)) == 1
    assert scan(conn, "pack-1", "o-b").ok and scan(conn, "pack-1", "o-c").ok
    with store.transaction(conn):
        assert handover.close(conn, send, "h1")["missing"] == []
    handed = [b["order_id"] for t, b in outbox(conn) if t == "task_progress" and b["state"] == "handed_over"]
    assert handed == ["o-a", "o-b", "o-c"]


def test_a_label_going_to_the_printer_or_asked_about_is_not_ready_and_the_act_lists_the_missing(conn, tmp_path) -> None:
    add(conn, pick_task("a", [(MUG, 1)]))
    deliver_label(conn, "o-a")
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    with store.transaction(conn):
        inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "ozon", "order_ids": ["o-a"]})
        station.set_mode(conn, "pack-1", "handover", "h1")
        conn.execute("UPDATE print_jobs SET state = 'sending'")  # the bytes are on their way
    assert scan(conn, "pack-1", "o-a").data["label"] == "printing"
    with store.transaction(conn):
        conn.execute("UPDATE print_jobs SET state = 'unknown'")  # a crash cut it short: the packer is asked
    res = scan(conn, "pack-1", "o-a")
    assert (res.kind, res.data["label"]) == ("no_label", "asked") and "напечаталась ли она" in res.message
    with pytest.raises(TaskError, match="сначала ответьте"), store.transaction(conn):
        handover.reprint(conn, "o-a")
    with store.transaction(conn):
        handover.close(conn, send, "h1", force=True)
    act = json.loads(conn.execute("SELECT payload FROM print_jobs WHERE kind = 'act'").fetchone()[0])
    assert (act["count"], act["missing"], act["missing_why"]) == (0, ["o-a"], {"o-a": "этикетка не напечатана"})
    assert not [b for t, b in outbox(conn) if t == "task_progress" and b["state"] == "handed_over"]
    with store.transaction(conn):  # cancelled: nobody is asked about its label any more
        inbox.apply_cancel(conn, send, {"task_id": "a", "order_id": "o-a"}, WAREHOUSE)
    assert conn.execute("SELECT state FROM print_jobs WHERE kind = 'label'").fetchone()[0] == "done"
