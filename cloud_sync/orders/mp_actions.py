"""The marketplace calls still to make for an order (confirm, label, assemble, ship, cancel): made outside
any transaction, their outcome recorded, failures retried with backoff or shown to the manager.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.records import (
    DONE_EVENT,
    log_error,
    log_event,
    marketplace_gave_back,
    queue_action,
    send_to_site,
    set_stage,
)
from marketplaces.base import Marketplace, MarketplaceError

log = logging.getLogger("cloud_sync.orders.mp_actions")


def run_actions(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
                link: Any = None, now: float | None = None, limit: int = 200) -> int:
    """Make the due marketplace calls (confirm, label, assemble, ship, cancel). Returns calls made."""
    now = time.time() if now is None else now
    due = conn.execute(
        "SELECT a.order_id, a.action, a.attempts, o.account, o.native_id, o.key, o.site, o.mp_warehouse,"
        " o.supply_id, o.marketplace FROM order_actions a JOIN orders o ON o.id=a.order_id"
        " WHERE a.state='pending' AND a.next_try<=? ORDER BY a.next_try LIMIT ?", (now, limit)).fetchall()
    done = 0
    for a in due:
        adapter = adapters.get(a["account"])
        if adapter is None:
            continue
        try:
            outcome = _call(conn, cfg, adapter, a)
        except MarketplaceError as exc:
            # a label is often just not ready yet (Ozon: 45-60 s after assembly): keep asking for a while
            retry = exc.retryable or (a["action"] == "label" and a["attempts"] < 20)
            _action_failed(conn, cfg, a, exc, retryable=retry)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken order must not stop the others
            log.exception("order %s %s", a["key"], a["action"])
            _action_failed(conn, cfg, a, exc, retryable=True)
            continue
        with transaction(conn):
            _action_done(conn, cfg, a, outcome, link, time.time())
        done += 1
    return done


def _call(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, a: sqlite3.Row) -> dict[str, Any]:
    action, native_id = a["action"], a["native_id"]
    settings = cfg.accounts.get(a["account"])
    if action == "label":
        label = adapter.get_label(native_id, fmt=(settings.label_format or None) if settings else None)
        return {"label": label}
    details: dict[str, Any] = {}
    if action in ("confirm", "ship"):  # marketplaces that batch shipments (WB supplies) reuse the open one
        batch = a["supply_id"] or _open_supply(conn, a["account"], a["mp_warehouse"])
        if batch:
            details["batch_id"] = batch
    if action == "assemble":
        codes = _marking_by_offer(conn, a["order_id"])
        if codes:
            details["marking_codes"] = codes
    change = adapter.set_order_status(native_id, action, **details)
    if not change.ok and not change.already:
        raise MarketplaceError(change.error or f"{action} refused", account=a["account"], endpoint=action,
                               retryable=False)
    out: dict[str, Any] = {"change": change}
    if change.batch_id:  # the hand-over ships the whole batch (WB supply) at once
        out["supply_id"] = change.batch_id
    return out


def _marking_by_offer(conn: sqlite3.Connection, oid: int) -> dict[str, list[str]]:
    """The site's scanned marking codes, per offer id of the line they belong to (by the GTIN in the code,
    or all of them to the one marked line)."""
    row = conn.execute("SELECT marking_codes FROM orders WHERE id=?", (oid,)).fetchone()
    codes = json.loads(row[0]) if row and row[0] else []
    if not codes:
        return {}
    lines = conn.execute("SELECT COALESCE(NULLIF(l.offer_id, ''), l.card_id) AS offer_id, l.item_id,"
                         " MAX(COALESCE(i.marked, 0), l.marking_required) AS marked FROM order_lines l LEFT JOIN items i ON"
                         " i.id=l.item_id WHERE l.order_id=? ORDER BY l.line_no", (oid,)).fetchall()
    marked = [ln for ln in lines if ln["marked"]] or list(lines)
    if len(marked) == 1:
        return {marked[0]["offer_id"]: list(codes)}
    out: dict[str, list[str]] = {}
    for code in codes:
        gtin = code[2:16] if code.startswith("01") else ""
        for ln in marked:
            barcodes = [r[0] for r in conn.execute("SELECT barcode FROM item_barcodes WHERE item_id=?",
                                                   (ln["item_id"],))]
            if gtin and any(b.zfill(14) == gtin for b in barcodes):
                out.setdefault(ln["offer_id"], []).append(code)
                break
    return out


def _open_supply(conn: sqlite3.Connection, account: str, mp_warehouse: str) -> str | None:
    r = conn.execute("SELECT supply_id FROM supplies WHERE account=? AND mp_warehouse=? AND state='open'"
                     " ORDER BY created_ts DESC LIMIT 1", (account, mp_warehouse)).fetchone()
    return r[0] if r else None


def _action_done(conn: sqlite3.Connection, cfg: CloudConfig, a: sqlite3.Row, outcome: dict[str, Any], link: Any,
                 now: float) -> None:
    oid, action = a["order_id"], a["action"]
    conn.execute("UPDATE order_actions SET state='done', attempts=attempts+1, error='', updated_ts=? WHERE"
                 " order_id=? AND action=?", (now, oid, action))
    settings = cfg.accounts.get(a["account"])
    label_after = settings.label_after if settings else "confirm"
    change = outcome.get("change")
    if change is not None:
        supply = outcome.get("supply_id")
        if supply:
            conn.execute("UPDATE orders SET supply_id=? WHERE id=?", (str(supply), oid))
            conn.execute("INSERT OR IGNORE INTO supplies(account, mp_warehouse, supply_id, state, created_ts)"
                         " VALUES (?,?,?,?,?)", (a["account"], a["mp_warehouse"], str(supply), "open", now))
        if action == "ship":
            supply = supply or a["supply_id"]
            if supply:
                conn.execute("UPDATE supplies SET state='shipped' WHERE account=? AND supply_id=?",
                             (a["account"], str(supply)))
            conn.execute("UPDATE handovers SET state='shipped' WHERE id IN (SELECT handover_id FROM"
                         " handover_orders WHERE order_id=?)", (oid,))
        if change.native_status:
            conn.execute("UPDATE orders SET native_status=? WHERE id=?", (change.native_status, oid))
        if action == "confirm":
            conn.execute("UPDATE orders SET confirmed=1 WHERE id=?", (oid,))
        if action == "cancel":  # the marketplace put the units back on its cards by itself
            marketplace_gave_back(conn, cfg, oid, now)
        o = conn.execute("SELECT stage FROM orders WHERE id=?", (oid,)).fetchone()
        set_stage(conn, cfg, oid, o[0], now)
        log_event(conn, oid, DONE_EVENT.get(action, f"{action}_done"), "", now)
        if action == label_after and action in ("confirm", "assemble"):
            queue_action(conn, oid, "label", now)
    label = outcome.get("label")
    if label is not None and a["site"]:
        body = {"order_id": a["key"], "format": label.format, "data_b64": base64.b64encode(label.data).decode(),
                "width_mm": label.width_mm, "height_mm": label.height_mm}
        if label.barcode_text:
            body["barcode_text"] = label.barcode_text
        send_to_site(conn, link, a["site"], "label", body)
        conn.execute("UPDATE orders SET label_sent=1 WHERE id=?", (oid,))
        log_event(conn, oid, "label_sent", label.format, now)


def _action_failed(conn: sqlite3.Connection, cfg: CloudConfig, a: sqlite3.Row, exc: Exception, *,
                   retryable: bool) -> None:
    now = time.time()
    attempts = a["attempts"] + 1
    delay = min(cfg.jobs.retry_max_s, cfg.jobs.retry_base_s * 2 ** min(attempts - 1, 10)) / max(cfg.time_scale, 1e-9)
    with transaction(conn):
        if retryable:
            conn.execute("UPDATE order_actions SET attempts=?, next_try=?, error=?, updated_ts=? WHERE order_id=?"
                         " AND action=?", (attempts, now + delay, str(exc)[:500], now, a["order_id"], a["action"]))
        else:
            conn.execute("UPDATE order_actions SET state='failed', attempts=?, error=?, updated_ts=? WHERE"
                         " order_id=? AND action=?", (attempts, str(exc)[:500], now, a["order_id"], a["action"]))
            conn.execute("UPDATE orders SET problem=? WHERE id=?", (f"{a['action']} failed: {exc}"[:500], a["order_id"]))
            log_error(conn, "orders", f"{a['key']} {a['action']}: {exc}", a["account"])
