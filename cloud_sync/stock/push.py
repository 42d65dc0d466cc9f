"""The stock push planner: the ledger's changes reach every account's cards within seconds.

Owns (schema in stock.py's MIGRATIONS[1]) `stock_push_queue` (one row per card × marketplace warehouse: the latest number wins, so a burst
of changes coalesces into one push), `stock_published` (what each card last showed, as pushed or read
back), `stock_push_holds` (pushes held by the zero guard until someone confirms) and
`stock_push_stats` (units of work sent per account).

Planning (`plan`): each item marked dirty by the ledger is recomputed for every card linked to it on
every account and every marketplace warehouse mapped to an own warehouse: the account's allocation
rule (share of available, safety buffer, maximum listed) divided by the card's pack size; a hidden
card publishes 0. Priorities: 0 = a card going to zero (oversell protection: when the last units are
reserved every other card of the item drops to zero at once, ahead of all other pushes), 1 = a
decrease, 2 = an increase. A card whose marketplace allows one update per N seconds (Ozon: 30 s) is
scheduled no sooner than that.

Zero guard (`guard`): before sending, an account's pending zeros that do not come from a sale are
held — and logged, and alerted (cloud_sync/alerts/outbox.py) — when they would zero more than
`stock.zero_guard_share` (default 20%) of the account's listed cards, or when the card's source data is
missing or stale (its item never reported for that warehouse; the warehouse never heard from 1C or a
site, or longer ago than `stock.stale_after_s`).
`confirm_hold` releases them. A zero caused by a reservation or pick is never held: holding it would
sell goods that are gone; for the same reason a sale that takes an item's last units releases the zero
already held for its cards (it goes out as the sale's).

Sending (`send_account`): the due rows of the most urgent priority first, batched at
`jobs.push_batch` (the adapter splits further by its endpoint map and paces by its limits); per-item
results are recorded: ok → published, retryable → retried with backoff, otherwise failed and reported.
Pushes in doubt are read back first (`_read_back`, the cards in doubt alone): rows claimed by a process that
died mid-push, and rows of cards whose number the marketplace moved by itself (`stock_published` UNKNOWN,
`marketplace_took` / `marketplace_gave_back`) — but never a zero (priority 0); one the card shows already is
recorded as sent without a second write.
The running cloud's `service.pusher.Pusher` runs the planner and one sender thread per account.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud_sync import leases
from cloud_sync.alerts import outbox
from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.db import keyed_or_whole, transaction
from cloud_sync.orders import history
from cloud_sync.stock import ledger, warehouses
from marketplaces.base import (
    ItemResult,
    Marketplace,
    MarketplaceError,
    NotSupported,
    StockKey,
    StockLevel,
    calls_as_usual,
    urgent_calls,
)
from sitelink.sqlite import need

log = logging.getLogger("cloud_sync.stock.push")

# The tables are created by cloud_sync/stock/ledger.py (MIGRATIONS[1]): the ledger's schema part owns them.


@dataclass
class Planned:
    queued: int = 0
    unchanged: int = 0
    items: int = 0


@dataclass
class Sent:
    account: str
    sent: int = 0
    ok: int = 0
    retry: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def quantity_for(conn: sqlite3.Connection, cfg: CloudConfig, card: catalog.CardRow, own_warehouse: str) -> int:
    """What the card may show in total for one own warehouse (before the split between the account's
    marketplace warehouses that ship from it)."""
    return publishable(cfg, card, ledger.level(conn, card.item_id, own_warehouse))


def publishable(cfg: CloudConfig, card: catalog.CardRow, lv: ledger.Level) -> int:
    """`quantity_for` given the level of the card's item at the own warehouse."""
    if not card.visible or not card.item_id:
        return 0
    return cfg.accounts[card.account].allocation.publish(lv.available, card.pack)


def split(whmap: dict[str, str]) -> dict[str, tuple[str, int, int]]:
    """mp warehouse -> (own warehouse, its position, how many of the account's mp warehouses share that own
    warehouse). When several marketplace warehouses ship from one own warehouse, the number is split
    between them (the first ones get the remainder), never shown in full at each: that would sell the
    same units several times."""
    groups: dict[str, list[str]] = {}
    for mp_wh in sorted(whmap):
        groups.setdefault(whmap[mp_wh], []).append(mp_wh)
    return {mp_wh: (own, i, len(members)) for own, members in groups.items() for i, mp_wh in enumerate(members)}


def share_of(total: int, position: int, parts: int) -> int:
    return total // parts + (1 if position < total % parts else 0)


PLAN_CHUNK = 25  # dirty items recomputed per write transaction (each: its cards on every account)


