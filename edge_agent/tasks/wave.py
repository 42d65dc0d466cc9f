"""The combined pick («Общая сборка»): many orders picked in one walk along the shelves, bin by bin, then
sorted into their orders at the packing table.

`create` takes the orders not yet picked (earliest deadline first, at most `max_orders`, none already in
an open wave) into a wave; each order gets a tote, its place in the wave (1, 2, ...). `pick_list` is the
walk: one line per bin and item, with the units of every order and the tote each goes to, sorted by bin.
`pick_scan` takes units: the current line's bin label takes the whole line, an item's barcode one unit
(for the first order that still needs it); each order is picked by the ordinary pick logic, so its
`task_progress` goes up when it is complete. At the packing table `sort_scan` takes a unit, says which
tote (order) it goes in and packs it there with the ordinary pack logic — marking codes, and the label
when the order is complete. A wave is open while any of its orders is still to pack.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store, words
from edge_agent.tasks import pack, pick
from edge_agent.tasks.common import ScanResult, Send, TaskError, item_code, item_name, item_of_code
from edge_agent.tasks.marking import RegistryCheck


def task_ids(conn: sqlite3.Connection, wave_id: str) -> list[str]:
    w = store.row(conn, "SELECT task_ids FROM waves WHERE wave_id = ?", wave_id)
    if w is None:
        raise TaskError(f"нет общей сборки №{wave_id}")
    return list(json.loads(w["task_ids"]))


def _tasks(conn: sqlite3.Connection, wave_id: str) -> list[tuple[int, sqlite3.Row]]:
    """(tote, task) of every order of the wave, in tote order."""
    out = []
    for tote, tid in enumerate(task_ids(conn, wave_id), 1):
        t = store.row(conn, "SELECT * FROM tasks WHERE task_id = ?", tid)
        if t is not None:
            out.append((tote, t))
    return out


WAVE_KEPT_S = 7 * 86400  # a wave older than this is not looked at again (its orders may join a new one)


def _recent(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """The waves of the last `WAVE_KEPT_S`: the task list looks at these, not at every wave ever made."""
    return store.rows(conn, "SELECT wave_id, task_ids FROM waves WHERE created_at > ? ORDER BY created_at",
                      store.now() - WAVE_KEPT_S)


def open_waves(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The waves with an order still to pack: id, orders, units picked and needed."""
    out = []
    for w in _recent(conn):
        totes = totes_of(conn, w["wave_id"])
        if any(t["state"] in pack.OPEN_FOR_PACK for t in totes):
            out.append({"wave_id": w["wave_id"], "orders": len(totes), "orders_word": words.orders(len(totes)),
                        "to_pick": sum(t["state"] in pick.OPEN_FOR_PICK for t in totes)})
    return out


def _in_open_waves(conn: sqlite3.Connection) -> set[str]:
    taken: set[str] = set()
    for w in _recent(conn):
        ids = json.loads(w["task_ids"])
        states = {r["state"] for r in store.rows(
            conn, f"SELECT state FROM tasks WHERE task_id IN ({','.join('?' * len(ids))})", *ids)} if ids else set()
        if states & set(pack.OPEN_FOR_PACK):
            taken.update(ids)
    return taken


def candidates(conn: sqlite3.Connection, max_orders: int) -> list[str]:
    """The orders a new wave would take: not started, in no open wave, earliest deadline first."""
    taken = _in_open_waves(conn)
    rows = store.rows(conn, "SELECT task_id FROM tasks WHERE state = 'new' "
                      "ORDER BY COALESCE(deadline, '9999'), created_at")
    return [r["task_id"] for r in rows if r["task_id"] not in taken][:max_orders]


def create(conn: sqlite3.Connection, max_orders: int, by: str | None = None) -> str:
    """A new wave of `candidates`; its id (a number the site counts: «Общая сборка №3»)."""
    ids = candidates(conn, max_orders)
    if len(ids) < 2:
        raise TaskError("для общей сборки нужно хотя бы 2 новых заказа: собирайте заказ по одному")
    n = store.row(conn, "SELECT COUNT(*) AS n FROM waves")["n"] + 1
    wave_id = str(n)
    while store.row(conn, "SELECT 1 FROM waves WHERE wave_id = ?", wave_id):
        n += 1
        wave_id = str(n)
    conn.execute("INSERT INTO waves (wave_id, task_ids, created_at, created_by) VALUES (?,?,?,?)",
                 (wave_id, store.dumps(ids), store.now(), by))
    return wave_id


