"""Megamarket under faults (20% 429, 10% 5xx, latency) over real HTTP, contract-checked against our
schemas: 10,000 stocks each accepted once (300 a request) and a full cycle of 100 shipments
(confirm -> pack with box codes and marking codes -> sticker -> ship) with every lot moved exactly once
per status; and bad answers (malformed, HTML, success missing, unknown lot status) as typed errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import AccountConfig, BadResponse, StockLevel
from marketplaces.http import RetryPolicy
from marketplaces.sandbox.core import SandboxReply
from marketplaces.sandbox.megamarket import register_schemas

register_schemas()


def mm_account(running) -> AccountConfig:
    app = running.app
    return AccountConfig(name="mm-faults", marketplace="megamarket", base_url=running.url,
                         credentials=dict(running.credentials), time_scale=app.time_scale,
                         options={"merchant_id": app.merchant_id, "shipping_point": app.shipping_point})


def test_fault_cycle_nothing_lost_no_lot_moved_twice(sandbox_factory) -> None:
    # the contract fixture validates every exchange on the adapter's side; the sandbox skips its own
    # second validation of the same exchanges here to keep this 900-request test quick
    running = sandbox_factory("megamarket", seed=10000, time_scale=1000, validate=False)
    adapter = open_account(mm_account(running))
    adapter.client.retry = RetryPolicy(attempts=12, base_s=0.5, cap_s=30)
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 100}, timeout=30).json()["orders"]
    httpx.post(running.url + "/_sandbox/faults", json={"rate_429": 0.2, "rate_5xx": 0.1, "latency_ms": 20},
               timeout=10)
    wh = adapter.warehouses()[0].native_id
    results = adapter.push_stocks([StockLevel(f"MS-{i:05d}", f"MS-{i:05d}", wh, i % 9) for i in range(1, 10001)])
    assert len(results) == 10000 and all(r.ok for r in results)

    orders = {o.native_id: o for o in adapter.new_orders()}
    assert set(orders) == set(ids)

    def cycle(sid: str) -> str:
        order = orders[sid]
        codes = {ln.native_id: [f"010460700000001421{sid}{ln.native_id}"] for ln in order.lines if ln.marking_required}
        steps = [adapter.set_order_status(sid, "confirm", order_code=f"MS-{sid[-5:]}"),
                 adapter.set_order_status(sid, "assemble", marking_codes=codes)]
        assert adapter.get_label(sid).data.startswith(b"%PDF")
        steps.append(adapter.set_order_status(sid, "ship"))
        assert all(s.ok for s in steps), [s.error for s in steps]
        return steps[-1].native_status

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(cycle, ids)) == {"SHIPPED"}
    state = httpx.get(running.url + "/_sandbox/state", timeout=10).json()
    assert state["stock_writes"] == 10000 and state["stocks"]["MS-10000"] == 10000 % 9
    for sid in ids:
        lots = [ln.native_id for ln in orders[sid].lines]
        assert sorted(state["order_moves"][sid]) == sorted(f"{i}:{s}" for i in lots
                                                            for s in ("CONFIRMED", "PACKED", "SHIPPED")), sid
    assert state["injected"]["429"] > 0 and state["injected"]["5xx"] > 0


def test_bad_answers_are_typed_errors(sandbox_factory, contract) -> None:
    contract.check_responses = False  # broken on purpose
    running = sandbox_factory("megamarket", seed=5, time_scale=1000)
    adapter = open_account(mm_account(running))
    adapter.client.retry = RetryPolicy(attempts=1)
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
    route = next(r for r in running.app._routes if r.template.endswith("/order/get"))
    original = route.handler
    lot = {"itemIndex": "1", "status": "BEAMED_UP", "price": 1, "quantity": 1, "offerId": "MS-00001"}
    cases = [
        (SandboxReply(200, data=b"<html>maintenance</html>", content_type="text/html"), "HTML"),
        (SandboxReply(200, {"meta": {}, "data": {"shipments": []}}), "no success flag"),
        (SandboxReply(200, {"success": 1, "data": {"shipments": [{"shipmentId": ids[0], "items": [lot]}]}}),
         "unknown lot status"),
        (SandboxReply(200, {"success": 1, "data": {"shipments": [{"items": []}]}}), "without shipmentId"),
        (SandboxReply(200, data=b'{"success": 1, "data": {"shipm'), "not valid JSON"),
    ]
    running.app.validate = False
    try:
        for reply, words in cases:
            route.handler = lambda req, reply=reply: reply
            with pytest.raises(BadResponse, match=words) as err:
                adapter.get_order(ids[0])
            assert "account=mm-faults" in str(err.value) and running.credentials["token"] not in str(err.value)
    finally:
        route.handler = original
        running.app.validate = True
    assert adapter.get_order(ids[0]).native_status == "NEW"