def plan(conn: sqlite3.Connection, cfg: CloudConfig, *, items: Iterable[str] | None = None,
         now: float | None = None, limit: int = 5000, cause: str = "source") -> Planned:
    """Recompute the published numbers of dirty items (or of `items`, for `cause`) into the push queue."""
    now = time.time() if now is None else now
    out = Planned()
    if items is None:  # read without the write lock; each chunk's rows are deleted only as they were read
        dirty = conn.execute("SELECT item_id, cause, ts FROM stock_dirty ORDER BY cause='order' DESC, ts LIMIT ?",
                             (limit,)).fetchall()
        todo = [(r[0], r[1], r[2]) for r in dirty]
        if not todo:
            return out  # nothing dirty: no write transaction
        chunks = [todo[i:i + PLAN_CHUNK] for i in range(0, len(todo), PLAN_CHUNK)]
    else:
        chunks = [[(i, cause, now) for i in items]]
    wh_cache: dict[str, dict[str, tuple[str, int, int]]] = {}  # account -> `split` of its warehouses
    for chunk in chunks:
        # a chunk per transaction: a backlog of thousands of items does not hold the store's writer lock for
        # seconds (other writers get their turn between chunks)
        # a keyed transaction (`planner_keys`): it writes the queued rows of every account, so it waits for
        # (and holds back) the accounts' senders, not the site link's rounds, status re-reads or claims
        with transaction(conn, keys=planner_keys(cfg)):
            _plan_chunk(conn, cfg, chunk, now, out, wh_cache)
            if items is None:  # in the items' order, as keyed writers mark them at their COMMIT (no lock circle)
                conn.executemany("DELETE FROM stock_dirty WHERE item_id=? AND ts=?", sorted((i, t) for i, _, t in chunk))
    return out


def _plan_chunk(conn: sqlite3.Connection, cfg: CloudConfig, chunk: list[tuple[str, str, float]], now: float,
                out: Planned, wh_cache: dict[str, dict[str, tuple[str, int, int]]]) -> None:
    """One chunk's items recomputed, inside the caller's write transaction. What it reads it reads in a few
    statements for the whole chunk (the items' cards, their levels, what is published and queued for those
    cards), and writes in a few: the planner holds the store's writer lock, and with 40 accounts a round
    of 25 items was ~4,000 statements one by one (one level read per card: the same level 40 times)."""
    ids = list(dict.fromkeys(i for i, _, _ in chunk))
    cards = catalog.cards_of_items(conn, ids)
    levels = ledger.levels_of(conn, ids)
    accounts = {c.account for cs in cards.values() for c in cs}
    pub: dict[tuple[str, str, str], tuple[int, float]] = {}
    queued: dict[tuple[str, str, str], int] = {}
    held: set[tuple[str, str, str]] = set()  # queued zeros the zero guard holds
    if accounts:
        card_ids = json.dumps(sorted({c.card_id for cs in cards.values() for c in cs}))
        for r in conn.execute("SELECT account, card_id, warehouse_id, quantity, ts FROM stock_published"
                              " WHERE card_id IN (SELECT value FROM json_each(?))", (card_ids,)):
            pub[(r[0], r[1], r[2])] = (r[3], r[4])
        for r in conn.execute("SELECT account, card_id, warehouse_id, quantity, state FROM stock_push_queue"
                              " WHERE card_id IN (SELECT value FROM json_each(?))", (card_ids,)):
            queued[(r[0], r[1], r[2])] = r[3]
            if r[4] == "held":
                held.add((r[0], r[1], r[2]))
    undone: list[tuple[str, str, str]] = []
    rows: list[tuple[Any, ...]] = []
    for item_id, cause_of, origin in chunk:
        out.items += 1
        for c in cards.get(item_id, ()):
            settings = cfg.accounts.get(c.account)
            if settings is None or not settings.enabled:
                continue
            if c.account not in wh_cache:
                wh_cache[c.account] = split(warehouses.account_warehouses(conn, cfg, c.account))
            totals: dict[str, int] = {}
            for mp_wh, (own, position, parts) in wh_cache[c.account].items():
                if own not in totals:
                    lv = levels.get((item_id, own)) or ledger.Level(item_id, own, 0, 0)
                    totals[own] = publishable(cfg, c, lv)
                qty = share_of(totals[own], position, parts)
                key = (c.account, c.card_id, mp_wh)
                # a sale that makes a held zero real queues it again, as the sale's: the zero guard never holds
                # a sale's zero (the card would go on selling goods that are gone)
                sold_out = cause_of == "order" and qty == 0 and key in held
                row = _queue_row(cfg, c, mp_wh, qty, cause_of, origin, now, pub.get(key),
                                 None if sold_out else queued.get(key))
                if row is None:
                    if key in queued and pub.get(key, (None,))[0] == qty:
                        undone.append(key)  # a newer change undid the queued one: nothing to send any more
                        del queued[key]
                    out.unchanged += 1
                    continue
                rows.append(row)
                queued[key] = qty
                held.discard(key)  # the upsert makes it pending
                out.queued += 1
    if undone:
        conn.executemany("DELETE FROM stock_push_queue WHERE account=? AND card_id=? AND warehouse_id=?", undone)
    if rows:
        conn.executemany(_ENQUEUE_SQL, rows)


