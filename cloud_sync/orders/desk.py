"""What a person does to orders from the Orders page, in bulk: take into work, print labels again,
cancel with a reason. Each runs through the order flow (cloud_sync/orders: its action queue, its cancel, its event
log) in one transaction for the whole batch: an unknown order refuses the batch, nothing applied.

* take into work: an order not yet confirmed on the marketplace gets its confirmation queued now
  (the order flow confirms covered orders on its own; this is the manual nudge, recorded as an event);
  a waiting order (short of stock, blocked) is checked again at once (= retry);
* retry: a waiting order checked again now (cloud_sync/orders/waiting.py: earlier deadlines first);
* print labels: the marketplace label is fetched again and sent to the order's site printer;
* cancel: reservation released, site told to stop, cancellation sent to the marketplace.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders import intake, records, waiting

ACTIONS = ("take", "retry", "labels", "cancel")


class DeskError(ValueError):
    """The bulk action cannot run; names the field at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class DeskResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "key: why"


def _rows(conn: sqlite3.Connection, keys: list[str]) -> list[sqlite3.Row]:
    if not keys:
        raise DeskError("choose at least one order", "keys")
    rows = conn.execute(f"SELECT * FROM orders WHERE key IN ({','.join('?' * len(keys))})", keys).fetchall()
    missing = sorted(set(keys) - {r["key"] for r in rows})
    if missing:
        raise DeskError(f"unknown order(s): {', '.join(missing[:5])}", "keys")
    return rows


def run(conn: sqlite3.Connection, cfg: CloudConfig, action: str, keys: list[str], *, by: str, reason: str = "",
        link: Any = None, now: float | None = None) -> DeskResult:
    if action not in ACTIONS:
        raise DeskError(f"choose one of: {', '.join(ACTIONS)}", "action")
    reason = reason.strip()
    if action == "cancel" and not reason:
        raise DeskError("say why the orders are cancelled", "reason")
    if len(reason) > 500:
        raise DeskError("the reason is longer than 500 characters", "reason")
    now = time.time() if now is None else now
    out = DeskResult()
    with transaction(conn):
        for r in _rows(conn, list(dict.fromkeys(keys))):
            key = r["key"]
            if r["stage"] == "cancelled":
                out.skipped.append(f"{key}: already cancelled")
                continue
            if action == "cancel":
                intake.cancel(conn, cfg, r["id"], reason=f"{reason} ({by})", link=link, now=now, actor=by)
            elif action == "retry" or (action == "take" and r["stage"] in waiting.WAITING):
                if r["stage"] not in waiting.WAITING:
                    out.skipped.append(f"{key}: не ждёт товара")
                    continue
                outcome = waiting.retry(conn, cfg, key, by=by, link=link, now=now)
                if outcome != "served":
                    out.skipped.append(f"{key}: ещё ждёт — {outcome}")
                    continue
            elif action == "take":
                if not r["confirmed"]:
                    records.queue_action(conn, r["id"], "confirm", now)
                records.log_event(conn, r["id"], "taken", f"taken into work by {by}", now, source="manager", actor=by)
            else:
                if not r["site"]:
                    out.skipped.append(f"{key}: no site serves its warehouse")
                    continue
                conn.execute("UPDATE order_actions SET state='pending', attempts=0, next_try=?, updated_ts=?"
                             " WHERE order_id=? AND action='label'", (now, now, r["id"]))
                records.queue_action(conn, r["id"], "label", now)
                records.log_event(conn, r["id"], "label_requested", f"labels requested by {by}", now, source="manager",
                                  actor=by)
            out.done.append(key)
    return out
