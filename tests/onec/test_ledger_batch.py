"""`stock.set_balances_many` (the 1C import's batched way into the ledger) leaves the ledger exactly as
`record_balance` row by row does: the same moves (kind, deltas, after-values, source, ref), the same
levels with reservations kept, the same dirty items and source marks; unchanged levels record nothing;
a bad quantity applies nothing."""

from __future__ import annotations

import pytest

from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger as stock_ledger

FIRST = [("A", "w1", 5), ("B", "w1", 0), ("A", "w2", 3), ("C", "w2", 7)]
SECOND = [("A", "w1", 5), ("B", "w1", 2), ("A", "w2", 1), ("C", "w2", 7), ("D", "w1", 0), ("A", "w1", 4)]


def ledger(conn) -> tuple[list, list, list, list]:
    moves = [tuple(r) for r in conn.execute(
        "SELECT item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after, source, ref,"
        " note FROM stock_moves ORDER BY id")]
    levels = [tuple(r) for r in conn.execute(
        "SELECT item_id, warehouse, on_hand, reserved FROM stock_levels ORDER BY item_id, warehouse")]
    dirty = [tuple(r) for r in conn.execute("SELECT item_id, cause FROM stock_dirty ORDER BY item_id")]
    sources = [tuple(r) for r in conn.execute("SELECT warehouse, source FROM stock_sources ORDER BY warehouse")]
    return moves, levels, dirty, sources


def one_by_one(conn, rows, ref):
    wanted = {(i, w): q for i, w, q in rows}  # a later row for the same item and warehouse wins
    n = 0
    for (i, w), q in wanted.items():
        n += stock_ledger.record_balance(conn, i, w, q, source="1c", ref=ref) is not None
    return n


def test_same_ledger_as_record_balance_row_by_row(tmp_path):
    a, b = open_db(tmp_path / "a.db"), open_db(tmp_path / "b.db")
    counts = []
    for conn, apply in ((a, one_by_one), (b, lambda c, rows, ref: stock_ledger.set_balances_many(c, rows, ref=ref))):
        with transaction(conn):
            first = apply(conn, FIRST, "1c:offers0.xml")
            stock_ledger.reserve(conn, "wb:1", "A", "w2", 1, dirty=set())  # a reservation is kept by a new balance
            conn.execute("DELETE FROM stock_dirty")
            second = apply(conn, SECOND, "1c:offers1.xml")
        counts.append((first, second))
    assert counts[0] == counts[1] == (4, 4)  # B 0->2, A@w2 3->1, A@w1 5->4 (the later row), D new at 0
    assert ledger(a) == ledger(b)
    moves, levels, dirty, _ = ledger(b)
    assert ("A", "w2", "balance", -2, 0, 1, 1, "1c", "1c:offers1.xml", "") in moves
    assert ("A", "w2", 1, 1) in levels
    assert [i for i, _ in dirty] == ["A", "B", "D"]  # C unchanged: not dirty
    a.close()
    b.close()


def test_a_bad_quantity_applies_nothing(tmp_path):
    conn = open_db(tmp_path / "c.db")
    with pytest.raises(stock_ledger.StockError, match="nothing applied"), transaction(conn):
        stock_ledger.set_balances_many(conn, [("A", "w1", 5), ("B", "w1", -1)])
    assert ledger(conn) == ([], [], [], [])
    conn.close()