def plan_all(conn: sqlite3.Connection, cfg: CloudConfig, now: float | None = None) -> Planned:
    """Recompute every linked item (a full sync)."""
    items = [r[0] for r in conn.execute("SELECT DISTINCT item_id FROM card_links WHERE item_id IS NOT NULL")]
    return plan(conn, cfg, items=items, now=now)


_ENQUEUE_SQL = (
    "INSERT INTO stock_push_queue(account, card_id, warehouse_id, offer_id, item_id, quantity, priority, cause,"
    " state, next_try, queued_ts, origin_ts) VALUES (?,?,?,?,?,?,?,?,'pending',?,?,?)"
    " ON CONFLICT(account, card_id, warehouse_id) DO UPDATE SET quantity=excluded.quantity,"
    " priority=excluded.priority, cause=excluded.cause, state='pending', confirmed=0, hold_id=NULL,"
    " version=stock_push_queue.version+1, attempts=0, error='',"
    " next_try=MAX(excluded.next_try, CASE WHEN stock_push_queue.attempts>0 THEN stock_push_queue.next_try"
    " ELSE 0 END), queued_ts=excluded.queued_ts, origin_ts=MIN(stock_push_queue.origin_ts, excluded.origin_ts)"
)


def _queue_row(cfg: CloudConfig, c: catalog.CardRow, mp_wh: str, qty: int, cause: str, origin: float, now: float,
               pub: tuple[int, float] | None, queued: int | None) -> tuple[Any, ...] | None:
    """The push queue's row (`_ENQUEUE_SQL`'s parameters) for showing `qty` on the card at `mp_wh`, given
    what is published (quantity, when) and queued (quantity) there; None when nothing is to be sent: the
    number is published already (a queued push then undoes: the caller deletes it) or queued already."""
    if pub is not None and pub[0] == qty:
        return None
    if queued is not None and queued == qty:
        return None
    before = pub[0] if pub is not None else None
    # a zero goes first whatever the card showed before: more than 0, never published, or not known
    # (UNKNOWN: the marketplace moved it by itself), which may well be more than 0
    priority = 0 if qty == 0 else (1 if before is None or qty < before else 2)
    interval = cfg.accounts[c.account].min_stock_interval_s / max(cfg.accounts[c.account].account.time_scale, 1e-9)
    next_try = max(now, (pub[1] + interval) if pub is not None and interval else now)
    return (c.account, c.card_id, mp_wh, c.offer_id, c.item_id or "", qty, priority, cause, next_try, now, origin)


# ---------------------------------------------------------------- zero guard


def guard(conn: sqlite3.Connection, cfg: CloudConfig, account: str, now: float | None = None) -> int | None:
    """Hold the account's pending zeros that the guard does not let through; returns the hold id (or None).

    A keyed transaction of the account's sender (`push_keys`: its queued and published rows; its holds are
    written by it alone, and confirmed in an ordinary transaction): the other accounts' senders and the site
    link's rounds go on beside it. The levels and sources it judges by are read as they are committed (a
    delta committed meanwhile is judged at the next round, as if the guard had run a moment earlier). A new
    hold's alert (the alert outbox, deduplicated across the store) gives way to an ordinary transaction."""
    now = time.time() if now is None else now
    if not conn.execute("SELECT 1 FROM stock_push_queue WHERE account=? AND state='pending' AND quantity=0"
                        " AND cause!='order' AND confirmed=0 LIMIT 1", (account,)).fetchone():
        return None  # nothing the guard could hold: no write lock taken
    held = keyed_or_whole(conn, push_keys(account), lambda: _guard(conn, cfg, account, now))
    if held is None:
        return None
    hold_id, reason = held
    log.warning("zero guard: holding stock push of account %s: %s", account, reason)
    return hold_id


