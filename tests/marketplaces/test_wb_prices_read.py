"""Wildberries prices read back (`GET /api/v2/list/goods/filter`) against the WB sandbox, over real HTTP.

What a price upload set is what the adapter reads back (base price and discount per nmID, in WB's
terms); the list is paged by limit/offset until an empty page; bad parameters get the spec's 400.
The `contract` fixture validates every exchange against the official spec.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import MarketplaceError, PriceChange

PRICES_PATH = "/api/v2/list/goods/filter"


@pytest.fixture
def wb(sandbox_factory, account_for):
    sb = sandbox_factory("wildberries", seed=20, time_scale=60)
    return sb, open_account(account_for(sb))


def _state(sb) -> dict:
    return httpx.get(sb.url + "/_sandbox/state", timeout=10).json()


def test_uploaded_prices_read_back_equal(wb) -> None:
    sb, adapter = wb
    cards = list(adapter.list_cards())
    sent = {cards[0].group_id: (Decimal("1990"), 25), cards[1].group_id: (Decimal("740"), 0),
            cards[2].group_id: (Decimal("12345"), 99)}
    by_nm = {c.group_id: c for c in cards}
    res = adapter.push_prices([PriceChange(by_nm[nm].native_id, by_nm[nm].offer_id, price, discount_percent=disc)
                               for nm, (price, disc) in sent.items()])
    assert all(r.ok for r in res)
    read = {p.card_id: p for p in adapter.read_prices()}
    assert set(read) == {c.group_id for c in cards}  # one price per nmID: the sandbox's sizes share it
    for nm, (price, disc) in sent.items():
        assert (read[nm].price, read[nm].discount_percent) == (price, disc)
        assert read[nm].offer_id == by_nm[nm].offer_id
    held = _state(sb)["prices"]  # every other product too: what the sandbox holds
    assert {nm: (int(p.price), p.discount_percent) for nm, p in read.items()} == \
        {nm: (p["price"], p["discount"]) for nm, p in held.items()}


def test_prices_are_paged_until_an_empty_page(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("wildberries", seed=20, time_scale=60)
    adapter = open_account(account_for(sb, endpoints={"prices_list": {"batch": 7}}))
    before = _state(sb)["by_path"].get(PRICES_PATH, 0)
    read = adapter.read_prices()
    assert len(read) == 20 and len({p.card_id for p in read}) == 20
    assert _state(sb)["by_path"][PRICES_PATH] - before == 4  # 7 + 7 + 6, then the empty page


def test_bad_parameters_get_the_spec_answer(wb) -> None:
    sb, adapter = wb
    with pytest.raises(MarketplaceError) as refused:
        adapter.http.call("prices_list", params={"limit": 0})
    assert refused.value.status == 400
    native = refused.value.native
    assert (native["data"], native["error"], native["errorText"]) == (None, True, "Invalid request parameters")
    headers = dict(sb.credentials)
    over = httpx.get(sb.url + PRICES_PATH, params={"limit": 1001}, headers=headers, timeout=10)
    assert over.status_code == 400 and over.json()["error"] is True and over.json()["data"] is None
    missing = httpx.get(sb.url + PRICES_PATH, params={"offset": 0}, headers=headers, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] is True
    nm = int(next(iter(_state(sb)["prices"])))
    one = httpx.get(sb.url + PRICES_PATH, params={"limit": 10, "filterNmID": nm}, headers=headers, timeout=10)
    assert [g["nmID"] for g in one.json()["data"]["listGoods"]] == [nm]
    past = httpx.get(sb.url + PRICES_PATH, params={"limit": 10, "offset": 1000}, headers=headers, timeout=10)
    assert past.status_code == 200 and past.json()["data"]["listGoods"] == []
