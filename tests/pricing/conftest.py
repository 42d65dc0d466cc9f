"""Fixtures for the price tests: a real SQLite tenant database with 1C items, cost prices and linked
cards on a Wildberries and an Ozon account, and an in-test fake marketplace account.

The fake (`FakeMarket`) implements only `push_prices` of the `Marketplace` protocol and records what it
was sent; it stands in where a unit test needs an adapter. The end-to-end test against the real
sandbox lives in test_pricing_sandbox.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from marketplaces.base import Card, ItemResult, MarketplaceError


def add_card(conn, account, marketplace, native_id, offer_id, *, item_id=None, pack=1, category="",
             price=None, group_id=""):
    """A card through the catalog's own API (import, then a manual link with its pack size)."""
    from cloud_sync.catalog import cards as catalog

    catalog.import_cards(conn, account, marketplace, [Card(
        native_id=native_id, offer_id=offer_id, title=offer_id, category=category, group_id=group_id,
        price=None if price is None else Decimal(price))])
    if item_id:
        catalog.link(conn, account, native_id, item_id, pack)


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path / "tenant.sqlite")
    with transaction(conn):
        nom.upsert_group(conn, "g-clothes", "Одежда")
        nom.upsert_group(conn, "g-shirts", "Футболки", "g-clothes")
        nom.upsert_group(conn, "g-mugs", "Кружки")
        nom.upsert_items(conn, [
            nom.Item(id="i1", name="Футболка", article="MS-1", group_id="g-shirts"),
            nom.Item(id="i2", name="Футболка 2", article="MS-2", group_id="g-shirts"),
            nom.Item(id="i3", name="Кружка", article="MS-3", group_id="g-mugs"),
        ])
        nom.upsert_price_type(conn, "cost", "Себестоимость", is_cost=True)
        for item, cost in (("i1", 400), ("i2", 500), ("i3", 100)):
            nom.set_item_price(conn, item, "cost", Decimal(cost))
        # Wildberries account: nmID 100 has two sizes (cards 101, 102), nmID 200 is a pack of 2 mugs
        add_card(conn, "wb1", "wildberries", "101", "MS-1-S", item_id="i1", category="Футболки", price=1000,
                 group_id="100")
        add_card(conn, "wb1", "wildberries", "102", "MS-1-M", item_id="i1", category="Футболки", price=1000,
                 group_id="100")
        add_card(conn, "wb1", "wildberries", "201", "MS-3x2", item_id="i3", pack=2, category="Кружки", price=500,
                 group_id="200")
        # Ozon account
        add_card(conn, "oz1", "ozon", "9001", "MS-1", item_id="i1", category="Футболки", price=1200)
        add_card(conn, "oz1", "ozon", "9002", "MS-2", item_id="i2", category="Футболки", price=1500)
        add_card(conn, "oz1", "ozon", "9003", "MS-3", item_id="i3", category="Кружки", price=300)
    yield conn
    conn.close()


class FakeMarket:
    """An in-test stand-in for one marketplace account: records push_prices calls; can fail items."""

    def __init__(self, name: str, account: str, *, fail: set[str] | None = None, raise_error: bool = False):
        self.name = name
        self.account = account
        self.fail = fail or set()
        self.raise_error = raise_error
        self.sent: list = []

    def push_prices(self, changes):
        if self.raise_error:
            raise MarketplaceError("connection refused", account=self.account, endpoint="prices")
        self.sent.extend(changes)
        return [ItemResult(key=c.card_id, ok=c.card_id not in self.fail,
                           error="rejected by the marketplace" if c.card_id in self.fail else "")
                for c in changes]


@pytest.fixture
def fake_market():
    return FakeMarket


@pytest.fixture
def card_adder():
    return add_card
