"""The Prices page's list read a page at a time by SQLite (`price_list.price_page`): every sortable column,
both ways, gives the order and the figures the whole list (`price_list.price_list`) gives sorted in Python,
profit after the marketplace's fees included; search by article, title, category or 1C name in any
alphabet; the cards a price line's field offers as you type."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud_sync.money import economics, price_list
from marketplaces.base import SaleFees

from .conftest import add_card

ESTIMATES = economics.Estimates(Decimal(15), Decimal(80), Decimal(2))


@pytest.fixture
def priced(db):
    add_card(db, "oz1", "ozon", "9004", "MS-9", category="Носки", price=700)  # unlinked: no cost, no profit
    add_card(db, "oz1", "ozon", "9005", "MS-0", category="Кружки")  # no price at all
    price_list.record_read_prices(db, "oz1", {"9001": ("MS-1", price_list.Price(Decimal("1250.50")))})
    # the marketplace's own fees: MS-2 costs its seller 60% commission, MS-3 an acquiring as an amount
    economics.record(db, "oz1", [SaleFees("9002", Decimal(60), Decimal(90), None, None, "api"),
                                 SaleFees("9003", None, None, None, Decimal(9), "api")],
                     {"9002": Decimal(1500), "9003": Decimal(300)})
    return db


def _number(v):
    return None if v is None else Decimal(v)


KEYS = {"offer_id": lambda p: p["offer_id"].casefold(), "title": lambda p: p["title"].casefold(),
        "category": lambda p: p["category"].casefold(), "price": lambda p: _number(p["price"]),
        "cost": lambda p: _number(p["cost"]), "margin": lambda p: _number(p["margin"]),
        "profit": lambda p: _number((p["economics"] or {}).get("profit"))}


@pytest.mark.parametrize("column", sorted(KEYS))
@pytest.mark.parametrize("desc", [False, True])
def test_each_column_sorts_a_page_as_the_whole_list_sorted(priced, column, desc):
    whole = sorted(price_list.price_list(priced, "oz1", ESTIMATES), key=lambda p: p["offer_id"])
    key = KEYS[column]
    if column in ("offer_id", "title", "category"):
        expected = sorted(whole, key=key, reverse=desc)
    else:  # numbers: the unknown last either way
        expected = sorted(whole, key=lambda p: (key(p) is None, (key(p) or 0) * (-1 if desc else 1)))
    rows, total = price_list.price_page(priced, "oz1", ESTIMATES, sort=column, desc=desc, limit=100)
    assert total == 5
    assert [r["offer_id"] for r in rows] == [r["offer_id"] for r in expected]
    for got, want in zip(rows, expected, strict=True):  # the same figures as the whole list's
        assert {k: got[k] for k in want} == want


def test_profit_order_follows_the_marketplaces_fees_not_the_margin(priced):
    by_margin = [r["offer_id"] for r in price_list.price_page(priced, "oz1", ESTIMATES, sort="margin", desc=True)[0]]
    by_profit = [r["offer_id"] for r in price_list.price_page(priced, "oz1", ESTIMATES, sort="profit", desc=True)[0]]
    assert by_margin[:3] == ["MS-2", "MS-1", "MS-3"]
    assert by_profit[:3] == ["MS-1", "MS-3", "MS-2"]  # MS-2's 60% commission eats its profit


def test_a_page_at_a_time_with_the_count_of_all(priced):
    first, total = price_list.price_page(priced, "oz1", ESTIMATES, limit=2)
    second, _ = price_list.price_page(priced, "oz1", ESTIMATES, offset=2, limit=2)
    assert total == 5 and [r["offer_id"] for r in first + second] == ["MS-0", "MS-1", "MS-2", "MS-3"]
    assert first[1]["price"] == "1250.5" and first[1]["known"] and first[1]["item_name"] == "Футболка"


def test_search_by_article_category_or_1c_name_in_any_case(priced):
    def found(q):
        rows, total = price_list.price_page(priced, "oz1", ESTIMATES, q=q)
        assert total == len(rows)
        return [r["offer_id"] for r in rows]

    assert found("ms-9") == ["MS-9"]
    assert found("КРУЖК") == ["MS-0", "MS-3"]  # the category of one, the 1C name of both
    assert found("футболка 2") == ["MS-2"]
    assert found("i3") == ["MS-3"]  # the 1C item id
    assert found("100%_") == []  # LIKE's wildcards are the seller's characters


def test_cards_offered_as_you_type(priced):
    assert [c["article"] for c in price_list.find_cards(priced, "oz1", "MS-")] == [
        "MS-0", "MS-1", "MS-2", "MS-3", "MS-9"]
    assert price_list.find_cards(priced, "oz1", "кружка") == [{"article": "MS-3", "name": "Кружка"}]
    assert price_list.find_cards(priced, "wb1", "MS-9") == []  # another account's card


def test_a_search_in_cyrillic_is_done_by_sqlite_on_columns_the_store_keeps_folded(priced):
    """Text of another alphabet was folded in Python, card by card, on every search (67 ms over 5,000
    cards): the store now keeps each card's article, title and category, and each item's id, article and
    name, case-folded in a column of its own (triggers at each write), and the search is one LIKE."""
    from cloud_sync.catalog import cards as catalog
    from cloud_sync.catalog import nomenclature as nom
    from cloud_sync.db import transaction
    from marketplaces.base import Card

    assert priced.execute("SELECT search FROM items WHERE id='i2'").fetchone()[0] == "i2\x1fms-2\x1fфутболка 2"
    with transaction(priced):  # a 1C rename and a card's new title: the folded columns follow
        nom.upsert_items(priced, [nom.Item(id="i2", name="ФУТБОЛКА Синяя", article="MS-2", group_id="g-shirts")])
    catalog.import_cards(priced, "oz1", "ozon", [Card(native_id="9004", offer_id="MS-9", title="Носки ШЕРСТЯНЫЕ",
                                                      category="Носки")])
    assert priced.execute("SELECT search FROM cards WHERE native_id='9004'").fetchone()[0] == \
        "ms-9\x1fноски шерстяные\x1fноски"
    calls = []
    priced.create_function("fold", 1, lambda v: calls.append(v) or (v.casefold() if isinstance(v, str) else v),
                           deterministic=True)
    rows, total = price_list.price_page(priced, "oz1", ESTIMATES, q="футболка СИНЯЯ")
    assert [r["offer_id"] for r in rows] == ["MS-2"] and total == 1
    assert [r["offer_id"] for r in price_list.price_page(priced, "oz1", ESTIMATES, q="Шерстяные")[0]] == ["MS-9"]
    assert calls == []  # nothing folded in Python while searching
    assert [c["article"] for c in price_list.find_cards(priced, "oz1", "синяя")] == ["MS-2"]
    found, n, _unlinked = catalog.cards_page(priced, q="ШЕРСТЯН")
    assert n == 1 and found[0].offer_id == "MS-9"
