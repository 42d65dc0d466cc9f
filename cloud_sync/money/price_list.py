"""The price list of each account: the last price each card was given or read back from its marketplace
(`price_list`), every price ever sent with the marketplace's answer (`price_history`), and the cards a
price can touch as pricing sees them (`PricedCard`, from the catalog's cards and links).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cloud_sync.catalog.view import cards_for_pricing
from cloud_sync.db import transaction
from cloud_sync.money import economics
from marketplaces import price_model
from marketplaces.base import Marketplace, NotSupported, kopecks

HUNDRED = Decimal(100)


MIGRATIONS = [
    """
    CREATE TABLE price_list (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,            -- Card.native_id
        offer_id TEXT NOT NULL DEFAULT '',
        price TEXT NOT NULL,              -- what the buyer pays, Decimal as text
        old_price TEXT,                   -- crossed-out price, NULL when none
        min_price TEXT,                   -- the seller's floor for this card (Ozon min_price), NULL when none
        source TEXT NOT NULL DEFAULT '',  -- 'marketplace' (read back) or 'document:<id>'
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, card_id)
    );
    CREATE TABLE price_documents (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'manual',   -- manual, rule:<id>, revert:<id>
        lines TEXT NOT NULL,                     -- JSON list of PriceLine
        status TEXT NOT NULL DEFAULT 'draft',    -- draft, refused, applied, partial, failed
        problems TEXT NOT NULL DEFAULT '[]',     -- JSON list of the errors that refused it
        created_at TEXT NOT NULL,
        applied_at TEXT
    );
    CREATE TABLE price_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id TEXT NOT NULL,
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        offer_id TEXT NOT NULL DEFAULT '',
        item_id TEXT,
        price_before TEXT,
        old_price_before TEXT,
        price TEXT NOT NULL,
        old_price TEXT,
        min_price TEXT,
        sent TEXT NOT NULL DEFAULT '{}',  -- JSON of the PriceChange as sent (marketplace fields)
        sent_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX price_history_card ON price_history(account, card_id, sent_at);
    CREATE INDEX price_history_doc ON price_history(document_id);
    """,
]


@dataclass
class PricedCard:
    """A card of the account as pricing sees it (from the catalog's cards and links)."""

    account: str
    marketplace: str
    card_id: str  # Card.native_id
    offer_id: str
    group_id: str = ""  # WB nmID
    title: str = ""
    category: str = ""
    category_id: str = ""
    item_id: str | None = None
    pack_size: int = 1
    item_group_id: str | None = None
    imported_price: Decimal | None = None  # Card.price as last imported


def account_cards(conn: sqlite3.Connection, account: str) -> list[PricedCard]:
    """Every card of the account with its item link, read from the catalog's `cards`/`card_links`."""
    return [
        PricedCard(
            account=c.account, marketplace=c.marketplace, card_id=c.card_id, offer_id=c.offer_id,
            group_id=c.group_id, title=c.title, category=c.category, category_id=c.category_id,
            item_id=c.item_id, pack_size=c.pack_size or 1, item_group_id=c.item_group_id,
            imported_price=c.price,
        )
        for c in cards_for_pricing(conn, account)
    ]


def account_marketplace(conn: sqlite3.Connection, account: str) -> str | None:
    cards = account_cards(conn, account)
    return cards[0].marketplace if cards else None


@dataclass(frozen=True)
class Price:
    price: Decimal  # what the buyer pays
    old_price: Decimal | None = None  # crossed-out
    min_price: Decimal | None = None


def current_prices(conn: sqlite3.Connection, account: str) -> dict[str, Price]:
    """card_id -> the card's current price (what was last sent or read back)."""
    return {
        r["card_id"]: Price(Decimal(r["price"]), as_decimal(r["old_price"]), as_decimal(r["min_price"]))
        for r in conn.execute("SELECT card_id, price, old_price, min_price FROM price_list WHERE account=?",
                              (account,))
    }


def as_decimal(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def as_text(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def price_list(conn: sqlite3.Connection, account: str,
               estimates: economics.Estimates | None = None) -> list[dict[str, Any]]:
    """The account's price list: every card with its current price, crossed-out price, floor, the 1C
    item, its cost for the card (cost x pack size), the margin (price − cost) and the unit economics
    (`economics`: after the marketplace's commission, logistics and acquiring) - for the web UI and exports."""
    current = current_prices(conn, account)
    costs: dict[str, Decimal] = {}  # the 1C cost of every linked item of the account, in one read
    for item_id, price in conn.execute(
            "SELECT p.item_id, p.price FROM item_prices p JOIN price_types t ON t.id=p.price_type_id WHERE t.is_cost=1"
            " AND p.item_id IN (SELECT item_id FROM card_links WHERE account=? AND item_id IS NOT NULL)", (account,)):
        costs.setdefault(item_id, Decimal(price))
    known, estimates = economics.stored(conn, account), estimates or economics.Estimates()
    out = []
    for c in account_cards(conn, account):
        p = current.get(c.card_id) or (Price(c.imported_price) if c.imported_price is not None else None)
        cost = costs.get(c.item_id) if c.item_id else None
        card_cost = None if cost is None else cost * c.pack_size
        out.append({
            "card_id": c.card_id, "offer_id": c.offer_id, "title": c.title, "category": c.category,
            "item_id": c.item_id, "pack_size": c.pack_size, "price": as_text(p.price) if p else None,
            "old_price": as_text(p.old_price) if p else None, "min_price": as_text(p.min_price) if p else None,
            "cost": as_text(card_cost),
            "margin": as_text(p.price - card_cost) if p and card_cost is not None else None,
            "known": c.card_id in current,
            "economics": economics.economics_of(c.card_id, p.price, card_cost, known, estimates).as_dict()
            if p else None,
        })
    return out


def record_read_prices(conn: sqlite3.Connection, account: str, prices: dict[str, tuple[str, Price]],
                       *, now: datetime | None = None) -> int:
    """Store prices read back from the marketplace: {card_id: (offer_id, Price)}."""
    now = now or datetime.now(UTC)
    with transaction(conn):
        for card_id, (offer_id, p) in prices.items():
            p = Price(_money(p.price), None if p.old_price is None else _money(p.old_price),
                      None if p.min_price is None else _money(p.min_price))
            upsert_price(conn, account, card_id, offer_id, p, "marketplace", now)
    return len(prices)


def upsert_price(conn: sqlite3.Connection, account: str, card_id: str, offer_id: str, p: Price, source: str,
                  now: datetime) -> None:
    conn.execute(
        "INSERT INTO price_list(account, card_id, offer_id, price, old_price, min_price, source, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(account, card_id) DO UPDATE SET offer_id=excluded.offer_id,"
        " price=excluded.price, old_price=excluded.old_price, min_price=excluded.min_price,"
        " source=excluded.source, updated_at=excluded.updated_at",
        (account, card_id, offer_id, str(p.price), as_text(p.old_price), as_text(p.min_price), source, now.isoformat()),
    )

_money = kopecks  # kopeck precision, shown without trailing zeros


def history(conn: sqlite3.Connection, account: str, card: str | None = None, limit: int = 100) -> list[dict]:
    """The prices sent for an account (or one card, by offer id or card id), newest first."""
    sql = "SELECT * FROM price_history WHERE account=?"
    args: list[Any] = [account]
    if card:
        sql += " AND (card_id=? OR offer_id=?)"
        args += [card, card]
    sql += " ORDER BY id DESC LIMIT ?"
    return [dict(r) for r in conn.execute(sql, (*args, limit))]


def read_prices(conn: sqlite3.Connection, account: str, market: Marketplace) -> int:
    """The marketplace's current prices into the price list: from the adapter's `read_prices()` where the
    marketplace offers it (in the marketplace's terms, turned into the seller's by its price model),
    else (`NotSupported`: the marketplace shows its prices on the cards) from `Card.price` of `list_cards()`."""
    prices: dict[str, tuple[str, Price]] = {}
    try:
        changes = market.read_prices()
    except NotSupported:
        changes = None
    if changes is not None:
        by_group: dict[str, list[Any]] = {}
        for c in account_cards(conn, account):
            by_group.setdefault(c.group_id or c.card_id, []).append(c)
        model = price_model(account_marketplace(conn, account) or "")
        for ch in changes:
            price, old, minimum = model.seller_price(ch)  # from the marketplace's terms into the seller's
            targets = by_group.get(ch.card_id) or []
            ids = [c.card_id for c in targets] or [ch.card_id]
            for cid in ids:
                prices[cid] = (ch.offer_id, Price(price, old, minimum))
        return record_read_prices(conn, account, prices)
    for card in market.list_cards():
        if card.price is None:
            continue
        prices[card.native_id] = (card.offer_id, Price(Decimal(card.price)))
    return record_read_prices(conn, account, prices)
