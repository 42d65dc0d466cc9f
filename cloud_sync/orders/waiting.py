"""Orders that wait, and how they come back: an order short of stock (`short`) or blocked (`problem`: a
card not linked to a 1C item, a marketplace warehouse no own warehouse serves) is checked again whenever
stock becomes available at its warehouse or a blocking cause may be gone — earliest assembly deadline
(ship-by) first, and before any later order may take the stock: a new order first lets the waiting
orders of its items with an earlier deadline take what they can (`serve(..., before=...)`).

Who offers: the site's messages (a receipt, a return, a count that found more), a cancellation, a new
order (for the orders ahead of it), the manual retry, and the cloud's "waiting-orders" job every few
seconds (1C balances, cards linked, warehouses mapped: rooms below this one that cannot call it).

An order that can now be covered is reserved (all lines or none), its confirmation queued once and its
pick task sent to the site of its warehouse; one that still cannot shows the current reason, in the
seller's words ("не хватает: артикул MS-00011 «Кружка», есть 1, нужно 2"). `retry` is the manual «ещё
раз» of one order. A site's shortage (`site_short`) takes the missing units off the order and puts it
back to waiting; `choices` says what a seller can do then, `serve_from` moves it to another warehouse.

Every function runs in the caller's transaction.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.orders.records import (
    OrderError,
    log_event,
    pick_task_body,
    pick_task_id,
    queue_action,
    send_to_site,
    set_stage,
)
from cloud_sync.stock import ledger as stock
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import warehouses
from sitelink import sqlite as link_sqlite

WAITING = ("short", "problem")


class UnknownOrder(OrderError):
    """No order has that key."""

DeadlineKey = tuple[bool, float, float, float]


@dataclass
class Served:
    served: list[int] = field(default_factory=list)          # order ids reserved now
    waiting: dict[int, str] = field(default_factory=dict)    # order id -> why it still waits
    sold_out: set[str] = field(default_factory=set)          # items whose last available units were taken


@functools.lru_cache(maxsize=1 << 16)  # the same few deadlines are read again for every waiting order
def _ts(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def deadline_key(ship_by: str | None, created_at: str | None, oid: float = math.inf) -> DeadlineKey:
    """How orders queue for stock: the earliest ship-by first (none: last), then the oldest, then the id."""
    return (not ship_by, _ts(ship_by), _ts(created_at), float(oid))


def line_item(conn: sqlite3.Connection, account: str, card_id: str, offer_id: str,
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


# ---- the reasons a person reads ----

def item_words(conn: sqlite3.Connection, item_id: str) -> str:
    """An item as the seller names it: its article and name (never a 1C GUID when either is known)."""
    r = conn.execute("SELECT article, name FROM items WHERE id=?", (item_id,)).fetchone()
    return words_of(item_id, r[0], r[1]) if r is not None else words_of(item_id, "", "")


def words_of(item_id: str, article: str, name: str) -> str:
    """`item_words` of an item whose article and name are read already."""
    if not (article or name):
        return f"товар {item_id}"
    return (f"артикул {article}" if article else "товар") + (f" «{name}»" if name else "")


def short_reason(conn: sqlite3.Connection, item_id: str, available: int, wanted: int,
                 words: dict[str, str] | None = None) -> str:
    """`words`: items already put in words (item → words), filled as they are read."""
    if words is None:
        words = {}
    if item_id not in words:
        words[item_id] = item_words(conn, item_id)
    said = words[item_id]
    return f"не хватает: {said}, есть {max(available, 0)}, нужно {wanted}"


def unlinked_reason(cards: Iterable[str]) -> str:
    return (f"карточка не связана с товаром 1С: {', '.join(cards)} — свяжите её на странице «Товары»,"
            " заказ возьмётся в работу сам")


def unserved_reason(account: str, mp_warehouse: str) -> str:
    return (f"склад маркетплейса {mp_warehouse or '(не указан)'} кабинета {account} не связан с нашим складом —"
            " укажите его в настройках кабинета, заказ возьмётся в работу сам")


def no_site_reason(warehouse: str) -> str:
    return f"склад {warehouse} не обслуживает ни один пункт — задание на сборку некуда отправить"


# ---- serving the waiting orders ----

# who waits where, for `Waiters`: the waiting orders are read from the index of orders by stage alone (it carries
# their warehouse and moments: records.MIGRATIONS), their lines and levels by their keys
WAITERS_SQL = ("SELECT l.item_id, o.warehouse, json_group_array(json_array(o.id, o.ship_by, o.created_at))"
               " FROM orders o JOIN order_lines l ON l.order_id=o.id JOIN stock_levels s ON s.item_id=l.item_id"
               " AND s.warehouse=o.warehouse WHERE o.stage IN ('short','problem') AND l.item_id IS NOT NULL"
               " AND s.on_hand>s.reserved GROUP BY l.item_id, o.warehouse")


class Waiters:
    """Which waiting orders have a line of which item at which warehouse, and each one's place in the queue
    for stock, read once for a batch of new orders (one pass over the waiting orders instead of one per new
    order): a superset of the orders that may take stock, so a look-up finds every order that waits there
    and could take some (each candidate is checked again against the database). Read are only the
    (item, warehouse) pairs with units available: an order waiting at a pair with none cannot be served
    (the intake does not try them either when a pair runs out in its batch). Valid inside one transaction;
    whoever makes an order wait at a new (item, warehouse) in it says so (`add`), and `stale()` makes the
    next look-up read it all again (after a cancellation: stock came back)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # per (item, warehouse): the ids of the orders waiting there, or still the JSON text read for them
        # ([[id, ship_by, created_at], ...]: most pairs are never looked into, so few are parsed)
        self._by_pair: dict[tuple[str, str], set[int] | str] | None = None
        self._deadline: dict[int, DeadlineKey] = {}  # ship-by and creation never change

    def _pairs(self) -> dict[tuple[str, str], set[int] | str]:
        if self._by_pair is None:
            self._by_pair = {(item, warehouse): found for item, warehouse, found in self._conn.execute(WAITERS_SQL)}
        return self._by_pair

    def _ids(self, pair: tuple[str, str]) -> set[int]:
        """The orders waiting at `pair` (parsed from what was read on the first look, their deadlines kept)."""
        pairs = self._pairs()
        found = pairs.get(pair)
        if found is None:
            return set()
        if isinstance(found, str):
            ids: set[int] = set()
            for oid, ship_by, created_at in json.loads(found):
                ids.add(oid)
                if oid not in self._deadline:
                    self._deadline[oid] = deadline_key(ship_by, created_at, oid)
            pairs[pair] = found = ids
        return found

    def add(self, oid: int, warehouse: str, items: Iterable[str | None], deadline: DeadlineKey) -> None:
        self._deadline[oid] = deadline
        if self._by_pair is None:
            return  # not read yet: the reading will find it
        for item in items:
            if item is not None:
                pair = (item, warehouse)
                if pair in self._by_pair:
                    self._ids(pair).add(oid)
                else:
                    self._by_pair[pair] = {oid}

    def stale(self) -> None:
        self._by_pair = None

    @property
    def read(self) -> bool:
        """Whether who waits is read (False: the next look-up reads the database)."""
        return self._by_pair is not None

    def candidates(self, item: str, warehouse: str, before: DeadlineKey | None = None) -> set[int]:
        """The orders that may wait at (item, warehouse), only those queued before `before` when given."""
        ids = self._ids((item, warehouse))
        if before is None:
            return ids
        return {oid for oid in ids if self._deadline[oid] < before}

    def any_of(self, items: Iterable[tuple[str, str]]) -> bool:
        pairs = self._pairs()
        return any(p in pairs for p in items)