def _guard(conn: sqlite3.Connection, cfg: CloudConfig, account: str, now: float) -> tuple[int, str] | None:
    need(conn, *push_keys(account))
    zeros = conn.execute(
        "SELECT q.card_id, q.warehouse_id, q.item_id, p.quantity AS before FROM stock_push_queue q"
        " LEFT JOIN stock_published p ON p.account=q.account AND p.card_id=q.card_id"
        " AND p.warehouse_id=q.warehouse_id WHERE q.account=? AND q.state='pending' AND q.quantity=0"
        " AND q.cause!='order' AND q.confirmed=0 AND (p.quantity IS NULL OR p.quantity>0)", (account,)).fetchall()
    if not zeros:
        return None
    whmap = warehouses.account_warehouses(conn, cfg, account)
    stale = [z for z in zeros if _source_problem(conn, cfg, whmap.get(z["warehouse_id"]), now, z["item_id"])]
    held_now = {r[0] for r in conn.execute("SELECT DISTINCT card_id FROM stock_push_queue WHERE account=? AND"
                                             " state='held'", (account,))}
    visible = {r[0] for r in conn.execute("SELECT native_id FROM cards WHERE account=? AND visible=1", (account,))}
    zeroed = len(({z["card_id"] for z in zeros} | held_now) & visible)
    listed = max(1, len(visible))
    if zeroed / listed > cfg.zero_guard_share:
        hold_rows, reason = zeros, (f"would zero {zeroed} of {listed} listed cards"
                                    f" (more than {cfg.zero_guard_share:.0%})")
    elif stale:
        hold_rows, reason = stale, f"{len(stale)} zero(s) from missing or stale source data"
    else:
        return None
    hold = conn.execute("SELECT id FROM stock_push_holds WHERE account=? AND confirmed_ts IS NULL"
                        " ORDER BY id DESC LIMIT 1", (account,)).fetchone()
    if hold is None:
        need(conn)  # a new hold says so in the alert outbox (`_alert`): an ordinary transaction
        hold_id = int(conn.execute(
            "INSERT INTO stock_push_holds(account, reason, cards, listed, created_ts) VALUES (?,?,?,?,?)",
            (account, reason, len(hold_rows), listed, now)).lastrowid or 0)
        new_hold = True
    else:
        hold_id, new_hold = hold[0], False
        conn.execute("UPDATE stock_push_holds SET cards=cards+?, reason=? WHERE id=?",
                     (len(hold_rows), reason, hold_id))
    conn.executemany("UPDATE stock_push_queue SET state='held', hold_id=? WHERE account=? AND card_id=?"
                     " AND warehouse_id=?", [(hold_id, account, z["card_id"], z["warehouse_id"]) for z in hold_rows])
    if new_hold:
        _alert(conn, account, reason, len(hold_rows), listed, hold_id, now)
    return hold_id, reason


def _alert(conn: sqlite3.Connection, account: str, reason: str, cards: int, listed: int, hold_id: int,
           now: float) -> None:
    """The Telegram alert is queued in the hold's own transaction."""
    outbox.zero_guard_held(conn, account, cards, listed, reason=reason, hold_id=str(hold_id), now=now)


def _source_problem(conn: sqlite3.Connection, cfg: CloudConfig, own: str | None, now: float,
                    item_id: str = "") -> str:
    if own is None:
        return "unmapped warehouse"
    if item_id and conn.execute("SELECT 1 FROM stock_levels WHERE item_id=? AND warehouse=?",
                                (item_id, own)).fetchone() is None:
        return f"no stock of item {item_id} was ever reported for warehouse {own}"
    age = ledger.source_age(conn, own, now)
    if age is None:
        return f"no source data for warehouse {own}"
    if age > cfg.stale_after_s:
        return f"source data for warehouse {own} is {age / 3600:.1f} h old"
    return ""


def holds(conn: sqlite3.Connection, account: str | None = None, open_only: bool = True) -> list[dict]:
    sql = "SELECT * FROM stock_push_holds WHERE 1=1"
    args: list = []
    if account:
        sql += " AND account=?"
        args.append(account)
    if open_only:
        sql += " AND confirmed_ts IS NULL"
    out = []
    for r in conn.execute(sql + " ORDER BY id", args).fetchall():
        d = dict(r)
        d["held"] = conn.execute("SELECT COUNT(*) FROM stock_push_queue WHERE hold_id=? AND state='held'",
                                 (r["id"],)).fetchone()[0]
        out.append(d)
    return out


def confirm_hold(conn: sqlite3.Connection, hold_id: int, *, by: str = "", now: float | None = None) -> int:
    """A person confirmed: the held zeros go out. Returns the number of pushes released."""
    now = time.time() if now is None else now
    with transaction(conn):
        if conn.execute("SELECT 1 FROM stock_push_holds WHERE id=?", (hold_id,)).fetchone() is None:
            raise ValueError(f"unknown zero-guard hold {hold_id}")
        n = conn.execute("UPDATE stock_push_queue SET state='pending', confirmed=1, next_try=? WHERE hold_id=?"
                         " AND state='held'", (now, hold_id)).rowcount
        conn.execute("UPDATE stock_push_holds SET confirmed_ts=?, confirmed_by=? WHERE id=?", (now, by, hold_id))
    return n