def totes_of(conn: sqlite3.Connection, wave_id: str) -> list[dict[str, Any]]:
    """Each order of the wave with its tote: number, marketplace, state, units needed, picked, packed."""
    out = []
    for tote, t in _tasks(conn, wave_id):
        lines = store.rows(conn, "SELECT name, quantity, short, picked, packed FROM task_lines WHERE task_id = ? "
                           "ORDER BY line_no", t["task_id"])
        out.append({"tote": tote, "task_id": t["task_id"], "order_id": t["order_id"],
                    "number": t["number"] or t["order_id"], "marketplace": t["marketplace"], "state": t["state"],
                    "need": sum(ln["quantity"] - ln["short"] for ln in lines),
                    "picked": sum(ln["picked"] for ln in lines), "packed": sum(ln["packed"] for ln in lines),
                    "goods": [f"{ln['name']} ×{ln['quantity'] - ln['short']}" for ln in lines
                              if ln["quantity"] > ln["short"]]})
    return out


def pick_list(conn: sqlite3.Connection, wave_id: str) -> list[dict[str, Any]]:
    """The walk along the shelves: one line per bin and item (a line without a bin comes last), with the
    units of each order and its tote. Cancelled orders are left out."""
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for tote, t in _tasks(conn, wave_id):
        if t["state"] == "cancelled":
            continue
        for ln in store.rows(conn, "SELECT * FROM task_lines WHERE task_id = ? ORDER BY line_no", t["task_id"]):
            key = (ln["bin"] or "", ln["item_id"])
            g = lines.setdefault(key, {"bin": ln["bin"] or "", "item_id": ln["item_id"], "name": ln["name"],
                                       "title": ln["title"], "barcode": ln["barcode"] or "", "quantity": 0,
                                       "picked": 0, "short": 0, "orders": []})
            if ln["title"] and ln["title"] not in g["title"].split(" · "):  # each marketplace card's own title
                g["title"] = f"{g['title']} · {ln['title']}" if g["title"] else ln["title"]
            g["quantity"] += ln["quantity"]
            g["picked"] += ln["picked"]
            g["short"] += ln["short"]
            g["orders"].append({"tote": tote, "number": t["number"] or t["order_id"], "quantity": ln["quantity"]})
    return sorted(lines.values(), key=lambda g: (g["bin"] == "", g["bin"], g["name"]))


def current(conn: sqlite3.Connection, wave_id: str) -> dict[str, Any] | None:
    """The next line of the walk with units still to take."""
    return next((g for g in pick_list(conn, wave_id) if g["picked"] + g["short"] < g["quantity"]), None)


def summary(conn: sqlite3.Connection, wave_id: str) -> dict[str, Any]:
    cur = current(conn, wave_id)
    return {"wave_id": wave_id, "lines": pick_list(conn, wave_id), "totes": totes_of(conn, wave_id),
            "current": [cur["bin"], cur["item_id"]] if cur else None}


def _open_lines(conn: sqlite3.Connection, wave_id: str, item_id: str, bin_code: str | None = None,
                ) -> list[tuple[int, sqlite3.Row, sqlite3.Row]]:
    """(tote, task, line) of this item still to pick, in tote order (of this bin when given)."""
    out = []
    for tote, t in _tasks(conn, wave_id):
        if t["state"] not in pick.OPEN_FOR_PICK:
            continue
        for ln in store.rows(conn, "SELECT * FROM task_lines WHERE task_id = ? AND item_id = ? ORDER BY line_no",
                             t["task_id"], item_id):
            if ln["picked"] + ln["short"] < ln["quantity"] and (bin_code is None or (ln["bin"] or "") == bin_code):
                out.append((tote, t, ln))
    return out