_WAITING_SQL = ("SELECT o.* FROM orders o WHERE o.stage IN ('short','problem') AND NOT EXISTS (SELECT 1 FROM"
                " order_actions a WHERE a.order_id=o.id AND a.action='cancel')")


def _waiting_rows(conn: sqlite3.Connection, items: set[tuple[str, str]] | None,
                  only: int | None = None, waiters: Waiters | None = None,
                  before: DeadlineKey | None = None) -> list[sqlite3.Row]:
    base = _WAITING_SQL
    if only is not None:
        rows = conn.execute(base + " AND o.id=?", (only,)).fetchall()
    elif items is None:
        rows = conn.execute(base).fetchall()
    else:  # one indexed look-up per (item, warehouse): a new order's check stays cheap however many wait
        found: dict[int, sqlite3.Row] = {}
        for item, warehouse in items:
            if waiters is None:
                cur = conn.execute(base + " AND o.warehouse=? AND EXISTS (SELECT 1 FROM order_lines l WHERE"
                                   " l.order_id=o.id AND l.item_id=?)", (warehouse, item))
            else:  # only the candidates the batch's index names, each checked again here
                ids = waiters.candidates(item, warehouse, before)
                if not ids:
                    continue
                cur = conn.execute(base + " AND o.id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))"
                                   " AND o.warehouse=? AND"
                                   " EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id=o.id AND l.item_id=?)",
                                   (json.dumps(sorted(ids)), warehouse, item))
            for r in cur:
                found[r["id"]] = r
        rows = list(found.values())
    return sorted(rows, key=lambda r: deadline_key(r["ship_by"], r["created_at"], r["id"]))


