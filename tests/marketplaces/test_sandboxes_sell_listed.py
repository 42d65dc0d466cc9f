"""Every sandbox sells only what is listed (issue 18, point 6): buyers' orders are placed only for cards
whose published stock is above 0 and never for more units than that stock, as the marketplaces do;
only the `late_buyer_rate` fault places an order for a card taken to zero (a buyer racing the update).

Driven the seller's way over real HTTP: the adapter publishes the stocks, the sandbox's buyers order
(`/_sandbox/orders`), the adapter reads the new orders back (every exchange held to the spec)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import StockLevel
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.yandex_market_spec import register

register()
register_schemas()

MARKETS = ["wildberries", "ozon", "yandex_market", "megamarket"]


def _options(running) -> dict:
    return running.app.account_options()


def _publish(adapter, listed: dict[str, int]) -> dict[str, int]:
    """Publish `listed` (offer id -> units) and 0 for every other card, at every warehouse of the
    account; returns what was published per offer id (summed over warehouses)."""
    cards = list(adapter.list_cards())
    warehouses = [w.native_id for w in adapter.warehouses() if w.kind == "fbs"]
    levels, published = [], Counter()
    for card in cards:
        for i, wh in enumerate(warehouses):
            qty = listed.get(card.offer_id, 0) if i == 0 else 0
            levels.append(StockLevel(card.native_id, card.offer_id, wh, qty))
            published[card.offer_id] += qty
    results = adapter.push_stocks(levels)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return dict(published)


def _ordered(adapter) -> Counter:
    units: Counter = Counter()
    for order in adapter.new_orders():
        for line in order.lines:
            units[line.offer_id] += line.quantity
    return units


@pytest.mark.parametrize("market", MARKETS)
def test_buyers_order_only_published_stock_and_never_beyond(market, sandbox_factory, account_for) -> None:
    running = sandbox_factory(market, seed=12, time_scale=1000)
    adapter = open_account(account_for(running, **_options(running)))
    listed = {"MS-00002": 1, "MS-00005": 2, "MS-00007": 3}
    published = _publish(adapter, listed)
    made = httpx.post(running.url + "/_sandbox/orders", json={"count": 40}, timeout=30).json()["orders"]
    assert made, "buyers order what is in stock"
    units = _ordered(adapter)
    assert set(units) <= {k for k, v in published.items() if v > 0}, f"ordered a card without stock: {units}"
    assert all(units[k] <= published[k] for k in units), f"ordered beyond the published stock: {units}"
    assert sum(units.values()) == sum(listed.values()), "40 buyers take every listed unit, no more"
    # everything is sold: more buyers find nothing to order
    again = httpx.post(running.url + "/_sandbox/orders", json={"count": 5}, timeout=30).json()["orders"]
    assert again == []


@pytest.mark.parametrize("market", MARKETS)
def test_late_buyers_race_only_when_a_fault_asks(market, sandbox_factory, account_for) -> None:
    running = sandbox_factory(market, seed=6, time_scale=1000)
    adapter = open_account(account_for(running, **_options(running)))
    _publish(adapter, {})  # the seller took everything to zero
    assert httpx.post(running.url + "/_sandbox/orders", json={"count": 3}, timeout=30).json()["orders"] == []
    httpx.post(running.url + "/_sandbox/faults", json={"late_buyer_rate": 1.0}, timeout=10).raise_for_status()
    late = httpx.post(running.url + "/_sandbox/orders", json={"count": 2}, timeout=30).json()["orders"]
    assert len(late) == 2, "late buyers order a listed card whatever its stock"
    assert sum(_ordered(adapter).values()) >= 2