def pick_scan(conn: sqlite3.Connection, send: Send, wave_id: str, code: str) -> ScanResult:
    """A scan on the walk: the current line's bin label takes all its units, an item one unit."""
    code = item_code(code)
    cur = current(conn, wave_id)
    if cur is None:
        return ScanResult(True, "done", "Общая сборка закончена: несите товар к столу упаковки и разложите по ящикам",
                          data={"wave_id": wave_id})
    if cur["bin"] and code.lower() == cur["bin"].lower():
        taken = 0
        for _tote, t, ln in _open_lines(conn, wave_id, cur["item_id"], cur["bin"]):
            take = ln["quantity"] - ln["short"] - ln["picked"]
            conn.execute("UPDATE task_lines SET picked = picked + ? WHERE task_id = ? AND line_no = ?",
                         (take, t["task_id"], ln["line_no"]))
            pick.after_pick(conn, send, t, ScanResult(True, "picked", ""))
            taken += take
        return _walked(conn, wave_id, f"Ячейка {cur['bin']}: взято {taken} шт. «{cur['name']}»")
    item_id = item_of_code(conn, code)
    if item_id is None:
        if item_id is None and any(g["bin"] and g["bin"].lower() == code.lower() for g in pick_list(conn, wave_id)):
            return ScanResult(False, "info", f"Это ячейка {code}, а сейчас идите к ячейке {cur['bin'] or '—'}",
                              data={"wave_id": wave_id})
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code}: такого товара нет в каталоге склада",
                          data={"wave_id": wave_id})
    todo = _open_lines(conn, wave_id, item_id)
    if not todo:
        return ScanResult(False, "extra", f"«{item_name(conn, item_id)}» больше не нужен этой сборке — "
                          "эта единица лишняя, верните её в ячейку", data={"wave_id": wave_id})
    _tote, t, ln = todo[0]
    conn.execute("UPDATE task_lines SET picked = picked + 1 WHERE task_id = ? AND line_no = ?",
                 (t["task_id"], ln["line_no"]))
    pick.after_pick(conn, send, t, ScanResult(True, "picked", ""))
    left = sum(ln2["quantity"] - ln2["short"] - ln2["picked"] for _, _, ln2 in _open_lines(conn, wave_id, item_id))
    return _walked(conn, wave_id, f"Взято: «{ln['name']}»" + (f", ещё {left}" if left else ""))


def report_short(conn: sqlite3.Connection, send: Send, wave_id: str, bin_code: str, item_id: str) -> ScanResult:
    """The walk found the rest of a line missing on the shelf: each order's units of it still to take are
    short (written off against the order, as a single order's pick does)."""
    todo = _open_lines(conn, wave_id, item_id, bin_code)
    if not todo:
        raise TaskError("эта строка уже собрана")
    missing = 0
    for _tote, t, ln in todo:
        missing += ln["quantity"] - ln["picked"] - ln["short"]
        pick.report_short(conn, send, t["task_id"], ln["line_no"])
    return _walked(conn, wave_id, f"Недостача: «{todo[0][2]['name']}» — не найдено {missing} шт.")


def _walked(conn: sqlite3.Connection, wave_id: str, message: str) -> ScanResult:
    nxt = current(conn, wave_id)
    if nxt is None:
        return ScanResult(True, "done", message + " — общая сборка закончена: разложите товар по ящикам",
                          data={"wave_id": wave_id})
    where = f"ячейка {nxt['bin']}" if nxt["bin"] else "без ячейки"
    return ScanResult(True, "picked", f"{message.rstrip('.')}. Дальше: {where}, «{nxt['name']}»",
                      data={"wave_id": wave_id})


def sort_scan(conn: sqlite3.Connection, send: Send, wave_id: str, code: str, warehouse: str,
              station: str | None = None, registry: RegistryCheck | None = None) -> ScanResult:
    """At the packing table: the unit goes into the tote of the first order that still needs it (units
    already picked for it first), and is packed there."""
    item_id = item_of_code(conn, item_code(code))
    if item_id is None:
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code.strip()}: такого товара нет в каталоге склада",
                          data={"wave_id": wave_id})
    needing = []
    for tote, t in _tasks(conn, wave_id):
        if t["state"] not in pack.OPEN_FOR_PACK:
            continue
        for ln in store.rows(conn, "SELECT * FROM task_lines WHERE task_id = ? AND item_id = ?", t["task_id"], item_id):
            if ln["packed"] < ln["quantity"] - ln["short"]:
                needing.append((ln["picked"] <= ln["packed"], tote, t))
                break
    if not needing:
        return ScanResult(False, "extra", f"«{item_name(conn, item_id)}» не нужен ни одному заказу этой сборки — "
                          "отложите его", data={"wave_id": wave_id})
    _, tote, t = min(needing, key=lambda x: (x[0], x[1]))
    res = pack.pack_scan(conn, send, t["task_id"], code, warehouse, station, registry)
    number = t["number"] or t["order_id"]
    res.data = {**res.data, "wave_id": wave_id, "tote": tote, "order": number, "order_id": t["order_id"]}
    res.message = f"ЯЩИК {tote} · заказ {number}: {res.message}"
    return res
