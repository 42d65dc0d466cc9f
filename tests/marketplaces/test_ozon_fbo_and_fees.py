"""Ozon stock in every one of its own warehouses (FBO, `/v1/analytics/manage/stocks`) and what it takes
per product (`/v5/product/info/prices` commissions: sales %, delivery, acquiring), read by the adapter
from the Ozon sandbox over real HTTP, every exchange held to the official spec (`contract` fixture)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from marketplaces import open_account
from marketplaces.base import FeeAsk


def test_fbo_stock_in_every_ozon_warehouse_not_only_the_first(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    adapter = open_account(account_for(sb))
    httpx.post(sb.url + "/_sandbox/x/fbo", json={"offer_id": "MS-00011", "warehouse_name": "САНКТ_ПЕТЕРБУРГ_РФЦ",
                                                  "quantity": 7}, timeout=10).raise_for_status()
    levels = adapter.read_stocks("fbo")
    cards = {c.offer_id: c.native_id for c in adapter.list_cards()}
    by = {(lv.offer_id, lv.warehouse_id): lv for lv in levels}
    assert all(lv.kind == "fbo" for lv in levels)
    assert by[("MS-00011", "ХОРУГВИНО_РФЦ")].quantity == 3
    assert by[("MS-00011", "САНКТ_ПЕТЕРБУРГ_РФЦ")].quantity == 7  # the second warehouse is read too
    assert by[("MS-00011", "САНКТ_ПЕТЕРБУРГ_РФЦ")].card_id == cards["MS-00011"]  # keyed by product_id
    assert by[("MS-00006", "САНКТ_ПЕТЕРБУРГ_РФЦ")].warehouse_name == "САНКТ_ПЕТЕРБУРГ_РФЦ"
    assert len({lv.warehouse_id for lv in levels}) == 2
    fbs = {w.native_id for w in adapter.warehouses()}
    assert not fbs & {lv.warehouse_id for lv in levels}


def test_sale_fees_come_from_the_price_read(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())[:3]
    prices = {p.card_id: p.price for p in adapter.read_prices()}
    fees = {f.card_id: f for f in adapter.sale_fees([FeeAsk(c.native_id, c.offer_id, Decimal(1)) for c in cards])}
    assert set(fees) == {c.native_id for c in cards}
    for c in cards:
        f = fees[c.native_id]
        assert f.commission_percent == Decimal(15)
        assert f.logistics == Decimal(76)  # the sandbox's delivery charge to the buyer
        assert f.acquiring == (prices[c.native_id] * Decimal("0.015")).quantize(Decimal("0.01"))
