"""Packing: scan each unit into the parcel; marked goods by their Честный знак DataMatrix.

A wrong item is refused loudly; a marking code must be well formed, carry the GTIN of the item and not
have been used before (at this site, in any parcel); where the site checks codes against Честный знак,
the register's verdict (taken by the caller before the scan's transaction: edge_agent/chestny_znak.py)
refuses a code not in circulation, sold, of another owner or GTIN, and a code packed while the register
could not be reached is recorded `unchecked` (marking_checks) and said so to the cloud with the order. When every unit is in, one transaction marks the
task packed, queues the label print, and enqueues `task_progress: packed` (with the marking codes) and a
`stock_delta` per item — so nothing is half-applied if the box loses power, and a printer problem only
delays the label.
"""

from __future__ import annotations

import sqlite3

from edge_agent import store
from edge_agent.tasks.common import (
    ScanResult,
    Send,
    TaskError,
    classify_foreign,
    codes_of,
    get_task,
    task_lines,
)
from edge_agent.tasks.common import set_state as _set_state
from edge_agent.tasks.marking import MarkingError, RegistryCheck, gtin_of_barcode, looks_like_marking, parse
from edge_agent.tasks.pick import line_body, write_off_missing

OPEN_FOR_PACK = ("new", "picking", "picked", "packing")


def pack_scan(conn: sqlite3.Connection, send: Send, task_id: str, code: str, warehouse: str,
              station: str | None = None, registry: RegistryCheck | None = None) -> ScanResult:
    task = get_task(conn, task_id)
    if task["state"] not in OPEN_FOR_PACK:
        raise TaskError(f"заказ {task['number'] or task['order_id']} не упаковывается (состояние: {task['state']})")
    code = code.strip("\r\n")
    if looks_like_marking(code):
        return _marking_scan(conn, send, task, code, warehouse, registry)
    code = code.strip()
    lines = task_lines(conn, task_id)
    matching = [ln for ln in lines if code in codes_of(conn, ln)]
    if not matching:
        if any(code.lower() == str(ln["bin"] or "").lower() for ln in lines):
            return ScanResult(False, "info", f"Это ячейка {code}; при упаковке сканируйте товар", task_id)
        return classify_foreign(conn, code, task)
    todo = next((ln for ln in matching if ln["packed"] < ln["quantity"] - ln["short"]), None)
    if todo is None:
        return ScanResult(False, "extra", f"«{matching[0]['name']}» уже упакован полностью — эта единица лишняя", task_id)
    if todo["marking_required"]:
        return ScanResult(False, "need_marking", f"«{todo['name']}» маркируется: отсканируйте DataMatrix "
                          "Честного знака на этой единице", task_id)
    return _count_unit(conn, send, task, todo, warehouse, f"Упаковано: «{todo['name']}»")


def _marking_scan(conn: sqlite3.Connection, send: Send, task: sqlite3.Row, code: str, warehouse: str,
                  registry: RegistryCheck | None = None) -> ScanResult:
    task_id = task["task_id"]
    try:
        mc = parse(code)
    except MarkingError as exc:
        return ScanResult(False, "bad_marking", f"Код маркировки не принят: {exc}", task_id)
    lines = task_lines(conn, task_id)
    matching = [ln for ln in lines if mc.gtin in {gtin_of_barcode(c) for c in codes_of(conn, ln)}]
    if not matching:
        res = classify_foreign(conn, mc.gtin, task)
        if res.kind == "unknown":
            res.message = f"Код маркировки с GTIN {mc.gtin} не относится ни к одному товару заказа"
            res.kind = "wrong_item"
        return res
    used = store.row(conn, "SELECT order_id, task_id FROM marking_codes WHERE code_id = ?", mc.code_id)
    if used is not None:
        where = "в этой посылке" if used["task_id"] == task_id else f"в заказе {used['order_id']}"
        return ScanResult(False, "used_marking", f"КОД МАРКИРОВКИ УЖЕ ИСПОЛЬЗОВАН {where}. Возьмите другую "
                          "единицу товара", task_id, {"serial": mc.serial})
    todo = next((ln for ln in matching if ln["packed"] < ln["quantity"] - ln["short"]), None)
    if todo is None:
        return ScanResult(False, "extra", f"«{matching[0]['name']}» уже упакован полностью — эта единица лишняя", task_id)
    if registry is not None and registry.state == "refused":
        return ScanResult(False, "refused_marking", f"ЧЕСТНЫЙ ЗНАК НЕ РАЗРЕШАЕТ ОТГРУЗИТЬ ЭТОТ КОД: {registry.reason}. "
                          "Отложите эту единицу и возьмите другую", task_id, {"serial": mc.serial})
    conn.execute(
        "INSERT INTO marking_codes (code_id, full_code, gtin, serial, task_id, order_id, item_id, ts) VALUES (?,?,?,?,?,?,?,?)",
        (mc.code_id, mc.raw, mc.gtin, mc.serial, task_id, task["order_id"], todo["item_id"], store.now()),
    )
    message = f"Упаковано с кодом маркировки: «{todo['name']}»"
    if registry is not None:
        conn.execute("INSERT OR REPLACE INTO marking_checks (code_id, full_code, gtin, serial, task_id, order_id, state,"
                     " reason, ts, checked_ts) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (mc.code_id, mc.raw, mc.gtin, mc.serial, task_id, task["order_id"], registry.state,
                      registry.reason, store.now(), store.now() if registry.state == "ok" else None))
        if registry.state == "unchecked":
            message += " (Честный знак недоступен: код проверим позже)"
    return _count_unit(conn, send, task, todo, warehouse, message)


