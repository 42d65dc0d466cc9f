"""Unit economics against the sandboxes over real HTTP (issue 16 point 4): the fees each adapter reads with
the prices (Ozon: commission, delivery and acquiring from its price read; WB: its commission per subject and
FBS logistics by volume, acquiring left to the seller's estimate), stored by `price_reads`, shown on the price list
and in a price document's preview at the new price. Every exchange is held to the spec (`contract`)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from cloud_sync.catalog import cards as catalog
from cloud_sync.config_sections import PricingSettings
from cloud_sync.db import transaction
from cloud_sync.money import economics, price_list, price_preview, price_reads
from cloud_sync.money.price_docs import PriceDocument, PriceLine
from cloud_sync.schema import open_db
from marketplaces import open_account

PRICES = "/v5/product/info/prices"
EST = economics.Estimates(commission_percent=Decimal(20), logistics=Decimal(100), acquiring_percent=Decimal("1.5"))


def test_ozon_fees_read_with_the_prices_feed_the_price_list_and_the_preview(tmp_path, sandbox_factory,
                                                                           account_for) -> None:
    sb = sandbox_factory("ozon", seed=5, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    conn = open_db(tmp_path / "t.sqlite")
    with transaction(conn):
        catalog.import_cards(conn, "oz", "ozon", cards)
    [r] = price_reads.read_due(conn, ["oz"], lambda a: adapter, every_s=3600)
    assert r.prices == len(cards) and not r.error
    rows = {p["card_id"]: p for p in price_list.price_list(conn, "oz", EST)}
    first = rows[cards[0].native_id]
    e = first["economics"]
    price = Decimal(first["price"])
    assert e["estimated"] == []  # Ozon states commission, delivery and acquiring
    assert Decimal(e["commission"]) == (price * Decimal("0.15")).quantize(Decimal("0.01"))
    assert Decimal(e["logistics"]) == 76
    assert Decimal(e["acquiring"]) == (price * Decimal("0.015")).quantize(Decimal("0.01"))
    assert e["profit"] is None  # no 1C cost linked: no profit claimed
    # the preview at a new price: fees follow the new price
    pv = price_preview.preview(conn, PriceDocument(account="oz", lines=[PriceLine("card", cards[0].offer_id,
                                                                                 price=Decimal(2000))]),
                               settings=PricingSettings(), marketplace="ozon")
    [row] = pv.rows
    assert row.economics is not None and row.economics.commission == Decimal(300)
    assert row.economics.acquiring == Decimal(30) and row.economics.estimated == []
    assert pv.as_table()[0]["economics"]["commission"] == "300.00"
    # read again within the fee interval: the tariffs are not asked again
    asked = httpx.get(sb.url + "/_sandbox/state", timeout=10).json()["by_path"][PRICES]
    assert price_reads.read_fees(conn, "oz", adapter) == 0
    assert httpx.get(sb.url + "/_sandbox/state", timeout=10).json()["by_path"][PRICES] == asked
    conn.close()


def test_wb_commission_and_logistics_from_its_tariffs_acquiring_estimated(tmp_path, sandbox_factory,
                                                                        account_for) -> None:
    sb = sandbox_factory("wildberries", seed=5, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    conn = open_db(tmp_path / "t.sqlite")
    with transaction(conn):
        catalog.import_cards(conn, "wb", "wildberries", cards)
    [r] = price_reads.read_due(conn, ["wb"], lambda a: adapter, every_s=3600)
    assert not r.error
    rows = {p["card_id"]: p for p in price_list.price_list(conn, "wb", EST)}
    by_subject = {"192": Decimal("24.5"), "1367": Decimal("19.5"), "49": Decimal(21), "515": Decimal(23),
                  "155": Decimal(24)}
    for c in cards:
        e = rows[c.native_id]["economics"]
        price = Decimal(rows[c.native_id]["price"])
        assert Decimal(e["commission"]) == (price * by_subject[c.category_id] / 100).quantize(Decimal("0.01"))
        assert e["estimated"] == ["acquiring"] and Decimal(e["logistics"]) == Decimal("52.25")  # tariffs/box
    conn.close()