# ---------------------------------------------------------------- sending


# One queued push, as it was read and claimed: the version alone does not name it (a row sent and deleted
# and queued again starts at version 1 again), the planning time does with it.
_SAME = "version=? AND queued_ts=?"


def send_account(conn: sqlite3.Connection, cfg: CloudConfig, account: str, adapter: Marketplace, *,
                 now: float | None = None, owner: str | None = None) -> Sent:
    """Send the account's due pushes of the most urgent priority (one batch).

    The due rows are read and claimed in one write transaction, and a row is claimed only as it was read
    (same version, planning time and number, still due) and only when no live process — this one
    included: a full sync and the pusher's thread share its id — is sending it. A read made before
    another sender's outcome was written would otherwise claim the row queued again after it (version 1
    again) and send the number already sent, then delete the newer number unsent."""
    now = time.time() if now is None else now
    owner = owner or leases.me()
    out = Sent(account)
    guard(conn, cfg, account, now)
    free = leases.unclaimed(now)
    if conn.execute(f"SELECT 1 FROM stock_push_queue WHERE account=? AND state='pending' AND next_try<=? AND {free[0]}"
                    " LIMIT 1", (account, now, *free[1])).fetchone() is None:
        return out  # nothing due: no write transaction (what is queued meanwhile is read next round)
    # claimed, so no other cloud process sends the same push (cloud_sync.leases); the account's own key: the
    # queue rows read and claimed are the account's, and anything else writing them is an ordinary transaction
    with transaction(conn, keys=push_keys(account)):
        top = conn.execute("SELECT MIN(priority) FROM stock_push_queue WHERE account=? AND state='pending'"
                           f" AND next_try<=? AND {free[0]}", (account, now, *free[1])).fetchone()[0]
        if top is None:
            return out
        rows = conn.execute(
            "SELECT card_id, warehouse_id, offer_id, item_id, quantity, version, attempts, queued_ts, claimed_by"
            f" FROM stock_push_queue WHERE account=? AND state='pending' AND next_try<=? AND priority=? AND {free[0]}"
            " ORDER BY queued_ts LIMIT ?", (account, now, top, *free[1], cfg.jobs.push_batch)).fetchall()
        published = _published_of(conn, account, rows)
        shown = [r for r in rows if published.get((r["card_id"], r["warehouse_id"])) == r["quantity"]]
        if shown:  # the card shows this number already (pushed meanwhile): nothing to write, the row is done
            conn.executemany(f"DELETE FROM stock_push_queue WHERE account=? AND card_id=? AND warehouse_id=? AND {_SAME}",
                             [(account, r["card_id"], r["warehouse_id"], r["version"], r["queued_ts"]) for r in shown])
            done_ids = {id(r) for r in shown}
            rows = [r for r in rows if id(r) not in done_ids]
        if rows:  # claimed in one statement (one per row held the lock for seconds at push_batch rows)
            free_sql, free_args = leases.unclaimed(now)
            conn.executemany(
                f"UPDATE stock_push_queue SET claimed_by=? WHERE account=? AND card_id=? AND warehouse_id=? AND"
                f" state='pending' AND {_SAME} AND quantity=? AND next_try<=? AND {free_sql}",
                [(owner, account, r["card_id"], r["warehouse_id"], r["version"], r["queued_ts"], r["quantity"], now,
                  *free_args) for r in rows])
            # ours: those of the rows read (none claimed then) that now name this process
            mine = {(q[0], q[1]) for q in conn.execute(
                "SELECT card_id, warehouse_id FROM stock_push_queue WHERE account=? AND claimed_by=?", (account, owner))}
            rows = [r for r in rows if (r["card_id"], r["warehouse_id"]) in mine]
    if not rows:
        return out
    # pushes in doubt, read back first: rows claimed by a process that died meanwhile (its push may have
    # reached the marketplace or not), and, but for zeros, cards whose number the marketplace moved by itself
    # (UNKNOWN: an order crossing our push, a cancellation): the card often shows the queued number already.
    # A zero (priority 0: an item ran out) is never read back first: written twice it is harmless, late it
    # sells goods that are gone.
    shown = _read_back(adapter, account, [r for r in rows if r["claimed_by"] or (
        top != 0 and published.get((r["card_id"], r["warehouse_id"])) == UNKNOWN)])
    to_send = [r for r in rows if shown.get((r["card_id"], r["warehouse_id"])) != r["quantity"]]
    levels = [StockLevel(r["card_id"], r["offer_id"], r["warehouse_id"], r["quantity"]) for r in to_send]
    out.sent = len(levels)
    # zeros (priority 0: an item ran out) take the account's next tokens ahead of its polls and other pushes
    token = urgent_calls() if top == 0 and levels else None
    try:
        results = {r.key: r for r in adapter.push_stocks(levels)} if levels else {}
        # what the marketplace shows already is recorded as sent, not sent a second time
        results.update((f"{r['card_id']}@{r['warehouse_id']}", ItemResult(f"{r['card_id']}@{r['warehouse_id']}", True))
                       for r in rows if shown.get((r["card_id"], r["warehouse_id"])) == r["quantity"])
        call_error = None
    except MarketplaceError as exc:
        results, call_error = {}, exc
    except BaseException:
        _unclaim(conn, account, rows, owner)  # not sent (or not known): the rows are free again
        raise
    finally:
        if token is not None:
            calls_as_usual(token)
    done = time.time()
    try:
        _outcome(conn, cfg, account, rows, results, call_error, done, owner, out)
    except BaseException:
        _unclaim(conn, account, rows, owner)
        raise
    return out


