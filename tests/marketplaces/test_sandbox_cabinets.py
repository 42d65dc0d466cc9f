"""Two cabinets of one seller on one marketplace are two sandboxes: the marketplace is one system, so their
order ids never repeat (a label, a sticker or a return names one order only), and their buyers order on
their own. Before this, the demo's second Wildberries cabinet placed 5000000001 like the first, and the
soak read each WB label as the other cabinet's order."""

from __future__ import annotations

import httpx
import pytest

from marketplaces.sandbox.registry import start_sandbox

MARKETS = ["wildberries", "ozon", "yandex_market", "megamarket"]


@pytest.mark.parametrize("marketplace", MARKETS)
def test_a_second_cabinet_places_orders_of_its_own(marketplace: str) -> None:
    ids: list[set[str]] = []
    for cabinet in (0, 1):
        running = start_sandbox(marketplace, seed=12, validate=False, cabinet=cabinet)
        try:
            placed = httpx.post(f"{running.url}/_sandbox/orders", json={"count": 6}, timeout=30).json()["orders"]
            state = httpx.get(f"{running.url}/_sandbox/state", timeout=30).json()
        finally:
            running.stop()
        assert placed and set(placed) <= set(state["orders"])
        ids.append(set(placed))
    assert not ids[0] & ids[1], ids
