"""Handover: scan each parcel into the supply / carriage; extra and missing parcels are flagged.

A parcel is recognised by its order id, order number, marketplace id or the barcode text of its label.
Closing prints the supply QR (when the marketplace gave one) or the act, and sends
`task_progress: handed_over` for every parcel scanned in.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.tasks.common import ScanResult, Send, TaskError, set_state


def get_handover(conn: sqlite3.Connection, handover_id: str) -> sqlite3.Row:
    h = store.row(conn, "SELECT * FROM handovers WHERE handover_id = ?", handover_id)
    if h is None:
        raise TaskError(f"нет передачи {handover_id}")
    return h


def order_of_parcel(conn: sqlite3.Connection, code: str) -> str | None:
    code = code.strip()
    r = store.row(conn, "SELECT order_id FROM tasks WHERE order_id = ? OR number = ? OR native_id = ? "
                  "ORDER BY created_at DESC LIMIT 1", code, code, code)
    if r:
        return r["order_id"]
    r = store.row(conn, "SELECT order_id FROM labels WHERE barcode_text = ? OR barcode_text = ?", code, code.lstrip("*"))
    return r["order_id"] if r else None


def handover_scan(conn: sqlite3.Connection, handover_id: str, code: str) -> ScanResult:
    h = get_handover(conn, handover_id)
    if h["state"] != "open":
        raise TaskError("эта передача уже закрыта")
    order_id = order_of_parcel(conn, code)
    if order_id is None:
        return ScanResult(False, "unknown", f"Неизвестная посылка {code.strip()}: ни один заказ площадки не подходит")
    expected = json.loads(h["order_ids"])
    if store.row(conn, "SELECT 1 FROM handover_scans WHERE handover_id = ? AND order_id = ?", handover_id, order_id):
        return ScanResult(False, "extra", f"Посылка заказа {order_id} уже отсканирована в эту передачу")
    refused = _not_ready(conn, order_id)
    if refused is not None:
        return refused
    extra = order_id not in expected
    conn.execute("INSERT INTO handover_scans (handover_id, order_id, code, extra, ts) VALUES (?,?,?,?,?)",
                 (handover_id, order_id, code.strip(), int(extra), store.now()))
    if extra:
        return ScanResult(False, "extra", f"ЛИШНЯЯ ПОСЫЛКА: заказ {order_id} не входит в эту поставку. Отложите её",
                          data={"order_id": order_id})
    done = len(_scanned(conn, handover_id, extra=False))
    return ScanResult(True, "packed", f"Посылка {order_id} в поставке: {done} из {len(expected)}",
                      data={"order_id": order_id})


def _task_of(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    return store.row(conn, "SELECT task_id, number, state FROM tasks WHERE order_id = ? ORDER BY created_at DESC LIMIT 1",
                     order_id)


def _not_ready(conn: sqlite3.Connection, order_id: str) -> ScanResult | None:
    """Only a packed parcel goes to the courier: a cancelled, unpacked or already handed over order is refused."""
    t = _task_of(conn, order_id)
    if t is None or t["state"] == "packed":
        return None
    name = t["number"] or order_id
    data = {"order_id": order_id, "state": t["state"]}
    if t["state"] == "cancelled":
        return ScanResult(False, "cancelled", f"ЗАКАЗ {name} ОТМЕНЁН: не передавайте эту посылку, отложите её", data=data)
    if t["state"] == "handed_over":
        return ScanResult(False, "extra", f"Заказ {name} уже передан в другой передаче", data=data)
    return ScanResult(False, "not_packed", f"ЗАКАЗ {name} НЕ УПАКОВАН: сначала упакуйте его и наклейте этикетку",
                      data=data)


def summary(conn: sqlite3.Connection, handover_id: str) -> dict[str, Any]:
    h = get_handover(conn, handover_id)
    expected = json.loads(h["order_ids"])
    scanned = _scanned(conn, handover_id, extra=False)
    return {"handover_id": handover_id, "marketplace": h["marketplace"], "supply_id": h["supply_id"],
            "state": h["state"], "expected": expected, "scanned": scanned,
            "missing": [o for o in expected if o not in scanned], "extra": _scanned(conn, handover_id, extra=True)}


def close(conn: sqlite3.Connection, send: Send, handover_id: str, force: bool = False) -> dict[str, Any]:
    """Close the handover; with parcels missing only when `force` (the packer confirmed)."""
    s = summary(conn, handover_id)
    if s["state"] != "open":
        raise TaskError("эта передача уже закрыта")
    if s["missing"] and not force:
        raise TaskError(f"не хватает {len(s['missing'])} посылок: {', '.join(s['missing'])}")
    handed = 0
    for order_id in s["scanned"]:
        t = _task_of(conn, order_id)
        if t is not None and t["state"] == "cancelled":  # cancelled after it was scanned in: it stays here
            continue
        body = {"task_id": t["task_id"] if t else "", "order_id": order_id, "state": "handed_over",
                "handover_id": handover_id}
        send(conn, "task_progress", body)
        handed += 1
        if t:
            set_state(conn, t["task_id"], "handed_over")
    h = get_handover(conn, handover_id)
    kind = "supply_qr" if h["qr_b64"] else "act"
    payload = {"handover_id": handover_id, "supply_id": h["supply_id"], "count": handed,
               "missing": s["missing"]}
    conn.execute("INSERT INTO print_jobs (order_id, kind, payload, created_at) VALUES (?,?,?,?)",
                 (h["supply_id"] or handover_id, kind, store.dumps(payload), store.now()))
    conn.execute("UPDATE handovers SET state='closed', closed_at=? WHERE handover_id=?", (store.now(), handover_id))
    s["state"] = "closed"
    return s


def _scanned(conn: sqlite3.Connection, handover_id: str, extra: bool) -> list[str]:
    return [r["order_id"] for r in store.rows(conn, "SELECT order_id FROM handover_scans WHERE handover_id = ? "
                                              "AND extra = ? ORDER BY ts", handover_id, int(extra))]
