"""Stock in the marketplaces' own warehouses (FBO): what each account's marketplace holds of our goods,
per its warehouse, read back and kept apart from the FBS ledger — never published, never reserved.

Owns `fbo_warehouses` (per account: each marketplace warehouse's name, when it was last answered for,
and since when a reading left it out) and writes the ledger's `fbo_stock` rows through
`ledger.record_fbo`. A reading that leaves out a warehouse the last one had does not turn its stock
into zero: the warehouse's last figures are kept and flagged (`missing_since`) until it is answered
for again. Days of cover come from the recent sales the cloud knows of the card (`order_lines`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud_sync.db import transaction
from cloud_sync.stock import ledger
from marketplaces.base import StockLevel
from sitelink.sqlite import need

MIGRATIONS = [
    """
    CREATE TABLE fbo_warehouses (
        account TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,      -- the marketplace's key of its warehouse (an id, or Ozon's name)
        name TEXT NOT NULL DEFAULT '',
        seen_ts REAL NOT NULL,           -- the last reading that answered for it
        missing_since REAL,              -- a later reading left it out: its last figures are kept, flagged
        PRIMARY KEY (account, warehouse_id)
    ) WITHOUT ROWID;
    """,
]

fbo_key = ledger.fbo_key  # an account's FBO rows: its reading is a keyed transaction of them


SALES_WINDOW_DAYS = 14  # days of cover: the card's sales over this many days


@dataclass
class Recorded:
    account: str
    levels: int
    missing: list[str]  # warehouses the last reading had and this one left out (kept, flagged)


def record(conn: sqlite3.Connection, account: str, levels: Iterable[StockLevel], now: float | None = None) -> Recorded:
    """An account's FBO reading into the ledger's `fbo_stock`, with its warehouses' names; a warehouse
    the previous reading had and this one lacks keeps its figures, flagged missing. Runs in the caller's
    transaction (keyed: `fbo_key`)."""
    need(conn, fbo_key(account))
    now = time.time() if now is None else now
    levels = [lv for lv in levels if lv.kind == "fbo"]
    answered = {lv.warehouse_id: lv.warehouse_name for lv in levels}
    before = {r["warehouse_id"]: r for r in conn.execute(
        "SELECT warehouse_id, name, missing_since FROM fbo_warehouses WHERE account=?", (account,))}
    had = {r[0] for r in conn.execute("SELECT DISTINCT warehouse_id FROM fbo_stock WHERE account=?", (account,))}
    missing = sorted((set(before) | had) - set(answered))
    kept = [(r["card_id"], r["warehouse_id"], r["quantity"]) for r in conn.execute(
        "SELECT card_id, warehouse_id, quantity FROM fbo_stock WHERE account=?", (account,))
        if r["warehouse_id"] in missing]
    ledger.record_fbo(conn, account, [(lv.card_id, lv.warehouse_id, lv.quantity) for lv in levels] + kept, now=now)
    for wh, name in answered.items():
        conn.execute("INSERT INTO fbo_warehouses(account, warehouse_id, name, seen_ts, missing_since)"
                     " VALUES (?,?,?,?,NULL) ON CONFLICT(account, warehouse_id) DO UPDATE SET"
                     " name=CASE WHEN excluded.name!='' THEN excluded.name ELSE fbo_warehouses.name END,"
                     " seen_ts=excluded.seen_ts, missing_since=NULL", (account, wh, name or "", now))
    for wh in missing:
        conn.execute("INSERT INTO fbo_warehouses(account, warehouse_id, name, seen_ts, missing_since)"
                     " VALUES (?,?,'',?,?) ON CONFLICT(account, warehouse_id) DO UPDATE SET"
                     " missing_since=COALESCE(fbo_warehouses.missing_since, excluded.missing_since)",
                     (account, wh, now, now))
    return Recorded(account, len(levels), missing)


def record_reading(conn: sqlite3.Connection, account: str, levels: Iterable[StockLevel],
                   now: float | None = None) -> Recorded:
    """`record` in a write transaction of its own: a keyed one of the account's FBO rows (`fbo_key`), so an
    account's reading neither waits for nor stops the other keyed writers (the site link, the senders)."""
    with transaction(conn, keys=(fbo_key(account),)):
        return record(conn, account, levels, now=now)