def serve(conn: sqlite3.Connection, cfg: CloudConfig, *, items: Iterable[tuple[str, str]] | None = None,
          before: DeadlineKey | None = None, only: int | None = None, link: Any = None,
          now: float | None = None, plan: bool = True, waiters: Waiters | None = None) -> Served:
    """Check the waiting orders again, earliest deadline first: those of these (item, warehouse) pairs
    (None: all of them, the blocked ones too), only those queued before `before` (a new order's place).
    `plan`: queue the zeros of items whose last units were taken at once (oversell protection).
    `waiters`: the batch's index of who waits where (the intake's), to find them without a scan."""
    now = time.time() if now is None else now
    out = Served()
    seen = _Seen()
    for o in _waiting_rows(conn, set(items) if items is not None else None, only, waiters, before):
        if before is not None and deadline_key(o["ship_by"], o["created_at"], o["id"]) >= before:
            break
        _try(conn, cfg, o, link, now, out, seen, waiters)
    if plan and out.sold_out:
        stock_push.plan(conn, cfg, items=sorted(out.sold_out), now=now, cause="order")
    return out


class _Seen:
    """What one `serve` call has read: available units per (item, warehouse) (forgotten as soon as anything
    may have reserved) and items in the seller's words."""

    def __init__(self) -> None:
        self.available: dict[tuple[str, str], int] = {}
        self.words: dict[str, str] = {}


def _still_short(conn: sqlite3.Connection, warehouse: str, lines: list[sqlite3.Row], seen: _Seen) -> str | None:
    """Why an order whose lines are all linked still cannot be reserved, read without trying: the reason
    the reservation in `_try` would fail with (its first item short of units, in line order), or None when
    it may be reserved (or fail otherwise: `_try` then tries for real)."""
    need: dict[str, int] = {}
    for ln in lines:
        need[ln["item_id"]] = need.get(ln["item_id"], 0) + ln["units"]
    for item, units in need.items():
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            return None
        key = (item, warehouse)
        if key not in seen.available:
            seen.available[key] = stock.level(conn, item, warehouse).available
        if seen.available[key] < units:
            return short_reason(conn, item, seen.available[key], units, seen.words)
    return None


