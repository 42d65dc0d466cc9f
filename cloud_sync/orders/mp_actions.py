"""The marketplace calls still to make for an order (confirm, label, reduce, assemble, ship, cancel): each
recorded as in flight before it is made (outside any transaction) and its outcome recorded after, so a crash
in between is recovered by reading the order back; failures retried with backoff while the marketplace may
still take them, else shown to the manager with the cause and what to do.

`reduce` tells the marketplace what a parcel packed with fewer units really holds: the site's shortage of
each item (`order_reductions`, recorded by `record_shortage` per task round) is taken out of the order on
the marketplace before it is assembled or shipped, then out of the cloud's order lines. It asks the adapter
to keep a number of cards per line, so a call repeated after a crash removes nothing twice. A marketplace
that cannot reduce an order (profile `can.reduce_order`), or refuses, holds the order on «Требует
внимания»: nothing is assembled or shipped with units the parcel does not hold.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from typing import Any

from cloud_sync import leases
from cloud_sync.config import CloudConfig
from cloud_sync.db import keyed_or_whole, transaction
from cloud_sync.orders.handovers import queue_shipping, ship_model
from cloud_sync.orders.records import (
    DONE_EVENT,
    log_error,
    log_event,
    marketplace_gave_back,
    order_lock,
    queue_action,
    send_to_site,
    set_stage,
)
from cloud_sync.orders.waiting import item_words
from cloud_sync.stock import push as stock_push
from marketplaces import profile
from marketplaces.base import Marketplace, MarketplaceError, StatusChange
from sitelink.sqlite import need
from sitelink.store import link_key

log = logging.getLogger("cloud_sync.orders.mp_actions")


# what the manager reads about an action the marketplace would not take: what failed, and what to do
ACTION_TEXT = {
    "confirm": ("Не удалось подтвердить заказ на маркетплейсе",
                "проверьте заказ в личном кабинете маркетплейса; если он ещё ждёт подтверждения, нажмите «Взять в"
                " работу» ещё раз, иначе отмените заказ"),
    "label": ("Не удалось получить этикетку заказа",
              "запросите этикетку ещё раз («Печать этикеток»); если маркетплейс её не отдаёт, скачайте её в"
              " личном кабинете"),
    "assemble": ("Маркетплейс не принял сборку заказа",
                 "проверьте коды маркировки «Честный знак» и состав заказа, исправьте и передайте заказ снова"),
    "ship": ("Маркетплейс не принял отгрузку",
             "посылка уже у курьера: проверьте в личном кабинете маркетплейса, что поставка/отправление передано"
             " в доставку (коды маркировки, состав), и отгрузите его там"),
    "cancel": ("Не удалось отменить заказ на маркетплейсе", "отмените заказ в личном кабинете маркетплейса"),
    "reduce": ("Маркетплейс не убрал из заказа товары, которых нет в посылке",
               "заказ не собирается и не отгружается, пока его состав на маркетплейсе больше посылки: уберите"
               " недостающие товары в личном кабинете маркетплейса и нажмите «Повторить», или отмените заказ"),
}
NO_REDUCE = "маркетплейс не позволяет убрать часть товаров из заказа через API"
MIGRATIONS = [
    """
    CREATE TABLE order_reductions (
        order_id INTEGER NOT NULL REFERENCES orders(id),
        task_round INTEGER NOT NULL,     -- the pick task the site reported it in (a task sent again starts anew)
        item_id TEXT NOT NULL,
        short_units INTEGER NOT NULL,    -- units of the item the site did not find, as it last said
        removed_units INTEGER NOT NULL DEFAULT 0,  -- of them, taken out of the order (marketplace and lines)
        PRIMARY KEY (order_id, task_round, item_id)
    ) WITHOUT ROWID;
    """,
    # The order list's three indexes (cloud_sync.users#1: orders_page, orders_page_account, orders_page_status)
    # become one: the same deadline order with the account and the status carried at its end, so a filter by
    # either is read from the index (no table row fetched for a row it rejects) while the page is walked in
    # order. Every new order wrote all three at random places (ship_by), the intake's largest index cost
    # (bench/orders_ingest.py: 1.6 CPU-s of 3.9 per 100,000 orders for the orders table's indexes). Here,
    # not in cloud_sync/orders/records.py, because this part's migrations run after cloud_sync.users made them.
    # The expressions must stay the same as list_orders' ORDER BY for SQLite to use the index.
    # order_events_kind held every event (two or more per new order) for the summary's counts of three rare
    # kinds: a partial index of those kinds alone (the OR form: a query's `kind='served'` names its index).
    """
    DROP INDEX IF EXISTS orders_page_account;
    DROP INDEX IF EXISTS orders_page_status;
    DROP INDEX IF EXISTS orders_page;
    CREATE INDEX orders_page_filtered ON orders(ship_by IS NULL, ship_by, CASE status WHEN 'new' THEN 0
        WHEN 'in_work' THEN 1 WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3 WHEN 'packed' THEN 4
        WHEN 'handed_over' THEN 5 WHEN 'delivered' THEN 6 ELSE 7 END, id, account, status);
    DROP INDEX IF EXISTS order_events_kind;
    CREATE INDEX order_events_counted ON order_events(kind, order_id)
        WHERE kind='served' OR kind='reduced' OR kind='delivered';
    """,
    # orders_created(created_at) (cloud_sync.users#4: the list sorted by date) was the first column of orders_day
    # (records: the dashboard's days) over again: one index of both, the id second so the list's ORDER BY
    # created_at, id is the index's own order (as orders_created's implicit rowid gave it) and the dashboard still
    # reads a period from the index alone — one index less for every new order to write (bench/orders_ingest.py).
    """
    DROP INDEX IF EXISTS orders_created;
    DROP INDEX IF EXISTS orders_day;
    CREATE INDEX orders_day ON orders(created_at, id, marketplace, status, ship_by, packed_ts);
    """,
]
REFUSED_TRIES = 5  # a move the marketplace refused is tried again this many times (its state may change)
# an action runs after these are done (a reduce that failed holds them: the order is shown, not shipped wrong)
WAITS_FOR = {"ship": ("confirm", "reduce", "assemble"), "assemble": ("reduce",), "label": ("confirm",),
             "reduce": ("confirm",)}
HOLDS = ("reduce",)
# the unified statuses at which the marketplace shows an action taken (read back after an unknown outcome)
REACHED = {"confirm": ("in_work", "reserved", "picking", "packed", "handed_over", "delivered"),
           "assemble": ("packed", "handed_over", "delivered"), "ship": ("handed_over", "delivered"),
           "cancel": ("cancelled",)}


ACTION_ROW = ("SELECT a.order_id, a.action, a.attempts, a.inflight_ts, o.account, o.native_id, o.key, o.site,"
              " o.mp_warehouse, o.supply_id, o.marketplace FROM order_actions a JOIN orders o ON o.id=a.order_id")


class Refused(MarketplaceError):
    """The marketplace answered and would not move the order (its state is known, not in doubt)."""


def run_actions(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
                link: Any = None, now: float | None = None, limit: int = 200) -> int:
    """Make the due marketplace calls (confirm, label, assemble, ship, cancel). Returns calls made.

    Each call is recorded as in flight (in SQLite) before it is made and cleared with its outcome, so a
    cloud killed in the middle finds it on restart with its outcome unknown: the order is read back from
    the marketplace first, and an action the marketplace shows taken is recorded without a second call."""
    now = time.time() if now is None else now
    due = conn.execute(ACTION_ROW + " WHERE a.state='pending' AND a.next_try<=? ORDER BY a.next_try LIMIT ?",
                       (now, limit)).fetchall()
    done = 0
    for a in due:
        adapter = adapters.get(a["account"])
        if adapter is None:
            continue
        if _waits(conn, a):
            with transaction(conn, keys=()):  # one statement on the action's own row (its row lock decides)
                conn.execute("UPDATE order_actions SET next_try=? WHERE order_id=? AND action=?",
                             (now + cfg.jobs.retry_base_s / max(cfg.time_scale, 1e-9), a["order_id"], a["action"]))
            continue
        key = {"order_id": a["order_id"], "action": a["action"]}
        # the claim and the intent, before the call: they write the action's own row alone, after the claim's
        # row lock decided (a keyed transaction with no key of its own: other writers of the store go on)
        with transaction(conn, keys=()):
            # another cloud process may have taken it meanwhile (cloud_sync.leases): then it is theirs
            if not leases.claim(conn, "order_actions", key, due="state='pending' AND next_try<=?", params=(now,)):
                continue
            a = conn.execute(ACTION_ROW + " WHERE a.order_id=? AND a.action=?", (a["order_id"], a["action"])).fetchone()
            conn.execute("UPDATE order_actions SET inflight_ts=? WHERE order_id=? AND action=?",
                         (time.time(), a["order_id"], a["action"]))
        if a["inflight_ts"]:
            with transaction(conn, keys=(order_lock(a["order_id"]),)):
                log_event(conn, a["order_id"], "in_doubt", f"{a['action']}: the call made before a restart has no"
                          " recorded outcome; reading the order back first")
        try:
            outcome = _recovered(cfg, adapter, a) if a["inflight_ts"] else None
            if outcome is None:
                outcome = _call(conn, cfg, adapter, a)
        except Refused as exc:
            _action_failed(conn, cfg, a, exc, retryable=a["attempts"] + 1 < REFUSED_TRIES, known=True)
            continue
        except MarketplaceError as exc:
            # a label is often just not ready yet (Ozon: 45-60 s after assembly): keep asking for a while
            retry = exc.retryable or (a["action"] == "label" and a["attempts"] < 20)
            _action_failed(conn, cfg, a, exc, retryable=retry, known=not exc.retryable)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken order must not stop the others
            log.exception("order %s %s", a["key"], a["action"])
            _action_failed(conn, cfg, a, exc, retryable=True)
            continue
        keyed_or_whole(conn, outcome_keys(a), lambda a=a, outcome=outcome: _action_done(conn, cfg, a, outcome, link,
                                                                                       time.time()))
        done += 1
    return done


# the outcomes that write beyond their own order: a batch's other orders (ship), the account's published stock
# (cancel, reduce)
WHOLE_STORE_OUTCOMES = ("ship", "cancel", "reduce")


def outcome_keys(a: sqlite3.Row) -> tuple[str, ...] | None:
    """The keys of an action's outcome (`keyed_or_whole`): its order's own rows (`order_lock`), and the site's
    link for a label (it goes to the site's outbox); None for an outcome that writes beyond its order (an
    ordinary transaction). A write its keys do not cover (a confirm of an order handed over meanwhile, whose
    batch may leave now) gives way to an ordinary transaction (`need`)."""
    if a["action"] in WHOLE_STORE_OUTCOMES:
        return None
    keys = [order_lock(a["order_id"])]
    if a["action"] == "label" and a["site"]:
        keys.append(link_key(a["site"]))
    return tuple(keys)


def _waits(conn: sqlite3.Connection, a: sqlite3.Row) -> bool:
    """A ship waits for the order's confirm and assembly to be taken (a marketplace ships nothing before)."""
    before = WAITS_FOR.get(a["action"], ())
    if not before:
        return False
    return conn.execute(f"SELECT 1 FROM order_actions WHERE order_id=? AND action IN ({','.join('?' * len(before))})"
                        f" AND (state='pending' OR (state='failed' AND action IN ({','.join('?' * len(HOLDS))})))",
                        (a["order_id"], *before, *HOLDS)).fetchone() is not None