@dataclass
class FboLine:
    """One card's stock at one marketplace warehouse, with what it is and how long it lasts."""

    account: str
    card_id: str
    offer_id: str
    item_id: str | None
    article: str  # the 1C article, else the offer id
    title: str
    warehouse_id: str
    warehouse: str  # the marketplace's name of it (its key when it gave none)
    quantity: int
    read_ts: float
    missing_since: float | None  # the last reading left this warehouse out: the figure is the older one
    sold_per_day: float  # the card's recent sales a day (all its orders the cloud knows)

    @property
    def days_of_cover(self) -> float | None:
        """How many days the stock lasts at the recent pace; None without recent sales."""
        return self.quantity / self.sold_per_day if self.sold_per_day > 0 else None


def lines(conn: sqlite3.Connection, account: str | None = None, *, now: float | None = None,
          window_days: int = SALES_WINDOW_DAYS) -> list[FboLine]:
    """Every FBO stock line (of one account, or all), with the card, its 1C item and days of cover."""
    now = time.time() if now is None else now
    since = datetime.fromtimestamp(now - window_days * 86400, UTC).isoformat()
    sql = ("SELECT f.account, f.card_id, f.warehouse_id, f.quantity, f.read_ts, w.name, w.missing_since,"
           " c.offer_id, c.title, l.item_id, i.article, i.name AS item_name"
           " FROM fbo_stock f LEFT JOIN fbo_warehouses w ON w.account=f.account AND w.warehouse_id=f.warehouse_id"
           " LEFT JOIN cards c ON c.account=f.account AND c.native_id=f.card_id"
           " LEFT JOIN card_links l ON l.account=f.account AND l.card_id=f.card_id"
           " LEFT JOIN items i ON i.id=l.item_id")
    args: tuple = ()
    if account is not None:
        sql += " WHERE f.account=?"
        args = (account,)
    rows = conn.execute(sql + " ORDER BY f.account, f.card_id, f.warehouse_id", args).fetchall()
    if not rows:  # no FBO stock: the orders are not read at all (the Stocks page shows this on every view)
        return []
    # the recent sales of the cards held in FBO only (not every order of the window)
    sold = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT o.account, l.card_id, SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id=l.order_id"
        " WHERE o.created_at>=? AND o.stage!='cancelled' AND l.card_id IN (SELECT card_id FROM fbo_stock"
        + (" WHERE account=?" if account is not None else "") + ") GROUP BY o.account, l.card_id",
        (since, *args))}
    out = []
    for r in rows:
        out.append(FboLine(
            account=r["account"], card_id=r["card_id"], offer_id=r["offer_id"] or "", item_id=r["item_id"],
            article=r["article"] or r["offer_id"] or r["card_id"], title=r["item_name"] or r["title"] or "",
            warehouse_id=r["warehouse_id"], warehouse=r["name"] or r["warehouse_id"], quantity=int(r["quantity"]),
            read_ts=r["read_ts"], missing_since=r["missing_since"],
            sold_per_day=(sold.get((r["account"], r["card_id"]), 0) or 0) / window_days))
    return out


def critical(conn: sqlite3.Connection, *, min_quantity: int, cover_days: float, now: float | None = None) -> list[FboLine]:
    """The FBO lines to restock: at or below the item's own critical level (Stocks → minimum) or, for an
    item without one, `min_quantity`; or lasting fewer than `cover_days` at the recent pace of sales."""
    minimums = {r[0]: r[1] for r in conn.execute("SELECT item_id, min_quantity FROM stock_minimums")}
    out = []
    for ln in lines(conn, now=now):
        floor = minimums.get(ln.item_id or "", min_quantity)
        cover = ln.days_of_cover
        if ln.quantity <= floor or (cover is not None and cover < cover_days):
            out.append(ln)
    return out