def _published_of(conn: sqlite3.Connection, account: str, rows: list) -> dict[tuple[str, str], int]:
    """What the queued rows' cards show ((card, warehouse) -> `stock_published`, as pushed or read back;
    UNKNOWN where the marketplace moved it by itself). A row whose number the card shows already is not
    sent: a number changed and changed back while its push was in flight is queued again, newer than that
    push, and would be written twice (the planner drops such a row at its next round, the same rule: a
    sender can come first)."""
    if not rows:
        return {}
    cards = json.dumps(sorted({r["card_id"] for r in rows}))
    return {(p[0], p[1]): p[2] for p in conn.execute(
        "SELECT card_id, warehouse_id, quantity FROM stock_published WHERE account=? AND card_id IN"
        " (SELECT value FROM json_each(?))", (account, cards))}


def _read_back(adapter: Marketplace, account: str, rows: list) -> dict[tuple[str, str], int]:
    """The numbers the marketplace shows now for pushes in doubt ((card, warehouse) -> quantity): rows whose
    claim names a process that died before recording its push's outcome (SIGKILLed mid-call), and rows of
    cards whose number the marketplace moved by itself (`stock_published` UNKNOWN). One that shows the
    queued number already is recorded without a second push; the others are pushed (a number is never
    left unsent for fear of a second write). Read with the adapter's own stock read, once per batch in
    doubt and for those cards at those warehouses alone; a marketplace that cannot say (NotSupported, an
    error, a timeout) gets them all pushed."""
    if not rows:
        return {}
    keys = sorted({StockKey(r["card_id"], r["offer_id"] or "", r["warehouse_id"]) for r in rows},
                  key=lambda k: (k.card_id, k.warehouse_id))
    try:
        levels = adapter.read_stocks("fbs", cards=keys)
    except (NotSupported, MarketplaceError) as exc:
        log.info("stock pushes of %s in doubt not read back (%s): pushed", account, exc)
        return {}
    wanted = {(r["card_id"], r["warehouse_id"]) for r in rows}
    shown = {(lv.card_id, lv.warehouse_id): lv.quantity for lv in levels if (lv.card_id, lv.warehouse_id) in wanted}
    log.info("stock pushes of %s in doubt: %d of %d shown already, not sent again", account,
             sum(1 for r in rows if shown.get((r["card_id"], r["warehouse_id"])) == r["quantity"]), len(rows))
    return shown


def push_keys(account: str) -> tuple[str]:
    """The key of a sender's own transactions (`send_account`): its account's queued and published rows and
    push counts (the items it marks dirty are written at COMMIT, see cloud_sync.stock.ledger)."""
    return (f"push:{account}",)


def planner_keys(cfg: CloudConfig) -> tuple[str, ...]:
    """The keys of a planner's round: every account's `push_keys` (the queued rows it writes, the published
    ones it reads) and `planner` (one round at a time). The items' levels it reads are raised by keyed
    site deltas at their COMMIT together with the items' dirty marks: a mark written after the round read
    the level has a newer `ts`, so the round's `DELETE … AND ts=?` leaves it, and the item is planned again."""
    return ("planner", *(k for a in sorted(cfg.accounts) for k in push_keys(a)))


def _unclaim(conn: sqlite3.Connection, account: str, rows: list, owner: str) -> None:
    try:
        with transaction(conn, keys=push_keys(account)):
            for r in rows:
                leases.unclaim(conn, "stock_push_queue", {"account": account, "card_id": r["card_id"],
                                                          "warehouse_id": r["warehouse_id"]}, owner=owner)
    except sqlite3.Error:
        log.exception("stock push claims of %s not given back (they go with this process)", account)


