"""Orders coming in: new orders from polling or pushes are checked against stock and reserved (all lines
or none), their pick task enqueued for the site serving the warehouse and their confirmation queued — in
ONE transaction per batch, so a reservation and its pick task commit together; an order that cannot be
covered is never confirmed. Before a new order takes stock, the waiting orders of its items with an
earlier deadline take what they can (cloud_sync/orders/waiting.py), and a batch is taken earliest deadline
first. Status changes from the marketplace move the unified status; a cancellation releases the
reservation, tells the site, and lets the waiting orders of the released items take it. A moved assembly
deadline (Ozon's TYPE_CUTOFF_DATE_CHANGED) moves the order's ship_by and is said in its history.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import keyed_or_whole, transaction
from cloud_sync.orders import after_handover, waiting
from cloud_sync.orders.handovers import queue_shipping
from cloud_sync.orders.records import (
    ACTION_SQL,
    EVENT_SQL,
    OPEN_STAGES,
    RANK,
    TERMINAL,
    OrderError,
    PickTasks,
    defer_events,
    item_facts,
    log_error,
    log_event,
    marketplace_gave_back,
    order_key,
    order_lock,
    pick_task_id,
    queue_action,
    send_many_to_site,
    send_to_site,
    set_stage,
    unified,
)
from cloud_sync.stock import ledger as stock
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import warehouses
from marketplaces.base import Marketplace, MarketplaceError, Order, OrderEvent
from sitelink.sqlite import keys_held, need
from sitelink.store import link_key

log = logging.getLogger("cloud_sync.orders.intake")


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


def ingest(conn: sqlite3.Connection, cfg: CloudConfig, orders: Iterable[Order], *, link: Any = None,
           now: float | None = None) -> IngestResult:
    """Take in orders (new or already known) in one transaction. Known orders only update their status."""
    now = time.time() if now is None else now
    # earliest deadline first: within a batch too, an order never takes stock a more urgent one needs
    timed = [_Timed(o) for o in orders]
    if not timed:
        return IngestResult()  # a poll that found nothing: no write transaction
    if _all_known_as_they_are(conn, timed):
        # a re-poll of orders stored with these very statuses: nothing to write
        return IngestResult(known=len(timed))
    timed.sort(key=lambda t: t.deadline)

    def work() -> IngestResult:
        result = IngestResult()
        dirty: set[str] = set()
        batch = _Batch(conn, cfg, [t.order for t in timed])
        for t in timed:
            _ingest_one(conn, cfg, t, link, now, result, dirty, batch)
        batch.write(conn, link)
        # the planner recomputes these items' cards; not those sold out: they are planned right here, on this
        # very state, and a second round of the planner would find nothing to change while holding the write
        # lock (and the CPU) just as the senders push their zeros
        stock.mark_dirty(conn, dirty - result.sold_out, "order", now)
        if result.sold_out:
            # oversell protection: the last units are gone; every other card's zero is queued in this very
            # transaction, so it exists as soon as the reservation does (the planner's keys: a keyed batch
            # gives way to an ordinary transaction)
            stock_push.plan(conn, cfg, items=sorted(result.sold_out), now=now, cause="order")
        return result

    with _young_only():
        return keyed_or_whole(conn, intake_keys(conn, cfg, timed), work)


INTAKE_KEY = "orders:intake"  # new orders' rows (their ids are given by the batch: `_Batch.next_id`)
MAX_KEYED_ORDERS = 50  # a larger batch (a backlog) is an ordinary transaction: its keys would be many


def intake_keys(conn: sqlite3.Connection, cfg: CloudConfig, timed: list[_Timed]) -> tuple[str, ...] | None:
    """The keys (`keyed_or_whole`) a batch of new orders stays within, read before its transaction: the new
    orders' rows (`INTAKE_KEY`: one batch at a time takes new orders), the level of every (item, warehouse)
    its lines reserve (`stock.stock_key`: nobody else takes those units meanwhile; a site's delta may only
    add some), its sites' links (the pick tasks) and, for marketplaces that take units off their cards by
    themselves, its accounts' published rows (`push_keys`). None (an ordinary transaction at once): a store
    without keyed transactions (SQLite), a caller's transaction already open, a batch with a known order
    whose status or deadline moved (its order's rows and maybe its stock), a line not linked to an item, an unserved
    warehouse, too many orders, or a batch that would give way anyway: one that takes an item's last units
    (its zeros are planned at once: the planner's keys) or more than there are, or whose items have orders
    waiting. What the transaction finds otherwise (the stock went meanwhile) gives way to an ordinary
    transaction (`need`)."""
    if getattr(conn, "begin_keyed", None) is None or conn.in_transaction or len(timed) > MAX_KEYED_ORDERS:
        return None
    by_key = {order_key(t.order.account, t.order.native_id): t.order for t in timed}
    for r in conn.execute("SELECT key, native_status, native_substatus, stage, ship_by FROM orders WHERE key IN"
                          " (SELECT value FROM json_each(?))", (json.dumps(sorted(by_key)),)):
        o = by_key[r[0]]
        if (r[1], r[2]) != (o.native_status, o.native_substatus) or ship_by_moved(r[3], r[4], o.ship_by):
            return None
    keys = {INTAKE_KEY}
    links: dict[tuple[str, str], tuple[str, int]] = {}
    cards: dict[str, set[str]] = {}
    for o in by_key.values():
        cards.setdefault(o.account, set()).update(ln.card_id for ln in o.lines if ln.card_id)
    for account, ids in cards.items():
        for r in conn.execute("SELECT card_id, item_id, pack_size FROM card_links WHERE account=? AND card_id IN"
                              " (SELECT value FROM json_each(?)) AND item_id IS NOT NULL",
                              (account, json.dumps(sorted(ids)))):
            links[(account, r[0])] = (r[1], r[2])
    wanted: dict[tuple[str, str], int] = {}  # units per (item, warehouse)
    serving: dict[tuple[str, str], str | None] = {}
    for o in by_key.values():
        mp_wh = str(o.warehouse_id or "")
        if (o.account, mp_wh) not in serving:
            serving[(o.account, mp_wh)] = warehouses.serving_warehouse(conn, cfg, o.account, mp_wh)
        served = serving[(o.account, mp_wh)]
        if served is None:
            return None
        site = cfg.site_of_warehouse(served)
        if site:
            keys.add(link_key(site))
        for ln in o.lines:
            linked = links.get((o.account, ln.card_id)) if ln.card_id else None
            item, pack = linked or waiting.line_item(conn, o.account, ln.card_id, ln.offer_id, ln.barcode)
            if item is None:
                return None
            keys.add(stock.stock_key(item, served))
            wanted[(item, served)] = wanted.get((item, served), 0) + ln.quantity * pack
        settings = cfg.accounts.get(o.account)
        if settings is not None and settings.stock_follows_orders and mp_wh:
            keys.update(stock_push.push_keys(o.account))
    # A batch that would take an item's last units (its zeros planned at once: the planner's keys) or wait for
    # them, or whose items have orders waiting (served first, by an ordinary transaction), would give way
    # after its work: an ordinary transaction at once.
    levels = stock.levels_of(conn, {item for item, _ in wanted})
    if any(units >= (levels[pair].available if pair in levels else 0) for pair, units in wanted.items()):
        return None
    if conn.execute("SELECT 1 FROM order_lines l JOIN orders o ON o.id=l.order_id WHERE o.stage IN ('short',"
                    " 'problem') AND l.item_id IN (SELECT value FROM json_each(?)) LIMIT 1",
                    (json.dumps(sorted({item for item, _ in wanted})),)).fetchone():
        return None
    return tuple(sorted(keys))


@contextmanager
def _young_only() -> Iterator[None]:
    """For one batch: the objects alive before it are frozen out of Python's cyclic garbage collector (as the
    1C importer does for its run), so the collections the batch's own rows trigger walk only those rows, not
    the whole process again (measured in bench/orders_ingest.py: 6 full collections per 100,000 orders, ~0.6
    CPU-s). Unfrozen after; nothing is kept alive by it. Skipped when anything is frozen already (another
    run's freeze, or the process's own, is left as it is)."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _all_known_as_they_are(conn: sqlite3.Connection, timed: list[_Timed]) -> bool:
    """Whether every order of the batch is stored already with the marketplace's status it has now (read
    without the write lock: `_ingest_one` would write nothing for any of them; one that changes meanwhile is
    seen by the next poll)."""
    keys: dict[str, tuple[str, str]] = {}
    polled: dict[str, _Timed] = {}
    for t in timed:
        status = (t.order.native_status, t.order.native_substatus)
        key = order_key(t.order.account, t.order.native_id)
        if keys.setdefault(key, status) != status:
            return False  # two copies of one order that differ: the transaction sorts them out
        polled[key] = t
    stored: dict[str, tuple[str, str]] = {}
    for r in conn.execute("SELECT key, native_status, native_substatus, stage, ship_by FROM orders WHERE key IN"
                          " (SELECT value FROM json_each(?))", (json.dumps(sorted(keys)),)):
        t = polled[r[0]]
        # the deadline stored as this very text is the same (most re-polls): only another text is read as a moment
        if r[4] != t.ship_by and ship_by_moved(r[3], r[4], t.order.ship_by):
            return False
        stored[r[0]] = (r[1], r[2])
    return stored == keys


SAME_DEADLINE_S = 60.0  # deadlines are read to the minute (the pages show "27.11 10:00"): closer is the same


def ship_by_moved(stage: str, stored: str | None, ship_by: datetime | None) -> bool:
    """Whether the marketplace now gives an open order (stored at `stage` with the deadline `stored`) another
    assembly deadline than the one stored (`move_ship_by`): a poll or a re-read finds what a push missed. An
    order without one now (the marketplace's answer has none) keeps its own."""
    if ship_by is None or stage not in OPEN_STAGES:
        return False
    was = _instant(stored)
    return was is None or abs(was - ship_by.timestamp()) >= SAME_DEADLINE_S


class _Timed:
    """An order with its moments as stored (ISO text) and its place in the queue for stock."""

    __slots__ = ("order", "ship_by", "created_at", "created_ts", "deadline")

    def __init__(self, order: Order) -> None:
        self.order = order
        ship_by = order.ship_by
        self.ship_by = ship_by.isoformat() if ship_by else None
        self.created_at = order.created_at.isoformat()
        self.created_ts = order.created_at.timestamp()
        # waiting.deadline_key(self.ship_by, self.created_at) from the moments themselves (what it reads
        # back from their text), without parsing the text of every order of a batch again
        self.deadline = (ship_by is None, ship_by.timestamp() if ship_by else 0.0, self.created_ts, math.inf)


class _Batch:
    """What a batch of orders reads once instead of once per order, inside its transaction (which holds
    the write lock, so what was read stays true but for the batch's own writes, followed here): which
    orders are stored already, the linked cards of its lines, the items of its pick tasks, which own
    warehouse serves each marketplace warehouse, and who waits for which item (`waiting.Waiters`)."""

    def __init__(self, conn: sqlite3.Connection, cfg: CloudConfig, orders: list[Order]) -> None:
        keys = [order_key(o.account, o.native_id) for o in orders]
        self.stored: dict[str, sqlite3.Row] = {r["key"]: r for r in conn.execute(
            "SELECT key, id, native_status, native_substatus, stage, ship_by FROM orders WHERE key IN"
            " (SELECT value FROM json_each(?))", (json.dumps(keys),))}
        self.absent = set(keys) - set(self.stored)  # new, until the batch writes them
        cards: dict[str, set[str]] = {}
        for o in orders:
            cards.setdefault(o.account, set()).update(ln.card_id for ln in o.lines if ln.card_id)
        self.links: dict[tuple[str, str], tuple[str, int]] = {}
        for account, ids in cards.items():
            for r in conn.execute("SELECT card_id, item_id, pack_size FROM card_links WHERE account=? AND card_id IN"
                                  " (SELECT value FROM json_each(?)) AND item_id IS NOT NULL",
                                  (account, json.dumps(sorted(ids)))):
                self.links[(account, r[0])] = (r[1], r[2])
        self.facts = item_facts(conn, {item for item, _ in self.links.values()})
        self.pick_tasks = PickTasks(self.facts)  # their bodies and canonical texts, each item's lines made once
        self.holds = stock.Holds()  # the batch's reservations, against the levels of its items read here
        self.holds.load(self.facts)
        self.serving: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self.natives: dict[tuple[str, str, str], str] = {}
        self.statuses: dict[tuple[str, str, str, str], str] = {}
        self.follows: dict[str, bool] = {}
        self.waiters = waiting.Waiters(conn)
        # What the batch learnt of who may take stock first (`may_serve`): how many times this batch reserved at
        # each (item, warehouse), and the waiting orders found unable to take theirs (tried by `waiting.serve`
        # and serving none, or the batch's own one-line short orders) with those counts of their pairs then.
        # Such an order tried again while none of its pairs moved ends as it is, reason and figures alike.
        # And the pairs seen with no units left (the waiters index reads only pairs with some: those are
        # not served, as a batch of one order would not). A cancellation (stock back) forgets them (`forget`).
        self.moved: dict[tuple[str, str], int] = {}
        self.empty: set[tuple[str, str]] = set()
        self.tried: dict[int, dict[tuple[str, str], int]] = {}
        self.words: dict[str, str] = {}  # items in the seller's words, for the reasons of short orders
        # the batch's new rows, written together (`write`) before anything reads those tables again: the
        # ids of its orders are given here (the write lock is held: nobody else adds an order meanwhile)
        self.next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM orders").fetchone()[0]
        self.orders: list[tuple[Any, ...]] = []
        self.lines: list[list[Any]] = []
        self.events: list[tuple[Any, ...]] = []
        self.actions: list[tuple[Any, ...]] = []
        self.tasks: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # per site, in order
        self.took: list[tuple[Any, ...]] = []  # stock_push.took_rows of its orders, in order

    def write(self, conn: sqlite3.Connection, link: Any) -> None:
        """Write the rows kept so far, each table in one statement (the reservations' history first, as
        each order's reservation came before its order row)."""
        self.holds.write(conn)
        if self.orders or self.events or self.actions:
            need(conn, INTAKE_KEY)  # new orders' rows, their ids given by the batch (`next_id`)
        if self.orders:
            conn.executemany(_ORDER_SQL, self.orders)
            conn.executemany(_LINE_SQL, self.lines)
            self.orders.clear()
            self.lines.clear()
        if self.events:
            if keys_held(conn) is not None:
                defer_events(conn, self.events)  # at COMMIT, in id order with the other writers' (records)
            else:
                conn.executemany(EVENT_SQL, self.events)
            self.events.clear()
        if self.actions:
            conn.executemany(ACTION_SQL, self.actions)
            self.actions.clear()
        for site, messages in self.tasks.items():
            send_many_to_site(conn, link, site, messages)
        self.tasks.clear()
        if self.took:
            stock_push.took_many(conn, self.took)
            self.took.clear()

    def to_serve(self, conn: sqlite3.Connection, pairs: set[tuple[str, str]],
                 before: waiting.DeadlineKey) -> set[tuple[str, str]]:
        """The pairs of these (item, warehouse) whose waiting orders `waiting.serve` should try before
        `before`: those with units available (as the waiters index reads them), and none at all when every
        order waiting there was tried in this batch and none of its pairs moved since (stock only goes down
        in a batch but for a cancellation: it still cannot take its units, its reason's figures are the
        same)."""
        live = set()
        for pair in pairs:
            if pair in self.empty:
                continue
            if self.holds.available(conn, *pair) <= 0:
                self.empty.add(pair)
                continue
            live.add(pair)
        moved, tried = self.moved, self.tried
        for pair in live:
            for oid in self.waiters.candidates(*pair, before):
                seen = tried.get(oid)
                if seen is None or any(moved.get(p, 0) != n for p, n in seen.items()):
                    return live
        return set()

    def served(self, conn: sqlite3.Connection, out: waiting.Served) -> None:
        """What a `waiting.serve` call learnt: when it served none, the orders it tried, with the counts of
        their pairs now (their lines read in one statement); when it served some, nothing holds any more
        (it reserved where this batch does not count)."""
        if out.served:
            self.tried.clear()
            return
        if not out.waiting:
            return
        stamps: dict[int, dict[tuple[str, str], int]] = {oid: {} for oid in out.waiting}
        for oid, item, warehouse in conn.execute(
                "SELECT l.order_id, l.item_id, o.warehouse FROM order_lines l JOIN orders o ON o.id=l.order_id"
                " WHERE l.order_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?)) AND l.item_id IS NOT NULL",
                (json.dumps(list(out.waiting)),)):
            stamps[oid][(item, warehouse)] = self.moved.get((item, warehouse), 0)
        self.tried.update(stamps)

    def forget(self) -> None:
        """Stock came back (a cancellation): what was learnt of who may take it holds no more."""
        self.holds.stale()
        self.waiters.stale()
        self.tried.clear()
        self.empty.clear()

    def stored_row(self, conn: sqlite3.Connection, key: str, link: Any) -> sqlite3.Row | None:
        if key in self.absent:
            return None
        if key in self.stored:  # read at the start; a second copy of it in the batch reads it again
            return self.stored.pop(key)
        self.write(conn, link)
        return conn.execute("SELECT id, native_status, native_substatus, stage, ship_by FROM orders WHERE key=?",
                            (key,)).fetchone()

    def serving_warehouse(self, conn: sqlite3.Connection, cfg: CloudConfig, account: str,
                          mp_wh: str) -> tuple[str | None, str | None]:
        """(own warehouse serving the marketplace's warehouse or None, the site of that warehouse or None)."""
        found = self.serving.get((account, mp_wh))
        if found is None:
            served = warehouses.serving_warehouse(conn, cfg, account, mp_wh)
            found = self.serving[(account, mp_wh)] = (served, cfg.site_of_warehouse(served) if served else None)
        return found

    def native_unified(self, cfg: CloudConfig, order: Order) -> str:
        """The unified status the marketplace's own status maps to ("new" when unknown), once per batch."""
        k = (order.marketplace, order.native_status, order.native_substatus)
        found = self.natives.get(k)
        if found is None:
            found = self.natives[k] = cfg.unified_status(*k) or "new"
        return found

    def unified(self, cfg: CloudConfig, order: Order, stage: str) -> str:
        """`records.unified` of an order at `stage`, once per batch."""
        k = (order.marketplace, order.native_status, order.native_substatus, stage)
        found = self.statuses.get(k)
        if found is None:
            found = self.statuses[k] = unified(cfg, *k)
        return found

    def stock_follows_orders(self, cfg: CloudConfig, account: str) -> bool:
        if account not in self.follows:
            settings = cfg.accounts.get(account)
            self.follows[account] = settings is not None and settings.stock_follows_orders
        return self.follows[account]


def _ingest_one(conn: sqlite3.Connection, cfg: CloudConfig, timed: _Timed, link: Any, now: float,
                result: IngestResult, dirty: set[str], batch: _Batch) -> None:
    order = timed.order
    key = order_key(order.account, order.native_id)
    row = batch.stored_row(conn, key, link)
    if row is not None:
        result.known += 1
        if (row["native_status"], row["native_substatus"]) != (order.native_status, order.native_substatus):
            batch.write(conn, link)  # what follows reads the orders and may release and send
            try:
                update_native_status(conn, cfg, row["id"], order.native_status, order.native_substatus, link=link,
                                     now=now)
            except OrderError as exc:  # polled: said in the log each time, the order left as it was
                log.warning("%s", exc)
            batch.forget()  # a cancellation may have given stock back and served waiting orders
        if ship_by_moved(row["stage"], row["ship_by"], order.ship_by):  # a push of the move missed, or none
            batch.write(conn, link)
            move_ship_by(conn, row["id"], order.ship_by, now=now, actor=order.account, link=link)
        return
    mp_wh = str(order.warehouse_id or "")
    served, site = batch.serving_warehouse(conn, cfg, order.account, mp_wh)
    warehouse = served or ""
    native_unified = batch.native_unified(cfg, order)
    lines, unlinked = [], []
    for no, ln in enumerate(order.lines, 1):
        linked = batch.links.get((order.account, ln.card_id)) if ln.card_id else None
        item_id, pack = linked or waiting.line_item(conn, order.account, ln.card_id, ln.offer_id, ln.barcode)
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
        stage, problem, event = "problem", waiting.unlinked_reason(unlinked), "problem"
        result.problems += 1
    elif served is None:
        stage, problem, event = "problem", waiting.unserved_reason(order.account, mp_wh), "problem"
        result.problems += 1
    elif native_unified not in ("new", "in_work"):
        # Already beyond assembly when first seen (e.g. picked up after a long outage): record, don't reserve.
        stage = "handed_over" if RANK[native_unified] >= RANK["handed_over"] else "packed"
    else:
        # the waiting orders of these items queued before this one take what they can first
        pairs = {(ln[4], warehouse) for ln in lines}
        if not batch.waiters.read:  # about to read who waits: the batch's own waiting orders too
            batch.write(conn, link)
        serve = batch.to_serve(conn, pairs, timed.deadline) if batch.waiters.any_of(pairs) else None
        if serve:
            need(conn)  # the waiting orders are served by ordinary transactions (a keyed batch gives way)
            batch.write(conn, link)  # the waiting orders are read from the database
            ahead = waiting.serve(conn, cfg, items=serve, link=link, now=now, plan=False, waiters=batch.waiters,
                                  before=timed.deadline)
            result.sold_out |= ahead.sold_out
            batch.holds.stale()  # it reserved in the database
            batch.served(conn, ahead)
        holds = batch.holds
        mark = holds.mark()  # every line or none
        try:
            for line in lines:
                if holds.reserve(conn, key, line[4], warehouse, line[6], now) <= 0:
                    result.sold_out.add(line[4])
                dirty.add(line[4])
        except stock.InsufficientStock as exc:
            holds.undo(mark)
            facts = batch.facts.get(exc.item_id)
            if facts is not None and exc.item_id not in batch.words:  # its article and name are read already
                batch.words[exc.item_id] = waiting.words_of(exc.item_id, facts[4], facts[0])
            stage, problem, event = ("short", waiting.short_reason(conn, exc.item_id, exc.available, exc.wanted,
                                                                   batch.words), "short")
            result.short += 1
        else:
            stage, event = "reserved", "reserved"
            result.reserved += 1
            for pair in pairs:
                batch.moved[pair] = batch.moved.get(pair, 0) + 1
            if site is None:
                problem = waiting.no_site_reason(warehouse)
    if stage in waiting.WAITING:
        # it waits for stock (or for a person): the orders waiting are served by ordinary transactions, which
        # read them all; a keyed batch gives way rather than add one beside a keyed delta adding units
        need(conn)
    status = batch.unified(cfg, order, stage)
    oid = batch.next_id
    batch.next_id += 1
    batch.orders.append(
        (oid, key, order.account, order.marketplace, order.native_id, order.number or order.native_id,
         order.native_status, order.native_substatus, stage, status, problem, timed.created_at,
         timed.ship_by, mp_wh, warehouse, site, now, now,
         json.dumps(order.native, default=str, ensure_ascii=False) if order.native else "{}"))
    batch.absent.discard(key)
    if stage == "short" and len(lines) == 1:  # its reason is the one serve would give it now
        pair = (lines[0][4], warehouse)
        batch.tried[oid] = {pair: batch.moved.get(pair, 0)}
    if stage in waiting.WAITING:
        batch.waiters.add(oid, warehouse, [ln[4] for ln in lines],
                          (timed.deadline[0], timed.deadline[1], timed.deadline[2], float(oid)))
    result.new += 1
    result.order_ids.append(oid)
    for line in lines:
        line[0] = oid
    batch.lines += lines
    if batch.stock_follows_orders(cfg, order.account) and mp_wh:
        taken: dict[str, int] = {}
        for line in lines:
            taken[line[2]] = taken.get(line[2], 0) + line[5]
        if stage == "cancelled":  # taken and given back before we saw it
            batch.write(conn, link)  # the batch's orders before it took theirs first
            stock_push.marketplace_gave_back(conn, order.account, mp_wh, taken, [ln[4] for ln in lines], now)
        else:
            batch.took += stock_push.took_rows(order.account, mp_wh, taken, timed.created_ts)
    batch.events.append((oid, timed.created_ts, "received", order.native_status, "marketplace",
                         order.account, None))
    if event:  # as log_event says them: by the system
        batch.events.append((oid, now, event, problem if event in ("short", "problem") else "", "system", "", None))
    if stage == "short" and cfg.cancel_when_short:
        batch.actions.append((oid, "cancel", "pending", now, now))
    if stage != "reserved":
        return
    batch.actions.append((oid, "confirm", "pending", now, now))
    if site is None:
        return
    body = batch.pick_tasks.body(conn, key, order.marketplace, order.account, order.native_id,
                                 order.number or order.native_id, warehouse, timed.ship_by if order.ship_by else None,
                                 [(ln[4], ln[6], ln[8], ln[9], bool(ln[10])) for ln in lines])
    batch.tasks.setdefault(site, []).append(("pick_task", body))


_ORDER_SQL = ("INSERT INTO orders(id, key, account, marketplace, native_id, number, native_status, native_substatus,"
              " stage, status, problem, created_at, ship_by, mp_warehouse, warehouse, site, ingested_ts, updated_ts,"
              " native) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_LINE_SQL = ("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, item_id, quantity, units, price, barcode,"
             " title, marking_required) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


def update_native_status(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, native_status: str,
                         native_substatus: str = "", *, link: Any = None, now: float | None = None) -> str:
    """The marketplace says the order moved; a cancellation releases its stock and stops the site.
    A status the marketplace's status map does not know is refused (OrderError): nothing changes."""
    now = time.time() if now is None else now
    need(conn, order_lock(oid))
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    if o["stage"] in after_handover.AFTER_HANDOVER:  # the parcel has left: a cancellation releases nothing
        return after_handover.apply_status(conn, cfg, oid, native_status, native_substatus, link=link, now=now)
    known = cfg.unified_status(o["marketplace"], native_status, native_substatus)
    if known is None:
        shown = f"{native_status}/{native_substatus}" if native_substatus else native_status
        raise OrderError(f"заказ {o['number']}: неизвестный статус маркетплейса «{shown}» — статус не изменён;"
                         " добавьте его в [status_map] конфигурации")
    conn.execute("UPDATE orders SET native_status=?, native_substatus=? WHERE id=?",
                 (native_status, native_substatus, oid))
    log_event(conn, oid, "status", f"{native_status}/{native_substatus}" if native_substatus else native_status,
              now, source="marketplace", actor=o["account"])
    native = known
    stage = o["stage"]
    if native in TERMINAL and stage != "cancelled":
        cancel(conn, cfg, oid, reason=f"отменён на маркетплейсе ({native_status})", link=link, now=now,
               tell_marketplace=False, source="marketplace", actor=o["account"])
        return "cancelled"
    set_stage(conn, cfg, oid, stage, now)
    return conn.execute("SELECT status FROM orders WHERE id=?", (oid,)).fetchone()[0]


def cancel(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, *, reason: str = "", link: Any = None,
           now: float | None = None, tell_marketplace: bool = True, source: str = "manager",
           actor: str = "") -> int:
    """Cancel an order: release its reservation, tell the site to stop, optionally cancel on the
    marketplace; the waiting orders of the released items may take them. Returns the units released."""
    now = time.time() if now is None else now
    need(conn)  # its stock released, its site told, the waiting orders served
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    if o is None:
        raise OrderError(f"нет такого заказа: {oid}")
    if o["stage"] == "cancelled":
        return 0
    if o["stage"] in after_handover.AFTER_HANDOVER:  # the parcel has left: nothing to release or stop
        if tell_marketplace:
            log_event(conn, oid, "cancel_refused", f"заказ уже передан в доставку: не отменён ({reason})".replace(
                " ()", ""), now)
        elif o["stage"] in ("handed_over", "delivered"):
            after_handover.expect_return(conn, cfg, oid, kind="cancelled", reason=reason, link=link, now=now)
        return 0
    freed = [(item, wh) for item, wh, _ in stock.held(conn, o["key"])]
    released = stock.release(conn, o["key"], note=reason, now=now)
    if not tell_marketplace and o["stage"] in OPEN_STAGES:
        marketplace_gave_back(conn, cfg, oid, now)  # it cancelled on its side and put the units back
    set_stage(conn, cfg, oid, "cancelled", now, problem=reason)
    conn.execute("UPDATE order_actions SET state='done', error='order cancelled' WHERE order_id=? AND state='pending'"
                 " AND action!='cancel'", (oid,))
    if o["site"] and o["stage"] in TASK_AT_SITE:
        send_to_site(conn, link, o["site"], "cancel_task",
                     {"task_id": pick_task_id(o["key"], o["task_round"]), "order_id": o["key"],
                      "reason": reason or "cancelled"})
    if tell_marketplace:
        queue_action(conn, oid, "cancel", now)
    log_event(conn, oid, "cancelled", reason, now, source=source, actor=actor)
    queue_shipping(conn, oid, now)  # the rest of its shipment batch may all be handed over now
    if freed:
        waiting.serve(conn, cfg, items=freed, link=link, now=now)
    return released


def _instant(iso: str | None) -> float | None:
    """The moment of a stored ISO date-time (None for none or an unreadable one)."""
    if not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo else None


def move_ship_by(conn: sqlite3.Connection, oid: int, ship_by: datetime | None, *, now: float | None = None,
                 source: str = "marketplace", actor: str = "", link: Any = None) -> str:
    """The marketplace moved the order's assembly deadline (its push, or a poll or re-read that found it):
    its `ship_by` (the deadline the order list sorts by, the waiting orders are served by and the deadline
    alerts read) takes the new one and the order's history says it ("ship_by": "old → new", ISO UTC). An
    order past assembly keeps its own ("past"); the same minute again changes nothing ("unchanged"). A pick
    task already at the site is told (`task_deadline`, in this transaction): the packers' page sorts by the
    new deadline; a task sent from now on carries it, read from the order."""
    now = time.time() if now is None else now
    if ship_by is None:
        return "unchanged"
    need(conn, order_lock(oid))
    o = conn.execute("SELECT stage, ship_by, site, key, task_round FROM orders WHERE id=?", (oid,)).fetchone()
    if o is None or o["stage"] not in OPEN_STAGES:
        return "past"
    if not ship_by_moved(o["stage"], o["ship_by"], ship_by):
        return "unchanged"
    new = ship_by.isoformat()
    conn.execute("UPDATE orders SET ship_by=?, updated_ts=? WHERE id=?", (new, now, oid))
    log_event(conn, oid, "ship_by", f"{o['ship_by'] or '—'} → {new}", now, source=source, actor=actor)
    if o["site"] and o["stage"] in TASK_AT_SITE:
        send_to_site(conn, link, o["site"], "task_deadline",
                     {"task_id": pick_task_id(o["key"], o["task_round"]), "order_id": o["key"],
                      "deadline": new})
    return "ship_by"


TASK_AT_SITE = ("reserved", "picking", "packed")  # the stages whose pick task is at the site (`cancel` stops it)


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
    polled = False  # a thin "created" push of an order polling took in first: not read from the marketplace
    if order is None and event.order_native_id and adapter is not None and event.kind == "created":
        polled = conn.execute("SELECT 1 FROM orders WHERE key=?",
                              (order_key(account, event.order_native_id),)).fetchone() is not None
        if not polled:
            order = adapter.get_order(event.order_native_id)  # before the write lock: no HTTP inside it
    ship_by = event.ship_by
    if event.kind == "ship_by" and adapter is not None and event.order_native_id and conn.execute(
            "SELECT 1 FROM orders WHERE key=?", (order_key(account, event.order_native_id),)).fetchone():
        # Ozon: "check the shipping date with /v3/posting/fbs/get" — the posting's own date is the truth, so
        # a late or reordered push moves nothing back (read before the write lock: no HTTP inside it)
        try:
            ship_by = adapter.get_order(event.order_native_id).ship_by or ship_by
        except MarketplaceError as exc:
            if exc.status != 404:
                raise  # the worker tries again
    with transaction(conn):  # the dedup mark and what the event does commit together (or neither)
        if dedup:
            if conn.execute("SELECT 1 FROM event_dedup WHERE key=?", (dedup,)).fetchone():
                return "duplicate"
            conn.execute("INSERT INTO event_dedup(key, ts) VALUES (?,?)", (dedup, now))
        if polled:
            return "known"
        if order is not None:
            order.account = order.account or account
            res = ingest(conn, cfg, [order], link=link, now=now)
            return "new" if res.new else "known"
        if not event.order_native_id:
            return "ignored"
        row = conn.execute("SELECT id FROM orders WHERE key=?", (order_key(account, event.order_native_id),)).fetchone()
        if row is None and event.kind == "ship_by":
            return "unknown order"  # it comes in (polled or pushed) with the date the marketplace has then
        if row is None:
            # a status for an order we never saw: said and kept (the push stays stored), nothing changed
            log_error(conn, "orders", f"{account}: статус «{event.native_status or event.kind}» пришёл для"
                      f" неизвестного заказа {event.order_native_id} — ничего не изменено", account)
            return "unknown order"
        if event.kind == "cancelled":
            cancel(conn, cfg, row[0], reason="отменён маркетплейсом", link=link, now=now,
                   tell_marketplace=False, source="marketplace", actor=account)
            return "cancelled"
        if event.kind == "ship_by":
            return move_ship_by(conn, row[0], ship_by, now=now, actor=account, link=link)
        if event.native_status:
            try:
                update_native_status(conn, cfg, row[0], event.native_status, link=link, now=now)
            except OrderError as exc:
                log.warning("push of %s: %s", account, exc)
                log_error(conn, "orders", str(exc), account)
                return "unknown status"
            return "status"
    return "ignored"


def poll(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None) -> IngestResult:
    """Fetch the account's new orders and ingest them."""
    found = adapter.new_orders()
    for o in found:
        o.account = o.account or adapter.account
    return ingest(conn, cfg, found, link=link)


def refresh_statuses(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None,
                     limit: int = 50) -> int:
    """Re-read open orders of the account (least recently updated first, `limit` per run so the
    marketplace's request budget stays for new orders and stock): catches cancellations, and assembly
    deadlines the marketplace moved (`move_ship_by`) where its push did not come. Returns the orders
    changed."""
    rows = conn.execute(
        "SELECT id, native_id, native_status, native_substatus, stage, ship_by FROM orders WHERE account=? AND"
        f" stage IN ({','.join('?' * len(OPEN_STAGES))}) ORDER BY updated_ts LIMIT ?",
        (adapter.account, *OPEN_STAGES, limit)).fetchall()
    changed = 0
    same: list[tuple[float, int]] = []  # read again unchanged: their turn moves back, all in one transaction
    for r in rows:
        try:
            o = adapter.get_order(r["native_id"])
        except MarketplaceError as exc:
            log.warning("status of %s: %s", r["native_id"], exc)
            continue
        status_moved = (o.native_status, o.native_substatus) != (r["native_status"], r["native_substatus"])
        if not status_moved and not ship_by_moved(r["stage"], r["ship_by"], o.ship_by):
            same.append((time.time(), r["id"]))
            continue
        with transaction(conn):
            if status_moved:
                try:
                    update_native_status(conn, cfg, r["id"], o.native_status, o.native_substatus, link=link)
                except OrderError as exc:  # said in the log, the order left as it was
                    log.warning("%s", exc)
                    continue
            move_ship_by(conn, r["id"], o.ship_by, actor=adapter.account, link=link)
            changed += 1
    if same:  # only their turn's moment: the account's own key (on SQLite as ever)
        with transaction(conn, keys=(f"statuses:{adapter.account}",)):
            conn.executemany("UPDATE orders SET updated_ts=? WHERE id=?", same)
    return changed
