"""The marketplaces' prices read back into the price list on their own: an account never read (just
opened), one whose prices were pushed since its last reading (read again a little later, once the
marketplace has applied them), and every account on the schedule (`[jobs] prices_read_s`); and at once
when a person asks («Обновить цены с площадок»). So no price shows "?" once an account is open. The
marketplace's fees (unit economics: `economics.read_fees`) are read with them.

Owns `price_reads` (per account: when its prices were last read, pushed, or asked for, and the last
error).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cloud_sync.db import transaction
from cloud_sync.money import economics
from cloud_sync.money.price_list import account_cards, current_prices, prices_key, read_prices
from marketplaces.base import FeeAsk, Marketplace, MarketplaceError
from sitelink.sqlite import need

MIGRATIONS = [
    """
    CREATE TABLE price_reads (
        account TEXT PRIMARY KEY,
        read_ts REAL,                    -- the last successful reading
        pushed_ts REAL,                  -- the last price push (a reading follows it)
        asked_ts REAL,                   -- a person asked for a reading now
        error TEXT NOT NULL DEFAULT ''
    );
    """,
]

FEES_EVERY_S = 6 * 3600.0  # the marketplaces' fees (tariffs) are read again after this long
AFTER_PUSH_S = 30.0  # a marketplace applies pushed prices asynchronously (WB: an upload task)


@dataclass
class Reading:
    account: str
    prices: int = 0
    error: str = ""


def note_pushed(conn: sqlite3.Connection, account: str, now: float | None = None) -> None:
    """Prices were pushed to the account: read them back a little later. Runs in the caller's transaction."""
    need(conn, prices_key(account))
    conn.execute("INSERT INTO price_reads(account, pushed_ts) VALUES (?,?) ON CONFLICT(account) DO UPDATE SET"
                 " pushed_ts=excluded.pushed_ts", (account, time.time() if now is None else now))


def ask(conn: sqlite3.Connection, accounts: Iterable[str], now: float | None = None) -> None:
    """A person asked for the marketplaces' prices now («Обновить цены с площадок»)."""
    now = time.time() if now is None else now
    with transaction(conn):
        conn.executemany("INSERT INTO price_reads(account, asked_ts) VALUES (?,?) ON CONFLICT(account) DO UPDATE SET"
                         " asked_ts=excluded.asked_ts", [(a, now) for a in accounts])


def due(conn: sqlite3.Connection, accounts: Iterable[str], every_s: float, now: float | None = None) -> list[str]:
    """The accounts whose prices should be read now."""
    now = time.time() if now is None else now
    rows = {r["account"]: r for r in conn.execute("SELECT * FROM price_reads")}
    out = []
    for a in accounts:
        r = rows.get(a)
        last = (r["read_ts"] or 0.0) if r else 0.0
        if (r is None or not r["read_ts"] or (r["asked_ts"] or 0) > last
                or ((r["pushed_ts"] or 0) > last and now - r["pushed_ts"] >= AFTER_PUSH_S)
                or now - last >= every_s):
            out.append(a)
    return out


def read_due(conn: sqlite3.Connection, accounts: Iterable[str], adapter_for: Callable[[str], Marketplace], *,
             every_s: float, now: float | None = None) -> list[Reading]:
    """Read the prices of the accounts that are due; a failure is kept (and shown) and tried next time."""
    out = []
    for account in due(conn, accounts, every_s, now):
        try:
            market = adapter_for(account)
        except KeyError:
            continue  # not open (its credentials are still to be entered)
        started = time.time()
        try:
            n = read_prices(conn, account, market)
        except MarketplaceError as exc:
            with transaction(conn, keys=(prices_key(account),)):  # the account's own row
                conn.execute("INSERT INTO price_reads(account, error) VALUES (?,?) ON CONFLICT(account) DO UPDATE"
                             " SET error=excluded.error, asked_ts=NULL", (account, str(exc)[:300]))
            out.append(Reading(account, error=str(exc)))
            continue
        error = ""
        try:
            read_fees(conn, account, market, now=started)
        except MarketplaceError as exc:  # the prices are read; the fees stay as they were (or estimated)
            error = f"fees: {exc}"[:300]
        with transaction(conn, keys=(prices_key(account),)):  # the account's own row
            conn.execute("INSERT INTO price_reads(account, read_ts, error) VALUES (?,?,?) ON CONFLICT(account)"
                         " DO UPDATE SET read_ts=excluded.read_ts, error=excluded.error", (account, started, error))
        out.append(Reading(account, n))
    return out


def read_fees(conn: sqlite3.Connection, account: str, market: Marketplace, *, now: float | None = None,
              every_s: float = FEES_EVERY_S) -> int:
    """The marketplace's fees on every priced card of the account, at its current price (unit economics),
    read with the prices at most every `every_s` (tariffs change seldom and their calls are slow: WB's is
    one a minute); a marketplace whose API states none leaves them to the seller's estimates."""
    now = time.time() if now is None else now
    last = conn.execute("SELECT MAX(read_ts) FROM sale_fees WHERE account=?", (account,)).fetchone()[0]
    if last is not None and now - last < every_s:
        return 0
    current = current_prices(conn, account)
    asks = [FeeAsk(c.card_id, c.offer_id, current[c.card_id].price, category_id=c.category_id)
            for c in account_cards(conn, account) if c.card_id in current]
    return economics.read_fees(conn, account, market, asks, now=now)


def state(conn: sqlite3.Connection) -> dict[str, dict]:
    """Per account: when its prices were last read, and the last error (the prices page shows it)."""
    return {r["account"]: dict(r) for r in conn.execute("SELECT * FROM price_reads")}
