"""Picking: walk the shelves in bin order, confirm each line by scanning its bin or the item, report shorts.

A scan of the current line's bin takes the whole line; a scan of an item takes one unit. When every
line is picked or short, `task_progress` goes up: `picked`, or `short` with the lines when units were
not found; the units not found go up first as a `writeoff` stock delta against the order.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.tasks.common import (
    ScanResult,
    Send,
    TaskError,
    classify_foreign,
    codes_of,
    get_task,
    item_code,
    item_name,
    task_lines,
)
from edge_agent.tasks.common import set_state as _set_state

OPEN_FOR_PICK = ("new", "picking")


def current_line(conn: sqlite3.Connection, task_id: str) -> sqlite3.Row | None:
    """The next line to pick, in bin order."""
    return next((ln for ln in task_lines(conn, task_id) if ln["picked"] + ln["short"] < ln["quantity"]), None)


def pick_scan(conn: sqlite3.Connection, send: Send, task_id: str, code: str, station: str | None = None) -> ScanResult:
    task = get_task(conn, task_id)
    if task["state"] not in OPEN_FOR_PICK:
        raise TaskError(f"заказ {task['number'] or task['order_id']} уже собран или закрыт ({task['state']})")
    code = item_code(code)
    line = current_line(conn, task_id)
    if line is not None and line["bin"] and code.lower() == str(line["bin"]).lower():
        take = line["quantity"] - line["short"] - line["picked"]
        conn.execute("UPDATE task_lines SET picked = picked + ? WHERE task_id = ? AND line_no = ?",
                     (take, task_id, line["line_no"]))
        res = ScanResult(True, "picked", f"Ячейка {line['bin']}: взято {take} шт. «{line['name']}»", task_id)
        return after_pick(conn, send, task, res)
    lines = task_lines(conn, task_id)
    matching = [ln for ln in lines if code in codes_of(conn, ln)]
    if not matching:
        return classify_foreign(conn, code, task)
    todo = next((ln for ln in matching if ln["picked"] + ln["short"] < ln["quantity"]), None)
    if todo is None:
        return ScanResult(False, "extra", f"«{matching[0]['name']}» уже собран полностью — эта единица лишняя", task_id)
    conn.execute("UPDATE task_lines SET picked = picked + 1 WHERE task_id = ? AND line_no = ?", (task_id, todo["line_no"]))
    left = todo["quantity"] - todo["short"] - todo["picked"] - 1
    res = ScanResult(True, "picked", f"Взято: «{todo['name'] or item_name(conn, todo['item_id'])}»"
                     + (f", ещё {left}" if left else ""), task_id)
    return after_pick(conn, send, task, res)


def report_short(conn: sqlite3.Connection, send: Send, task_id: str, line_no: int) -> ScanResult:
    """The packer did not find the rest of a line's units on the shelf."""
    task = get_task(conn, task_id)
    if task["state"] not in OPEN_FOR_PICK:
        raise TaskError("недостачу отмечают только при сборке")
    ln = store.row(conn, "SELECT * FROM task_lines WHERE task_id = ? AND line_no = ?", task_id, line_no)
    if ln is None:
        raise TaskError(f"в задании нет строки {line_no}")
    missing = ln["quantity"] - ln["picked"] - ln["short"]
    if missing <= 0:
        raise TaskError("эта строка уже собрана")
    conn.execute("UPDATE task_lines SET short = short + ? WHERE task_id = ? AND line_no = ?", (missing, task_id, line_no))
    write_off_missing(conn, send, task, ln["item_id"], missing, "не найдено при сборке")
    res = ScanResult(True, "short", f"Недостача: «{ln['name']}» — не найдено {missing} шт.", task_id)
    return after_pick(conn, send, task, res)


def write_off_missing(conn: sqlite3.Connection, send: Send, task: sqlite3.Row, item_id: str, n: int,
                      why: str, warehouse: str = "") -> None:
    """Units of an order not found (or found damaged) leave on-hand: a `writeoff` stock delta against the
    order (the cloud takes them off the order's reservation), sent before the task's progress."""
    send(conn, "stock_delta", {"warehouse": task["warehouse"] or warehouse, "item_id": item_id, "delta": -n,
                               "reason": "writeoff", "ref": task["order_id"], "note": why})
    conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                 (store.now(), item_id, -n, "writeoff", task["order_id"]))


def after_pick(conn: sqlite3.Connection, send: Send, task: sqlite3.Row, res: ScanResult) -> ScanResult:
    """After units were taken: the task is `picking`, or — every line picked or short — its progress goes up."""
    task_id = task["task_id"]
    lines = task_lines(conn, task_id)
    if any(ln["picked"] + ln["short"] < ln["quantity"] for ln in lines):
        if task["state"] == "new":
            _set_state(conn, task_id, "picking")
        return res
    shorts = [ln for ln in lines if ln["short"]]
    picked_total = sum(ln["picked"] for ln in lines)
    body: dict[str, Any] = {"task_id": task_id, "order_id": task["order_id"], "state": "short" if shorts else "picked",
                            "lines": [line_body(ln) for ln in lines]}
    if shorts:
        body["note"] = "; ".join(f"{ln['item_id']}: не найдено {ln['short']}" for ln in shorts)
    send(conn, "task_progress", body)
    _set_state(conn, task_id, "picked" if picked_total else "short")
    res.kind = "done" if not shorts else res.kind
    res.message += " — сборка закончена" + (" с недостачей" if shorts else "")
    return res


def line_body(ln: sqlite3.Row) -> dict[str, Any]:
    return {"item_id": ln["item_id"], "quantity": ln["quantity"], "picked": ln["picked"], "short": ln["short"],
            "packed": ln["packed"]}
