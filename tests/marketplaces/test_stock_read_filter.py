"""`read_stocks(cards=...)`: the stock read of a few named cards asks the marketplace for those cards alone,
by the filter its API documents (WB: the `chrtIds` of `POST /api/v3/stocks/{warehouseId}` at the named
warehouse; Ozon: `offer_id` of `/v1/product/info/stocks-by-warehouse/fbs`, without the catalogue read of
`/v4/product/info/stocks`; Yandex.Market: getStocks' `offerIds`, answered whole, so without paging;
Megamarket: `stock/getByOfferId`'s `offerIds`), and answers what the whole read answers for them. Real HTTP
against the sandboxes, which validate every request against the spec and say which ids each stock read
named (`stock_reads` of `/_sandbox/state`); the `contract` fixture checks the adapter's side."""

from __future__ import annotations

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import StockKey
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.yandex_market_spec import register

register()
register_schemas()

# the route each marketplace's filtered read goes to, and which id of a card it names it by
NAMED_BY = {"wildberries": ("/api/v3/stocks/{warehouseId}", "card_id"),
            "ozon": ("/v1/product/info/stocks-by-warehouse/fbs", "offer_id"),
            "yandex_market": ("getStocks", "offer_id"),
            "megamarket": ("stock/getByOfferId", "offer_id")}


def _reads(running) -> list[dict]:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()["stock_reads"]


@pytest.mark.parametrize("market", sorted(NAMED_BY))
def test_a_read_of_named_cards_asks_for_them_alone(market, sandbox_factory, account_for) -> None:
    running = sandbox_factory(market, seed=12, time_scale=1000)
    adapter = open_account(account_for(running, **running.app.account_options()))
    everything = adapter.read_stocks("fbs")
    assert len(everything) >= 10
    chosen = [everything[2], everything[7]]
    before = len(_reads(running))
    got = adapter.read_stocks("fbs", cards=[StockKey(lv.card_id, lv.offer_id, lv.warehouse_id) for lv in chosen])
    assert sorted((lv.card_id, lv.warehouse_id, lv.quantity) for lv in got) == \
        sorted((lv.card_id, lv.warehouse_id, lv.quantity) for lv in chosen)
    reads = _reads(running)[before:]
    route, by = NAMED_BY[market]
    # the sandbox saw one stock read, naming the two cards and nothing else (no catalogue read either)
    assert reads == [{"route": route, "named": sorted(getattr(lv, by) for lv in chosen)}]


def test_a_yandex_market_read_of_named_skus_is_not_paged(sandbox_factory, account_for) -> None:
    """getStocks with `offerIds` answers the list whole: the spec says not to fill pageToken or limit with
    it, and the sandbox refuses a request that does."""
    running = sandbox_factory("yandex_market", seed=12, time_scale=1000)
    adapter = open_account(account_for(running, **running.app.account_options()))
    sku = adapter.read_stocks("fbs")[0].offer_id
    campaign = running.app.account_options()["campaign_id"]
    refused = httpx.post(f"{running.url}/v2/campaigns/{campaign}/offers/stocks", params={"limit": 200},
                         json={"offerIds": [sku]}, headers=dict(running.credentials), timeout=10)
    assert refused.status_code == 400
    assert [lv.offer_id for lv in adapter.read_stocks("fbs", cards=[StockKey(sku, sku)])] == [sku]
