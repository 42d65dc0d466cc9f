"""The stock ledger: append-only moves, levels, reservations, refusals that apply nothing."""

from __future__ import annotations

import sqlite3

import pytest

from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger


def test_balances_reserve_pick_and_levels(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 5, "B": 0})
        ledger.reserve(conn, "wb:1", "A", "main", 2)
    lv = ledger.level(conn, "A", "main")
    assert (lv.on_hand, lv.reserved, lv.available) == (5, 2, 3)
    with transaction(conn):  # the site packs it: on hand and reserved both drop, available does not
        ledger.site_delta(conn, "site-1", "main", "A", -2, "pick", ref="wb:1")
    lv = ledger.level(conn, "A", "main")
    assert (lv.on_hand, lv.reserved, lv.available) == (3, 0, 3)
    assert ledger.held(conn, "wb:1") == []
    kinds = [m.kind for m in reversed(ledger.moves(conn, "A"))]
    assert kinds == ["balance", "reserve", "pick"]
    # the level is exactly the sum of the moves
    total = conn.execute("SELECT SUM(on_hand_delta), SUM(reserved_delta) FROM stock_moves WHERE item_id='A'").fetchone()
    assert tuple(total) == (3, 0)


def test_reservation_beyond_available_is_refused_and_nothing_applied(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 1})
    before = conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0]
    with pytest.raises(ledger.InsufficientStock, match="1 available, 2 wanted"), transaction(conn):
        ledger.reserve(conn, "oz:9", "A", "main", 2)
    assert conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0] == before
    assert ledger.level(conn, "A", "main").reserved == 0


def test_move_making_on_hand_negative_is_refused_and_reported(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 2})
    with pytest.raises(ledger.NegativeStock, match="would make it -1"), transaction(conn):
        ledger.site_delta(conn, "site-1", "main", "A", -3, "writeoff")
    assert ledger.level(conn, "A", "main").on_hand == 2
    assert conn.execute("SELECT COUNT(*) FROM stock_moves WHERE kind='writeoff'").fetchone()[0] == 0


def test_balance_document_with_one_bad_quantity_applies_nothing(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 2})
    for bad in ({"A": 7, "B": -1}, {"A": 7, "B": 1.5}, {"A": 7, "B": "3"}):
        with pytest.raises(ledger.StockError, match="nothing applied"), transaction(conn):
            ledger.set_balances(conn, "main", bad)
    assert ledger.level(conn, "A", "main").on_hand == 2
    assert ledger.level(conn, "B", "main").on_hand == 0


def test_full_balance_document_zeroes_items_not_listed(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 2, "B": 3})
        ledger.set_balances(conn, "main", {"A": 4}, full=True)
    assert ledger.level(conn, "A", "main").on_hand == 4
    assert ledger.level(conn, "B", "main").on_hand == 0


def test_moves_are_append_only(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 2})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE stock_moves SET on_hand_delta=100")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM stock_moves")


def test_release_count_and_sources(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 5})
        ledger.reserve(conn, "ym:1", "A", "main", 3)
        assert ledger.release(conn, "ym:1", note="cancelled") == 3
        ledger.site_count(conn, "site-1", "main", "A", 4)
    lv = ledger.level(conn, "A", "main")
    assert (lv.on_hand, lv.reserved) == (4, 0)
    assert ledger.source_age(conn, "main") is not None and ledger.source_age(conn, "main") < 5
    assert ledger.source_age(conn, "elsewhere") is None
    with pytest.raises(ledger.StockError), transaction(conn):
        ledger.site_count(conn, "site-1", "main", "A", -1)


def test_fbo_stock_is_kept_apart(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 5})
        ledger.record_fbo(conn, "oz", [("oz-1", "fbo-1", 40)])
    assert ledger.level(conn, "A", "main").on_hand == 5
    assert conn.execute("SELECT quantity FROM fbo_stock").fetchone()[0] == 40


