"""Orders in one flow: every order of every account, one unified status, from arrival to hand-over.

Owns the tables `orders` (one row per marketplace order: native and unified status, our own stage,
deadline, marketplace and own warehouse, the site serving it), `order_lines` (each line mapped to a 1C
item and a unit count: card quantity × pack size), `order_actions` (the marketplace calls still to make
for an order — confirm, label, assemble, ship, cancel — retried with backoff), `order_events` (what
happened, for the manager and the summary), `event_dedup` (pushed events already seen), `supplies`
(Wildberries supplies the orders are put into) and `sites` (what each site last said about itself).

Ingestion (`ingest`, from polling or from the marketplaces' pushes via `ingest_event`) runs in ONE
transaction per batch: a new order is checked against stock and reserved (all lines or none), its
pick task enqueued for the site serving the warehouse, and its confirmation queued — so a
reservation and its pick task commit together. An order that cannot be covered is never confirmed.
Cancellations release the reservation and tell the site. `run_actions` makes the marketplace calls
outside any transaction and records their outcome; `register_site_handlers` wires the site-link
messages (task_progress, stock_delta, stock_count, printed, scan, device_status) to the ledger.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud_sync import catalog, stock
from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from marketplaces.base import Marketplace, MarketplaceError, Order, OrderEvent

log = logging.getLogger("cloud_sync.orders")

MIGRATIONS = [
    """
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,        -- "account:native_id": the order id the site sees
        account TEXT NOT NULL,
        marketplace TEXT NOT NULL,
        native_id TEXT NOT NULL,
        number TEXT NOT NULL DEFAULT '',
        native_status TEXT NOT NULL DEFAULT '',
        native_substatus TEXT NOT NULL DEFAULT '',
        stage TEXT NOT NULL,             -- ours: new|problem|short|reserved|picking|packed|handed_over|cancelled
        status TEXT NOT NULL,            -- unified: new|in_work|reserved|picking|packed|handed_over|delivered|cancelled|returned
        problem TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        ship_by TEXT,                    -- ISO UTC; NULL: no deadline given
        mp_warehouse TEXT NOT NULL DEFAULT '',
        warehouse TEXT NOT NULL DEFAULT '',
        site TEXT,
        supply_id TEXT,
        confirmed INTEGER NOT NULL DEFAULT 0,
        label_sent INTEGER NOT NULL DEFAULT 0,
        labels_printed INTEGER NOT NULL DEFAULT 0,
        packed_ts REAL,
        ingested_ts REAL NOT NULL,
        updated_ts REAL NOT NULL,
        native TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX orders_list ON orders(ship_by, status);
    CREATE INDEX orders_stage ON orders(stage);
    CREATE TABLE order_lines (
        order_id INTEGER NOT NULL REFERENCES orders(id),
        line_no INTEGER NOT NULL,
        card_id TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        item_id TEXT,
        quantity INTEGER NOT NULL,       -- cards ordered
        units INTEGER NOT NULL,          -- item units (quantity × pack size)
        price TEXT NOT NULL,
        barcode TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (order_id, line_no)
    ) WITHOUT ROWID;
    CREATE TABLE order_actions (
        order_id INTEGER NOT NULL REFERENCES orders(id),
        action TEXT NOT NULL,            -- confirm | label | assemble | ship | cancel
        state TEXT NOT NULL,             -- pending | done | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        updated_ts REAL NOT NULL,
        PRIMARY KEY (order_id, action)
    ) WITHOUT ROWID;
    CREATE INDEX order_actions_due ON order_actions(state, next_try);
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY,
        order_id INTEGER,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,              -- ingested|reserved|short|confirmed|label_sent|printed|picked|packed|...
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX order_events_order ON order_events(order_id);
    CREATE INDEX order_events_kind ON order_events(kind);
    CREATE TABLE event_dedup (
        key TEXT PRIMARY KEY,
        ts REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE supplies (
        account TEXT NOT NULL,
        mp_warehouse TEXT NOT NULL,
        supply_id TEXT NOT NULL,
        state TEXT NOT NULL,             -- open | shipped
        created_ts REAL NOT NULL,
        PRIMARY KEY (account, supply_id)
    );
    CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        last_seen REAL,
        devices TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE cloud_errors (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        area TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE orders ADD COLUMN marking_codes TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE handovers (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        site TEXT NOT NULL,
        supply_id TEXT,
        state TEXT NOT NULL,             -- open | shipped
        created_ts REAL NOT NULL
    );
    CREATE TABLE handover_orders (
        handover_id TEXT NOT NULL REFERENCES handovers(id),
        order_id INTEGER NOT NULL REFERENCES orders(id),
        PRIMARY KEY (handover_id, order_id)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE sites ADD COLUMN catalog_sent_at TEXT;   -- items.updated_at of the last item sent down
    """,
    """
    ALTER TABLE order_lines ADD COLUMN marking_required INTEGER NOT NULL DEFAULT 0;  -- the marketplace says so
    """,
]

STAGES = ("new", "problem", "short", "reserved", "picking", "packed", "handed_over", "cancelled")
RANK = {"new": 0, "in_work": 1, "reserved": 2, "picking": 3, "packed": 4, "handed_over": 5, "delivered": 6}
TERMINAL = ("cancelled", "returned")
OPEN_STAGES = ("new", "problem", "short", "reserved", "picking", "packed")

# Called after a batch commits with the items whose stock changed (the stock pusher's wake-up).
Waker = Callable[[], None]


class OrderError(ValueError):
    """An order change was refused; nothing was applied."""


@dataclass
class IngestResult:
    new: int = 0
    known: int = 0
    reserved: int = 0
    short: int = 0
    problems: int = 0
    cancelled: int = 0
    order_ids: list[int] = field(default_factory=list)
    sold_out: set[str] = field(default_factory=set)  # items whose last available units these orders took


def order_key(account: str, native_id: str) -> str:
    return f"{account}:{native_id}"


def unified(cfg: CloudConfig, marketplace: str, native_status: str, native_substatus: str, stage: str) -> str:
    """The one status the manager sees: the marketplace's word, moved forward by our own progress;
    cancelled and returned always win."""
    native = cfg.unified_status(marketplace, native_status, native_substatus) or "new"
    if native in TERMINAL or stage == "cancelled":
        return native if native in TERMINAL else "cancelled"
    ours = stage if stage in RANK else "new"
    return native if RANK[native] >= RANK[ours] else ours


def log_event(conn: sqlite3.Connection, order_id: int | None, kind: str, detail: str = "",
              now: float | None = None) -> None:
    conn.execute("INSERT INTO order_events(order_id, ts, kind, detail) VALUES (?,?,?,?)",
                 (order_id, time.time() if now is None else now, kind, detail))


def log_error(conn: sqlite3.Connection, area: str, message: str, account: str = "") -> None:
    conn.execute("INSERT INTO cloud_errors(ts, area, account, message) VALUES (?,?,?,?)",
                 (time.time(), area, account, message[:1000]))


def send_to_site(conn: sqlite3.Connection, link: Any, site: str, msg_type: str, body: dict[str, Any]) -> None:
    """Enqueue a site-link message in the caller's transaction (the link's outbox): with a running link
    it wakes it; without one (a CLI run) the message waits in the outbox for the service."""
    if link is not None:
        link.send(conn, msg_type, body, site=site)
    else:
        from sitelink import store as link_store

        link_store.enqueue(conn, "cloud", site, msg_type, body)


def own_warehouse(conn: sqlite3.Connection, cfg: CloudConfig, account: str, mp_warehouse: str) -> str:
    settings = cfg.accounts.get(account)
    if settings and mp_warehouse in settings.warehouses:
        return settings.warehouses[mp_warehouse]
    mapped = catalog.warehouse_map(conn, account).get(mp_warehouse)
    if mapped:
        return mapped
    return settings.default_warehouse if settings else cfg.default_warehouse


def _queue_action(conn: sqlite3.Connection, order_id: int, action: str, now: float, delay: float = 0.0) -> None:
    conn.execute(
        "INSERT INTO order_actions(order_id, action, state, attempts, next_try, updated_ts) VALUES (?,?,?,0,?,?)"
        " ON CONFLICT(order_id, action) DO UPDATE SET state='pending', next_try=excluded.next_try,"
        " updated_ts=excluded.updated_ts WHERE order_actions.state!='done'",
        (order_id, action, "pending", now + delay, now),
    )


# ---------------------------------------------------------------- ingestion


def ingest(conn: sqlite3.Connection, cfg: CloudConfig, orders: Iterable[Order], *, link: Any = None,
           now: float | None = None) -> IngestResult:
    """Take in orders (new or already known) in one transaction. Known orders only update their status."""
    now = time.time() if now is None else now
    result = IngestResult()
    dirty: set[str] = set()
    with transaction(conn):
        for order in orders:
            _ingest_one(conn, cfg, order, link, now, result, dirty)
        stock.mark_dirty(conn, dirty, "order", now)  # the planner recomputes these items' cards
        if result.sold_out:
            # oversell protection: the last units are gone; every other card's zero is queued in this very
            # transaction, so it exists as soon as the reservation does
            from cloud_sync import stock_push

            stock_push.plan(conn, cfg, items=sorted(result.sold_out), now=now, cause="order")
    return result


def _ingest_one(conn: sqlite3.Connection, cfg: CloudConfig, order: Order, link: Any, now: float,
                result: IngestResult, dirty: set[str]) -> None:
    key = order_key(order.account, order.native_id)
    row = conn.execute("SELECT id, stage, native_status, native_substatus FROM orders WHERE key=?", (key,)).fetchone()
    if row is not None:
        result.known += 1
        if (row["native_status"], row["native_substatus"]) != (order.native_status, order.native_substatus):
            update_native_status(conn, cfg, row["id"], order.native_status, order.native_substatus, link=link,
                                 now=now)
        return
    mp_wh = str(order.warehouse_id or "")
    warehouse = own_warehouse(conn, cfg, order.account, mp_wh)
    site = cfg.site_of_warehouse(warehouse)
    native_unified = cfg.unified_status(order.marketplace, order.native_status, order.native_substatus) or "new"
    lines, unlinked = [], []
    for no, ln in enumerate(order.lines, 1):
        item_id, pack = _line_item(conn, order.account, ln.card_id, ln.offer_id, ln.barcode)
        if item_id is None:
            unlinked.append(ln.offer_id or ln.card_id)
        lines.append([0, no, ln.card_id, ln.offer_id, item_id, ln.quantity, ln.quantity * pack, str(ln.price),
                      ln.barcode, ln.title, int(bool(ln.marking_required))])
    # decide first (the reservation is keyed by the order key), then write the order once
    problem, event = "", ""
    if native_unified in TERMINAL:
        stage = "cancelled"
        result.cancelled += 1
    elif unlinked:
        stage, problem, event = "problem", f"card not linked to an item: {', '.join(unlinked)}", "problem"
        result.problems += 1
    elif native_unified not in ("new", "in_work"):
        # Already beyond assembly when first seen (e.g. picked up after a long outage): record, don't reserve.
        stage = "handed_over" if RANK[native_unified] >= RANK["handed_over"] else "packed"
    else:
        several = len(lines) > 1
        if several:  # every line or none
            conn.execute("SAVEPOINT reserve_order")
        try:
            for line in lines:
                move = stock.reserve(conn, key, line[4], warehouse, line[6], now=now, dirty=dirty)
                if move.on_hand_after - move.reserved_after <= 0:
                    result.sold_out.add(line[4])
        except stock.InsufficientStock as exc:
            if several:
                conn.execute("ROLLBACK TO reserve_order")
            stage, problem, event = "short", str(exc), "short"
            result.short += 1
        else:
            stage, event = "reserved", "reserved"
            result.reserved += 1
            if site is None:
                problem = f"no site serves warehouse {warehouse!r}"
        if several:
            conn.execute("RELEASE reserve_order")
    status = unified(cfg, order.marketplace, order.native_status, order.native_substatus, stage)
    cur = conn.execute(
        "INSERT INTO orders(key, account, marketplace, native_id, number, native_status, native_substatus, stage,"
        " status, problem, created_at, ship_by, mp_warehouse, warehouse, site, ingested_ts, updated_ts, native)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, order.account, order.marketplace, order.native_id, order.number or order.native_id,
         order.native_status, order.native_substatus, stage, status, problem, order.created_at.isoformat(),
         order.ship_by.isoformat() if order.ship_by else None, mp_wh, warehouse, site, now, now,
         json.dumps(order.native, default=str, ensure_ascii=False) if order.native else "{}"),
    )
    oid = int(cur.lastrowid or 0)
    result.new += 1
    result.order_ids.append(oid)
    for line in lines:
        line[0] = oid
    conn.executemany("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, item_id, quantity, units, price,"
                     " barcode, title, marking_required) VALUES (?,?,?,?,?,?,?,?,?,?,?)", lines)
    if event:
        log_event(conn, oid, event, "unlinked card" if event == "problem" else problem if event == "short" else "",
                  now)
    if stage == "short" and cfg.cancel_when_short:
        _queue_action(conn, oid, "cancel", now)
    if stage != "reserved":
        return
    _queue_action(conn, oid, "confirm", now)
    if site is None:
        return
    body: dict[str, Any] = {
        "task_id": f"pick-{key}", "order_id": key, "marketplace": order.marketplace,
        "lines": [_task_line(conn, item_id, units, barcode, title, bool(marking))
                  for _, _, _, _, item_id, _, units, _, barcode, title, marking in lines],
        "account": order.account, "native_id": order.native_id, "number": order.number or order.native_id,
        "warehouse": warehouse,
    }
    if order.ship_by:
        body["deadline"] = order.ship_by.isoformat()
    send_to_site(conn, link, site, "pick_task", body)


def _line_item(conn: sqlite3.Connection, account: str, card_id: str, offer_id: str,
               barcode: str = "") -> tuple[str | None, int]:
    """The item and pack size an order line's card stands for: by its linked card (card id, else offer id);
    for a card not imported yet, by the same rules as auto-linking (a barcode of exactly one item, else the
    article of exactly one item)."""
    row = None
    if card_id:
        row = conn.execute("SELECT item_id, pack_size FROM card_links WHERE account=? AND card_id=?"
                           " AND item_id IS NOT NULL", (account, card_id)).fetchone()
    if row is None and offer_id:
        row = conn.execute("SELECT l.item_id, l.pack_size FROM cards c JOIN card_links l ON l.account=c.account"
                           " AND l.card_id=c.native_id WHERE c.account=? AND c.offer_id=? AND l.item_id IS NOT NULL"
                           " ORDER BY c.native_id LIMIT 1", (account, offer_id)).fetchone()
    if row is None and not (card_id and conn.execute("SELECT 1 FROM card_links WHERE account=? AND card_id=?",
                                                     (account, card_id)).fetchone()):
        for sql, key in (("SELECT b.item_id FROM item_barcodes b JOIN items i ON i.id=b.item_id WHERE b.barcode=?"
                          " AND i.deleted=0", barcode),
                         ("SELECT id FROM items WHERE article=? AND deleted=0", offer_id)):
            found = [r[0] for r in conn.execute(sql, (key,))] if key else []
            if len(found) == 1:
                return found[0], 1
            if found:
                break
    return (row[0], row[1]) if row else (None, 1)


def _task_line(conn: sqlite3.Connection, item_id: str, units: int, barcode: str, title: str,
               marking: bool = False) -> dict[str, Any]:
    it = conn.execute("SELECT name, bin, marked, (SELECT group_concat(barcode, char(31)) FROM item_barcodes"
                      " WHERE item_id=items.id) FROM items WHERE id=?", (item_id,)).fetchone()
    codes = it[3].split("\x1f") if it and it[3] else []
    line: dict[str, Any] = {"item_id": item_id, "quantity": units, "name": (it[0] if it else "") or title,
                            "barcodes": codes, "marking_required": marking or bool(it and it[2])}
    if codes or barcode:
        line["barcode"] = codes[0] if codes else barcode
    if it and it[1]:
        line["bin"] = it[1]
    return line


def pick_task_body(conn: sqlite3.Connection, oid: int) -> dict[str, Any]:
    """The pick task of a stored order (to send it again)."""
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    lines = [_task_line(conn, ln["item_id"], ln["units"], ln["barcode"], ln["title"], bool(ln["marking_required"]))
             for ln in conn.execute("SELECT item_id, units, barcode, title, marking_required FROM order_lines"
                                    " WHERE order_id=? ORDER BY line_no", (oid,))]
    body: dict[str, Any] = {"task_id": f"pick-{o['key']}", "order_id": o["key"], "marketplace": o["marketplace"],
                            "lines": lines, "account": o["account"], "native_id": o["native_id"],
                            "number": o["number"], "warehouse": o["warehouse"]}
    if o["ship_by"]:
        body["deadline"] = o["ship_by"]
    return body


def _set_stage(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, stage: str, now: float,
               problem: str | None = None, known: tuple[str, str, str] | None = None) -> None:
    o = known or conn.execute("SELECT marketplace, native_status, native_substatus FROM orders WHERE id=?",
                              (oid,)).fetchone()
    status = unified(cfg, o[0], o[1], o[2], stage)
    if problem is None:
        conn.execute("UPDATE orders SET stage=?, status=?, updated_ts=? WHERE id=?", (stage, status, now, oid))
    else:
        conn.execute("UPDATE orders SET stage=?, status=?, problem=?, updated_ts=? WHERE id=?",
                     (stage, status, problem, now, oid))


def update_native_status(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, native_status: str,
                         native_substatus: str = "", *, link: Any = None, now: float | None = None) -> str:
    """The marketplace says the order moved; a cancellation releases its stock and stops the site."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    conn.execute("UPDATE orders SET native_status=?, native_substatus=? WHERE id=?",
                 (native_status, native_substatus, oid))
    native = cfg.unified_status(o["marketplace"], native_status, native_substatus) or "new"
    stage = o["stage"]
    if native in TERMINAL and stage != "cancelled":
        cancel(conn, cfg, oid, reason=f"{o['marketplace']}: {native_status}", link=link, now=now,
               tell_marketplace=False)
        return "cancelled"
    _set_stage(conn, cfg, oid, stage, now)
    return conn.execute("SELECT status FROM orders WHERE id=?", (oid,)).fetchone()[0]


def cancel(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, *, reason: str = "", link: Any = None,
           now: float | None = None, tell_marketplace: bool = True) -> int:
    """Cancel an order: release its reservation, tell the site to stop, optionally cancel on the
    marketplace. Returns the units released."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    if o is None:
        raise OrderError(f"unknown order {oid}")
    if o["stage"] == "cancelled":
        return 0
    released = stock.release(conn, o["key"], note=reason, now=now)
    _set_stage(conn, cfg, oid, "cancelled", now, problem=reason)
    conn.execute("UPDATE order_actions SET state='done', error='order cancelled' WHERE order_id=? AND state='pending'"
                 " AND action!='cancel'", (oid,))
    if o["site"] and o["stage"] in ("reserved", "picking", "packed"):
        send_to_site(conn, link, o["site"], "cancel_task",
                     {"task_id": f"pick-{o['key']}", "order_id": o["key"], "reason": reason or "cancelled"})
    if tell_marketplace:
        _queue_action(conn, oid, "cancel", now)
    log_event(conn, oid, "cancelled", reason, now)
    return released


def ingest_event(conn: sqlite3.Connection, cfg: CloudConfig, account: str, event: OrderEvent, *,
                 adapter: Marketplace | None = None, link: Any = None, now: float | None = None) -> str:
    """A pushed marketplace event (webhooks). Deduplicated by its key, and by order key with polling."""
    now = time.time() if now is None else now
    if event.kind == "ping":
        return "ping"
    dedup = f"{account}:{event.dedup_key}" if event.dedup_key else ""
    if dedup and conn.execute("SELECT 1 FROM event_dedup WHERE key=?", (dedup,)).fetchone():
        return "duplicate"
    order = event.order
    if order is None and event.order_native_id and adapter is not None and event.kind == "created":
        order = adapter.get_order(event.order_native_id)  # before the write lock: no HTTP inside it
    with transaction(conn):  # the dedup mark and what the event does commit together (or neither)
        if dedup:
            if conn.execute("SELECT 1 FROM event_dedup WHERE key=?", (dedup,)).fetchone():
                return "duplicate"
            conn.execute("INSERT INTO event_dedup(key, ts) VALUES (?,?)", (dedup, now))
        if order is not None:
            order.account = order.account or account
            res = ingest(conn, cfg, [order], link=link, now=now)
            return "new" if res.new else "known"
        if not event.order_native_id:
            return "ignored"
        row = conn.execute("SELECT id FROM orders WHERE key=?", (order_key(account, event.order_native_id),)).fetchone()
        if row is None:
            return "unknown order"
        if event.kind == "cancelled":
            cancel(conn, cfg, row[0], reason="cancelled by the marketplace", link=link, now=now,
                   tell_marketplace=False)
            return "cancelled"
        if event.native_status:
            update_native_status(conn, cfg, row[0], event.native_status, link=link, now=now)
            return "status"
    return "ignored"


# ---------------------------------------------------------------- polling and marketplace actions


def poll(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None) -> IngestResult:
    """Fetch the account's new orders and ingest them."""
    found = adapter.new_orders()
    for o in found:
        o.account = o.account or adapter.account
    return ingest(conn, cfg, found, link=link)


def refresh_statuses(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None,
                     limit: int = 50) -> int:
    """Re-read open orders of the account (least recently updated first, `limit` per run so the
    marketplace's request budget stays for new orders and stock): catches cancellations."""
    rows = conn.execute(
        "SELECT id, native_id, native_status, native_substatus FROM orders WHERE account=? AND stage IN"
        f" ({','.join('?' * len(OPEN_STAGES))}) ORDER BY updated_ts LIMIT ?",
        (adapter.account, *OPEN_STAGES, limit)).fetchall()
    changed = 0
    for r in rows:
        try:
            o = adapter.get_order(r["native_id"])
        except MarketplaceError as exc:
            log.warning("status of %s: %s", r["native_id"], exc)
            continue
        with transaction(conn):
            if (o.native_status, o.native_substatus) != (r["native_status"], r["native_substatus"]):
                update_native_status(conn, cfg, r["id"], o.native_status, o.native_substatus, link=link)
                changed += 1
            else:
                conn.execute("UPDATE orders SET updated_ts=? WHERE id=?", (time.time(), r["id"]))
    return changed


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
        o = conn.execute("SELECT stage FROM orders WHERE id=?", (oid,)).fetchone()
        _set_stage(conn, cfg, oid, o[0], now)
        log_event(conn, oid, DONE_EVENT.get(action, f"{action}_done"), "", now)
        if action == label_after and action in ("confirm", "assemble"):
            _queue_action(conn, oid, "label", now)
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


# ---------------------------------------------------------------- site messages


def register_site_handlers(link: Any, cfg: CloudConfig, wake: Waker | None = None) -> None:
    """Wire the site's up messages to the ledger and the orders (each runs in the link's inbox transaction)."""
    from sitelink import Reject

    def on_task_progress(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        row = conn.execute("SELECT id, stage, account FROM orders WHERE key=?", (b["order_id"],)).fetchone()
        if row is None:
            raise Reject(f"unknown order {b['order_id']!r}")
        oid, stage, now = row[0], row[1], time.time()
        state = b["state"]
        log_event(conn, oid, state, b.get("note", ""), now)
        if stage == "cancelled":
            return
        if state == "picked" and stage == "reserved":
            _set_stage(conn, cfg, oid, "picking", now)
        elif state == "packed" and stage in ("reserved", "picking"):
            conn.execute("UPDATE orders SET packed_ts=?, marking_codes=? WHERE id=?",
                         (now, json.dumps(b.get("marking_codes") or []), oid))
            _set_stage(conn, cfg, oid, "packed", now, problem="")
            _queue_action(conn, oid, "assemble", now)
        elif state == "handed_over" and stage in ("reserved", "picking", "packed"):
            _set_stage(conn, cfg, oid, "handed_over", now)
            if b.get("handover_id"):
                conn.execute("INSERT OR IGNORE INTO handover_orders(handover_id, order_id) SELECT id, ? FROM"
                             " handovers WHERE id=?", (oid, b["handover_id"]))
            if _all_handed_over(conn, oid):
                _queue_action(conn, oid, "ship", now)
        elif state in ("short", "failed"):
            conn.execute("UPDATE orders SET problem=? WHERE id=?", (f"site: {state} {b.get('note', '')}".strip(), oid))

    def on_stock_delta(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        try:
            stock.site_delta(conn, env.site, b["warehouse"], b["item_id"], b["delta"], b["reason"],
                             ref=b.get("ref", ""), note=b.get("note", ""))
        except stock.StockError as exc:
            log_error(conn, "stock", f"site {env.site}: {exc}")
            raise Reject(str(exc)) from exc
        _after(conn, wake)

    def on_stock_count(conn: sqlite3.Connection, env: Any) -> None:
        b = env.body
        try:
            stock.site_count(conn, env.site, b["warehouse"], b["item_id"], b["counted"], ref=b.get("ref", ""))
        except stock.StockError as exc:
            raise Reject(str(exc)) from exc
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

    link.on("task_progress", on_task_progress)
    link.on("stock_delta", on_stock_delta)
    link.on("stock_count", on_stock_count)
    link.on("printed", on_printed)
    link.on("scan", on_scan)
    link.on("device_status", on_device_status)


def _all_handed_over(conn: sqlite3.Connection, oid: int) -> bool:
    """Shipping moves every parcel of a WB supply (or of a hand-over) at once: only when the last one of
    them has been handed over."""
    o = conn.execute("SELECT account, supply_id FROM orders WHERE id=?", (oid,)).fetchone()
    groups = [r[0] for r in conn.execute("SELECT handover_id FROM handover_orders WHERE order_id=?", (oid,))]
    for h in groups:
        if conn.execute("SELECT 1 FROM handover_orders x JOIN orders o ON o.id=x.order_id WHERE x.handover_id=?"
                        " AND o.stage NOT IN ('handed_over', 'cancelled')", (h,)).fetchone():
            return False
    waiting = o["supply_id"] and conn.execute(
        "SELECT 1 FROM orders WHERE account=? AND supply_id=? AND stage NOT IN ('handed_over', 'cancelled')",
        (o["account"], o["supply_id"])).fetchone()
    return not waiting


def start_handover(conn: sqlite3.Connection, cfg: CloudConfig, account: str, *, link: Any = None,
                   now: float | None = None) -> list[dict[str, Any]]:
    """Hand the account's packed parcels to the marketplace's courier: one hand-over per site (and per WB
    supply), sent to the site as a `handover` message listing the orders to scan."""
    import uuid

    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT id, key, site, supply_id, marketplace FROM orders WHERE account=? AND stage='packed' AND site IS"
        " NOT NULL AND id NOT IN (SELECT order_id FROM handover_orders x JOIN handovers h ON h.id=x.handover_id"
        " WHERE h.state='open') ORDER BY id", (account,)).fetchall()
    groups: dict[tuple[str, str], list[sqlite3.Row]] = {}
    for r in rows:
        groups.setdefault((r["site"], r["supply_id"] or ""), []).append(r)
    out = []
    with transaction(conn):
        for (site, supply), members in groups.items():
            hid = f"ho-{account}-{uuid.uuid4().hex[:8]}"
            conn.execute("INSERT INTO handovers(id, account, site, supply_id, state, created_ts) VALUES (?,?,?,?,?,?)",
                         (hid, account, site, supply or None, "open", now))
            conn.executemany("INSERT INTO handover_orders(handover_id, order_id) VALUES (?,?)",
                             [(hid, m["id"]) for m in members])
            body: dict[str, Any] = {"handover_id": hid, "marketplace": members[0]["marketplace"],
                                    "order_ids": [m["key"] for m in members], "account": account}
            if supply:
                body["supply_id"] = supply
            send_to_site(conn, link, site, "handover", body)
            out.append({"handover_id": hid, "site": site, "supply_id": supply or None,
                        "orders": [m["key"] for m in members]})
    return out


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


# ---------------------------------------------------------------- reading


PAST_THE_SELLER = ("handed_over", "delivered", "cancelled", "returned")  # no assembly deadline to miss any more


def list_orders(conn: sqlite3.Connection, *, account: str | None = None, status: str | None = None,
                late: bool = False, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Orders of all accounts sorted by deadline (none last), then by status; `late`: only those past
    their assembly deadline and still on the seller's side."""
    sql, args = "SELECT * FROM orders WHERE 1=1", []
    if account:
        sql += " AND account=?"
        args.append(account)
    if status:
        sql += " AND status=?"
        args.append(status)
    if late:  # julianday reads the stored offsets, whatever zone a marketplace gave
        sql += (" AND ship_by IS NOT NULL AND julianday(ship_by) < julianday('now') AND status NOT IN"
                f" ({','.join('?' * len(PAST_THE_SELLER))})")
        args.extend(PAST_THE_SELLER)
    order_by = (" ORDER BY ship_by IS NULL, ship_by, CASE status WHEN 'new' THEN 0 WHEN 'in_work' THEN 1"
                " WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3 WHEN 'packed' THEN 4 WHEN 'handed_over' THEN 5"
                " WHEN 'delivered' THEN 6 ELSE 7 END, id LIMIT ? OFFSET ?")
    out = []
    for r in conn.execute(sql + order_by, [*args, limit, offset]).fetchall():
        d = dict(r)
        d.pop("native", None)
        d["lines"] = [dict(x) for x in conn.execute(
            "SELECT line_no, card_id, offer_id, item_id, quantity, units, price, title FROM order_lines"
            " WHERE order_id=? ORDER BY line_no", (r["id"],))]
        out.append(d)
    return out


def get_order(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
    if r is None:
        return None
    d = dict(conn.execute("SELECT * FROM orders WHERE id=?", (r[0],)).fetchone())
    d["lines"] = [dict(x) for x in conn.execute("SELECT * FROM order_lines WHERE order_id=? ORDER BY line_no", (r[0],))]
    d["actions"] = [dict(x) for x in conn.execute("SELECT * FROM order_actions WHERE order_id=?", (r[0],))]
    d["events"] = [dict(x) for x in conn.execute("SELECT ts, kind, detail FROM order_events WHERE order_id=?"
                                                 " ORDER BY id", (r[0],))]
    return d


QUIET_EVENTS = {"task_sent"}  # said by "reserved" already
DONE_EVENT = {"confirm": "confirmed", "assemble": "assembled", "ship": "shipped", "cancel": "cancelled"}
EVENT_TEXT = {
    "reserved": "order {number} ({account}) reserved at warehouse {warehouse}; pick task sent to {site}",
    "short": "order {number} ({account}) cannot be covered from stock: {detail}",
    "problem": "order {number} ({account}) needs attention: {detail}",
    "confirmed": "order {number} confirmed on {marketplace}",
    "label_sent": "{marketplace} label of order {number} sent down to {site} ({detail})",
    "picked": "order {number} picked at {site}",
    "packed": "order {number} packed at {site}",
    "printed": "label of order {number} printed at {site} ({detail})",
    "assembled": "order {number} marked assembled on {marketplace}",
    "shipped": "order {number} handed over to {marketplace}",
    "handed_over": "order {number} handed over at {site}",
    "cancelled": "order {number} ({account}) cancelled: {detail}",
    "stock_pushed": "stock pushed: {detail}",
}


def events_after(conn: sqlite3.Connection, after: int, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT e.id, e.ts, e.kind, e.detail, o.account, o.marketplace, o.number, o.warehouse, o.site, o.key"
        " FROM order_events e LEFT JOIN orders o ON o.id=e.order_id WHERE e.id>? ORDER BY e.id LIMIT ?",
        (after, limit)).fetchall()
    out = []
    for r in rows:
        if r["kind"] in QUIET_EVENTS:
            continue
        template = EVENT_TEXT.get(r["kind"], "order {number}: " + r["kind"].replace("_", " ") + " {detail}")
        fields = {k: (r[k] if r[k] is not None else "") for k in ("account", "marketplace", "number", "warehouse",
                                                                  "site", "detail")}
        out.append({"id": r["id"], "ts": r["ts"], "kind": r["kind"], "order": r["key"],
                    "text": template.format(**fields).strip()})
    return out


def deadlines_near(conn: sqlite3.Connection, within_s: float, now: float | None = None) -> list[dict[str, Any]]:
    """Open orders whose ship-by deadline falls within `within_s` seconds (or has passed)."""
    from datetime import UTC, datetime

    now = time.time() if now is None else now
    limit = datetime.fromtimestamp(now + within_s, UTC).isoformat()
    return [dict(r) for r in conn.execute(
        "SELECT id, key, account, number, ship_by, status FROM orders WHERE ship_by IS NOT NULL AND ship_by<=?"
        f" AND stage IN ({','.join('?' * len(OPEN_STAGES))}) ORDER BY ship_by", (limit, *OPEN_STAGES))]


def summary(conn: sqlite3.Connection) -> dict[str, int]:
    """The demo's one-line summary."""
    one = lambda sql: int(conn.execute(sql).fetchone()[0] or 0)  # noqa: E731
    pushes = 0
    try:
        pushes = one("SELECT COALESCE(SUM(sent), 0) FROM stock_push_stats")
    except sqlite3.OperationalError:
        pass
    return {
        "orders_seen": one("SELECT COUNT(*) FROM orders"),
        "orders_packed": one("SELECT COUNT(*) FROM orders WHERE packed_ts IS NOT NULL"),
        "labels_printed": one("SELECT COALESCE(SUM(labels_printed), 0) FROM orders"),
        "stock_pushes": pushes,
        "errors": one("SELECT COUNT(*) FROM cloud_errors"),
    }
