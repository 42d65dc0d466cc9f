"""Yandex.Market: the FBY store's stock in Market's own warehouses (FBO: getStocks of `fby_campaign_id`,
named by getFulfillmentWarehouses) and Market's services per offer (tariffs/calculate: placement fee,
delivery and sorting, payment transfer), read by the adapter from the YM sandbox over real HTTP; every
exchange held to the official spec (`contract` fixture)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketplaces import open_account
from marketplaces.base import FeeAsk, NotSupported

from .conftest import make_account


def account_for(running, **changes):
    """The adapter's account from what the sandbox announces (`account_options`: business, FBS and FBY
    stores), with `changes` over it (None removes an option)."""
    opts = {**running.app.account_options(), **changes}
    return make_account(running, **{k: v for k, v in opts.items() if v is not None})


def test_fby_stock_per_market_warehouse(sandbox_factory) -> None:
    sb = sandbox_factory("yandex_market", seed=20, time_scale=60)
    adapter = open_account(account_for(sb))
    levels = adapter.read_stocks("fbo")
    by = {(lv.offer_id, lv.warehouse_id): lv for lv in levels}
    assert all(lv.kind == "fbo" for lv in levels)
    assert by[("MS-00011", "145")].quantity == 3 and by[("MS-00011", "145")].warehouse_name == "Софьино"
    assert by[("MS-00006", "172")].warehouse_name == "Томилино"  # the second warehouse too
    fbs = adapter.read_stocks("fbs")
    assert {lv.warehouse_id for lv in fbs} == {str(sb.app.warehouse_id)}  # kept apart: FBS is the seller's
    without = open_account(account_for(sb, fby_campaign_id=None))
    with pytest.raises(NotSupported) as no:
        without.read_stocks("fbo")
    assert "FBY" in no.value.for_seller()


def test_tariffs_calculated_per_offer_in_the_order_asked(sandbox_factory) -> None:
    sb = sandbox_factory("yandex_market", seed=20, time_scale=60)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())[:3]
    asks = [FeeAsk(c.native_id, c.offer_id, Decimal(1000 * (k + 1))) for k, c in enumerate(cards)]
    fees = {f.card_id: f for f in adapter.sale_fees(asks)}
    pct = {"90192": Decimal(12), "91367": Decimal(9), "90049": Decimal(11), "90515": Decimal(10), "90155": Decimal(12)}
    for k, c in enumerate(cards):
        f, price = fees[c.native_id], Decimal(1000 * (k + 1))
        assert f.commission_percent == pct[c.category_id]
        assert f.logistics == Decimal(60 + 6 + 25)  # delivery (60 + 20/kg × 0.3 kg) and sorting
        assert f.acquiring == price * Decimal("0.015")  # payment transfer 1.2 % + agency 0.3 %
    unknown = adapter.sale_fees([FeeAsk("NOPE", "NOPE", Decimal(10))])
    assert unknown[0].commission_percent is None  # no category or size: left to the estimates
