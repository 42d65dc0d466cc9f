"""Telling a marketplace what a parcel packed short really holds (`set_order_status(.., "reduce")`), each
adapter against its sandbox over real HTTP (every exchange held to the spec by the `contract` fixture):
only the units missing leave the order, a repeat removes nothing twice, what remains is assembled and
shipped, a reduce of units not in the order is refused as the marketplace does, and Wildberries (one
unit per assembly task) says it cannot."""

from __future__ import annotations

import httpx
import pytest

from marketplaces import open_account, profile
from marketplaces.base import NotSupported
from tests.marketplaces.test_mm_adapter import mm_account


def _state(running) -> dict:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()


def _orders(running, n: int) -> list[str]:
    return httpx.post(running.url + "/_sandbox/orders", json={"count": n}, timeout=10).json()["orders"]


# ---------------------------------------------------------------- Megamarket: order/reject of the lots


def test_megamarket_rejects_only_the_missing_lots(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=30, time_scale=1000)
    mm = open_account(mm_account(running))
    ids = _orders(running, 6)
    lots = _state(running)["lots"]
    sid = next(i for i in ids if len(lots[i]) >= 2)  # a shipment of two lots of one offer (or two offers)
    order = mm.get_order(sid)
    offer = order.lines[-1].offer_id
    of_offer = [ln for ln in order.lines if ln.offer_id == offer]
    assert mm.set_order_status(sid, "confirm").ok
    change = mm.set_order_status(sid, "reduce", lines=[{"offer_id": offer, "card_id": offer,
                                                        "keep": len(of_offer) - 1}])
    assert change.ok and not change.already and change.native_status == "CONFIRMED"
    st = _state(running)
    gone = [i for i, s in st["lots"][sid].items() if s == "MERCHANT_CANCELED"]
    assert gone == [max(ln.native_id for ln in of_offer)]  # one lot, the offer's last
    units = {ln.offer_id: 0 for ln in order.lines}
    for ln in order.lines:
        units[ln.offer_id] += 1
    units[offer] -= 1
    assert st["order_units"][sid] == {k: v for k, v in units.items() if v}
    assert st["order_calls"][sid]["reject"] == [1, 1]
    # asked again (a cloud killed before it recorded the answer): read back, nothing sent twice
    again = mm.set_order_status(sid, "reduce", lines=[{"offer_id": offer, "keep": len(of_offer) - 1}])
    assert again.ok and again.already
    assert _state(running)["order_calls"][sid]["reject"] == [1, 1]
    # what is left is packed and shipped; the rejected lot stays cancelled
    assert mm.set_order_status(sid, "assemble").ok and mm.set_order_status(sid, "ship").ok
    st = _state(running)
    assert st["orders"][sid] == "SHIPPED" and st["lots"][sid][gone[0]] == "MERCHANT_CANCELED"
    assert st["spec_violations"] == []


def test_megamarket_refuses_a_lot_not_in_the_shipment_and_cancels_an_emptied_one(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=31, time_scale=1000)
    mm = open_account(mm_account(running))
    sid = _orders(running, 1)[0]
    body = {"meta": {}, "data": {"token": running.credentials["token"], "reason": {"type": "OUT_OF_STOCK"},
                                 "shipments": [{"shipmentId": sid, "items": [{"itemIndex": 99, "offerId": "MS-00001"}]}]}}
    reply = httpx.post(running.url + "/api/market/v1/orderService/order/reject", json=body, timeout=10,
                       headers={"User-Agent": "marketsync-test"}).json()
    assert reply["success"] == 0 and reply["error"][0]["code"] == "ITEM_NOT_FOUND"
    # the adapter never empties a shipment by a reduce: it says so, and the shipment is as it was
    order = mm.get_order(sid)
    change = mm.set_order_status(sid, "reduce", lines=[{"offer_id": ln.offer_id, "keep": 0} for ln in order.lines])
    assert not change.ok and "cancel" in change.error
    # a shipment whose every lot was rejected is cancelled
    assert mm.set_order_status(sid, "cancel").ok
    assert _state(running)["orders"][sid] == "MERCHANT_CANCELED"


# ---------------------------------------------------------------- Wildberries: one unit per task


def test_wildberries_cannot_reduce_an_assembly_task(sandbox_factory, account_for) -> None:
    running = sandbox_factory("wildberries", seed=30, time_scale=1000)
    wb = open_account(account_for(running))
    oid = _orders(running, 1)[0]
    assert profile("wildberries").can.reduce_order is False
    with pytest.raises(NotSupported):
        wb.set_order_status(oid, "reduce", lines=[{"offer_id": "x", "keep": 0}])


# ---------------------------------------------------------------- Ozon: /v2/posting/fbs/product/cancel


