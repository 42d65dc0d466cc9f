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
from sitelink.sqlite import need

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
    # the Prices page (`price_page`) orders, searches and counts an account's cards from this index alone,
    # not from the card rows scattered among the other accounts' (bench/ui.py: 20,000 cards)
    """
    CREATE INDEX cards_price_page ON cards(account, offer_id, native_id, title, category, price);
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
        out.append(_priced(c.card_id, c.offer_id, c.title, c.category, c.item_id, c.pack_size, p,
                           None if cost is None else cost * c.pack_size, c.card_id in current, known, estimates))
    return out


def _priced(card_id: str, offer_id: str, title: str, category: str, item_id: str | None, pack_size: int,
            p: Price | None, card_cost: Decimal | None, known_price: bool,
            known: dict[str, tuple[Any, Decimal]], estimates: economics.Estimates) -> dict[str, Any]:
    """One line of the price list as `price_list` and `price_page` give it."""
    return {
        "card_id": card_id, "offer_id": offer_id, "title": title, "category": category,
        "item_id": item_id, "pack_size": pack_size, "price": as_text(p.price) if p else None,
        "old_price": as_text(p.old_price) if p else None, "min_price": as_text(p.min_price) if p else None,
        "cost": as_text(card_cost),
        "margin": as_text(p.price - card_cost) if p and card_cost is not None else None,
        "known": known_price,
        "economics": economics.economics_of(card_id, p.price, card_cost, known, estimates).as_dict()
        if p else None,
    }


# the price list page's columns a manager sorts by -> their SQL (PAGE_SQL's aliases); numbers sort as numbers
_PRICE = "CAST(COALESCE(pl.price, NULLIF(c.price, '')) AS REAL)"
_UNIT_COST = ("(SELECT ip.price FROM item_prices ip JOIN price_types t ON t.id=ip.price_type_id"
              " WHERE t.is_cost=1 AND ip.item_id=l.item_id LIMIT 1)")  # the 1C cost of one item, as text
_COST = f"CAST({_UNIT_COST} AS REAL) * COALESCE(l.pack_size, 1)"
PAGE_SORTS = {"offer_id": "c.offer_id", "title": "c.title", "category": "c.category", "price": _PRICE,
              "cost": _COST, "margin": f"({_PRICE} - {_COST})",
              "profit": economics.profit_sql(_PRICE, _COST, "f")}
_TEXT_SORTS = ("offer_id", "title", "category")
_FROM = (" FROM cards c LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.native_id"
         " LEFT JOIN items i ON i.id=l.item_id"
         " LEFT JOIN price_list pl ON pl.account=c.account AND pl.card_id=c.native_id")


def price_page(conn: sqlite3.Connection, account: str, estimates: economics.Estimates | None = None, *,
               q: str = "", sort: str = "", desc: bool = False, offset: int = 0,
               limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """One page of the account's price list as the Prices page shows it — (lines as `price_list` gives
    them plus the 1C `item_article`/`item_name`, how many cards match) — read by SQLite a page at a time
    (5,000 cards an account: bench/ui.py). `q` finds a card by its article, title, category or its 1C
    item's id, article or name (any case, any alphabet); `sort` is one of PAGE_SORTS (numbers: the
    unknown last either way; profit after fees ordered by `economics.profit_sql`), else by article."""
    estimates = estimates or economics.Estimates()
    args: dict[str, Any] = {"account": account, **estimates.sql_args()}
    cond = " WHERE c.account=:account"
    if q:  # the cards' own columns, or a card linked to a 1C item found first (items read once, not per card)
        # SQLite's LIKE ignores the case of Latin letters itself: the columns as they are; text of another
        # alphabet is looked for in the columns the store keeps case-folded (cards.search, items.search)
        args["like"] = "%" + q.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        cards_cols, item_cols = (("c.offer_id", "c.title", "c.category"), ("id", "article", "name")) if q.isascii() \
            else (("c.search",), ("search",))

        def like(cols: tuple[str, ...]) -> str:
            return " OR ".join(f"{col} LIKE :like ESCAPE '\\'" for col in cols)

        cond += (f" AND ({like(cards_cols)} OR c.native_id IN (SELECT card_id FROM card_links WHERE"
                 f" account=:account AND item_id IN (SELECT id FROM items WHERE {like(item_cols)})))")
    column = PAGE_SORTS.get(sort)
    direction = "DESC" if desc else "ASC"
    if column is None:
        order = "c.offer_id, c.native_id"
    elif sort in _TEXT_SORTS:
        order = f"{column} COLLATE NOCASE {direction}, c.offer_id, c.native_id"
    else:
        order = f"({column}) IS NULL, {column} {direction}, c.offer_id, c.native_id"
    joins = ""  # the order reads only what it sorts by; the page's lines are read after, 50 cards
    if sort in ("price", "margin", "profit"):
        joins += " LEFT JOIN price_list pl ON pl.account=c.account AND pl.card_id=c.native_id"
    if sort in ("cost", "margin", "profit"):
        joins += " LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.native_id"
    if sort == "profit":
        joins += " LEFT JOIN sale_fees f ON f.account=c.account AND f.card_id=c.native_id"
    count = ", COUNT(*) OVER () AS n_all" if q else ""  # a search: the page and the count from one pass
    ids = conn.execute(f"SELECT c.native_id{count} FROM cards c{joins}{cond} ORDER BY {order}"
                       " LIMIT :limit OFFSET :offset", {**args, "limit": limit, "offset": offset}).fetchall()
    if q and ids:
        total = ids[0]["n_all"]
    elif q:
        total = conn.execute(f"SELECT COUNT(*) FROM cards c{cond}", args).fetchone()[0]
    else:  # the whole list of the account: counted from the cards' index, no price read
        total = conn.execute("SELECT COUNT(*) FROM cards WHERE account=?", (account,)).fetchone()[0]
    page_ids = [r["native_id"] for r in ids]
    by_id = {r["native_id"]: r for r in conn.execute(
        "SELECT c.native_id, c.offer_id, c.title, c.category, c.price AS imported, l.item_id, l.pack_size,"
        " i.article, i.name, pl.price, pl.old_price, pl.min_price, pl.card_id IS NOT NULL AS known,"
        f" {_UNIT_COST} AS unit_cost{_FROM} WHERE c.account=? AND c.native_id IN ({','.join('?' * len(page_ids))})",
        [account, *page_ids])}
    found = [by_id[i] for i in page_ids]
    known = economics.stored(conn, account, [r["native_id"] for r in found])
    out = []
    for r in found:
        if r["price"] is not None:
            p: Price | None = Price(Decimal(r["price"]), as_decimal(r["old_price"]), as_decimal(r["min_price"]))
        else:
            p = None if r["imported"] in (None, "") else Price(Decimal(str(r["imported"])))
        pack = int(r["pack_size"] or 1)
        cost = None if r["unit_cost"] is None else Decimal(r["unit_cost"]) * pack
        line = _priced(r["native_id"], r["offer_id"] or "", r["title"] or "", r["category"] or "", r["item_id"],
                       pack, p, cost, bool(r["known"]), known, estimates)
        line["item_article"], line["item_name"] = r["article"] or "", r["name"] or ""
        out.append(line)
    return out, total


def categories(conn: sqlite3.Connection, account: str) -> list[str]:
    """The categories of the account's cards, in order (what a price rule can be limited to)."""
    return [r[0] for r in conn.execute("SELECT DISTINCT category FROM cards WHERE account=? AND category != ''"
                                       " ORDER BY category", (account,))]


