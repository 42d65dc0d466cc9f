"""The read-only view of the linked catalog that prices, reports and alerts need.

One query over the catalog's `cards` and `card_links` tables (owned by cloud_sync/catalog/cards.py): every
card of an account with the 1C item it is linked to and the pack size N (the card stands for N units
of the item). Kept here, in one function, so that pricing/reports/alerts depend on the catalog's
schema in exactly one place.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal


@dataclass
class CatalogCard:
    account: str
    marketplace: str
    card_id: str  # Card.native_id
    offer_id: str
    group_id: str = ""
    title: str = ""
    category: str = ""
    category_id: str = ""
    barcodes: str = ""
    price: Decimal | None = None  # Card.price as last imported
    item_id: str | None = None
    pack_size: int = 1
    item_group_id: str | None = None


def cards_for_pricing(conn: sqlite3.Connection, account: str | None = None) -> list[CatalogCard]:
    """Every card (of one account, or of all) with its item link; unlinked cards have item_id None.

    Reads the catalog's columns as they are (the link on the card row, or in `card_links`)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(cards)")}
    id_col = "card_id" if "card_id" in cols else "native_id"
    if "item_id" in cols:  # the link lives on the card row
        pack = "c.pack" if "pack" in cols else "c.pack_size"
        sql = (f"SELECT c.account, c.marketplace, c.{id_col} AS native_id, c.offer_id, c.group_id, c.title,"
               f" c.category, c.category_id, c.price, c.item_id, {pack} AS pack_size, i.group_id AS item_group_id"
               " FROM cards c LEFT JOIN items i ON i.id=c.item_id")
    else:  # a separate card_links table
        sql = (f"SELECT c.account, c.marketplace, c.{id_col} AS native_id, c.offer_id, c.group_id, c.title,"
               " c.category, c.category_id, c.price, l.item_id, l.pack_size, i.group_id AS item_group_id"
               f" FROM cards c LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.{id_col}"
               " LEFT JOIN items i ON i.id=l.item_id")
    args: tuple = ()
    if account is not None:
        sql += " WHERE c.account=?"
        args = (account,)
    return [
        CatalogCard(
            account=r["account"], marketplace=r["marketplace"], card_id=str(r["native_id"]),
            offer_id=r["offer_id"] or "", group_id=str(r["group_id"] or ""), title=r["title"] or "",
            category=r["category"] or "", category_id=str(r["category_id"] or ""),
            price=None if r["price"] in (None, "") else Decimal(str(r["price"])),
            item_id=r["item_id"], pack_size=int(r["pack_size"] or 1), item_group_id=r["item_group_id"],
        )
        for r in conn.execute(sql + " ORDER BY c.offer_id", args)
    ]


def card_index(conn: sqlite3.Connection, account: str) -> dict[str, CatalogCard]:
    """Lookup by card id, offer id and group id (WB nmID) of the account's cards."""
    index: dict[str, CatalogCard] = {}
    for c in cards_for_pricing(conn, account):
        for key in (c.group_id, c.offer_id, c.card_id):  # card id wins over offer id over group id
            if key:
                index[key] = c
    return index
