"""Receipts and inventory counts at the site: they become `stock_delta` (receipt) and `stock_count` messages.

A receipt or a count is built up scan by scan in a station's scratch pad and committed in one
transaction: the local record and the up messages together.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.tasks.common import ScanResult, Send, TaskError, item_code, item_name, item_of_code

TALLIES = ("receipt", "count")


def scratch(conn: sqlite3.Connection, station: str, mode: str | None = None) -> dict[str, int]:
    """The receipt or count (`mode`; default: the station's mode) being built at this station.

    Each has its own pad: a receipt left half-done while the packer runs a count is neither counted nor lost.
    """
    return _pads(conn, station).get(mode or _mode(conn, station), {})


def _mode(conn: sqlite3.Connection, station: str) -> str:
    r = store.row(conn, "SELECT mode FROM stations WHERE station = ?", station)
    return r["mode"] if r and r["mode"] in TALLIES else "receipt"


def _pads(conn: sqlite3.Connection, station: str) -> dict[str, dict[str, int]]:
    r = store.row(conn, "SELECT scratch FROM stations WHERE station = ?", station)
    data = json.loads(r["scratch"]) if r else {}
    if data and not any(isinstance(v, dict) for v in data.values()):  # one pad of an older version
        return {_mode(conn, station): data}
    return {k: v for k, v in data.items() if k in TALLIES and isinstance(v, dict)}


def _save(conn: sqlite3.Connection, station: str, pad: dict[str, int], mode: str | None = None) -> None:
    pads = _pads(conn, station)
    pads[mode or _mode(conn, station)] = pad
    conn.execute("UPDATE stations SET scratch = ? WHERE station = ?", (store.dumps(pads), station))


def tally_scan(conn: sqlite3.Connection, station: str, code: str) -> ScanResult:
    """One more unit of an item into the receipt / count being built at this station."""
    item_id = item_of_code(conn, item_code(code))
    if item_id is None:
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code.strip()}: такого товара нет в каталоге")
    pad = scratch(conn, station)
    pad[item_id] = pad.get(item_id, 0) + 1
    _save(conn, station, pad)
    return ScanResult(True, "packed", f"«{item_name(conn, item_id)}»: {pad[item_id]} шт.", data={"item_id": item_id})


def set_quantity(conn: sqlite3.Connection, station: str, item_id: str, quantity: int) -> None:
    """Correct the quantity of one item in the pad (0 takes it out)."""
    if quantity < 0:
        raise TaskError("количество не может быть отрицательным")
    pad = scratch(conn, station)
    if quantity:
        pad[item_id] = quantity
    elif pad.pop(item_id, None) is None:
        return
    _save(conn, station, pad)


def commit_receipt(conn: sqlite3.Connection, send: Send, station: str, warehouse: str, ref: str) -> dict[str, int]:
    pad = {k: v for k, v in scratch(conn, station, "receipt").items() if v}
    if not pad:
        raise TaskError("приёмка пуста: отсканируйте товар")
    for item_id, n in pad.items():
        send(conn, "stock_delta", {"warehouse": warehouse, "item_id": item_id, "delta": n, "reason": "receipt", "ref": ref})
        conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                     (store.now(), item_id, n, "receipt", ref))
    _save(conn, station, {}, "receipt")
    return pad


def commit_count(conn: sqlite3.Connection, send: Send, station: str, warehouse: str, ref: str,
                 counted_by: str | None = None) -> dict[str, int]:
    pad = scratch(conn, station, "count")
    if not pad:
        raise TaskError("пересчёт пуст: отсканируйте товар")
    record_counts(conn, send, warehouse, pad, ref, counted_by)
    _save(conn, station, {}, "count")
    return pad


def record_counts(conn: sqlite3.Connection, send: Send, warehouse: str, counted: dict[str, int], ref: str,
                  counted_by: str | None = None) -> None:
    for item_id, n in counted.items():
        body: dict[str, Any] = {"warehouse": warehouse, "item_id": item_id, "counted": int(n), "ref": ref}
        send(conn, "stock_count", body)
        conn.execute("INSERT INTO counts (ts, item_id, counted, ref, counted_by) VALUES (?,?,?,?,?)",
                     (store.now(), item_id, int(n), ref, counted_by))