def find_cards(conn: sqlite3.Connection, account: str, typed: str, limit: int = 20) -> list[dict[str, str]]:
    """The account's cards a price line's field offers as you type: the articles starting with what was
    typed, then the titles or 1C names holding it (article and the name the seller knows)."""
    sql = ("SELECT c.offer_id, COALESCE(NULLIF(i.name, ''), c.title) AS name FROM cards c"
           " LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.native_id LEFT JOIN items i ON i.id=l.item_id"
           " WHERE c.account=? AND ")
    rows = conn.execute(sql + "c.offer_id LIKE ? ORDER BY c.offer_id LIMIT ?", (account, f"{typed}%", limit)).fetchall()
    if len(rows) < limit:
        seen = {r["offer_id"] for r in rows}
        # SQLite's LIKE ignores the case of Latin letters itself; other alphabets: the store's folded columns
        title, name = ("c.title", "i.name") if typed.isascii() else ("c.search", "i.search")
        like = f"%{typed.casefold()}%"
        rows += [r for r in conn.execute(
                     sql + f"({title} LIKE ? OR {name} LIKE ?) LIMIT ?",
                     (account, like, like, limit))
                 if r["offer_id"] not in seen][: limit - len(rows)]
    return [{"article": r["offer_id"], "name": r["name"] or ""} for r in rows]


def prices_key(account: str) -> str:
    """The key (`sitelink.sqlite.transaction`'s `keys`) of an account's price rows (`price_list`, and
    `price_reads`' row): its reading back from the marketplace is a keyed transaction of them; a price
    document applied, a person asking for a reading are ordinary ones."""
    return f"prices:{account}"


def record_read_prices(conn: sqlite3.Connection, account: str, prices: dict[str, tuple[str, Price]],
                       *, now: datetime | None = None) -> int:
    """Store prices read back from the marketplace: {card_id: (offer_id, Price)} (keyed: `prices_key`)."""
    now = now or datetime.now(UTC)
    with transaction(conn, keys=(prices_key(account),)):
        for card_id, (offer_id, p) in prices.items():
            p = Price(_money(p.price), None if p.old_price is None else _money(p.old_price),
                      None if p.min_price is None else _money(p.min_price))
            upsert_price(conn, account, card_id, offer_id, p, "marketplace", now)
    return len(prices)


def upsert_price(conn: sqlite3.Connection, account: str, card_id: str, offer_id: str, p: Price, source: str,
                  now: datetime) -> None:
    need(conn, prices_key(account))
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
