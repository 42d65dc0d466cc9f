"""Bins kept at the site and the combined pick list, as a packer works them: a bin label scanned in a
receipt puts the goods there (and the next pick list walks to it), 1C's newer bin wins, many orders are
picked in one walk by bin and sorted into totes at the packing table; counts read in Russian plurals."""

from __future__ import annotations

import sqlite3

import pytest
from edge_testkit import BAG, MUG, SHIRT, SOCKS, WAREHOUSE, marking, outbox, pick_task, send

from edge_agent import store, words
from edge_agent.tasks import bins, inbox, station, stock, wave
from edge_agent.tasks.common import TaskError, parcels_word


def scan(conn: sqlite3.Connection, st: str, code: str):  # type: ignore[no-untyped-def]
    with store.transaction(conn):
        return station.handle_scan(conn, send, st, code, WAREHOUSE)


def set_mode(conn: sqlite3.Connection, st: str, mode: str, held: str | None = None) -> None:
    with store.transaction(conn):
        station.set_mode(conn, st, mode, held)


def test_counts_take_the_russian_plural_forms() -> None:
    assert [words.items(n) for n in (1, 2, 5, 11, 21, 22, 111)] == [
        "1 товар", "2 товара", "5 товаров", "11 товаров", "21 товар", "22 товара", "111 товаров"]
    assert [parcels_word(n) for n in (1, 3, 12, 101)] == ["посылка", "посылки", "посылок", "посылка"]


def test_a_bin_label_scanned_in_a_receipt_keeps_the_goods_there_and_the_next_pick_walks_to_it(conn) -> None:
    set_mode(conn, "tsd-1", "receipt")
    res = scan(conn, "tsd-1", "k-07")  # a new bin nobody named before: the site's bin pattern says it is one
    assert res.ok and res.kind == "bin" and "K-07" in res.message
    assert scan(conn, "tsd-1", MUG["barcode"]).message.endswith("ячейка K-07")
    assert scan(conn, "tsd-1", BAG["barcode"]).ok
    assert bins.bin_of(conn, MUG["item_id"]) == "B-01"  # nothing kept before «Провести»
    with store.transaction(conn):
        stock.commit_receipt(conn, send, "tsd-1", WAREHOUSE, "r1", "Анна")
    assert bins.bin_of(conn, MUG["item_id"]) == "K-07" and bins.bin_of(conn, BAG["item_id"]) == "K-07"
    assert bins.bin_of(conn, SOCKS["item_id"]) == "A-01"  # not in this receipt: 1C's bin stays
    assert stock.bins_pad(conn, "tsd-1", "receipt") == {"current": None, "items": {}}  # the next receipt starts clean
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(MUG, 1)]))
    line = store.row(conn, "SELECT bin FROM task_lines WHERE task_id = 't1'")
    assert line["bin"] == "K-07"  # the site's bin over the one the cloud sent with the task (B-01)


def test_a_bin_set_at_a_count_moves_the_lines_still_to_pick_and_1c_s_newer_bin_wins(conn) -> None:
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(MUG, 2)]))
    set_mode(conn, "tsd-1", "count")
    scan(conn, "tsd-1", "Z-01")
    scan(conn, "tsd-1", MUG["barcode"])
    with store.transaction(conn):
        stock.commit_count(conn, send, "tsd-1", WAREHOUSE, "c1", "Анна")
    assert store.row(conn, "SELECT bin FROM task_lines WHERE task_id = 't1'")["bin"] == "Z-01"
    assert [b["counted"] for t, b in outbox(conn) if t == "stock_count"] == [1]
    with store.transaction(conn):  # the cloud sends the catalog again, 1C's bin unchanged: the site's stays
        inbox.apply_catalog(conn, {"items": [MUG]})
    assert bins.bin_of(conn, MUG["item_id"]) == "Z-01"
    with store.transaction(conn):  # 1C now says another bin: the newer word
        inbox.apply_catalog(conn, {"items": [{**MUG, "bin": "C-03"}]})
    assert bins.bin_of(conn, MUG["item_id"]) == "C-03"


def test_a_code_that_is_no_bin_and_no_item_is_still_unknown_in_a_receipt(conn) -> None:
    set_mode(conn, "tsd-1", "receipt")
    res = scan(conn, "tsd-1", "2000000000001")
    assert not res.ok and res.kind == "unknown"
    assert stock.bins_pad(conn, "tsd-1")["current"] is None


def _three_orders(conn: sqlite3.Connection) -> None:
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("1", [(MUG, 1), (BAG, 1)], deadline="2026-11-27T01:00:00Z"))
        inbox.apply_pick_task(conn, pick_task("2", [(BAG, 2)], deadline="2026-11-27T02:00:00Z"))
        inbox.apply_pick_task(conn, pick_task("3", [(SOCKS, 1), (MUG, 1)], deadline="2026-11-27T03:00:00Z"))


