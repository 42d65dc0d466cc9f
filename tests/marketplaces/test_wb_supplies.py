"""Wildberries supplies as WB documents them (03-orders-fbs.yaml), in the sandbox and through the adapter.

The sandbox: a delivered supply takes no order (409 FailedToAddSupplyOrder), an order on assembly moves
between open supplies, a supply whose orders were all cancelled is not delivered (409
SupplyHasZeroOrders), `order-ids` lists a supply's orders, and every call moving an order is counted per
order. The adapter: a confirm into a supply delivered meanwhile opens the next one; a ship delivers the
order's own supply as WB holds it, moving out first the orders not handed over.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from marketplaces import open_account, profiles
from marketplaces.profiles import ProfileError, parse_profile


@pytest.fixture
def wb(sandbox_factory, account_for):
    sb = sandbox_factory("wildberries", seed=10, time_scale=60)
    return sb, open_account(account_for(sb))


def _state(sb: Any) -> dict[str, Any]:
    return httpx.get(sb.url + "/_sandbox/state").json()


def _call(sb: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, sb.url + path, json=body, headers={"Authorization": sb.credentials["Authorization"]})


def _supply(sb: Any) -> str:
    return _call(sb, "POST", "/api/v3/supplies", {"name": "test"}).json()["id"]


def test_the_sandbox_keeps_wb_supply_rules(wb) -> None:
    sb, _ = wb
    a, b, c = (int(x) for x in httpx.post(sb.url + "/_sandbox/orders", json={"count": 3}).json()["orders"])
    s1, s2 = _supply(sb), _supply(sb)
    assert _call(sb, "PATCH", f"/api/marketplace/v3/supplies/{s1}/orders", {"orders": [a, b]}).status_code == 204
    assert _call(sb, "GET", f"/api/marketplace/v3/supplies/{s1}/order-ids").json() == {"orderIds": [a, b]}
    # an order on assembly moves to another open supply, still on assembly
    assert _call(sb, "PATCH", f"/api/marketplace/v3/supplies/{s2}/orders", {"orders": [b]}).status_code == 204
    st = _state(sb)
    assert st["supplies"][s1]["orders"] == [a] and st["supplies"][s2]["orders"] == [b]
    assert st["transitions"][str(b)] == ["new", "confirm"]
    assert _call(sb, "PATCH", f"/api/v3/supplies/{s1}/deliver").status_code == 204
    late = _call(sb, "PATCH", f"/api/marketplace/v3/supplies/{s1}/orders", {"orders": [c]})
    assert late.status_code == 409 and late.json()["code"] == "FailedToAddSupplyOrder"
    moved_back = _call(sb, "PATCH", f"/api/marketplace/v3/supplies/{s2}/orders", {"orders": [a]})
    assert moved_back.status_code == 409  # a delivered order leaves its supply no more
    assert _call(sb, "PATCH", f"/api/v3/orders/{b}/cancel").status_code == 204
    empty = _call(sb, "PATCH", f"/api/v3/supplies/{s2}/deliver")
    assert empty.status_code == 409 and empty.json()["code"] == "SupplyHasZeroOrders"
    st = _state(sb)
    assert st["order_calls"][str(a)] == {"confirm": [1, 1], "ship": [1, 1]}
    assert st["order_calls"][str(b)] == {"confirm": [1, 1], "move": [1, 1], "cancel": [1, 1]}
    assert st["order_calls"][str(c)] == {"confirm": [1, 0]}  # refused: received, not applied
    assert st["spec_violations"] == []


def test_a_confirm_into_a_supply_delivered_meanwhile_opens_the_next(wb) -> None:
    sb, adapter = wb
    ids = httpx.post(sb.url + "/_sandbox/orders", json={"count": 2}).json()["orders"]
    first, second = [o for o in adapter.new_orders() if o.native_id in ids]
    s1 = adapter.set_order_status(first.native_id, "confirm", new_batch=True).batch_id
    assert adapter.set_order_status(first.native_id, "ship").ok
    change = adapter.set_order_status(second.native_id, "confirm", batch_id=s1)  # the caller's news was old
    assert change.ok and change.batch_id and change.batch_id != s1
    st = _state(sb)
    assert st["orders"][second.native_id] == "confirm" and int(second.native_id) in st["supplies"][change.batch_id]["orders"]


def test_a_ship_delivers_only_the_parcels_handed_over(wb) -> None:
    sb, adapter = wb
    ids = httpx.post(sb.url + "/_sandbox/orders", json={"count": 3}).json()["orders"]
    adapter.new_orders()
    s1 = adapter.set_order_status(ids[0], "confirm", new_batch=True).batch_id
    for x in ids[1:]:
        assert adapter.set_order_status(x, "confirm", batch_id=s1).batch_id == s1
    change = adapter.set_order_status(ids[0], "ship", batch_id=s1, handed_over=ids[:2])
    assert change.ok and sorted(change.native["shipped"]) == sorted(ids[:2])
    s2 = change.native["moved"][ids[2]]
    st = _state(sb)
    assert st["orders"][ids[0]] == st["orders"][ids[1]] == "complete" and st["orders"][ids[2]] == "confirm"
    assert st["supplies"][s1]["done"] and not st["supplies"][s2]["done"]
    assert st["supplies"][s2]["orders"] == [int(ids[2])]
    again = adapter.set_order_status(ids[1], "ship", batch_id=s1)  # read back: no second delivery
    assert again.already and sorted(again.native["shipped"]) == sorted(ids[:2])
    assert _state(sb)["order_calls"][ids[1]]["ship"] == [1, 1]


def test_each_profile_says_how_it_ships() -> None:
    assert {name: p.ships for name, p in profiles().items()} == {
        "wildberries": "per_batch", "ozon": "per_order", "yandex_market": "per_order", "megamarket": "per_order"}
    with pytest.raises(ProfileError, match="ships must be one of per_order, per_batch"):
        parse_profile("x", {"title": "X", "colour": "#000000", "label_after": "confirm", "min_poll_s": 1,
                            "poll_reason": "r", "poll_endpoint": "e", "statuses": {"new": "new"}, "ships": "weekly"})
