"""Returns at the site: a returned parcel taken in unit by unit on the «Возврат» screen.

The packer scans the parcel (its label's barcode) or the order's number: the return the cloud said to
expect (`return_expected`) opens, or — a parcel that came back before the cloud told us — a return of the
order as it was packed here. Then each unit is scanned; it counts as good unless the packer marks it
defective. A unit that was never in that order is refused. Taking the return in sends, in one
transaction with the local record, one `return_received` saying per item how many units were good and
how many defective: the cloud puts the good ones back on hand (published again) and the defective ones
in the defect stock (never published). A parcel back unannounced sends `stock_delta`s (reason "return")
instead, the cloud knowing no return to report against: its good units to the site's warehouse, its
defective ones to the defect warehouse beside it (`<warehouse>:defect`, as the link's contract names it).
Offline it all waits in the outbox like any message.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.tasks import handover
from edge_agent.tasks.common import ScanResult, Send, TaskError, item_code, item_name, item_of_code

DEFECT_SUFFIX = ":defect"  # the defect warehouse beside an own warehouse (sitelink/messages.py, return_received)


def open_for_code(conn: sqlite3.Connection, station: str, code: str) -> ScanResult:
    """A scan on the «Возврат» screen with no return open: the parcel or order it names opens."""
    code = code.strip()
    ret = store.row(conn, "SELECT * FROM returns WHERE (return_id = ? OR order_id = ? OR number = ? OR EXISTS "
                    "(SELECT 1 FROM json_each(returns.parcel_codes) WHERE value = ?)) AND state != 'received' "
                    "ORDER BY created_at DESC LIMIT 1", code, code, code, code)
    order_id = ret["order_id"] if ret is not None else handover.order_of_parcel(conn, code)
    if ret is None and order_id is not None:
        ret = store.row(conn, "SELECT * FROM returns WHERE order_id = ? AND state != 'received' "
                        "ORDER BY created_at DESC LIMIT 1", order_id)
    if ret is None and order_id is not None:
        ret = _from_task(conn, order_id)
    if ret is None:
        done = store.row(conn, "SELECT order_id, number FROM returns WHERE return_id = ? OR order_id = ? OR number = ? "
                         "OR order_id = ? OR EXISTS (SELECT 1 FROM json_each(returns.parcel_codes) WHERE value = ?)",
                         code, code, code, order_id or "", code)
        if done is not None:
            return ScanResult(False, "extra", f"Возврат заказа {done['number'] or done['order_id']} уже принят")
        if item_of_code(conn, item_code(code)) is not None:
            return ScanResult(False, "info", "Это товар, а не посылка: сначала отсканируйте посылку или номер заказа")
        return ScanResult(False, "unknown", f"Неизвестная посылка {code}: такого заказа или возврата на этом складе нет")
    conn.execute("UPDATE returns SET state = 'open' WHERE return_id = ?", (ret["return_id"],))
    conn.execute("UPDATE stations SET task_id = ? WHERE station = ?", (ret["return_id"], station))
    total = sum(ln["quantity"] for ln in json.loads(ret["lines"]))
    return ScanResult(True, "info", f"Возврат заказа {ret['number'] or ret['order_id']}: сканируйте каждый товар "
                      f"({total} шт.)", data={"return_id": ret["return_id"]})


def _from_task(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    """A return the cloud has not announced: the order as this site packed it (its packed units)."""
    t = store.row(conn, "SELECT * FROM tasks WHERE order_id = ? AND state IN ('packed', 'handed_over') "
                  "ORDER BY created_at DESC LIMIT 1", order_id)
    if t is None:
        return None
    lines = [{"item_id": ln["item_id"], "quantity": int(ln["n"]), "barcode": ln["barcode"] or "", "name": ln["name"]}
             for ln in store.rows(conn, "SELECT item_id, MAX(barcode) AS barcode, MAX(name) AS name, SUM(packed) AS n "
                                  "FROM task_lines WHERE task_id = ? GROUP BY item_id HAVING n > 0", t["task_id"])]
    if not lines:
        return None
    rid = f"ret-{order_id}"
    conn.execute("INSERT OR IGNORE INTO returns (return_id, order_id, number, marketplace, lines, state, announced, "
                 "reason, created_at) VALUES (?,?,?,?,?, 'expected', 0, ?, ?)",
                 (rid, order_id, t["number"], t["marketplace"], store.dumps(lines), "принят без уведомления", store.now()))
    return store.row(conn, "SELECT * FROM returns WHERE return_id = ? AND state != 'received'", rid)


def return_scan(conn: sqlite3.Connection, station: str, return_id: str | None, code: str) -> ScanResult:
    """One scan on the «Возврат» screen: opens a parcel, or takes one unit of the open return in (good)."""
    if not return_id:
        return open_for_code(conn, station, code)
    ret = get_return(conn, return_id)
    item_id = item_of_code(conn, item_code(code))
    name = ret["number"] or ret["order_id"]
    if item_id is None:
        if handover.order_of_parcel(conn, code) or store.row(conn, "SELECT 1 FROM returns WHERE order_id = ? OR "
                                                             "number = ?", code.strip(), code.strip()):
            return ScanResult(False, "info", f"Сначала примите возврат заказа {name} («Принять возврат») — "
                              "потом сканируйте следующую посылку")
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code.strip()}: такого товара нет в каталоге склада")
    wanted = {ln["item_id"]: ln for ln in json.loads(ret["lines"])}
    if item_id not in wanted:
        return ScanResult(False, "wrong_item", f"«{item_name(conn, item_id)}» НЕ ИЗ ЭТОГО ЗАКАЗА ({name}): в возврат "
                          "его не принимаем, отложите", data={"item_id": item_id})
    got = _taken(conn, return_id).get(item_id, 0)
    if got >= wanted[item_id]["quantity"]:
        return ScanResult(False, "extra", f"«{item_name(conn, item_id)}»: в заказе {name} было "
                          f"{wanted[item_id]['quantity']} шт., эта единица лишняя — отложите её",
                          data={"item_id": item_id})
    cur = conn.execute("INSERT INTO return_units (return_id, item_id, code, defective, ts) VALUES (?,?,?,0,?)",
                       (return_id, item_id, code.strip(), store.now()))
    return ScanResult(True, "packed", f"«{item_name(conn, item_id)}»: {got + 1} из {wanted[item_id]['quantity']} — "
                      "годен (брак отметьте кнопкой «Брак»)", data={"item_id": item_id, "unit": cur.lastrowid})


def get_return(conn: sqlite3.Connection, return_id: str) -> sqlite3.Row:
    r = store.row(conn, "SELECT * FROM returns WHERE return_id = ?", return_id)
    if r is None:
        raise TaskError(f"нет возврата {return_id}")
    return r


def _taken(conn: sqlite3.Connection, return_id: str) -> dict[str, int]:
    return {r["item_id"]: int(r["n"]) for r in store.rows(
        conn, "SELECT item_id, COUNT(*) AS n FROM return_units WHERE return_id = ? GROUP BY item_id", return_id)}


def mark(conn: sqlite3.Connection, return_id: str, unit: int, defective: bool) -> None:
    """Mark one scanned unit of the open return good or defective."""
    ret = get_return(conn, return_id)
    if ret["state"] == "received":
        raise TaskError("этот возврат уже принят")
    cur = conn.execute("UPDATE return_units SET defective = ? WHERE id = ? AND return_id = ?",
                       (int(defective), unit, return_id))
    if cur.rowcount != 1:
        raise TaskError("этой единицы нет в возврате")


def summary(conn: sqlite3.Connection, return_id: str) -> dict[str, Any]:
    ret = get_return(conn, return_id)
    units = [dict(u) | {"name": item_name(conn, u["item_id"])} for u in store.rows(
        conn, "SELECT id, item_id, code, defective FROM return_units WHERE return_id = ? ORDER BY id", return_id)]
    lines = json.loads(ret["lines"])
    taken = _taken(conn, return_id)
    return {"return_id": return_id, "order_id": ret["order_id"], "number": ret["number"] or ret["order_id"],
            "marketplace": ret["marketplace"], "state": ret["state"],
            "lines": [ln | {"name": ln.get("name") or item_name(conn, ln["item_id"]), "taken": taken.get(ln["item_id"], 0)}
                      for ln in lines],
            "units": units}


def commit(conn: sqlite3.Connection, send: Send, station: str, return_id: str, warehouse: str,
           received_by: str = "") -> dict[str, Any]:
    """Take the return in: `return_received` up (an announced return) or the good units as `stock_delta`
    reason "return" (a parcel back unannounced), in one transaction with the local record."""
    ret = get_return(conn, return_id)
    if ret["state"] == "received":
        raise TaskError("этот возврат уже принят")
    units: dict[str, dict[str, int]] = {}
    for u in store.rows(conn, "SELECT item_id, defective FROM return_units WHERE return_id = ? ORDER BY id", return_id):
        n = units.setdefault(u["item_id"], {"good": 0, "defective": 0})
        n["defective" if u["defective"] else "good"] += 1
    if not units:
        raise TaskError("в возврате нет ни одной единицы: отсканируйте товар из посылки")
    for item_id, n in units.items():  # the site's own record: good units back here, defective ones apart
        for reason, count in (("return", n["good"]), ("defect", n["defective"])):
            if count:
                conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                             (store.now(), item_id, count, reason, return_id))
    if ret["announced"]:
        body: dict[str, Any] = {"return_id": return_id, "order_id": ret["order_id"], "warehouse": warehouse,
                                "station": station, "lines": [{"item_id": k, **v} for k, v in units.items()]}
        if received_by:
            body["note"] = f"принял(а) {received_by}"
        send(conn, "return_received", body)
    else:  # no return to report against: the units go to the ledger as stock moves
        for item_id, n in units.items():
            for place, count in ((warehouse, n["good"]), (f"{warehouse}{DEFECT_SUFFIX}", n["defective"])):
                if count:
                    send(conn, "stock_delta", {"warehouse": place, "item_id": item_id, "delta": count,
                                               "reason": "return", "ref": ret["order_id"],
                                               "note": f"возврат без уведомления {return_id}"})
        good = sum(n["good"] for n in units.values())
        send(conn, "scan", {"code": ret["order_id"], "order_id": ret["order_id"], "station": station,
                            "note": f"возврат без уведомления принят: годных {good}, "
                                    f"брак {sum(n['defective'] for n in units.values())}"})  # the order's history
    conn.execute("UPDATE returns SET state = 'received', received_at = ?, received_by = ? WHERE return_id = ?",
                 (store.now(), received_by or None, return_id))
    conn.execute("UPDATE stations SET task_id = NULL WHERE station = ?", (station,))
    good = sum(n["good"] for n in units.values())
    bad = sum(n["defective"] for n in units.values())
    return {"return_id": return_id, "number": ret["number"] or ret["order_id"], "good": good, "defective": bad}


def put_aside(conn: sqlite3.Connection, station: str) -> None:
    """«Отложить»: the station leaves the open return as it is (its units stay scanned); scanning its
    parcel again goes on where it stopped."""
    conn.execute("UPDATE stations SET task_id = NULL WHERE station = ? AND mode = 'return'", (station,))


def expected(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Returns the cloud said to expect and not yet taken in, oldest first."""
    return [dict(r) | {"units": sum(ln["quantity"] for ln in json.loads(r["lines"]))} for r in store.rows(
        conn, "SELECT return_id, order_id, number, marketplace, lines, state FROM returns WHERE state != 'received' "
        "ORDER BY created_at LIMIT 200")]


def _number(conn: sqlite3.Connection, order_id: str) -> str:
    r = store.row(conn, "SELECT number FROM tasks WHERE order_id = ? ORDER BY created_at DESC LIMIT 1", order_id)
    return str(r["number"]) if r is not None and r["number"] else order_id
