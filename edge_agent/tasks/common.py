"""What every task module shares: the scan result shown to the packer, lookups of codes, the outbox seam.

`Send` is the site link's `send(conn, type, body)`: it enqueues an up message in the caller's
transaction, so a change and its message commit together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from edge_agent import store, words
from edge_agent.tasks.marking import looks_like_marking


class Send(Protocol):
    def __call__(self, conn: sqlite3.Connection, msg_type: str, body: dict[str, Any]) -> Any: ...


@dataclass
class ScanResult:
    """The answer to one scan, shown on the page. `kind` drives its colour and sound."""

    ok: bool
    kind: str  # picked | packed | done | bin (a bin label at a receipt / count) | unknown | wrong_item | extra | used_marking | refused_marking (Честный знак) | bad_marking | need_marking | info
    message: str
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TaskError(ValueError):
    """An action that cannot be done in the task's current state (e.g. packing a cancelled order)."""


def item_code(code: str) -> str:
    """What identifies the item in a scan: a marking code's GTIN (its first AI), otherwise the scan itself.

    Picking, receipts and counts take a marked unit by its Честный знак DataMatrix as readily as by its
    EAN; only packing keeps the whole code.
    """
    code = code.strip()
    return code[2:16] if looks_like_marking(code) else code


def item_of_code(conn: sqlite3.Connection, code: str) -> str | None:
    r = store.row(conn, "SELECT item_id FROM item_barcodes WHERE code = ?", code.strip())
    return r["item_id"] if r else None


def item_name(conn: sqlite3.Connection, item_id: str) -> str:
    r = store.row(conn, "SELECT name FROM catalog WHERE item_id = ?", item_id)
    if r and r["name"]:
        return r["name"]
    r = store.row(conn, "SELECT name FROM task_lines WHERE item_id = ? AND name != '' LIMIT 1", item_id)
    return r["name"] if r else item_id


def open_task_with_item(conn: sqlite3.Connection, item_id: str, not_task: str | None = None) -> sqlite3.Row | None:
    """The open task (earliest deadline) that still needs this item."""
    return store.row(
        conn,
        "SELECT t.* FROM tasks t JOIN task_lines l ON l.task_id = t.task_id "
        "WHERE l.item_id = ? AND t.state IN ('new','picking','picked','packing') AND t.task_id != ? "
        "AND l.packed < l.quantity - l.short ORDER BY COALESCE(t.deadline, '9999'), t.created_at LIMIT 1",
        item_id,
        not_task or "",
    )


def task_lines(conn: sqlite3.Connection, task_id: str) -> list[sqlite3.Row]:
    return store.rows(
        conn, "SELECT * FROM task_lines WHERE task_id = ? ORDER BY COALESCE(bin, ''), line_no", task_id
    )


def get_task(conn: sqlite3.Connection, task_id: str) -> sqlite3.Row:
    t = store.row(conn, "SELECT * FROM tasks WHERE task_id = ?", task_id)
    if t is None:
        raise TaskError(f"нет задания {task_id}")
    return t


def set_state(conn: sqlite3.Connection, task_id: str, state: str) -> None:
    conn.execute("UPDATE tasks SET state = ?, updated_at = ? WHERE task_id = ?", (state, store.now(), task_id))


def record_scan(conn: sqlite3.Connection, station: str | None, code: str, task_id: str | None, res: ScanResult) -> None:
    conn.execute(
        "INSERT INTO scans (ts, station, code, task_id, result, message) VALUES (?,?,?,?,?,?)",
        (store.now(), station, code, task_id, res.kind, res.message),
    )


def report_bad_scan(send: Send, conn: sqlite3.Connection, station: str | None, code: str, res: ScanResult,
                    order_id: str | None) -> None:
    """Scans of note (unknown barcode, another order's item, used marking code) go up to the cloud."""
    body: dict[str, Any] = {"code": code, "note": f"{res.kind}: {res.message}"}
    if station:
        body["station"] = station
    if order_id:
        body["order_id"] = order_id
    send(conn, "scan", body)


def lines_json(conn: sqlite3.Connection, task_id: str) -> list[dict[str, Any]]:
    out = []
    for ln in task_lines(conn, task_id):
        d = dict(ln)
        d["barcodes"] = json.loads(d["barcodes"])
        d["marking_required"] = bool(d["marking_required"])
        out.append(d)
    return out


def codes_of(conn: sqlite3.Connection, line: sqlite3.Row) -> set[str]:
    """Every barcode (and GTIN) that means this line's item."""
    return {r["code"] for r in store.rows(conn, "SELECT code FROM item_barcodes WHERE item_id = ?", line["item_id"])}


def classify_foreign(conn: sqlite3.Connection, code: str, task: sqlite3.Row) -> ScanResult:
    """A scan that is not an item of this task: another order's item, or a barcode nobody knows."""
    item_id = item_of_code(conn, code)
    if item_id is None:
        return ScanResult(False, "unknown", f"Неизвестный штрихкод {code}: такого товара нет в каталоге склада",
                          task["task_id"])
    other = open_task_with_item(conn, item_id, task["task_id"])
    where = f" — он из заказа {other['number'] or other['order_id']}" if other else ""
    return ScanResult(False, "wrong_item",
                      f"НЕ ТОТ ТОВАР: «{item_name(conn, item_id)}» не входит в заказ "
                      f"{task['number'] or task['order_id']}{where}. Отложите его.",
                      task["task_id"], {"item_id": item_id, "other_order": other["order_id"] if other else None})


def parcels_word(n: int) -> str:
    """«посылка», «посылки» or «посылок» for `n` (Babel's plural rules)."""
    return words.plural(n, "посылка", "посылки", "посылок")
