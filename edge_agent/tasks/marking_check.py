"""Codes packed while Честный знак could not be reached, checked once it answers again.

Owns reading and writing `marking_checks` after packing: `unchecked(conn)` lists the codes packed without
the register's verdict; `record(conn, send, rows, verdicts)` stores what Честный знак then said and, for
a code it refuses, flags the order to the cloud (`task_progress` state `failed`, which the cloud shows as
the order's problem) with the reason in Russian, so the unit is replaced before the parcel leaves.
The asking itself (HTTP) happens outside any transaction: edge_agent.site runs it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from edge_agent import store
from edge_agent.tasks.common import Send
from edge_agent.tasks.marking import MarkingCode, RegistryCheck


def unchecked(conn: sqlite3.Connection, limit: int = 100) -> list[sqlite3.Row]:
    return store.rows(conn, "SELECT * FROM marking_checks WHERE state = 'unchecked' ORDER BY ts LIMIT ?", limit)


def code_of(row: sqlite3.Row) -> MarkingCode:
    return MarkingCode(gtin=row["gtin"], serial=row["serial"], key_id="", crypto="", raw=row["full_code"])


def record(conn: sqlite3.Connection, send: Send, rows: Sequence[sqlite3.Row],
           verdicts: Sequence[RegistryCheck]) -> tuple[int, int]:
    """Store the verdicts of codes checked late (inside the caller's transaction); (ok, refused)."""
    ok = refused = 0
    for row, verdict in zip(rows, verdicts, strict=True):
        if verdict.state == "unchecked":
            continue
        conn.execute("UPDATE marking_checks SET state = ?, reason = ?, checked_ts = ? WHERE code_id = ?",
                     (verdict.state, verdict.reason, store.now(), row["code_id"]))
        if verdict.state == "ok":
            ok += 1
            continue
        refused += 1
        task = store.row(conn, "SELECT number FROM tasks WHERE task_id = ?", row["task_id"])
        number = (task["number"] if task is not None else "") or row["order_id"]
        send(conn, "task_progress", {
            "task_id": row["task_id"], "order_id": row["order_id"], "state": "failed",
            "note": f"Честный знак отказал коду маркировки {row['code_id']} в заказе {number}: {verdict.reason}. "
                    "Замените единицу до передачи посылки"})
    return ok, refused