def _recovered(cfg: CloudConfig, adapter: Marketplace, a: sqlite3.Row) -> dict[str, Any] | None:
    """The outcome of an action left in flight (the cloud died during its call), read back from the
    marketplace: the action as already taken when the order shows it, else None (call again — the
    adapter reads the status once more before sending). A batch's ship and a batch confirm are always
    asked again: only the adapter's own read-back tells which batch and which orders."""
    action = a["action"]
    if action not in REACHED or (ship_model(a["marketplace"]) == "per_batch" and action in ("confirm", "ship")):
        return None
    order = adapter.get_order(a["native_id"])
    status = cfg.unified_status(a["marketplace"], order.native_status, order.native_substatus) or "new"
    log.info("order %s %s: outcome unknown after a restart; the marketplace shows %s (%s)", a["key"], action,
             order.native_status, status)
    if status not in REACHED[action]:
        return None
    change = StatusChange(a["native_id"], action, True, order.native_status, already=True,  # type: ignore[arg-type]
                          native={"recovered": True})
    return {"change": change}


def _call(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, a: sqlite3.Row) -> dict[str, Any]:
    action, native_id = a["action"], a["native_id"]
    settings = cfg.accounts.get(a["account"])
    if action == "label":
        label = adapter.get_label(native_id, fmt=(settings.label_format or None) if settings else None)
        return {"label": label}
    details: dict[str, Any] = {}
    per_batch = ship_model(a["marketplace"]) == "per_batch"
    if action == "confirm" and per_batch:  # into the batch still open; none open: the marketplace opens one
        batch = _open_supply(conn, a["account"], a["mp_warehouse"])
        if batch:
            details["batch_id"] = batch
        else:
            details["new_batch"] = True
    if action == "ship" and per_batch:  # the order's own batch; only parcels handed over may leave with it
        if a["supply_id"]:
            details["batch_id"] = a["supply_id"]
        following = _open_supply(conn, a["account"], a["mp_warehouse"])
        if following and following != a["supply_id"]:
            details["next_batch"] = following  # where the parcels not handed over go
        details["handed_over"] = [r[0] for r in conn.execute(
            "SELECT native_id FROM orders o WHERE account=? AND stage='handed_over' AND NOT EXISTS (SELECT 1"
            " FROM order_actions s WHERE s.order_id=o.id AND s.action='ship' AND s.state='done')", (a["account"],))]
    if action == "assemble":
        codes = _marking_by_offer(conn, a["order_id"])
        if codes:
            details["marking_codes"] = codes
    plan: list[dict[str, Any]] = []
    if action == "reduce":
        plan = reduction_plan(conn, a["order_id"])
        if not plan:  # nothing left to take out (already done with an earlier call)
            return {"change": StatusChange(native_id, "reduce", True, already=True), "plan": plan}
        details["lines"] = _keep_per_card(conn, a["order_id"], plan)
        details["reason"] = "out_of_stock"
    change = adapter.set_order_status(native_id, action, **details)
    if not change.ok and not change.already:
        raise Refused(change.error or f"{action} refused", account=a["account"], endpoint=action)
    out: dict[str, Any] = {"change": change}
    if action == "reduce":
        out["plan"] = plan
    if change.batch_id:  # the batch (WB supply) the order is in
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
    need(conn, order_lock(oid))
    conn.execute("UPDATE order_actions SET state='done', attempts=attempts+1, error='', inflight_ts=NULL,"
                 " updated_ts=? WHERE order_id=? AND action=?", (now, oid, action))
    leases.unclaim(conn, "order_actions", {"order_id": oid, "action": action})
    settings = cfg.accounts.get(a["account"])
    label_after = settings.label_after if settings else "confirm"
    change = outcome.get("change")
    if change is not None:
        if change.native.get("recovered"):
            log_event(conn, oid, "recovered", f"{action}: read back after a restart ({change.native_status})", now)
        supply = outcome.get("supply_id")
        if supply and action != "ship":
            _record_supply(conn, a["account"], a["mp_warehouse"], oid, str(supply), now)
        if action == "ship":
            _shipped(conn, a, change, str(supply or a["supply_id"] or ""), now)
        if change.native_status:
            conn.execute("UPDATE orders SET native_status=? WHERE id=?", (change.native_status, oid))
        if action == "confirm":
            conn.execute("UPDATE orders SET confirmed=1 WHERE id=?", (oid,))
        if action == "cancel":  # the marketplace put the units back on its cards by itself
            marketplace_gave_back(conn, cfg, oid, now)
        o = conn.execute("SELECT stage FROM orders WHERE id=?", (oid,)).fetchone()
        set_stage(conn, cfg, oid, o[0], now)
        if action == "reduce":
            _reduced(conn, cfg, oid, outcome.get("plan") or [], now)
        else:
            log_event(conn, oid, DONE_EVENT.get(action, f"{action}_done"), "", now)
        if action == label_after and action in ("confirm", "assemble"):
            queue_action(conn, oid, "label", now)
        if action == "confirm":  # handed over before its confirm said its batch: it ships now
            queue_shipping(conn, oid, now)
    label = outcome.get("label")
    if label is not None and a["site"]:
        body = {"order_id": a["key"], "format": label.format, "data_b64": base64.b64encode(label.data).decode(),
                "width_mm": label.width_mm, "height_mm": label.height_mm}
        if label.barcode_text:
            body["barcode_text"] = label.barcode_text
        send_to_site(conn, link, a["site"], "label", body)
        conn.execute("UPDATE orders SET label_sent=1 WHERE id=?", (oid,))
        log_event(conn, oid, "label_sent", label.format, now)