def _count_unit(conn: sqlite3.Connection, send: Send, task: sqlite3.Row, line: sqlite3.Row, warehouse: str,
                message: str) -> ScanResult:
    task_id = task["task_id"]
    conn.execute("UPDATE task_lines SET packed = packed + 1, picked = MAX(picked, packed + 1) "
                 "WHERE task_id = ? AND line_no = ?", (task_id, line["line_no"]))
    if task["state"] != "packing":
        _set_state(conn, task_id, "packing")
    lines = task_lines(conn, task_id)
    left = sum(ln["quantity"] - ln["short"] - ln["packed"] for ln in lines)
    if left > 0:
        return ScanResult(True, "packed", f"{message}. Осталось {left} шт.", task_id)
    complete(conn, send, task_id, warehouse)
    return ScanResult(True, "done", f"{message}. Заказ упакован — печатается этикетка", task_id)


def report_short(conn: sqlite3.Connection, send: Send, task_id: str, line_no: int, warehouse: str) -> ScanResult:
    """At the packing table: the rest of this line is not there. The parcel goes with what is packed."""
    task = get_task(conn, task_id)
    if task["state"] not in OPEN_FOR_PACK:
        raise TaskError("недостачу отмечают только до конца упаковки")
    ln = store.row(conn, "SELECT * FROM task_lines WHERE task_id = ? AND line_no = ?", task_id, line_no)
    if ln is None:
        raise TaskError(f"в задании нет строки {line_no}")
    missing = ln["quantity"] - ln["short"] - ln["packed"]
    if missing <= 0:
        raise TaskError("эта строка уже упакована")
    conn.execute("UPDATE task_lines SET short = short + ?, picked = MIN(picked, packed) WHERE task_id = ? AND line_no = ?",
                 (missing, task_id, line_no))
    write_off_missing(conn, send, task, ln["item_id"], missing, "нет при упаковке", warehouse)
    lines = task_lines(conn, task_id)
    send(conn, "task_progress", {"task_id": task_id, "order_id": task["order_id"], "state": "short",
                                 "lines": [line_body(x) for x in lines],
                                 "note": f"{ln['item_id']}: не найдено {missing}"})
    res = ScanResult(True, "short", f"Недостача: «{ln['name']}» — нет {missing} шт.", task_id)
    if any(x["packed"] < x["quantity"] - x["short"] for x in lines):
        return res
    if sum(x["packed"] for x in lines):
        complete(conn, send, task_id, warehouse)
        res.message += ". Заказ упакован с недостачей — печатается этикетка"
        res.kind = "done"
    else:
        _set_state(conn, task_id, "short")
        res.message += ". В посылке ничего нет: заказ не отгружается"
    return res


def complete(conn: sqlite3.Connection, send: Send, task_id: str, warehouse: str) -> None:
    """Everything is in the parcel: packed + stock deltas up, the label queued for printing."""
    task = get_task(conn, task_id)
    lines = task_lines(conn, task_id)
    if sum(ln["packed"] for ln in lines) == 0:
        raise TaskError("в посылке нет ни одной единицы")
    codes = [r["full_code"] for r in store.rows(conn, "SELECT full_code FROM marking_codes WHERE task_id = ? ORDER BY ts",
                                                 task_id)]
    body = {"task_id": task_id, "order_id": task["order_id"], "state": "packed",
            "lines": [line_body(ln) for ln in lines]}
    if codes:
        body["marking_codes"] = codes
    unchecked = store.rows(conn, "SELECT reason FROM marking_checks WHERE task_id = ? AND state = 'unchecked'", task_id)
    if unchecked:
        body["note"] = (f"Честный знак: {len(unchecked)} код(ов) маркировки упакованы без проверки "
                        f"({unchecked[0]['reason']}); проверка позже")
    send(conn, "task_progress", body)
    per_item: dict[str, int] = {}
    for ln in lines:
        per_item[ln["item_id"]] = per_item.get(ln["item_id"], 0) + ln["packed"]
    wh = task["warehouse"] or warehouse  # the cloud's name of the warehouse the order was reserved in
    for item_id, n in per_item.items():
        if n:
            send(conn, "stock_delta", {"warehouse": wh, "item_id": item_id, "delta": -n, "reason": "pick",
                                       "ref": task["order_id"]})
            conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                         (store.now(), item_id, -n, "pick", task["order_id"]))
    conn.execute("INSERT INTO print_jobs (order_id, kind, created_at) VALUES (?, 'label', ?)",
                 (task["order_id"], store.now()))
    _set_state(conn, task_id, "packed")


def reprint_label(conn: sqlite3.Connection, task_id: str) -> None:
    """The label came out torn, crooked or jammed: print the order's label once more."""
    task = get_task(conn, task_id)
    if task["state"] != "packed":
        raise TaskError(f"заказ {task['number'] or task['order_id']} не упакован: этикетку печатают после упаковки")
    waiting = store.row(conn, "SELECT state FROM print_jobs WHERE order_id = ? AND kind = 'label' "
                        "AND state IN ('pending','sending','unknown') ORDER BY id DESC LIMIT 1", task["order_id"])
    if waiting is not None and waiting["state"] == "unknown":
        raise TaskError("сначала ответьте, напечаталась ли прошлая этикетка этого заказа: «Да» или «Нет — "
                        "напечатать снова»")
    if waiting is not None:
        raise TaskError("этикетка этого заказа уже ждёт печати: она напечатается, как только принтер сможет")
    conn.execute("INSERT INTO print_jobs (order_id, kind, created_at) VALUES (?, 'label', ?)",
                 (task["order_id"], store.now()))
