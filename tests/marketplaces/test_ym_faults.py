"""Yandex.Market under faults (20% throttling answered 420 as YM does, 10% 5xx, latency), over real
HTTP, contract-checked: 10,000 stocks each accepted once and a full cycle of 100 FBS orders
(new -> assemble with boxes and marking codes -> label -> ship) with every order moved exactly once per
status; and bad answers from the marketplace (malformed, HTML, cut short, unknown status) as typed errors
naming the account and endpoint, without the key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import AccountConfig, BadResponse, MarketplaceError, StockLevel
from marketplaces.http import RetryPolicy
from marketplaces.sandbox.yandex_market_spec import register

register()


def ym_account(running) -> AccountConfig:
    app = running.app
    return AccountConfig(name="ym-faults", marketplace="yandex_market", base_url=running.url,
                         credentials=dict(running.credentials), time_scale=app.time_scale,
                         options={"business_id": app.business_id, "campaign_id": app.campaign_id})


def test_fault_cycle_nothing_lost_no_order_moved_twice(sandbox_factory) -> None:
    # the contract fixture validates every exchange on the adapter's side; the sandbox skips its own
    # second validation of the same exchanges here to keep this 1,000-request test quick
    running = sandbox_factory("yandex_market", seed=200, time_scale=1000, validate=False)
    adapter = open_account(ym_account(running))
    adapter.client.retry = RetryPolicy(attempts=12, base_s=0.5, cap_s=30)
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 100}, timeout=30).json()["orders"]
    httpx.post(running.url + "/_sandbox/faults", json={"rate_429": 0.2, "rate_5xx": 0.1, "latency_ms": 20},
               timeout=10)
    wh = str(running.app.warehouse_id)
    results = adapter.push_stocks([StockLevel(f"S-{i:05d}", f"S-{i:05d}", wh, i % 7) for i in range(10000)])
    assert len(results) == 10000 and all(r.ok for r in results)

    orders = {o.native_id: o for o in adapter.new_orders()}
    assert set(ids) <= set(orders)

    def cycle(oid: str) -> list[str]:
        order = orders[oid]
        codes = {ln.native_id: [f"0104607000000014215{ln.native_id}{n}" for n in range(ln.quantity)]
                 for ln in order.lines if ln.marking_required}
        steps = [adapter.set_order_status(oid, "confirm"),
                 adapter.set_order_status(oid, "assemble", marking_codes=codes)]
        label = adapter.get_label(oid)
        assert label.data.startswith(b"%PDF")
        steps.append(adapter.set_order_status(oid, "ship"))
        assert all(s.ok for s in steps), [s.error for s in steps]
        return [s.native_status for s in steps]

    with ThreadPoolExecutor(max_workers=4) as pool:
        finals = list(pool.map(cycle, ids))
    assert all(f[-1] == "PROCESSING/SHIPPED" for f in finals)
    state = httpx.get(running.url + "/_sandbox/state", timeout=10).json()
    assert state["stock_writes"] == 10000 and state["stocks"]["S-09999"] == 9999 % 7
    for oid in ids:
        assert state["order_moves"][oid] == ["PROCESSING/READY_TO_SHIP", "PROCESSING/SHIPPED"], oid
    assert state["injected"]["429"] > 0 and state["injected"]["5xx"] > 0
    assert adapter.client.stats.throttled > 0 and adapter.client.stats.server_errors > 0


@pytest.mark.parametrize("rate", ["malformed"])
def test_bad_answers_are_typed_errors_naming_account_and_endpoint(sandbox_factory, contract, rate) -> None:
    contract.check_responses = False  # the answers are broken on purpose
    running = sandbox_factory("yandex_market", seed=5, time_scale=1000)
    adapter = open_account(ym_account(running))
    adapter.client.retry = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.01)
    httpx.post(running.url + "/_sandbox/faults", json={"malformed_rate": 1.0}, timeout=10)
    with pytest.raises(BadResponse) as err:
        adapter.warehouses()
    text = str(err.value)
    assert "account=ym-faults" in text and "endpoint=warehouses" in text
    assert running.credentials["Api-Key"] not in text


def test_html_pages_missing_fields_and_unknown_statuses(sandbox_factory, contract) -> None:
    contract.check_responses = False
    running = sandbox_factory("yandex_market", seed=5, time_scale=1000)
    adapter = open_account(ym_account(running))
    adapter.client.retry = RetryPolicy(attempts=1)
    routes = {r.template: r for r in running.app._routes}
    from marketplaces.sandbox.core import SandboxReply

    orders_route = routes["/v1/businesses/{businessId}/orders"]
    original = orders_route.handler
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
    cases = [
        (SandboxReply(200, data=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"), "HTML"),
        (SandboxReply(200, {"orders": [{"orderId": int(ids[0])}]}), "missing field"),
        (SandboxReply(200, {"orders": [{"orderId": int(ids[0]), "status": "TELEPORTED", "substatus": "X",
                                        "items": [], "creationDate": "2026-11-26T10:00:00Z"}]}), "unknown status"),
        (SandboxReply(200, data=b'{"orders": [{"orderId": 1, "sta'), "not valid JSON"),
    ]
    running.app.validate = False
    try:
        for reply, words in cases:
            orders_route.handler = lambda req, reply=reply: reply
            with pytest.raises(BadResponse, match=words) as err:
                adapter.new_orders()
            assert "account=ym-faults" in str(err.value)
    finally:
        orders_route.handler = original
        running.app.validate = True
    assert [o.native_id for o in adapter.new_orders()] == ids  # nothing half-applied, still readable
    with pytest.raises(MarketplaceError, match="not a number"):
        adapter.get_order("abc")