def _record_supply(conn: sqlite3.Connection, account: str, mp_warehouse: str, oid: int, supply: str,
                   now: float) -> None:
    need(conn, order_lock(oid))  # and the batch's row: one atomic insert, if missing
    conn.execute("UPDATE orders SET supply_id=? WHERE id=?", (supply, oid))
    conn.execute("INSERT OR IGNORE INTO supplies(account, mp_warehouse, supply_id, state, created_ts)"
                 " VALUES (?,?,?,?,?)", (account, mp_warehouse, supply, "open", now))


def _shipped(conn: sqlite3.Connection, a: sqlite3.Row, change: StatusChange, supply: str, now: float) -> None:
    """Record a ship taken: per order, the order's; per batch, every order the batch took (the adapter
    says which, else the parcels handed over recorded in it) and where the ones moved out went. An order
    recorded in the batch that the batch did not take was moved out by the ship; one handed over by then
    (its hand-over reached the cloud after the ship read the bag, or the ship's answer was lost and it
    was handed over before the retry) is in the courier's bag: its own ship delivers its new batch."""
    need(conn)  # the batch's other orders too
    conn.execute("UPDATE handovers SET state='shipped' WHERE id IN (SELECT handover_id FROM handover_orders"
                 " WHERE order_id=?)", (a["order_id"],))
    if ship_model(a["marketplace"]) != "per_batch":
        return
    moved = {str(k): str(v) for k, v in (change.native.get("moved") or {}).items()}
    taken = {str(x) for x in change.native["shipped"]} if "shipped" in change.native else None
    left_behind: list[int] = []
    for native_id, batch in moved.items():
        row = conn.execute("SELECT id FROM orders WHERE account=? AND native_id=?", (a["account"], native_id)).fetchone()
        if row is not None:
            _record_supply(conn, a["account"], a["mp_warehouse"], row[0], batch, now)
            log_event(conn, row[0], "batch_changed", f"{supply} -> {batch}: not handed over when {supply} left", now)
            left_behind.append(row[0])
    if supply:
        live = conn.execute(
            "SELECT o.id, o.native_id, o.stage FROM orders o WHERE o.account=? AND o.supply_id=? AND o.stage NOT IN"
            " ('delivered', 'cancelled', 'return_expected', 'returned') AND NOT EXISTS (SELECT 1 FROM order_actions s"
            " WHERE s.order_id=o.id AND s.action='ship' AND s.state='done')", (a["account"], supply)).fetchall()
        for o in live:
            if o["id"] == a["order_id"] or o["native_id"] in moved:
                continue
            if taken is not None:
                gone_elsewhere = o["native_id"] not in taken
            else:  # the answer names nothing: an interrupted ship moved the parcels not handed over out first
                gone_elsewhere = change.already and o["stage"] != "handed_over"
            if not gone_elsewhere:
                continue
            # moved out by a ship whose answer was lost: where to is not known here any more — its own ship
            # reads its batch from the marketplace
            conn.execute("UPDATE orders SET supply_id=NULL WHERE id=?", (o["id"],))
            log_event(conn, o["id"], "batch_changed", f"{supply} -> ?: not taken when {supply} left (its batch is"
                      " read from the marketplace at its ship)", now)
            left_behind.append(o["id"])
        conn.execute("UPDATE supplies SET state='shipped' WHERE account=? AND supply_id=?", (a["account"], supply))
    for oid in left_behind:  # handed over meanwhile: in the courier's bag, so its new batch must leave too
        if conn.execute("SELECT 1 FROM orders WHERE id=? AND stage='handed_over'", (oid,)).fetchone():
            queue_action(conn, oid, "ship", now)
    if taken is not None:
        ids = [r[0] for r in conn.execute(
            f"SELECT id FROM orders WHERE account=? AND native_id IN ({','.join('?' * len(taken))})",
            (a["account"], *taken))] if taken else []
    else:
        ids = [r[0] for r in conn.execute("SELECT id FROM orders WHERE account=? AND supply_id=? AND"
                                          " stage='handed_over'", (a["account"], supply))]
    for oid in ids:
        if oid == a["order_id"]:
            continue
        took = conn.execute(
            "INSERT INTO order_actions(order_id, action, state, attempts, next_try, updated_ts) VALUES (?,?,?,0,?,?)"
            " ON CONFLICT(order_id, action) DO UPDATE SET state='done', error='', inflight_ts=NULL,"
            " updated_ts=excluded.updated_ts WHERE order_actions.state!='done'", (oid, "ship", "done", now, now))
        if took.rowcount:
            log_event(conn, oid, DONE_EVENT["ship"], f"with {supply}", now)
            conn.execute("UPDATE handovers SET state='shipped' WHERE id IN (SELECT handover_id FROM"
                         " handover_orders WHERE order_id=?)", (oid,))


