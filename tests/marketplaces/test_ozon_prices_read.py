"""Ozon prices read back (`POST /v5/product/info/prices`, issue 18 point 1) against the Ozon sandbox over
real HTTP, every exchange held to the official spec by the `contract` fixture: what a price upload set
is what the adapter reads (price, old_price, min_price), with the commissions and the price with the
seller's promotions beside it; cursor paging; and the cloud's price read path (`price_list.read_prices`,
what `marketsync sync prices` runs) stores the marketplace's prices, crossed-out price included."""

from __future__ import annotations

from decimal import Decimal

import httpx

from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.money import price_list
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import PriceChange

PATH = "/v5/product/info/prices"


def test_prices_read_back_with_commissions_and_promotions(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    first, second = cards[0], cards[1]
    sent = adapter.push_prices([
        PriceChange(first.native_id, first.offer_id, Decimal("1990.50"), old_price=Decimal("2490"),
                    min_price=Decimal("1800")),
        PriceChange(second.native_id, second.offer_id, Decimal("740"), old_price=Decimal(0))])
    assert all(r.ok for r in sent)
    httpx.post(sb.url + "/_sandbox/x/action", json={"offer_id": first.offer_id, "title": "Скидка 10%",
                                                     "value": 10}, timeout=10).raise_for_status()
    read = {p.card_id: p for p in adapter.read_prices()}
    assert set(read) == {c.native_id for c in cards}
    one = read[first.native_id]
    assert (one.offer_id, one.price, one.old_price, one.min_price) == \
        (first.offer_id, Decimal("1990.5"), Decimal("2490"), Decimal("1800"))
    assert one.native["commissions"]["sales_percent_fbs"] == 15
    assert one.native["marketing_seller_price"] == Decimal("1791.45")  # 1990.50 less the 10 % promotion
    assert one.native["marketing_actions"]["actions"][0]["title"] == "Скидка 10%"
    two = read[second.native_id]
    assert (two.price, two.old_price, two.min_price) == (Decimal("740"), Decimal(0), None)
    assert two.native["marketing_seller_price"] == Decimal("740")
    held = httpx.get(sb.url + "/_sandbox/state", timeout=10).json()["prices"]
    assert set(held) == set(read)
    assert all(Decimal(held[pid]["price"]) == p.price and Decimal(held[pid]["old_price"]) == p.old_price
               for pid, p in read.items())

def test_prices_are_paged_by_cursor(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    adapter = open_account(account_for(sb, endpoints={"prices_read": {"batch": 7}}))
    read = adapter.read_prices()
    assert len(read) == 20 and len({p.card_id for p in read}) == 20
    assert httpx.get(sb.url + "/_sandbox/state", timeout=10).json()["by_path"][PATH] == 3  # 7 + 7 + 6


def test_the_price_list_takes_the_read_prices(tmp_path, sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=10, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    assert all(r.ok for r in adapter.push_prices([PriceChange(cards[0].native_id, cards[0].offer_id,
                                                              Decimal("999"), old_price=Decimal("1299"))]))
    conn = open_db(tmp_path / "tenant.sqlite")
    with transaction(conn):
        catalog.import_cards(conn, "oz", "ozon", cards)
    assert price_list.read_prices(conn, "oz", adapter) == len(cards)
    now = price_list.current_prices(conn, "oz")
    assert now[cards[0].native_id] == price_list.Price(Decimal("999"), Decimal("1299"), None)
    conn.close()
