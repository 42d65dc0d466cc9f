"""Stations: a packing table or a handheld, and what a scan there means right now.

Every scan — typed into the page by a keyboard-wedge scanner, or read by one of the box's scanners bound
to the station — goes through `handle_scan`, which routes it by the station's mode (pick, pack,
handover, receipt, count, return) and records it. A scan at a station with no open task opens the task (earliest
deadline first) that needs the scanned item, in pack mode.
"""

from __future__ import annotations

import sqlite3

from edge_agent import store
from edge_agent.config import DEFAULT_BIN_PATTERN
from edge_agent.tasks import handover, pack, pick, returns, stock, wave
from edge_agent.tasks.common import (
    ScanResult,
    Send,
    TaskError,
    get_task,
    item_code,
    item_name,
    item_of_code,
    open_task_with_item,
    record_scan,
    report_bad_scan,
)
from edge_agent.tasks.marking import RegistryCheck, looks_like_marking, normalise

MODES = ("pick", "pack", "handover", "receipt", "count", "return", "wave", "sort")
HELD = ("handover", "wave", "sort")  # modes whose station holds what it works on (a hand-over, a wave)
REPORTED = ("unknown", "wrong_item", "used_marking", "refused_marking")
MAX_SCAN_CHARS = 512  # a marking code is ~85 characters, a label's barcode a few dozen: longer is no barcode here


def ensure(conn: sqlite3.Connection, station: str) -> sqlite3.Row:
    conn.execute("INSERT OR IGNORE INTO stations (station, mode) VALUES (?, 'pack')", (station,))
    return store.row(conn, "SELECT * FROM stations WHERE station = ?", station)


def open_task(conn: sqlite3.Connection, station: str, task_id: str, mode: str = "pack") -> None:
    if mode not in ("pick", "pack"):
        raise TaskError(f"неизвестный режим {mode}")
    task = get_task(conn, task_id)
    if task["state"] == "cancelled":
        raise TaskError(f"заказ {task['number'] or task['order_id']} отменён")
    ensure(conn, station)
    conn.execute("UPDATE stations SET task_id = ?, mode = ? WHERE station = ?", (task_id, mode, station))


def set_mode(conn: sqlite3.Connection, station: str, mode: str, handover_id: str | None = None) -> None:
    if mode not in MODES:
        raise TaskError(f"неизвестный режим {mode}")
    ensure(conn, station)
    if mode == "handover":
        if handover_id is None:
            raise TaskError("выберите передачу")
        handover.get_handover(conn, handover_id)
    elif mode in ("wave", "sort"):
        if handover_id is None:
            raise TaskError("выберите общую сборку")
        wave.task_ids(conn, handover_id)
    conn.execute("UPDATE stations SET mode = ?, task_id = ? WHERE station = ?",
                 (mode, handover_id if mode in HELD else None, station))


def handle_scan(conn: sqlite3.Connection, send: Send, station: str, code: str, warehouse: str,
                registry: RegistryCheck | None = None, bin_pattern: str = DEFAULT_BIN_PATTERN) -> ScanResult:
    """Apply one scan at a station (inside the caller's transaction) and record it. `registry`: Честный
    знак's verdict on a marking code, taken before the transaction (None: the site does not check)."""
    st = ensure(conn, station)
    raw = code
    code = normalise(code) if looks_like_marking(code) else code.strip()
    if not code:
        return ScanResult(False, "info", "Пустой скан")
    if len(code) > MAX_SCAN_CHARS:  # a stuck key or pasted text: not kept, not sent to the cloud
        return ScanResult(False, "unknown", f"Скан слишком длинный ({len(code)} символов): это не штрихкод. "
                          "Отсканируйте ещё раз")
    task_id, mode = st["task_id"], st["mode"]
    order_id = None
    try:
        if mode == "handover" and task_id:
            res = handover.handover_scan(conn, task_id, code)
        elif mode == "return":
            res = returns.return_scan(conn, station, task_id, code)
        elif mode in ("receipt", "count"):
            res = stock.tally_scan(conn, station, code, bin_pattern)
        elif mode == "wave" and task_id:
            res = wave.pick_scan(conn, send, task_id, code)
        elif mode == "sort" and task_id:
            res = wave.sort_scan(conn, send, task_id, code, warehouse, station, registry)
            order_id = res.data.get("order_id")
        else:
            task = store.row(conn, "SELECT * FROM tasks WHERE task_id = ?", task_id) if task_id else None
            open_states = pick.OPEN_FOR_PICK if mode == "pick" else pack.OPEN_FOR_PACK
            if task is None or task["state"] not in open_states:
                last = task
                task = _task_for_scan(conn, code, picking=mode == "pick")
                if task is None:
                    res = _no_task(conn, code, picking=mode == "pick", last=last)
                    record_scan(conn, station, raw, None, res)
                    if res.kind in REPORTED:
                        report_bad_scan(send, conn, station, raw, res, None)
                    return res
                mode = "pick" if mode == "pick" else "pack"  # a picker's scan never packs (nor prints) an order
                conn.execute("UPDATE stations SET task_id = ?, mode = ? WHERE station = ?", (task["task_id"], mode, station))
            order_id = task["order_id"]
            if mode == "pick":
                res = pick.pick_scan(conn, send, task["task_id"], code, station)
            else:
                res = pack.pack_scan(conn, send, task["task_id"], code, warehouse, station, registry)
    except TaskError as exc:
        res = ScanResult(False, "info", str(exc), task_id)
    record_scan(conn, station, raw, res.task_id, res)
    if res.kind in REPORTED:
        report_bad_scan(send, conn, station, raw, res, order_id)
    return res


def _task_for_scan(conn: sqlite3.Connection, code: str, picking: bool = False) -> sqlite3.Row | None:
    item_id = item_of_code(conn, item_code(code))
    if item_id is None:
        return None
    if not picking:
        return open_task_with_item(conn, item_id)
    return store.row(
        conn,
        "SELECT t.* FROM tasks t JOIN task_lines l ON l.task_id = t.task_id WHERE l.item_id = ? "
        "AND t.state IN ('new','picking') AND l.picked + l.short < l.quantity "
        "ORDER BY COALESCE(t.deadline, '9999'), t.created_at LIMIT 1", item_id)


def _no_task(conn: sqlite3.Connection, code: str, picking: bool = False,
             last: sqlite3.Row | None = None) -> ScanResult:
    """No open order needs this scan. `last` is the order the station showed (often just packed)."""
    item_id = item_of_code(conn, item_code(code))
    if item_id is None:
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code}: такого товара нет в каталоге склада")
    if not picking and last is not None and last["state"] == "packed" and store.row(
            conn, "SELECT 1 FROM task_lines WHERE task_id = ? AND item_id = ?", last["task_id"], item_id):
        return ScanResult(False, "extra", f"«{item_name(conn, item_id)}» уже упакован в заказ "
                          f"{last['number'] or last['order_id']} полностью — эта единица лишняя, отложите её",
                          last["task_id"])
    if picking:
        return ScanResult(False, "extra", f"«{item_name(conn, item_id)}» больше не нужен ни одному заказу в сборке — "
                          "эта единица лишняя. Собранный заказ упаковывают на экране «Упаковать»")
    return ScanResult(False, "info", "Этот товар сейчас не нужен ни одному открытому заказу")
