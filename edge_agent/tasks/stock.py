"""Receipts and inventory counts at the site: they become `stock_delta` (receipt) and `stock_count` messages.

A receipt or a count is built up scan by scan in a station's scratch pad and committed in one
transaction: the local record and the up messages together. A bin label scanned in between puts the items
scanned after it in that bin (`bins`): kept at the site when the receipt or count is committed.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.config import DEFAULT_BIN_PATTERN
from edge_agent.tasks import bins
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


BINS = "_bins"  # the scratch's key of the bins being set: {mode: {"current": bin | None, "items": {item_id: bin}}}


def _pads(conn: sqlite3.Connection, station: str) -> dict[str, dict[str, Any]]:
    r = store.row(conn, "SELECT scratch FROM stations WHERE station = ?", station)
    data = json.loads(r["scratch"]) if r else {}
    if data and not any(isinstance(v, dict) for v in data.values()):  # one pad of an older version
        return {_mode(conn, station): data}
    return {k: v for k, v in data.items() if k in (*TALLIES, BINS) and isinstance(v, dict)}


def _save(conn: sqlite3.Connection, station: str, pad: dict[str, int], mode: str | None = None,
          bins_pad: dict[str, Any] | None = None) -> None:
    pads = _pads(conn, station)
    mode = mode or _mode(conn, station)
    pads[mode] = pad
    if bins_pad is not None:
        pads.setdefault(BINS, {})[mode] = bins_pad
    conn.execute("UPDATE stations SET scratch = ? WHERE station = ?", (store.dumps(pads), station))


def bins_pad(conn: sqlite3.Connection, station: str, mode: str | None = None) -> dict[str, Any]:
    """The bins being set in this station's receipt or count: the bin scanned last and each item's bin."""
    pad = _pads(conn, station).get(BINS, {}).get(mode or _mode(conn, station)) or {}
    return {"current": pad.get("current"), "items": dict(pad.get("items") or {})}


def tally_scan(conn: sqlite3.Connection, station: str, code: str,
               bin_pattern: str = DEFAULT_BIN_PATTERN) -> ScanResult:
    """One more unit of an item into the receipt / count being built at this station; a bin label makes
    the bin the items scanned next go in."""
    item_id = item_of_code(conn, item_code(code))
    if item_id is None:
        shelf = bins.as_bin(conn, code, bin_pattern)
        if shelf is None:
            return ScanResult(False, "unknown", f"Неизвестный штрихкод {code.strip()}: такого товара нет в каталоге склада")
        where = bins_pad(conn, station)
        where["current"] = shelf
        _save(conn, station, scratch(conn, station), bins_pad=where)
        return ScanResult(True, "bin", f"Ячейка {shelf}: сканируйте товары, которые в ней лежат", data={"bin": shelf})
    pad = scratch(conn, station)
    pad[item_id] = pad.get(item_id, 0) + 1
    where = bins_pad(conn, station)
    if where["current"]:
        where["items"][item_id] = where["current"]
    _save(conn, station, pad, bins_pad=where)
    shelf = where["items"].get(item_id)
    return ScanResult(True, "packed", f"«{item_name(conn, item_id)}»: {pad[item_id]} шт."
                      + (f" · ячейка {shelf}" if shelf else ""), data={"item_id": item_id, "bin": shelf})


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


def commit_receipt(conn: sqlite3.Connection, send: Send, station: str, warehouse: str, ref: str,
                   received_by: str | None = None) -> dict[str, int]:
    pad = {k: v for k, v in scratch(conn, station, "receipt").items() if v}
    if not pad:
        raise TaskError("приёмка пуста: отсканируйте товар")
    for item_id, n in pad.items():
        send(conn, "stock_delta", {"warehouse": warehouse, "item_id": item_id, "delta": n, "reason": "receipt", "ref": ref})
        conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                     (store.now(), item_id, n, "receipt", ref))
    keep_bins(conn, send, warehouse, station, "receipt", pad, ref, received_by)
    _save(conn, station, {}, "receipt", bins_pad={})
    return pad


def keep_bins(conn: sqlite3.Connection, send: Send, warehouse: str, station: str, mode: str, pad: dict[str, int],
              ref: str, by: str | None) -> int:
    """The bins set in this receipt or count, kept at the site for the items committed and sent up to the
    cloud; how many."""
    where = bins_pad(conn, station, mode)["items"]
    n = 0
    for item_id in pad:
        if where.get(item_id):
            bins.set_bin(conn, send, warehouse, item_id, where[item_id], by, ref)
            n += 1
    return n


def commit_count(conn: sqlite3.Connection, send: Send, station: str, warehouse: str, ref: str,
                 counted_by: str | None = None) -> dict[str, int]:
    pad = scratch(conn, station, "count")
    if not pad:
        raise TaskError("пересчёт пуст: отсканируйте товар")
    record_counts(conn, send, warehouse, pad, ref, counted_by)
    keep_bins(conn, send, warehouse, station, "count", pad, ref, counted_by)
    _save(conn, station, {}, "count", bins_pad={})
    return pad


def record_counts(conn: sqlite3.Connection, send: Send, warehouse: str, counted: dict[str, int], ref: str,
                  counted_by: str | None = None) -> None:
    for item_id, n in counted.items():
        body: dict[str, Any] = {"warehouse": warehouse, "item_id": item_id, "counted": int(n), "ref": ref}
        send(conn, "stock_count", body)
        conn.execute("INSERT INTO counts (ts, item_id, counted, ref, counted_by) VALUES (?,?,?,?,?)",
                     (store.now(), item_id, int(n), ref, counted_by))