def test_ozon_cancels_only_the_missing_units_of_a_posting(sandbox_factory, account_for) -> None:
    running = sandbox_factory("ozon", seed=30, time_scale=1000)
    oz = open_account(account_for(running))
    number = httpx.post(running.url + "/_sandbox/x/order", json={"offer_id": "MS-00002", "quantity": 3},
                        timeout=10).json()["posting_number"]
    line = oz.get_order(number).lines[0]
    assert line.quantity == 3
    change = oz.set_order_status(number, "reduce", lines=[{"card_id": line.card_id, "offer_id": line.offer_id,
                                                           "keep": 2}])
    assert change.ok and not change.already and change.native_status == "awaiting_packaging"
    st = _state(running)
    assert st["order_units"][number] == {"MS-00002": 2} and st["order_calls"][number]["reduce"] == [1, 1]
    assert oz.get_order(number).lines[0].quantity == 2
    again = oz.set_order_status(number, "reduce", lines=[{"offer_id": line.offer_id, "keep": 2}])
    assert again.ok and again.already and _state(running)["order_calls"][number]["reduce"] == [1, 1]
    assert oz.set_order_status(number, "assemble").ok  # packages hold the 2 the posting has now
    st = _state(running)
    assert st["orders"][number] == "awaiting_deliver" and st["spec_violations"] == []


def test_ozon_refuses_a_product_not_in_the_posting_or_a_reason_not_the_sellers(sandbox_factory) -> None:
    running = sandbox_factory("ozon", seed=31, time_scale=1000)
    number = httpx.post(running.url + "/_sandbox/x/order", json={"offer_id": "MS-00002", "quantity": 2},
                        timeout=10).json()["posting_number"]
    url = running.url + "/v2/posting/fbs/product/cancel"
    body = {"posting_number": number, "cancel_reason_id": 352, "cancel_reason_message": "нет",
            "items": [{"sku": 123, "quantity": 1}]}
    assert httpx.post(url, json=body, headers=running.credentials, timeout=10).status_code == 400
    body["items"] = [{"sku": 900_000_002, "quantity": 3}]  # more than the posting has
    assert httpx.post(url, json=body, headers=running.credentials, timeout=10).status_code == 400
    body.update(items=[{"sku": 900_000_002, "quantity": 1}], cancel_reason_id=401)
    assert httpx.post(url, json=body, headers=running.credentials, timeout=10).status_code == 400
    assert _state(running)["order_units"][number] == {"MS-00002": 2}
    body["cancel_reason_id"] = 352
    body["items"] = [{"sku": 900_000_002, "quantity": 2}]  # every unit: the posting is cancelled
    assert httpx.post(url, json=body, headers=running.credentials, timeout=10).status_code == 200
    assert _state(running)["orders"][number] == "cancelled"


# ---------------------------------------------------------------- Yandex.Market: setOrderBoxLayout, allowRemove


def test_yandex_market_lays_the_order_out_without_the_missing_units(sandbox_factory) -> None:
    from tests.marketplaces.test_ym_adapter import ym_account
    running = sandbox_factory("yandex_market", seed=30, time_scale=1000)
    ym = open_account(ym_account(running))
    ids = _orders(running, 12)
    orders = {o.native_id: o for o in ym.new_orders()}
    # an order of two items, unmarked (no codes to lay out)
    oid = next(i for i in ids if len(orders[i].lines) == 2 and not any(ln.marking_required for ln in orders[i].lines))
    first, second = orders[oid].lines
    change = ym.set_order_status(oid, "reduce", lines=[{"card_id": second.card_id, "offer_id": second.offer_id,
                                                        "keep": 0}])
    assert change.ok and not change.already
    st = _state(running)
    assert st["order_units"][oid] == {first.offer_id: first.quantity}
    assert st["order_calls"][oid]["reduce"] == [1, 1]
    again = ym.set_order_status(oid, "reduce", lines=[{"offer_id": second.offer_id, "keep": 0}])
    assert again.ok and again.already and _state(running)["order_calls"][oid]["reduce"] == [1, 1]
    assert [ln.offer_id for ln in ym.get_order(oid).lines] == [first.offer_id]
    assert ym.set_order_status(oid, "assemble").ok  # the layout of what is left
    st = _state(running)
    assert st["orders"][oid] == "PROCESSING/READY_TO_SHIP" and st["spec_violations"] == []
    assert "reduce" in [k for k in st["order_calls"][oid]] and st["order_calls"][oid]["reduce"] == [1, 1]


def test_yandex_market_refuses_to_reduce_the_only_item_of_an_order(sandbox_factory) -> None:
    from tests.marketplaces.test_ym_adapter import ym_account
    running = sandbox_factory("yandex_market", seed=31, time_scale=1000)
    ym = open_account(ym_account(running))
    ids = _orders(running, 12)
    orders = {o.native_id: o for o in ym.new_orders()}
    oid = next(i for i in ids if len(orders[i].lines) == 1 and orders[i].lines[0].quantity >= 2)
    (line,) = orders[oid].lines
    change = ym.set_order_status(oid, "reduce", lines=[{"offer_id": line.offer_id, "keep": line.quantity - 1}])
    assert not change.ok and "CANNOT_REMOVE_LAST_ITEM" in change.error
    assert _state(running)["order_units"][oid] == {line.offer_id: line.quantity}  # nothing changed
