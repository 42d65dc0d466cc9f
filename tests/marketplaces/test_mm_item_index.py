"""Megamarket's sandbox takes back what it gives (issue 18, point 7): `order/get` and the order/new push
give a lot's `itemIndex` as a string ("1"), the confirm/packing examples send a number. An integrator
echoing the string is accepted, as Megamarket accepts its own representation; the adapter keeps
sending the documented number (its every request is held to the schema by the `contract` fixture)."""

from __future__ import annotations

import json

import httpx

from marketplaces import open_account
from marketplaces.http import Exchange, add_exchange_hook, remove_exchange_hook
from marketplaces.sandbox.megamarket import ORDERS, register_schemas

register_schemas()
AGENT = {"User-Agent": "integrator/1.0"}


def _post(running, method: str, data: dict) -> dict:
    body = {"meta": {}, "data": {"token": running.credentials["token"], **data}}
    return httpx.post(f"{running.url}{ORDERS}/{method}", json=body, headers=AGENT, timeout=10).json()


def test_item_index_echoed_as_a_string_moves_the_order(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=20, time_scale=1000)
    app = running.app
    sid = httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"][0]
    got = _post(running, "order/get", {"shipments": [sid]})["data"]["shipments"][0]
    lots = got["items"]
    assert all(isinstance(lot["itemIndex"], str) for lot in lots)  # as order/get gives it
    confirm = _post(running, "order/confirm", {"shipments": [{
        "shipmentId": sid, "orderCode": "ORD-1", "items": [{"itemIndex": lot["itemIndex"], "offerId": lot["offerId"]}
                                                           for lot in lots]}]})
    assert confirm["success"] == 1, confirm
    packing = _post(running, "order/packing", {"shipments": [{"shipmentId": sid, "items": [{
        "itemIndex": lot["itemIndex"], "quantity": 1,
        "boxes": [{"boxIndex": 1, "boxCode": f"{app.merchant_id}*{sid}*1"}],
        **({"digitalMark": f"0104607000000014215{sid}{lot['itemIndex']}"} if lot["isDigitalMarkRequired"] else {})}
        for lot in lots]}]})
    assert packing["success"] == 1, packing
    state = httpx.get(running.url + "/_sandbox/state", timeout=10).json()
    assert set(state["lots"][sid].values()) == {"PACKED"}
    # the documented number is still accepted; anything else is still refused
    bad = _post(running, "order/reject", {"reason": {"type": "OUT_OF_STOCK"}, "shipments": [{
        "shipmentId": sid, "items": [{"itemIndex": "first", "offerId": lots[0]["offerId"]}]}]})
    assert bad["success"] == 0 and "does not match the API" in bad["error"][0]["message"]


def test_adapter_sends_the_documented_number(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=20, time_scale=1000)
    app = running.app
    from marketplaces.base import AccountConfig

    adapter = open_account(AccountConfig(
        name="mm-test", marketplace="megamarket", base_url=running.url, credentials=dict(running.credentials),
        time_scale=app.time_scale, options={"merchant_id": app.merchant_id, "shipping_point": app.shipping_point}))
    sid = httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"][0]
    seen: list[Exchange] = []
    add_exchange_hook(seen.append)
    try:
        order = adapter.get_order(sid)
        assert adapter.set_order_status(sid, "confirm").ok
        codes = {ln.native_id: [f"0104607000000014215{sid}{ln.native_id}"] for ln in order.lines}
        assert adapter.set_order_status(sid, "assemble", marking_codes=codes).ok
    finally:
        remove_exchange_hook(seen.append)
    sent = [json.loads(ex.request_body) for ex in seen if ex.endpoint in ("order_confirm", "order_packing")]
    assert len(sent) == 2
    assert all(isinstance(it["itemIndex"], int) for b in sent for s in b["data"]["shipments"] for it in s["items"])
