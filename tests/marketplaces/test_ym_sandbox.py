"""The Yandex.Market and Megamarket sandboxes on their own: `marketsync sandbox serve` (first-line JSON,
SIGTERM), the control endpoints, request validation against the official YM spec (and our MM schemas)
with the marketplaces' error shapes, 401s, YM's 420 on its resource limits with X-RateLimit-Resource-*
headers, Megamarket's success 0 inside HTTP 200 and its 5 requests/s, and the YM endpoint map's limits
and batch sizes read against the spec's x-resource-limit-config."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from marketplaces.endpoints import load_endpoint_map
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.yandex_market_spec import register, resource_limits

REPO = Path(__file__).resolve().parents[2]
register()
register_schemas()


@pytest.mark.parametrize("market", ["yandex_market", "megamarket"])
def test_cli_prints_json_first_and_stops_on_sigterm(market: str, sandbox_cli) -> None:
    with sandbox_cli(market, "--port", "0", "--seed", "5", "--time-scale", "10") as first:
        assert first["marketplace"] == market and first["url"].startswith("http://127.0.0.1:")
        assert first["credentials"]
        keys = {"yandex_market": {"business_id", "campaign_id"}, "megamarket": {"merchant_id", "shipping_point"}}
        assert keys[market] <= set(first["options"])  # what the account's adapter needs
        state = httpx.get(first["url"] + "/_sandbox/state", timeout=10).json()
        assert set(state) >= {"stocks", "prices", "orders", "requests", "throttled"} and len(state["stocks"]) == 5
        ids = httpx.post(first["url"] + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
        assert len(ids) == 2
        assert httpx.post(first["url"] + "/_sandbox/faults", json={"rate_429": 0.5}, timeout=10).json()["rate_429"] == 0.5


def test_ym_validates_against_the_official_spec(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=5)
    c = httpx.Client(base_url=running.url, headers=running.credentials, timeout=10)
    stocks = f"/v2/campaigns/{running.app.campaign_id}/offers/stocks"
    too_many = {"skus": [{"sku": f"S{i}", "items": [{"count": 1}]} for i in range(2001)]}
    for body in ({"skus": []}, too_many, {"skus": [{"sku": "A", "items": [{"count": -1}]}]},
                 {"skus": [{"sku": "A", "items": [{"count": 1}, {"count": 2}]}]}):
        resp = c.put(stocks, json=body)
        assert resp.status_code == 400 and resp.json()["status"] == "ERROR", body.keys()
    dup = c.put(stocks, json={"skus": [{"sku": "A", "items": [{"count": 1}]}, {"sku": "A", "items": [{"count": 2}]}]})
    assert dup.status_code == 400
    assert c.put(stocks, json={"skus": [{"sku": "MS-00001", "items": [{"count": 3}]}]}).json() == {"status": "OK"}
    assert httpx.put(running.url + stocks, json={}, timeout=10).status_code == 401
    assert httpx.put(running.url + stocks, json={}, headers={"Authorization": "OAuth x"}, timeout=10).status_code == 401
    other = c.put("/v2/campaigns/1/offers/stocks", json={"skus": [{"sku": "A", "items": [{"count": 1}]}]})
    assert other.status_code == 403
    assert c.get(f"/v2/campaigns/{running.app.campaign_id}/orders").status_code == 404  # deprecated: not served
    assert running.app.spec_violations == []


def test_ym_resource_limit_answers_420_with_its_headers(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=5, time_scale=1)
    c = httpx.Client(base_url=running.url, headers=running.credentials, timeout=10)
    path = f"/v2/businesses/{running.app.business_id}/warehouses"  # 100 per hour
    codes = [c.post(path, json={}).status_code for _ in range(101)]
    assert codes[:100] == [200] * 100 and codes[100] == 420
    last = c.post(path, json={})
    assert last.status_code == 420 and last.headers["X-RateLimit-Resource-Remaining"] == "0"
    assert "GMT" in last.headers["X-RateLimit-Resource-Until"]


def test_ym_endpoint_map_follows_the_spec_limits() -> None:
    spec = resource_limits()
    by_path = {(v["method"], v["path"]): (op, v) for op, v in spec.items()}
    ymap = load_endpoint_map("yandex_market")
    import tomllib

    raw = tomllib.loads((REPO / "marketplaces/endpoints/yandex_market.toml").read_text())
    period = {"minutes": 60, "hours": 3600}
    assert ymap.parallel == 4
    for ep in ymap.endpoints.values():
        if "spec_op" not in raw["groups"][ep.group]:  # the report file's link: no API operation
            assert ep.name == "report_file"
            continue
        op, info = by_path[(ep.method, ep.path)]
        assert not info["deprecated"], ep.name
        group = raw["groups"][ep.group]
        assert group["spec_op"] == op, ep.name
        cfg = info["limit"]["none"]
        rate = cfg["amount"] / (period[cfg["period"]] * cfg["period-duration"])
        assert abs(ymap.groups[ep.group].rate - rate) / rate < 1e-4, ep.name
        # counted in the answer (resp.*): the adapter charges a full page of the read
        counts_items = info["limit"]["path"].startswith("req.") or ep.name in (
            "stocks_read", "prices_business_read", "prices_campaign_read")
        assert group["counts"] == ("items" if counts_items else "requests"), ep.name
    assert ymap["stocks_update"].batch == 2000 and ymap["prices_business"].batch == 500
    assert ymap["orders"].path == "/v1/businesses/{businessId}/orders"


def test_mm_success_zero_inside_200_and_five_per_second(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=5, time_scale=1)
    c = httpx.Client(base_url=running.url, headers={"User-Agent": "marketsync-test"}, timeout=10)
    path = "/api/merchantIntegration/v1/offerService/manualPrice/save"
    token = running.credentials["token"]
    no_flag = c.post(path, json={"meta": {}, "data": {"token": token, "prices": [{"offerId": "MS-00001", "price": 5}]}})
    assert no_flag.status_code == 200 and no_flag.json()["success"] == 0  # isDeleted is required
    time.sleep(1.1)
    codes = [c.post(path, json={"meta": {}, "data": {"token": token, "prices": [
        {"offerId": "MS-00001", "price": 5, "isDeleted": False}]}}).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]
    assert running.app.spec_violations == []