def _outcome(conn: sqlite3.Connection, cfg: CloudConfig, account: str, rows: list, results: dict,
             call_error: MarketplaceError | None, done: float, owner: str, out: Sent) -> None:
    """The pushes' results recorded, and their claims cleared, in one transaction (the account's key)."""
    with transaction(conn, keys=push_keys(account)):
        # the claims cleared and the pushes that went through recorded in a few statements (a batch is up to
        # `push_batch` rows: one statement per row and purpose held the lock for seconds)
        conn.executemany("UPDATE stock_push_queue SET claimed_by=NULL WHERE account=? AND card_id=? AND"
                         " warehouse_id=? AND claimed_by=?",
                         [(account, r["card_id"], r["warehouse_id"], owner) for r in rows])
        ok_rows = []
        for r in rows:
            key = f"{r['card_id']}@{r['warehouse_id']}"
            res = results.get(key) or results.get(r["card_id"])
            if call_error is None and res is not None and res.ok:
                ok_rows.append(r)
                out.ok += 1
                continue
            error = str(call_error) if call_error is not None else (res.error if res else "no result for this item")
            retryable = call_error.retryable if call_error is not None else (res.retryable if res else True)
            attempts = r["attempts"] + 1
            if retryable and attempts < 50:
                # backoff only: a per-card "too frequent" answer means we were early by a hair (the
                # planner already waits out the marketplace's interval), not by a whole interval
                delay = min(cfg.jobs.retry_max_s, cfg.jobs.retry_base_s * 2 ** min(attempts - 1, 8))
                delay /= max(cfg.accounts[account].account.time_scale, 1e-9)
                conn.execute("UPDATE stock_push_queue SET attempts=?, next_try=?, error=? WHERE account=? AND"
                             f" card_id=? AND warehouse_id=? AND {_SAME}",
                             (attempts, done + delay, error[:300], account, r["card_id"],
                              r["warehouse_id"], r["version"], r["queued_ts"]))
                out.retry += 1
            else:
                conn.execute("UPDATE stock_push_queue SET state='failed', attempts=?, error=? WHERE account=? AND"
                             f" card_id=? AND warehouse_id=? AND {_SAME}",
                             (attempts, error[:300], account, r["card_id"], r["warehouse_id"], r["version"],
                              r["queued_ts"]))
                out.failed += 1
                if len(out.errors) < 5:
                    out.errors.append(f"{key}: {error}")
        if ok_rows:
            queued = {(q[0], q[1]): (q[2], q[3]) for q in conn.execute(
                "SELECT card_id, warehouse_id, version, queued_ts FROM stock_push_queue WHERE account=?", (account,))}
            same = [r for r in ok_rows if queued.get((r["card_id"], r["warehouse_id"])) == (r["version"], r["queued_ts"])]
            conn.executemany("DELETE FROM stock_push_queue WHERE account=? AND card_id=? AND warehouse_id=?"
                             f" AND {_SAME}", [(account, r["card_id"], r["warehouse_id"], r["version"], r["queued_ts"])
                                               for r in same])
            conn.executemany("INSERT INTO stock_published(account, card_id, warehouse_id, quantity, ts) VALUES"
                             " (?,?,?,?,?) ON CONFLICT(account, card_id, warehouse_id) DO UPDATE SET"
                             " quantity=excluded.quantity, ts=excluded.ts",
                             [(account, r["card_id"], r["warehouse_id"], r["quantity"], done) for r in ok_rows])
            kept = {id(r) for r in same}
            for r in ok_rows:
                if id(r) not in kept:  # the row changed or went while we sent: recompute, respect the interval
                    _reschedule_after_push(conn, cfg, account, r["card_id"], r["warehouse_id"], done)
                    ledger.mark_dirty(conn, [r["item_id"]], "source", done)
        if out.failed:
            conn.execute("INSERT INTO cloud_errors(ts, area, account, message) VALUES (?,?,?,?)",
                         (done, "stock_push", account, f"{out.failed} stock push(es) failed: {'; '.join(out.errors)}"))
        if out.ok:  # at its COMMIT, in id order with the other writers' history (cloud_sync.orders.history)
            history.defer_events(conn, [(None, done, "stock_pushed", f"{out.ok} card(s) on {account}"
                                         + (f", {out.failed} failed" if out.failed else ""), "system", "", None)])
        conn.execute("INSERT INTO stock_push_stats(account, sent, failed, calls, last_ts) VALUES (?,?,?,1,?)"
                     " ON CONFLICT(account) DO UPDATE SET sent=sent+excluded.sent, failed=failed+excluded.failed,"
                     " calls=calls+1, last_ts=excluded.last_ts", (account, out.ok, out.failed, done))


def _reschedule_after_push(conn: sqlite3.Connection, cfg: CloudConfig, account: str, card_id: str, wh: str,
                           pushed: float) -> None:
    settings = cfg.accounts[account]
    interval = settings.min_stock_interval_s / max(settings.account.time_scale, 1e-9)
    if interval:
        conn.execute("UPDATE stock_push_queue SET next_try=MAX(next_try, ?) WHERE account=? AND card_id=?"
                     " AND warehouse_id=?", (pushed + interval, account, card_id, wh))