def test_many_orders_are_picked_in_one_walk_by_bin_then_sorted_into_their_totes(conn) -> None:
    _three_orders(conn)
    with store.transaction(conn):
        wid = wave.create(conn, 12, "Анна")
    lines = wave.pick_list(conn, wid)
    assert [(g["bin"], g["name"], g["quantity"]) for g in lines] == [
        ("A-01", "Носки", 1), ("B-01", "Кружка", 2), ("C-09", "Рюкзак", 3)]
    assert [(o["tote"], o["number"], o["quantity"]) for o in lines[2]["orders"]] == [(1, "N1", 1), (2, "N2", 2)]
    set_mode(conn, "tsd-1", "wave", wid)
    res = scan(conn, "tsd-1", "A-01")  # the first bin's label takes its line
    assert res.ok and "Дальше: ячейка B-01" in res.message
    assert not scan(conn, "tsd-1", "C-09").ok  # not the bin of the line now
    assert scan(conn, "tsd-1", MUG["barcode"]).message.startswith("Взято: «Кружка», ещё 1")
    scan(conn, "tsd-1", MUG["barcode"])
    res = scan(conn, "tsd-1", "C-09")
    assert res.kind == "done" and "разложите товар по ящикам" in res.message
    picked = sorted(b["order_id"] for t, b in outbox(conn) if t == "task_progress" and b["state"] == "picked")
    assert picked == ["o-1", "o-2", "o-3"]  # each order's progress went up as an ordinary pick

    set_mode(conn, "pack-1", "sort", wid)
    res = scan(conn, "pack-1", BAG["barcode"])
    assert res.ok and res.data["tote"] == 1 and res.message.startswith("ЯЩИК 1 · заказ N1")
    res = scan(conn, "pack-1", MUG["barcode"])
    assert res.kind == "done" and res.data["tote"] == 1 and "печатается этикетка" in res.message
    assert [scan(conn, "pack-1", BAG["barcode"]).data["tote"] for _ in range(2)] == [2, 2]
    assert scan(conn, "pack-1", SOCKS["barcode"]).data["tote"] == 3
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    extra = scan(conn, "pack-1", MUG["barcode"])
    assert not extra.ok and extra.kind == "extra"
    packed = sorted(b["order_id"] for t, b in outbox(conn) if t == "task_progress" and b["state"] == "packed")
    assert packed == ["o-1", "o-2", "o-3"]
    assert wave.open_waves(conn) == []


def test_a_wave_takes_only_orders_not_started_nor_in_another_wave_and_needs_two(conn) -> None:
    _three_orders(conn)
    with store.transaction(conn):
        first = wave.create(conn, 2, "Анна")
    assert wave.task_ids(conn, first) == ["1", "2"]  # earliest deadlines first, at most 2
    with pytest.raises(TaskError, match="хотя бы 2"), store.transaction(conn):
        wave.create(conn, 12, "Анна")  # only order 3 is left


def test_a_marked_unit_sorted_at_the_table_still_needs_its_code(conn) -> None:
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("1", [(SHIRT, 1)]))
        inbox.apply_pick_task(conn, pick_task("2", [(SHIRT, 1)]))
        wid = wave.create(conn, 12, None)
    set_mode(conn, "pack-1", "sort", wid)
    res = scan(conn, "pack-1", SHIRT["barcode"])
    assert res.kind == "need_marking" and res.data["tote"] == 1
    res = scan(conn, "pack-1", marking(SHIRT, "Ab12Cd34Ef56G"))
    assert res.kind == "done" and res.data["tote"] == 1
    assert scan(conn, "pack-1", marking(SHIRT, "Zz12Cd34Ef56G")).data["tote"] == 2


def test_a_line_of_the_walk_not_on_the_shelf_is_short_for_every_order_that_needed_it(conn) -> None:
    _three_orders(conn)
    with store.transaction(conn):
        wid = wave.create(conn, 12, "Анна")
        res = wave.report_short(conn, send, wid, "B-01", MUG["item_id"])
    assert res.message == "Недостача: «Кружка» — не найдено 2 шт. Дальше: ячейка A-01, «Носки»"
    offs = sorted((b["ref"], b["delta"]) for t, b in outbox(conn) if t == "stock_delta" and b["reason"] == "writeoff")
    assert offs == [("o-1", -1), ("o-3", -1)]
    with pytest.raises(TaskError), store.transaction(conn):
        wave.report_short(conn, send, wid, "B-01", MUG["item_id"])


def test_a_bin_set_at_the_site_goes_up_to_the_cloud_and_so_does_giving_way_to_1c(conn) -> None:
    """The bin kept at «Провести» is sent up over the site link (`item_bin`, in the same transaction), so
    the manager sees where the goods lie; when 1C's newer bin takes its place, the cloud hears that too."""
    set_mode(conn, "tsd-1", "receipt")
    scan(conn, "tsd-1", "K-07")
    scan(conn, "tsd-1", MUG["barcode"])
    with store.transaction(conn):
        stock.commit_receipt(conn, send, "tsd-1", WAREHOUSE, "r1", "Анна")
    sent = [b for t, b in outbox(conn) if t == "item_bin"]
    assert sent == [{"item_id": MUG["item_id"], "bin": "K-07", "warehouse": WAREHOUSE, "ref": "r1", "set_by": "Анна"}]
    with store.transaction(conn):  # 1C's newer bin: the site's own gives way, and says so
        inbox.apply_catalog(conn, {"items": [{**MUG, "bin": "C-03"}]}, send, WAREHOUSE)
    sent = [b for t, b in outbox(conn) if t == "item_bin"]
    assert sent[-1] == {"item_id": MUG["item_id"], "bin": "", "warehouse": WAREHOUSE}
    with store.transaction(conn):  # the same catalog again: nothing of the site's left to give way
        inbox.apply_catalog(conn, {"items": [{**MUG, "bin": "C-03"}]}, send, WAREHOUSE)
    assert len([b for t, b in outbox(conn) if t == "item_bin"]) == 2
