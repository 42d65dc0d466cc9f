"""Wildberries stock in its own warehouses (FBO, `stocks-report/wb-warehouses`), its commission per
subject (`tariffs/commission`) and FBS logistics by volume (`tariffs/box`), read by the adapter from the WB sandbox over real HTTP; the `contract`
fixture validates every exchange against the official spec (11-analytics.yaml, 10-rates.yaml).
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import AccountConfig, BadResponse, FeeAsk


@pytest.fixture
def wb(sandbox_factory, account_for):
    sb = sandbox_factory("wildberries", seed=20, time_scale=60)
    return sb, open_account(account_for(sb))


def test_fbo_stock_is_read_per_wb_warehouse_apart_from_fbs(wb) -> None:
    sb, adapter = wb
    httpx.post(sb.url + "/_sandbox/x/fbo", json={"warehouseId": 120762, "chrtId": 400000011, "quantity": 4},
               timeout=10).raise_for_status()
    levels = adapter.read_stocks("fbo")
    assert levels and all(lv.kind == "fbo" for lv in levels)
    by = {(lv.card_id, lv.warehouse_id): lv for lv in levels}
    # item 11: 3 at Коледино (seeded) and the 4 just set at Электросталь, both named
    assert by[("400000011", "507")].quantity == 3 and by[("400000011", "507")].warehouse_name == "Коледино"
    assert by[("400000011", "120762")].quantity == 4
    assert by[("400000011", "120762")].warehouse_name == "Электросталь"
    fbs_warehouses = {w.native_id for w in adapter.warehouses()}
    assert not fbs_warehouses & {lv.warehouse_id for lv in levels}  # never one of the seller's warehouses
    assert {lv.card_id for lv in adapter.read_stocks("fbs")} >= {"400000011"}  # FBS read unchanged


def test_commission_per_subject_and_unknown_subject_left_to_estimate(wb) -> None:
    _sb, adapter = wb
    cards = list(adapter.list_cards())
    asks = [FeeAsk(c.native_id, c.offer_id, Decimal(1000), category_id=c.category_id) for c in cards[:5]]
    asks.append(FeeAsk("1", "X", Decimal(10), category_id="999999"))
    fees = {f.card_id: f for f in adapter.sale_fees(asks)}
    subjects = {c.native_id: c.category_id for c in cards[:5]}
    expected = {"192": Decimal("24.5"), "1367": Decimal("19.5"), "49": Decimal("21"), "515": Decimal("23"),
                "155": Decimal("24")}
    for cid, subject in subjects.items():
        assert fees[cid].commission_percent == expected[subject]
        # FBS logistics from the box tariffs: the highest FBS rate (Электросталь: 46 ₽ the first litre,
        # 12,5 ₽ each further one) for the card's 20 × 15 × 5 cm = 1.5 l; Шушары's «-» takes no FBS parcels
        assert fees[cid].logistics == Decimal("52.25")
        assert fees[cid].acquiring_percent is None and fees[cid].acquiring is None  # WB's API does not say
    assert fees["1"].commission_percent is None


def test_a_malformed_fbo_row_refuses_the_whole_answer(hostile) -> None:
    adapter = open_account(AccountConfig(name="wb-fbo", marketplace="wildberries", base_url=hostile.url,
                                         credentials={"Authorization": "t"}))
    hostile.answer(200, b'{"data": {"items": [{"chrtId": 1, "warehouseId": 507, "warehouseName": "X"}]}}')
    with pytest.raises(BadResponse, match="cannot be read"):
        adapter.read_stocks("fbo")