# ---- reducing an order to what its parcel holds

def record_shortage(conn: sqlite3.Connection, oid: int, lines: list[dict[str, Any]], now: float) -> bool:
    """The site goes on with a parcel short of units (its task's lines with `short`): the shortage of each
    item in this task round is recorded (the site's figures only grow; a message delivered twice changes
    nothing) and a `reduce` queued for what is not taken out of the order yet. A marketplace that cannot
    reduce an order gets the action failed at once with the reason (the order waits on «Требует
    внимания», never shipped as if complete). True when something is left to take out."""
    o = conn.execute("SELECT task_round, marketplace FROM orders WHERE id=?", (oid,)).fetchone()
    short: dict[str, int] = {}
    for ln in lines:
        if int(ln.get("short") or 0) > 0 and ln.get("item_id"):
            short[str(ln["item_id"])] = short.get(str(ln["item_id"]), 0) + int(ln["short"])
    grew = False
    for item, n in short.items():
        cur = conn.execute("INSERT INTO order_reductions(order_id, task_round, item_id, short_units) VALUES (?,?,?,?)"
                           " ON CONFLICT(order_id, task_round, item_id) DO UPDATE SET short_units=excluded.short_units"
                           " WHERE excluded.short_units > short_units", (oid, o["task_round"], item, n))
        grew = grew or cur.rowcount > 0
    if not reduction_plan(conn, oid):
        return False
    try:
        can = profile(o["marketplace"]).can.reduce_order
    except ValueError:
        can = False
    what, todo = ACTION_TEXT["reduce"]
    if not can:
        conn.execute("INSERT INTO order_actions(order_id, action, state, attempts, next_try, error, updated_ts)"
                     " VALUES (?,?,?,0,?,?,?) ON CONFLICT(order_id, action) DO UPDATE SET state='failed',"
                     " error=excluded.error, updated_ts=excluded.updated_ts",
                     (oid, "reduce", "failed", now, NO_REDUCE, now))
    elif grew:  # a new shortage (a reduce done or refused before is asked again for it)
        conn.execute("INSERT INTO order_actions(order_id, action, state, attempts, next_try, updated_ts) VALUES"
                     " (?,?,?,0,?,?) ON CONFLICT(order_id, action) DO UPDATE SET state='pending', attempts=0,"
                     " next_try=excluded.next_try, updated_ts=excluded.updated_ts WHERE order_actions.state!='pending'",
                     (oid, "reduce", "pending", now, now))
    else:  # the same shortage said again (the packed message after the short one) changes nothing
        conn.execute("INSERT OR IGNORE INTO order_actions(order_id, action, state, attempts, next_try, updated_ts)"
                     " VALUES (?,?,?,0,?,?)", (oid, "reduce", "pending", now, now))
    failed = conn.execute("SELECT error FROM order_actions WHERE order_id=? AND action='reduce' AND state='failed'",
                          (oid,)).fetchone()
    if failed is not None:  # held: the reason stays on the order (a packed message clears the old problem)
        text = f"{what}: {failed[0]}. Что сделать: {todo}."[:500]
        conn.execute("UPDATE orders SET problem=? WHERE id=?", (text, oid))
        if not conn.execute("SELECT 1 FROM order_events WHERE order_id=? AND kind='problem' AND detail=?",
                            (oid, text)).fetchone():
            log_event(conn, oid, "problem", text, now)
    return True