def _try(conn: sqlite3.Connection, cfg: CloudConfig, o: sqlite3.Row, link: Any, now: float, out: Served,
         seen: _Seen | None = None, waiters: Waiters | None = None) -> None:
    link_sqlite.need(conn)  # a waiting order is served in an ordinary transaction (a keyed one gives way: sitelink.sqlite)
    oid = o["id"]
    all_lines = conn.execute("SELECT * FROM order_lines WHERE order_id=?", (oid,)).fetchall()
    if seen is not None and o["warehouse"] and all(ln["item_id"] is not None for ln in all_lines):
        # the common case of an order that still waits for stock: no reservation tried and rolled back
        reason = _still_short(conn, o["warehouse"], all_lines, seen)
        if reason is not None:
            _still(conn, cfg, o, "short", reason, now, out)
            return
    if seen is not None:
        seen.available.clear()  # this order may reserve: what was read is not the truth any more
    unlinked = []
    changed = False
    for ln in all_lines:
        if ln["item_id"] is not None:
            continue
        item, pack = line_item(conn, o["account"], ln["card_id"], ln["offer_id"], ln["barcode"])
        if item is None:
            unlinked.append(ln["offer_id"] or ln["card_id"])
        else:
            changed = True
            conn.execute("UPDATE order_lines SET item_id=?, units=quantity*? WHERE order_id=? AND line_no=?",
                         (item, pack, oid, ln["line_no"]))
    if unlinked:
        if changed and waiters is not None:
            waiters.add(oid, o["warehouse"], [r[0] for r in conn.execute(
                "SELECT item_id FROM order_lines WHERE order_id=?", (oid,))],
                        deadline_key(o["ship_by"], o["created_at"], oid))
        _still(conn, cfg, o, "problem", unlinked_reason(unlinked), now, out)
        return
    warehouse, site = o["warehouse"], o["site"]
    if not warehouse:
        served = warehouses.serving_warehouse(conn, cfg, o["account"], o["mp_warehouse"])
        if served is None:
            _still(conn, cfg, o, "problem", unserved_reason(o["account"], o["mp_warehouse"]), now, out)
            return
        warehouse, site = served, cfg.site_of_warehouse(served)
        changed = True
        conn.execute("UPDATE orders SET warehouse=?, site=? WHERE id=?", (warehouse, site, oid))
    need: dict[str, int] = {}
    for item, units in conn.execute("SELECT item_id, units FROM order_lines WHERE order_id=?", (oid,)):
        need[item] = need.get(item, 0) + units
    if changed and waiters is not None:  # it may wait at a new (item, warehouse) from now on
        waiters.add(oid, warehouse, need, deadline_key(o["ship_by"], o["created_at"], oid))
    sold_out: set[str] = set()
    conn.execute("SAVEPOINT serve_waiting")
    try:
        for item, units in need.items():
            move = stock.reserve(conn, o["key"], item, warehouse, units, now=now)
            if move.on_hand_after - move.reserved_after <= 0:
                sold_out.add(item)
    except stock.InsufficientStock as exc:
        conn.execute("ROLLBACK TO serve_waiting")
        conn.execute("RELEASE serve_waiting")
        _still(conn, cfg, o, "short", short_reason(conn, exc.item_id, exc.available, exc.wanted), now, out)
        return
    conn.execute("RELEASE serve_waiting")
    out.sold_out |= sold_out
    out.served.append(oid)
    set_stage(conn, cfg, oid, "reserved", now, problem="" if site else no_site_reason(warehouse))
    log_event(conn, oid, "served", f"склад {warehouse}: товар есть, заказ взят в работу", now)
    queue_action(conn, oid, "confirm", now)  # once: a confirmation already done is not queued again
    if site:
        send_to_site(conn, link, site, "pick_task", pick_task_body(conn, oid))


def _still(conn: sqlite3.Connection, cfg: CloudConfig, o: sqlite3.Row, stage: str, reason: str, now: float,
           out: Served) -> None:
    """It still waits: the reason shown is the current one; the history gets an event only when the
    stage changes (a reason whose figures moved is not news)."""
    out.waiting[o["id"]] = reason
    if (o["stage"], o["problem"]) == (stage, reason):
        return
    set_stage(conn, cfg, o["id"], stage, now, problem=reason)
    if o["stage"] != stage:
        log_event(conn, o["id"], stage, reason, now)


def retry(conn: sqlite3.Connection, cfg: CloudConfig, key: str, *, by: str, link: Any = None,
          now: float | None = None) -> str:
    """«Проверить ещё раз» for one waiting order: the orders of its items with an earlier deadline are
    served first (they would be anyway); returns what became of it: 'served', or the reason it waits."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE key=?", (key,)).fetchone()
    if o is None:
        raise UnknownOrder(f"нет такого заказа: {key}")
    if o["stage"] not in WAITING:
        raise OrderError(f"заказ {o['number']} не ждёт товара (сейчас: {o['stage']})")
    log_event(conn, o["id"], "retry", f"проверить ещё раз: {by}", now, source="manager", actor=by)
    items = [(r[0], o["warehouse"]) for r in conn.execute("SELECT item_id FROM order_lines WHERE order_id=?"
                                                          " AND item_id IS NOT NULL", (o["id"],))]
    if items and o["warehouse"]:
        serve(conn, cfg, items=items, before=deadline_key(o["ship_by"], o["created_at"], o["id"]), link=link,
              now=now)
    res = serve(conn, cfg, only=o["id"], link=link, now=now)
    return "served" if o["id"] in res.served else res.waiting.get(o["id"], "")


# ---- shortages at the site ----

def site_short(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, lines: list[dict[str, Any]], *, site: str,
               link: Any = None, now: float | None = None) -> str:
    """The site did not find (or found damaged) units of an order. The units themselves left on-hand by the
    site's own `stock_delta` (writeoff, ref = the order). When nothing of the order was picked or packed,
    the order lets go of what it still holds, the site's task is closed and the order queues again: it is
    re-served at once from other stock of the warehouse, or waits as a visible shortage (`choices`).
    A parcel the site goes on packing with fewer units keeps going, marked with what is missing.
    Returns 'served', 'waiting' or 'partial'."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    missing = [(ln.get("item_id", ""), int(ln.get("short") or 0)) for ln in lines if int(ln.get("short") or 0) > 0]
    said = "; ".join(f"{item_words(conn, i)} — не найдено {n} шт." for i, n in missing) or "недостача"
    if any(int(ln.get("picked") or 0) or int(ln.get("packed") or 0) for ln in lines):
        conn.execute("UPDATE orders SET problem=? WHERE id=?", (f"собран с недостачей на складе: {said}", oid))
        return "partial"
    stock.release(conn, o["key"], note="недостача на складе", now=now)
    send_to_site(conn, link, site, "cancel_task", {"task_id": pick_task_id(o["key"], o["task_round"]),
                                                   "order_id": o["key"], "reason": "недостача: заказ собирается заново"})
    conn.execute("UPDATE orders SET task_round=task_round+1 WHERE id=?", (oid,))
    set_stage(conn, cfg, oid, "short", now, problem=f"на складе не нашли: {said}")
    res = serve(conn, cfg, only=oid, link=link, now=now)
    return "served" if oid in res.served else "waiting"


