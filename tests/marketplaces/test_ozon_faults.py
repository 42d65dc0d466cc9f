"""Ozon under faults: 20% 429, 10% 5xx, 100 ms latency on every request; then lost replies.

10,000 stocks (100 pairs a request, 80 requests a minute, time-scaled) and a full cycle of 100
postings (new -> confirmed -> packed (ship) -> label -> handed over (carriage)) through the adapter
against the sandbox, orders worked by 16 threads. Asserts every stock accepted once (no per-item
refusal either) and every posting moved exactly once through each status.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from marketplaces import open_account
from marketplaces.base import StockLevel

FAULTS = {"rate_429": 0.2, "rate_5xx": 0.1, "latency_ms": 100}
FLOW = ["awaiting_packaging", "awaiting_deliver", "delivering"]


def _cycle(adapter, number: str) -> tuple[bool, bool, bool, bool]:
    confirmed = adapter.set_order_status(number, "confirm")
    packed = adapter.set_order_status(number, "assemble")
    label = adapter.get_label(number)
    shipped = adapter.set_order_status(number, "ship")
    return confirmed.ok, packed.ok, label.data.startswith(b"%PDF"), shipped.ok


def test_ozon_stocks_and_postings_under_faults(sandbox_factory, account_for, contract) -> None:
    # the sandbox validates every request and reply itself (a bad request would get a 400, a bad reply
    # is counted and fails the test at teardown); the client-side double check is off to halve the CPU
    contract.check_requests = contract.check_responses = False
    sb = sandbox_factory("ozon", seed=3334, time_scale=50, process=True)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    whs = adapter.warehouses()
    levels = [StockLevel(c.native_id, c.offer_id, w.native_id, (i % 50) + 1)
              for w in whs for i, c in enumerate(cards)][:10_000]
    numbers = httpx.post(sb.url + "/_sandbox/orders", json={"count": 100}).json()["orders"]
    assert len(numbers) == 100
    httpx.post(sb.url + "/_sandbox/faults", json=FAULTS)

    with ThreadPoolExecutor(1) as stock_job:  # stocks go out while the orders are worked, as in the cloud
        pushed = stock_job.submit(adapter.push_stocks, levels)
        orders = adapter.new_orders()
        assert sorted(o.native_id for o in orders) == sorted(numbers)
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda o: _cycle(adapter, o.native_id), orders))
        results = pushed.result()
    assert all(x == (True, True, True, True) for x in outcomes), [x for x in outcomes if x != (True,) * 4]
    assert len(results) == 10_000 and all(r.ok for r in results)

    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["injected"]["429"] > 0 and state["injected"]["5xx"] > 0
    assert state["stock_writes"] == 10_000 and state["throttled_items"] == 0
    assert all(state["transitions"][n] == FLOW for n in numbers)


def test_ozon_status_changes_whose_answers_are_lost_are_not_sent_twice(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("ozon", seed=50, time_scale=50)
    adapter = open_account(account_for(sb))
    numbers = httpx.post(sb.url + "/_sandbox/orders", json={"count": 20}).json()["orders"]
    adapter.new_orders()
    httpx.post(sb.url + "/_sandbox/faults", json={"lost_reply_rate": 0.3})
    for n in numbers[:15]:
        assert adapter.set_order_status(n, "assemble").ok
        assert adapter.set_order_status(n, "ship").ok
    for n in numbers[15:]:
        assert adapter.set_order_status(n, "cancel").ok
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["injected"]["lost"] > 3
    assert all(state["transitions"][n] == FLOW for n in numbers[:15])
    assert all(state["transitions"][n] == ["awaiting_packaging", "cancelled"] for n in numbers[15:])
