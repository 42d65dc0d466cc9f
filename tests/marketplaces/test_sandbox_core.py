"""The sandbox machinery shared by every marketplace: CLI, control endpoints, limits, auth, validation.

Real HTTP against sandboxes served on 127.0.0.1 (in a thread, or as the `marketsync sandbox serve`
subprocess), checked against the official specs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("market", ["wildberries", "ozon"])
def test_cli_prints_json_first_and_stops_on_sigterm(market: str, sandbox_cli) -> None:
    with sandbox_cli(market, "--port", "0", "--seed", "5", "--time-scale", "10") as first:
        assert first["marketplace"] == market and first["url"].startswith("http://127.0.0.1:")
        state = httpx.get(first["url"] + "/_sandbox/state", timeout=10).json()
        assert set(state) >= {"stocks", "prices", "orders", "requests", "throttled"}
        ids = httpx.post(first["url"] + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
        assert len(ids) == 2


@pytest.mark.parametrize("market", ["wildberries", "ozon"])
def test_cli_marking_flag_makes_marked_goods_need_their_codes(market: str, sandbox_cli) -> None:
    """`--marking`: the orders of marked demo goods ask for Честный знак codes, as the adapter reads them
    over HTTP; without it no order line does (the same seed and order count)."""
    from marketplaces import open_account
    from marketplaces.base import AccountConfig

    marked = {}
    for flag in ([], ["--marking"]):
        with sandbox_cli(market, "--seed", "8", "--time-scale", "20", *flag) as first:
            httpx.post(first["url"] + "/_sandbox/orders", json={"count": 12}, timeout=10).raise_for_status()
            adapter = open_account(AccountConfig(name="a", marketplace=market, base_url=first["url"],
                                                 credentials=first["credentials"], options=first.get("options", {})))
            try:
                orders = adapter.new_orders()
            finally:
                adapter.close()
            assert len(orders) == 12
            marked[bool(flag)] = sum(line.marking_required for o in orders for line in o.lines)
    assert marked[False] == 0 and marked[True] >= 1, marked


def test_cli_marking_flag_is_refused_where_the_sandbox_has_none() -> None:
    done = subprocess.run([sys.executable, "-m", "marketsync.cli", "sandbox", "serve", "megamarket", "--marking"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no Честный знак marking" in done.stderr and done.stdout == ""


def test_control_endpoints_are_the_same_everywhere(sandbox_factory) -> None:
    for market in ("wildberries", "ozon"):
        sb = sandbox_factory(market, seed=10, time_scale=20)
        c = httpx.Client(base_url=sb.url, timeout=10)
        ids = c.post("/_sandbox/orders", json={"count": 3}).json()["orders"]
        state = c.get("/_sandbox/state").json()
        assert set(ids) <= set(state["orders"]) and len(state["stocks"]) >= 10 and len(state["prices"]) == 10
        faults = c.post("/_sandbox/faults", json={"rate_429": 0.5, "latency_ms": 1}).json()
        assert faults["rate_429"] == 0.5
        c.post("/_sandbox/reset")
        state = c.get("/_sandbox/state").json()
        assert state["orders"] == {} and state["requests"] == 0


def test_wb_auth_limits_and_validation(sandbox_factory) -> None:
    sb = sandbox_factory("wildberries", seed=5, time_scale=1)
    c = httpx.Client(base_url=sb.url, timeout=10, headers=sb.credentials)
    bad = httpx.get(sb.url + "/api/v3/orders/new", headers={"Authorization": "nope"})
    assert bad.status_code == 401 and bad.json()["status"] == 401
    # a request outside the spec: 400 in the Marketplace family's shape; it costs 10 of the burst of 20
    r = c.put("/api/v3/stocks/700001", json={"stocks": [{"chrtId": "x", "amount": 1}]})
    assert r.status_code == 400 and set(r.json()) == {"code", "message", "data"}
    r = c.put("/api/v3/stocks/700001", json={"stocks": [{"chrtId": "x", "amount": 1}]})
    assert r.status_code == 400
    r = c.put("/api/v3/stocks/700001", json={"stocks": [{"chrtId": 400000001, "amount": 1}]})
    assert r.status_code == 429 and int(r.headers["X-Ratelimit-Retry"]) >= 1
    assert r.json()["title"] == "too many requests"
    assert c.get("/_sandbox/state").json()["throttled"] == 1


def test_ozon_auth_and_global_limit(sandbox_factory) -> None:
    sb = sandbox_factory("ozon", seed=5, time_scale=0.005)  # 0.25 rps refill, bucket of 50: holds on a slow machine
    r = httpx.post(sb.url + "/v2/warehouse/list", json={"limit": 10}, headers={"Client-Id": "1", "Api-Key": "x"})
    assert r.status_code == 403 and r.json()["code"] == 7
    c = httpx.Client(base_url=sb.url, timeout=10, headers=sb.credentials)
    codes = [c.post("/v2/warehouse/list", json={"limit": 10}).status_code for _ in range(60)]
    assert codes.count(429) >= 5  # 50 per second per Client-Id
    throttled = [c.post("/v2/warehouse/list", json={"limit": 10}) for _ in range(3)][-1]
    assert throttled.json()["message"] == "You have reached request rate limit per second"


def test_path_override_moves_an_operation(sandbox_factory) -> None:
    sb = sandbox_factory("wildberries", seed=3, time_scale=20)
    c = httpx.Client(base_url=sb.url, timeout=10, headers=sb.credentials)
    c.post("/_sandbox/override", json={"path_moves": {"/api/v3/orders/new": "/api/v4/orders/new"}})
    assert c.get("/api/v3/orders/new").status_code == 404
    assert c.get("/api/v4/orders/new").status_code == 200


@pytest.mark.parametrize("market", ["wildberries", "ozon", "yandex_market", "megamarket"])
def test_a_stock_number_written_again_counts_as_a_repeat(market: str, sandbox_factory, account_for) -> None:
    """`stock_repeats` in the state: a card's last written number written again (a push sent twice); a new
    number, or the first write of a card, is no repeat. Real pushes by the marketplace's adapter."""
    from marketplaces import open_account
    from marketplaces.base import StockLevel

    running = sandbox_factory(market, seed=6, time_scale=1000.0)
    adapter = open_account(account_for(running, **running.app.account_options()))
    cards = adapter.read_stocks("fbs")[:3]
    assert len(cards) == 3

    def push(numbers: list[int]) -> int:
        for _attempt in range(50):  # Ozon: one write per card and warehouse in its (scaled) window
            results = adapter.push_stocks([StockLevel(c.card_id, c.offer_id, c.warehouse_id, n)
                                           for c, n in zip(cards, numbers, strict=True)])
            if all(r.ok for r in results):
                break
            time.sleep(0.05)
        assert all(r.ok for r in results), [r.error for r in results]
        return httpx.get(running.url + "/_sandbox/state", timeout=10).json()["stock_repeats"]

    assert push([7, 8, 9]) == 0
    assert push([7, 8, 9]) == 3
    assert push([1, 2, 3]) == 3
    assert push([1, 2, 4]) == 5
    # a number written again after the marketplace moved the card (a sale took a unit) restores it: no repeat
    app = running.app
    app.note_stock_write("card@wh", 5, None)
    app.note_stock_write("card@wh", 5, 4)
    assert app.stock_repeats == 5
    app.note_stock_write("card@wh", 5, 5)
    assert app.stock_repeats == 6


@pytest.mark.parametrize("market", ["wildberries", "ozon", "yandex_market", "megamarket"])
def test_the_stocks_alone_are_the_states_stocks(market: str, sandbox_factory) -> None:
    """`GET /_sandbox/stocks`: the state's stocks alone (what a bench watches every few ms), the same
    numbers, also after a buyer's order took units; nothing else of the state."""
    running = sandbox_factory(market, seed=6)
    for _ in range(2):
        stocks = httpx.get(running.url + "/_sandbox/stocks", timeout=10).json()
        assert set(stocks) == {"stocks"} and stocks["stocks"]
        assert stocks["stocks"] == httpx.get(running.url + "/_sandbox/state", timeout=10).json()["stocks"]
        httpx.post(running.url + "/_sandbox/orders", json={"count": 3}, timeout=10).raise_for_status()