def record_read_back(conn: sqlite3.Connection, account: str, levels: Iterable[StockLevel]) -> int:
    """FBS numbers read from the marketplace become what the cards show (the zero guard and the planner
    compare against them)."""
    # ts 0: a reading is not an update, the marketplace's per-card interval does not start from it
    rows = [(account, lv.card_id, lv.warehouse_id, lv.quantity, 0.0) for lv in levels if lv.kind == "fbs"]
    with transaction(conn):
        conn.executemany("INSERT INTO stock_published(account, card_id, warehouse_id, quantity, ts) VALUES"
                         " (?,?,?,?,?) ON CONFLICT(account, card_id, warehouse_id) DO UPDATE SET"
                         " quantity=excluded.quantity", rows)
    return len(rows)


# `stock_published.quantity` when the marketplace moved the card's stock by itself by an amount we cannot
# know for sure (an order cancelled on its side gives units back): never equal to a planned number, so the
# next plan pushes the card again.
UNKNOWN = -1


def marketplace_took(conn: sqlite3.Connection, account: str, mp_warehouse: str, taken: dict[str, int],
                     placed_ts: float) -> int:
    """An order was placed on a marketplace that subtracts it from the stock its cards show by itself
    (profile `stock_follows_orders`): at the order's warehouse each card now shows `taken[card]` fewer
    than our last push, when that push had landed before the order was placed. When it may have landed
    after (marketplaces give the order's time to the second), what the card shows is not known: it is
    pushed again. Keeps `stock_published` equal to what the marketplace shows, so the planner re-pushes a
    card whose share of a warehouse did not change (several marketplace warehouses splitting one own
    warehouse). Returns cards adjusted. Runs in the caller's transaction."""
    return took_many(conn, took_rows(account, mp_warehouse, taken, placed_ts))


_TOOK_SQL = ("UPDATE stock_published SET quantity=CASE WHEN ts<? THEN MAX(0, quantity-?) ELSE ? END"
             " WHERE account=? AND card_id=? AND warehouse_id=? AND quantity>=0")


def took_rows(account: str, mp_warehouse: str, taken: dict[str, int], placed_ts: float) -> list[tuple[Any, ...]]:
    """`marketplace_took`'s changes as rows for `took_many`: a batch of orders collects its orders' rows and
    applies them in one statement, in the orders' order (before anything else reads or writes
    `stock_published`)."""
    return [(placed_ts, qty, UNKNOWN, account, card_id, mp_warehouse) for card_id, qty in taken.items()]


def took_many(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Apply `took_rows` rows, in order (one statement); returns cards adjusted."""
    if not rows:
        return 0
    need(conn, *{k for r in rows for k in push_keys(r[3])})  # the accounts' published rows
    return max(conn.executemany(_TOOK_SQL, rows).rowcount, 0)


def marketplace_gave_back(conn: sqlite3.Connection, account: str, mp_warehouse: str, card_ids: Iterable[str],
                          item_ids: Iterable[str], now: float) -> int:
    """An order was cancelled on a marketplace that puts its units back on the cards by itself: what they
    show is no longer known, so they are pushed again (their items are marked dirty). Runs in the caller's
    transaction; returns cards marked."""
    need(conn, *push_keys(account))  # the account's published rows (the items' dirty marks wait for COMMIT)
    cards = sorted(set(card_ids))
    n = 0
    for card_id in cards:
        n += conn.execute("UPDATE stock_published SET quantity=? WHERE account=? AND card_id=? AND warehouse_id=?",
                          (UNKNOWN, account, card_id, mp_warehouse)).rowcount
    ledger.mark_dirty(conn, sorted({i for i in item_ids if i}), "source", now)
    return n


def pending(conn: sqlite3.Connection, account: str | None = None) -> dict[str, int]:
    sql = "SELECT state, COUNT(*) FROM stock_push_queue" + (" WHERE account=?" if account else "") + " GROUP BY state"
    return {r[0]: r[1] for r in conn.execute(sql, (account,) if account else ())}


# ---------------------------------------------------------------- the running pusher


def retry_failed(conn: sqlite3.Connection, account: str, *, now: float | None = None) -> int:
    """A person asks to send an account's failed stock pushes again (after fixing a token, say): they go
    back to the queue as new. Returns how many."""
    now = time.time() if now is None else now
    with transaction(conn):
        return conn.execute("UPDATE stock_push_queue SET state='pending', attempts=0, error='', next_try=?"
                            " WHERE account=? AND state='failed'", (now, account)).rowcount
