"""What the sites report over the link (task progress, stock deltas and counts, prints, scans, device
status, a senior packer's hand-over request, the bins items are kept in), applied to the ledger and the orders in the link's inbox transaction; and the catalog each site
is sent so it knows every barcode it may scan.

A site's event goes into the order's history at the site's own moment (the envelope's `ts`), keyed by the
envelope id, so a message delivered late still sorts where it happened and one delivered twice counts
once. Stock that becomes available at a site (receipt, return, count) is offered to the waiting orders
first (cloud_sync/orders/waiting.py); a shortage the site reports takes the order back to waiting. What
cannot be applied (an unknown order, a hand-over of a parcel not packed or cancelled) is refused in
Russian and recorded in `cloud_errors`; nothing of it is applied.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import datetime
from typing import Any

from cloud_sync.catalog import nomenclature
from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders import mp_actions, waiting
from cloud_sync.orders.handovers import courier_left, queue_shipping, start_handover
from cloud_sync.orders.records import (
    Waker,
    log_error,
    log_event,
    pick_task_id,
    queue_action,
    send_to_site,
    set_stage,
)
from cloud_sync.stock import ledger as stock
from sitelink import Reject

log = logging.getLogger("cloud_sync.orders.site_messages")


def register_site_handlers(link: Any, cfg: CloudConfig, wake: Waker | None = None) -> None:
    """Wire the site's up messages to the ledger and the orders (each runs in the link's inbox transaction)."""
    def on_task_progress(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        row = conn.execute("SELECT id, stage, account, key, task_round, number FROM orders WHERE key=?",
                           (b["order_id"],)).fetchone()
        if row is None:
            _refuse(conn, env.site, f"пункт {env.site}: «{b['state']}» для неизвестного заказа {b['order_id']}")
        oid, stage, now = row[0], row[1], time.time()
        state = b["state"]
        if b.get("task_id") and b["task_id"] != pick_task_id(row["key"], row["task_round"]):
            # a task the cloud closed after a shortage (the order was sent again as a new one): history only
            log_event(conn, oid, f"old_task_{state}", b.get("note", ""), site_ts(env), source="site",
                      actor=env.site, key=_event_key(env))
            return
        if state == "handed_over" and stage not in ("packed", "handed_over"):
            why = "отменён" if stage == "cancelled" else "ещё не упакован"
            _refuse(conn, env.site, f"пункт {env.site}: заказ {row['number']} {why} — его нельзя передать"
                    " курьеру; ничего не изменено")
        if not log_event(conn, oid, state, _note(conn, b), site_ts(env), source="site", actor=env.site,
                         key=_event_key(env)):
            return  # delivered twice: applied once
        if stage == "cancelled":
            return
        if state == "picked" and stage == "reserved":
            set_stage(conn, cfg, oid, "picking", now)
        elif state == "packed" and stage in ("reserved", "picking"):
            conn.execute("UPDATE orders SET packed_ts=?, marking_codes=? WHERE id=?",
                         (now, json.dumps(b.get("marking_codes") or []), oid))
            set_stage(conn, cfg, oid, "packed", now, problem="")
            # packed with fewer units: the marketplace is told before the order is assembled (it waits)
            mp_actions.record_shortage(conn, oid, b.get("lines") or [], now)
            queue_action(conn, oid, "assemble", now)
        elif state == "handed_over" and stage == "packed":
            set_stage(conn, cfg, oid, "handed_over", now)
            if b.get("handover_id"):
                conn.execute("INSERT OR IGNORE INTO handover_orders(handover_id, order_id) SELECT id, ? FROM"
                             " handovers WHERE id=?", (oid, b["handover_id"]))
            queue_shipping(conn, oid, now)
        elif state in ("short", "failed") and stage in ("reserved", "picking", "packed"):
            lines = b.get("lines") or []
            if waiting.site_short(conn, cfg, oid, lines, site=env.site, link=link, now=now) == "partial":
                # the parcel goes on with fewer units: the marketplace is told what it really holds
                mp_actions.record_shortage(conn, oid, lines, now)

    def on_stock_delta(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        try:
            stock.site_delta(conn, env.site, b["warehouse"], b["item_id"], b["delta"], b["reason"],
                             ref=b.get("ref", ""), note=b.get("note", ""))
        except stock.StockError as exc:
            log_error(conn, "stock", f"site {env.site}: {exc}")
            raise Reject(str(exc)) from exc
        if b["delta"] > 0:  # units came (receipt, return): the waiting orders of the item first
            waiting.serve(conn, cfg, items=[(b["item_id"], b["warehouse"])], link=link)
        _after(conn, wake)

    def on_stock_count(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        try:
            move = stock.site_count(conn, env.site, b["warehouse"], b["item_id"], b["counted"], ref=b.get("ref", ""))
        except stock.StockError as exc:
            raise Reject(str(exc)) from exc
        if move is not None and move.on_hand_delta > 0:
            waiting.serve(conn, cfg, items=[(b["item_id"], b["warehouse"])], link=link)
        _after(conn, wake)

    def on_printed(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        row = conn.execute("SELECT id FROM orders WHERE key=?", (b["order_id"],)).fetchone()
        if row is not None and b.get("kind", "label") == "label":
            conn.execute("UPDATE orders SET labels_printed=labels_printed+1 WHERE id=?", (row[0],))
        log_event(conn, row[0] if row else None, "printed", f"{b['printer']} {b.get('file', '')}".strip())

    def on_scan(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        row = conn.execute("SELECT id FROM orders WHERE key=?", (b.get("order_id", ""),)).fetchone()
        log_event(conn, row[0] if row else None, "scan", f"{env.site} {b['code']} {b.get('note', '')}".strip())

    def on_device_status(conn: sqlite3.Connection, env: Any) -> None:
        conn.execute("INSERT INTO sites(id, last_seen, devices) VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET"
                     " last_seen=excluded.last_seen, devices=excluded.devices",
                     (env.site, time.time(), json.dumps(env.body["devices"], ensure_ascii=False)))

    def on_handover_closed(conn: sqlite3.Connection, env: Any) -> None:
        """The site closed a hand-over: the parcels that stayed (not scanned, not labelled) leave it, so the
        next courier is offered them; each gets an event saying why it stayed."""
        b = env.body
        conn.execute("UPDATE handovers SET state='closed' WHERE id=? AND state='open'", (b["handover_id"],))
        why = b.get("missing_why") or {}
        for key in b["missing"]:
            row = conn.execute("SELECT id, stage FROM orders WHERE key=?", (key,)).fetchone()
            if row is None:
                continue
            conn.execute("DELETE FROM handover_orders WHERE handover_id=? AND order_id=?", (b["handover_id"], row[0]))
            if row[1] != "cancelled":
                log_event(conn, row[0], "handover_missing", f"{b['handover_id']}: {why.get(key, '')}".strip(": "))
        courier_left(conn, b["handover_id"], time.time())

    def on_handover_request(conn: sqlite3.Connection, env: Any) -> None:
        """The site's senior packer asked for a hand-over of an account's packed parcels there: started
        like the manager's button, for that site only (the answer goes down as `handover`)."""
        account = env.body["account"]
        if account not in cfg.accounts:
            raise Reject(f"unknown account {account!r}")
        started = start_handover(conn, cfg, account, link=link, site=env.site)
        by = env.body.get("requested_by") or env.site
        for h in started:
            for key in h["orders"]:
                row = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
                log_event(conn, row[0] if row else None, "handover_started", f"{h['handover_id']}: asked by {by}")
        if not started:
            log_event(conn, None, "handover_empty", f"{account}: nothing packed at {env.site} to hand over ({by})")

    def on_item_bin(conn: sqlite3.Connection, env: Any) -> None:
        """The site keeps an item in a bin (set at a receipt or a count), or its bin gave way to 1C's."""
        b = env.body
        nomenclature.site_bin_came(conn, env.site, b["item_id"], b["bin"].strip(), at=site_ts(env),
                                   warehouse=b.get("warehouse", ""), by=b.get("set_by", ""), ref=b.get("ref", ""))

    link.on("handover_request", on_handover_request)
    link.on("item_bin", on_item_bin)
    link.on("task_progress", on_task_progress)
    link.on("handover_closed", on_handover_closed)
    # a delta that only adds units needs its site's source row alone (the level is raised at COMMIT, see
    # cloud_sync.stock.ledger); anything else (a pick, waiting orders to serve) gives way to an ordinary round
    link.on("stock_delta", on_stock_delta)
    if hasattr(link, "keys_for"):  # a SiteLink (tests hand in a plain registry)
        link.keys_for("stock_delta", lambda env: (stock.source_key(env.body["warehouse"], f"site:{env.site}"),))
    link.on("stock_count", on_stock_count)
    link.on("printed", on_printed)
    link.on("scan", on_scan)
    link.on("device_status", on_device_status)