def reduction_plan(conn: sqlite3.Connection, oid: int) -> list[dict[str, Any]]:
    """The order's lines still to reduce: for each, the cards it has now (`quantity`), the cards the parcel
    holds (`keep`) and the item units taken out (`units`). A shortage comes off the item's last lines first;
    a line of packs keeps only whole packs."""
    pending = {r[0]: r[1] for r in conn.execute(
        "SELECT item_id, SUM(short_units - removed_units) FROM order_reductions WHERE order_id=? GROUP BY item_id"
        " HAVING SUM(short_units - removed_units) > 0", (oid,))}
    plan: list[dict[str, Any]] = []
    for item, left in pending.items():
        for ln in conn.execute("SELECT line_no, card_id, offer_id, quantity, units FROM order_lines WHERE order_id=?"
                               " AND item_id=? AND quantity>0 ORDER BY line_no DESC", (oid, item)).fetchall():
            if left <= 0:
                break
            pack = max(ln["units"] // max(ln["quantity"], 1), 1)
            take_units = min(left, ln["units"])
            keep = (ln["units"] - take_units) // pack
            plan.append({"line_no": ln["line_no"], "item_id": item, "card_id": ln["card_id"],
                         "offer_id": ln["offer_id"], "quantity": ln["quantity"], "keep": keep,
                         "units": take_units, "pack": pack})
            left -= take_units
    return plan


def _keep_per_card(conn: sqlite3.Connection, oid: int, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the adapter is asked: for each card the plan touches, the cards of it the whole order keeps
    (a marketplace with one line per unit has several lines of one card)."""
    planned = {ln["line_no"]: ln["keep"] for ln in plan}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    touched = {(ln["card_id"], ln["offer_id"]) for ln in plan}
    for ln in conn.execute("SELECT line_no, card_id, offer_id, quantity FROM order_lines WHERE order_id=?", (oid,)):
        key = (ln["card_id"], ln["offer_id"])
        if key in touched:
            row = out.setdefault(key, {"card_id": key[0], "offer_id": key[1], "keep": 0, "quantity": 0})
            row["keep"] += planned.get(ln["line_no"], ln["quantity"])
            row["quantity"] += ln["quantity"]
    return list(out.values())


def _reduced(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, plan: list[dict[str, Any]], now: float) -> None:
    """The marketplace took the plan's units out of the order: so do the order's lines (a line left with
    nothing goes), the shortage is marked taken out, the cards go back to the marketplace's listing where it
    keeps the order's units itself, and the timeline says what left the order. A shortage reported while
    the call was made is asked for again."""
    need(conn)  # the account's published stock and the items' dirty marks
    said = []
    for ln in plan:
        if ln["keep"] > 0:
            conn.execute("UPDATE order_lines SET quantity=?, units=? WHERE order_id=? AND line_no=?",
                         (ln["keep"], ln["keep"] * ln["pack"], oid, ln["line_no"]))
        else:
            conn.execute("DELETE FROM order_lines WHERE order_id=? AND line_no=?", (oid, ln["line_no"]))
        left = ln["units"]
        for r in conn.execute("SELECT task_round, short_units - removed_units FROM order_reductions WHERE"
                              " order_id=? AND item_id=? AND short_units > removed_units ORDER BY task_round",
                              (oid, ln["item_id"])).fetchall():
            n = min(left, r[1])
            conn.execute("UPDATE order_reductions SET removed_units=removed_units+? WHERE order_id=? AND"
                         " task_round=? AND item_id=?", (n, oid, r[0], ln["item_id"]))
            left -= n
        said.append(f"{item_words(conn, ln['item_id'])} — {ln['quantity'] - ln['keep']} шт.")
    if plan:
        log_event(conn, oid, "reduced", "на маркетплейсе из заказа убрано то, чего нет в посылке: " + "; ".join(said),
                  now)
        o = conn.execute("SELECT account, mp_warehouse FROM orders WHERE id=?", (oid,)).fetchone()
        settings = cfg.accounts.get(o["account"])
        if settings is not None and settings.stock_follows_orders and o["mp_warehouse"]:
            stock_push.marketplace_gave_back(conn, o["account"], o["mp_warehouse"], [ln["card_id"] for ln in plan],
                                             [ln["item_id"] for ln in plan], now)
    if reduction_plan(conn, oid):
        conn.execute("UPDATE order_actions SET state='pending', next_try=? WHERE order_id=? AND action='reduce'",
                     (now, oid))


def _action_failed(conn: sqlite3.Connection, cfg: CloudConfig, a: sqlite3.Row, exc: Exception, *,
                   retryable: bool, known: bool = False) -> None:
    """A call that failed: tried again later with backoff while the marketplace may still take it, else
    shown to the manager (the order's problem, in Russian: what failed, why, what to do). `known`: the
    marketplace answered, so nothing is in doubt (else the next attempt reads the order back first)."""
    now = time.time()
    attempts = a["attempts"] + 1
    delay = min(cfg.jobs.retry_max_s, cfg.jobs.retry_base_s * 2 ** min(attempts - 1, 10)) / max(cfg.time_scale, 1e-9)
    inflight = "NULL" if known else "inflight_ts"
    with transaction(conn, keys=(order_lock(a["order_id"]),)):  # its own order's rows (and an error row added)
        leases.unclaim(conn, "order_actions", {"order_id": a["order_id"], "action": a["action"]})
        if retryable:
            conn.execute(f"UPDATE order_actions SET attempts=?, next_try=?, error=?, updated_ts=?, inflight_ts={inflight}"
                         " WHERE order_id=? AND action=?", (attempts, now + delay, str(exc)[:500], now, a["order_id"],
                                                            a["action"]))
            return
        what, todo = ACTION_TEXT.get(a["action"], (f"Не удалось выполнить «{a['action']}»", "проверьте заказ"))
        text = f"{what}: {exc}. Что сделать: {todo}."
        conn.execute("UPDATE order_actions SET state='failed', attempts=?, error=?, updated_ts=?, inflight_ts=NULL"
                     " WHERE order_id=? AND action=?", (attempts, str(exc)[:500], now, a["order_id"], a["action"]))
        conn.execute("UPDATE orders SET problem=? WHERE id=?", (text[:500], a["order_id"]))
        log_event(conn, a["order_id"], "problem", text[:500], now)
        log_error(conn, "orders", f"{a['key']}: {text}", a["account"])