def _history(conn):
    moves = [tuple(r) for r in conn.execute(
        "SELECT item_id, warehouse, kind, reserved_delta, on_hand_after, reserved_after, ref, source FROM stock_moves"
        " WHERE kind='reserve' ORDER BY id")]
    holds = [tuple(r) for r in conn.execute(
        "SELECT ref, item_id, warehouse, quantity FROM stock_reservations ORDER BY ref, item_id")]
    levels = [(lv.item_id, lv.warehouse, lv.on_hand, lv.reserved) for lv in ledger.levels(conn)]
    return moves, holds, levels


def test_batch_holds_write_what_reserve_writes_line_by_line(tmp_path):
    """A batch's reservations (`Holds`: checked against the levels read once, written per batch) leave the
    same levels, moves and reservation rows as `reserve` line by line; an order undone leaves nothing of
    its lines; a refusal says the same figures."""
    wanted = [("wb:1", "A", 2), ("wb:2", "B", 1), ("wb:3", "A", 2), ("wb:4", "A", 2), ("wb:5", "C", 1),
              ("wb:6", "B", 1), ("wb:7", "A", 1)]
    runs = []
    for name in ("one", "batch"):
        conn = open_db(tmp_path / f"{name}.sqlite")
        with transaction(conn):
            ledger.set_balances(conn, "main", {"A": 5, "B": 2, "C": 0})
        refused = []
        with transaction(conn):
            if name == "one":
                for ref, item, qty in wanted:
                    try:
                        ledger.reserve(conn, ref, item, "main", qty, now=100.0)
                    except ledger.InsufficientStock as exc:
                        refused.append(str(exc))
            else:
                holds = ledger.Holds()
                holds.load(["A", "B"])  # C is read by itself
                for ref, item, qty in wanted:
                    try:
                        holds.reserve(conn, ref, item, "main", qty, 100.0)
                    except ledger.InsufficientStock as exc:
                        refused.append(str(exc))
                assert holds.available(conn, "A", "main") == 0
                holds.write(conn)
        runs.append((_history(conn), refused))
        conn.close()
    assert runs[0] == runs[1]
    assert runs[1][1] == ["not enough stock: item A at main has 1 available, 2 wanted",
                          "not enough stock: item C at main has 0 available, 1 wanted"]


def test_batch_holds_undo_and_a_level_moved_underneath_refuses_the_batch(conn):
    with transaction(conn):
        ledger.set_balances(conn, "main", {"A": 3, "B": 1})
    with transaction(conn):
        holds = ledger.Holds()
        holds.load(["A", "B"])
        holds.reserve(conn, "wb:1", "A", "main", 1, 1.0)
        mark = holds.mark()  # an order of two lines: the second cannot be had, the first goes back
        holds.reserve(conn, "wb:2", "A", "main", 2, 1.0)
        with pytest.raises(ledger.InsufficientStock):
            holds.reserve(conn, "wb:2", "B", "main", 2, 1.0)
        holds.undo(mark)
        assert holds.available(conn, "A", "main") == 2
        with pytest.raises(ledger.StockError, match="whole number"):
            holds.reserve(conn, "wb:3", "A", "main", 0, 1.0)
        holds.write(conn)
    moves, held, levels = _history(conn)
    assert held == [("wb:1", "A", "main", 1)]
    assert levels == [("A", "main", 3, 1), ("B", "main", 1, 0)]
    assert len(moves) == 1
    # a level changed after the batch read it (a writer without the write lock): the guard of the level's
    # UPDATE refuses the batch, and its transaction applies nothing
    with pytest.raises(ledger.LevelMoved), transaction(conn):
        holds = ledger.Holds()
        holds.load(["A"])
        holds.reserve(conn, "wb:4", "A", "main", 2, 2.0)
        conn.execute("UPDATE stock_levels SET on_hand=1 WHERE item_id='A'")
        holds.write(conn)
    assert _history(conn) == (moves, held, levels)
    with pytest.raises(ledger.StockError, match="not written"):
        holds = ledger.Holds()
        holds.reserve(conn, "wb:5", "A", "main", 1, 3.0)
        holds.stale()