def choices(conn: sqlite3.Connection, cfg: CloudConfig, key: str) -> dict[str, Any]:
    """What a seller can do with a waiting order: wait (it is served by itself when stock comes), cancel
    (on the marketplace with its out-of-stock reason), or serve it from another own warehouse that has
    every unit available."""
    o = conn.execute("SELECT * FROM orders WHERE key=?", (key,)).fetchone()
    if o is None:
        raise UnknownOrder(f"нет такого заказа: {key}")
    need: dict[str, int] = {}
    for item, units in conn.execute("SELECT item_id, units FROM order_lines WHERE order_id=?", (o["id"],)):
        if item is not None:
            need[item] = need.get(item, 0) + units
    other = []
    if need and len(need) == conn.execute("SELECT COUNT(DISTINCT item_id) FROM order_lines WHERE order_id=?",
                                          (o["id"],)).fetchone()[0]:
        for wh in cfg.own_warehouses():
            if wh == o["warehouse"]:
                continue
            avail = {i: stock.level(conn, i, wh).available for i in need}
            if all(avail[i] >= n for i, n in need.items()) and cfg.site_of_warehouse(wh):
                other.append({"warehouse": wh, "site": cfg.site_of_warehouse(wh), "available": avail})
    return {"order": key, "stage": o["stage"], "reason": o["problem"], "waiting": o["stage"] in WAITING,
            "wait": "ждать товара: заказ возьмётся в работу сам, как только товар появится",
            "cancel": "отменить заказ на маркетплейсе с причиной «нет в наличии»",
            "warehouses": other}


def serve_from(conn: sqlite3.Connection, cfg: CloudConfig, key: str, warehouse: str, *, by: str,
               link: Any = None, now: float | None = None) -> str:
    """Serve a waiting order from another own warehouse (the seller's choice): reserved there and picked
    by that warehouse's site. Refused (OrderError, nothing changed) when it cannot cover every unit."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE key=?", (key,)).fetchone()
    if o is None:
        raise UnknownOrder(f"нет такого заказа: {key}")
    if o["stage"] not in WAITING:
        raise OrderError(f"заказ {o['number']} не ждёт товара (сейчас: {o['stage']})")
    if warehouse not in cfg.own_warehouses():
        raise OrderError(f"нет такого склада: {warehouse}")
    site = cfg.site_of_warehouse(warehouse)
    if site is None:
        raise OrderError(no_site_reason(warehouse))
    conn.execute("SAVEPOINT serve_from")
    conn.execute("UPDATE orders SET warehouse=?, site=? WHERE id=?", (warehouse, site, o["id"]))
    res = serve(conn, cfg, only=o["id"], link=link, now=now)
    if o["id"] not in res.served:
        conn.execute("ROLLBACK TO serve_from")
        conn.execute("RELEASE serve_from")
        raise OrderError(f"со склада {warehouse} не собрать: {res.waiting.get(o['id'], '')}")
    conn.execute("RELEASE serve_from")
    log_event(conn, o["id"], "moved", f"собирается со склада {warehouse} (было: {o['warehouse'] or '—'})", now,
              source="manager", actor=by)
    return "served"
