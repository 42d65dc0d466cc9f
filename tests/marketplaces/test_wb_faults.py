"""Wildberries under faults: 20% 429, 10% 5xx, 100 ms latency on every request; then lost replies.

10,000 stocks and a full cycle of 100 orders (new -> confirmed -> packed -> shipped, stickers fetched)
through the adapter against the sandbox (real HTTP, time-scaled limits); orders are worked by 16
threads as the cloud's jobs would. Asserts every stock accepted once and every order moved exactly
once through each status.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from marketplaces import open_account
from marketplaces.base import StockLevel

FAULTS = {"rate_429": 0.2, "rate_5xx": 0.1, "latency_ms": 100}


def _cycle(adapter, oid: str) -> tuple[bool, bool, bool, bool]:
    confirmed = adapter.set_order_status(oid, "confirm")
    packed = adapter.set_order_status(oid, "assemble")
    try:
        label_ok = adapter.get_label(oid, fmt="png", size="58x40").barcode_text == oid
    except Exception as exc:  # noqa: BLE001 - reported by the assertion with the order's outcome
        label_ok = f"{oid}: {exc} / {confirmed}"
    shipped = adapter.set_order_status(oid, "ship")
    return confirmed.ok, packed.ok, label_ok, shipped.ok


def test_wb_stocks_and_orders_under_faults(sandbox_factory, account_for, contract) -> None:
    # the sandbox validates every request and reply itself (a bad request would get a 400, a bad reply
    # is counted and fails the test at teardown); the client-side double check is off to halve the CPU
    contract.check_requests = contract.check_responses = False
    sb = sandbox_factory("wildberries", seed=3334, time_scale=50, process=True)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    whs = adapter.warehouses()
    levels = [StockLevel(c.native_id, c.offer_id, w.native_id, (i % 50) + 1)
              for w in whs for i, c in enumerate(cards)][:10_000]
    ids = httpx.post(sb.url + "/_sandbox/orders", json={"count": 100}).json()["orders"]
    assert len(ids) == 100
    httpx.post(sb.url + "/_sandbox/faults", json=FAULTS)

    with ThreadPoolExecutor(1) as stock_job:  # stocks go out while the orders are worked, as in the cloud
        pushed = stock_job.submit(adapter.push_stocks, levels)
        orders = adapter.new_orders()
        assert sorted(o.native_id for o in orders) == sorted(ids)
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda o: _cycle(adapter, o.native_id), orders))
        results = pushed.result()
    assert all(x == (True, True, True, True) for x in outcomes), [x for x in outcomes if x != (True,) * 4]
    assert len(results) == 10_000 and all(r.ok for r in results)

    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["injected"]["429"] > 0 and state["injected"]["5xx"] > 0
    assert state["stock_writes"] == 10_000  # each stock accepted exactly once
    for lv in levels[:200] + levels[-200:]:
        assert state["stocks"][f"{lv.card_id}@{lv.warehouse_id}"] == lv.quantity
    assert all(state["transitions"][i] == ["new", "confirm", "complete"] for i in ids)
    assert adapter.http.stats.throttled > 0 and adapter.http.stats.retries > 0


def test_wb_status_changes_whose_answers_are_lost_are_not_sent_twice(sandbox_factory, account_for) -> None:
    """A third of the answers to applied requests are lost (504 after the change is made): the adapter reads
    the status back and never moves an order twice."""
    sb = sandbox_factory("wildberries", seed=50, time_scale=50)
    adapter = open_account(account_for(sb))
    ids = httpx.post(sb.url + "/_sandbox/orders", json={"count": 20}).json()["orders"]
    adapter.new_orders()
    httpx.post(sb.url + "/_sandbox/faults", json={"lost_reply_rate": 0.3})
    for oid in ids[:15]:
        assert adapter.set_order_status(oid, "confirm").ok
        assert adapter.set_order_status(oid, "ship").ok
    for oid in ids[15:]:
        assert adapter.set_order_status(oid, "cancel").ok
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["injected"]["lost"] > 3
    assert all(state["transitions"][i] == ["new", "confirm", "complete"] for i in ids[:15])
    assert all(state["transitions"][i] == ["new", "cancel"] for i in ids[15:])