def site_ts(env: Any) -> float:
    """The moment the site says it sent the message (when its event happened), else now."""
    try:
        return datetime.fromisoformat(str(env.ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _event_key(env: Any) -> str:
    """One site message, one event: the same envelope delivered again is the same event."""
    return f"site:{env.site}:{env.id}:{env.body.get('order_id', '')}:{env.body.get('state', '')}"


def _note(conn: sqlite3.Connection, body: dict[str, Any]) -> str:
    """A site's note in the seller's words: the items of the lines it reports short by article and name."""
    shorts = [ln for ln in body.get("lines") or [] if isinstance(ln, dict) and int(ln.get("short") or 0) > 0]
    if shorts:
        return "; ".join(f"{waiting.item_words(conn, str(ln.get('item_id')))} — не найдено {int(ln['short'])} шт."
                         for ln in shorts)
    return str(body.get("note", ""))


def _refuse(conn: sqlite3.Connection, site: str, message: str) -> None:
    """Refuse a site's message: said in the log and dead-lettered by the link with the reason (kept there
    whole; the message's transaction rolls back, so nothing of it is applied)."""
    log.warning("%s", message)
    raise Reject(message)


def _after(conn: sqlite3.Connection, wake: Waker | None) -> None:
    """Wake the stock pusher (it also looks for changes on its own every few tens of milliseconds, so a
    wake-up that comes before this transaction commits loses nothing)."""
    if wake is not None:
        wake()


def send_site_catalogs(conn: sqlite3.Connection, cfg: CloudConfig, *, link: Any = None, chunk: int = 500) -> int:
    """Send each site the items changed since it last heard (names, barcodes, bins, marking) as `catalog`
    messages, so it knows every barcode it may scan (receipts, counts), not only those of its tasks.
    Returns the items sent."""
    sent = 0
    with transaction(conn):
        for site in cfg.sites.values():
            row = conn.execute("SELECT catalog_sent_at FROM sites WHERE id=?", (site.id,)).fetchone()
            since = row[0] if row and row[0] else ""
            # items of the current second wait for the next round: one updated later in that same second
            # would otherwise be missed
            items = conn.execute("SELECT id, name, bin, marked, updated_at FROM items WHERE deleted=0 AND updated_at>?"
                                 " AND updated_at<datetime('now') ORDER BY updated_at, id", (since,)).fetchall()
            if not items:
                continue
            for k in range(0, len(items), chunk):
                body = []
                for it in items[k:k + chunk]:
                    codes = [r[0] for r in conn.execute("SELECT barcode FROM item_barcodes WHERE item_id=?", (it[0],))]
                    entry: dict[str, Any] = {"item_id": it[0], "name": it[1], "barcodes": codes,
                                             "marking_required": bool(it[3])}
                    if codes:
                        entry["barcode"] = codes[0]
                    if it[2]:
                        entry["bin"] = it[2]
                    body.append(entry)
                send_to_site(conn, link, site.id, "catalog", {"items": body})
            conn.execute("INSERT INTO sites(id, catalog_sent_at) VALUES (?,?) ON CONFLICT(id) DO UPDATE SET"
                         " catalog_sent_at=excluded.catalog_sent_at", (site.id, items[-1][4]))
            sent += len(items)
    return sent
