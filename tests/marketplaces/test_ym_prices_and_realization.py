"""Yandex.Market (issue 18 point 1) against its sandbox over real HTTP, every API exchange held to the
official Partner API spec by the `contract` fixture:

- prices read back at the account's level: the business's (`POST /v2/businesses/{id}/offer-prices`) and
  a store's own (`POST /v2/campaigns/{id}/offer-prices`), paged;
- the commission report built from the realization report: `goods-realization/generate` -> `reports/info`
  -> the file (a ZIP of one CSV per documented sheet), with sales, returns and Market's compensation for
  lost goods, and every fee Market charged for those orders (stats/orders), per month;
- the 4-requests-in-flight limit answers 420 on each of these operations."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest

from cloud_sync.money import reports
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import AccountConfig, PriceChange
from marketplaces.sandbox.yandex_market_spec import register

register()


def ym_account(running, **options) -> AccountConfig:
    app = running.app
    opts = {"business_id": app.business_id, "campaign_id": app.campaign_id, **options}
    return AccountConfig(name="ym-test", marketplace="yandex_market", base_url=running.url,
                         credentials=dict(running.credentials), endpoints=opts.pop("endpoints", {}),
                         time_scale=app.time_scale, options=opts)


def state(running) -> dict:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()


def test_business_and_store_prices_read_back(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=12, time_scale=1000)
    adapter = open_account(ym_account(running))
    sent = adapter.push_prices([PriceChange("MS-00001", "MS-00001", Decimal("1990"), old_price=Decimal("2490"),
                                            min_price=Decimal("1700")),
                                PriceChange("MS-00002", "MS-00002", Decimal("740"))])
    assert all(r.ok for r in sent)
    read = {p.offer_id: p for p in adapter.read_prices()}
    assert len(read) == 12
    one = read["MS-00001"]
    assert (one.price, one.old_price, one.min_price) == (Decimal("1990"), Decimal("2490"), Decimal("1700"))
    assert one.native["level"] == "business"
    assert (read["MS-00002"].price, read["MS-00002"].old_price) == (Decimal("740"), None)
    held = state(running)["prices"]
    assert all(Decimal(str(held[k])) == p.price for k, p in read.items())

    store = open_account(ym_account(running, price_level="campaign"))
    assert store.read_prices() == []  # no store-level price set yet
    assert all(r.ok for r in store.push_prices([PriceChange("MS-00003", "MS-00003", Decimal("555"),
                                                            old_price=Decimal("700"))]))
    own = store.read_prices()
    assert [(p.offer_id, p.price, p.old_price, p.native["level"]) for p in own] == \
        [("MS-00003", Decimal("555"), Decimal("700"), "campaign")]


def test_prices_are_paged(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=12, time_scale=1000)
    adapter = open_account(ym_account(running, endpoints={"prices_business_read": {"batch": 5}}))
    assert len({p.offer_id for p in adapter.read_prices()}) == 12
    assert state(running)["by_path"]["/v2/businesses/{businessId}/offer-prices"] == 3  # 5 + 5 + 2


def _handed_over(running, adapter, count: int) -> list[str]:
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": count}, timeout=10).json()["orders"]
    for order in adapter.new_orders():
        codes = {li.native_id: [f"0104607000000014215{li.native_id}{n}" for n in range(li.quantity)]
                 for li in order.lines if li.marking_required}
        assert adapter.set_order_status(order.native_id, "assemble", marking_codes=codes).ok
        assert adapter.set_order_status(order.native_id, "ship").ok
    return ids


def test_commission_report_from_the_realization_report(tmp_path, sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=20, time_scale=1000)
    adapter = open_account(ym_account(running))
    ids = _handed_over(running, adapter, 6)
    control = running.url + "/_sandbox/x/"
    today = date.today()
    httpx.post(control + "deliver", json={"orders": ids[:4]}, timeout=10).raise_for_status()
    returned = httpx.post(control + "return", json={"orders": [ids[0]]}, timeout=10).json()["return"]
    lost = httpx.post(control + "lose", json={"orders": [ids[4]]}, timeout=10).json()["lose"]
    assert returned == [ids[0]] and lost == [ids[4]]
    report = adapter.realization_report(today.replace(day=1), today)
    by_kind: dict[str, list] = {}
    for ln in report.lines:
        by_kind.setdefault(ln.kind, []).append(ln)
    assert {ln.order_native_id for ln in by_kind["sale"]} == set(ids[:4])
    assert {ln.order_native_id for ln in by_kind["return"]} == {ids[0]}
    assert [ln.order_native_id for ln in by_kind["other"]] == [ids[4]]  # the lost order's compensation
    assert all(ln.revenue < 0 and ln.quantity < 0 for ln in by_kind["return"])
    compensation = by_kind["other"][0]
    assert compensation.to_pay > 0 and compensation.other == -compensation.to_pay
    # every fee Market lists for the orders, kept by its own type, spread over the lines to the kopeck
    fees = {k for ln in report.lines for k in ln.native["fees"]}
    assert fees == {"FEE", "PAYMENT_TRANSFER", "DELIVERY_TO_CUSTOMER", "SORTING", "RETURN_PROCESSING",
                    "RETURNED_ORDERS_STORAGE"}
    assert all(ln.to_pay == ln.revenue - ln.fee - ln.acquiring - ln.logistics - ln.storage - ln.other for ln in report.lines)
    assert set(by_kind["return"][0].native["fees"]) == {"RETURN_PROCESSING", "RETURNED_ORDERS_STORAGE"}
    sold = sum(ln.quantity for ln in by_kind["sale"])
    assert report.native_totals["sold"] == sold and report.native_totals["returned"] == -sum(
        ln.quantity for ln in by_kind["return"])
    assert report.native_totals["transferred"] >= 5  # six handed over this month, one order may hold two lines
    # the cloud's commission report takes it and reconciles with Market's own figures to the kopeck
    conn = open_db(tmp_path / "tenant.sqlite")
    built = reports.build_commission_report(conn, report, marketplace="yandex_market")
    assert not built.differences and built.compared["revenue"] == report.native_totals["revenue"]
    assert {"transferred", "unredeemed"} <= built.native_counts  # units, not roubles
    assert built.totals["other"] == -compensation.to_pay + sum(ln.other for ln in report.lines
                                                               if ln is not compensation)
    conn.close()
    st = state(running)
    assert st["by_path"]["/v2/reports/goods-realization/generate"] == 1
    assert st["by_path"]["/v2/reports/info/{reportId}"] >= 1  # polled after the time Market estimated


def test_the_report_file_is_the_documented_csv_archive(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=20, time_scale=1000)
    adapter = open_account(ym_account(running))
    ids = _handed_over(running, adapter, 2)
    httpx.post(running.url + "/_sandbox/x/deliver", json={"orders": ids}, timeout=10).raise_for_status()
    headers = dict(running.credentials)
    today = date.today()
    started = httpx.post(running.url + "/v2/reports/goods-realization/generate", params={"format": "CSV"},
                         json={"campaignId": running.app.campaign_id, "year": today.year, "month": today.month},
                         headers=headers, timeout=10).json()["result"]
    info = httpx.get(f"{running.url}/v2/reports/info/{started['reportId']}", headers=headers, timeout=10).json()
    assert info["result"]["status"] in ("PENDING", "PROCESSING", "DONE")
    for _ in range(100):
        info = httpx.get(f"{running.url}/v2/reports/info/{started['reportId']}", headers=headers, timeout=10).json()
        if info["result"]["status"] == "DONE":
            break
    link = info["result"]["file"]
    data = httpx.get(link, timeout=10).content  # the link needs no Api-Key
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == ["delivered.csv", "lost_items.csv", "returned.csv", "transferred_to_delivery.csv",
                     "unredeemed.csv"]
    delivered = zipfile.ZipFile(io.BytesIO(data)).read("delivered.csv").decode()
    header = delivered.splitlines()[0].split(",")
    assert header[:8] == ["ORDER_ID", "YOUR_ORDER_ID", "ORDER_TYPE", "OFFER_NAME", "YOUR_SKU", "SHOP_SKU",
                          "TRANSFERRED_TO_DELIVERY_COUNT", "DELIVERED_COUNT"]
    assert "DELIVERED_PRICE_SUM_WITH_VAT_AND_DISCOUNTS" in header
    assert len(delivered.splitlines()) > 1
    # the same month as JSON: one file per sheet, rows keyed by the documented JSON column names
    for _ in range(50):
        as_json = httpx.post(running.url + "/v2/reports/goods-realization/generate", params={"format": "JSON"},
                             json={"campaignId": running.app.campaign_id, "year": today.year, "month": today.month},
                             headers=headers, timeout=10)
        if as_json.status_code != 420:
            break
        time.sleep(0.1)
    report_id = as_json.json()["result"]["reportId"]
    for _ in range(100):
        info = httpx.get(f"{running.url}/v2/reports/info/{report_id}", headers=headers, timeout=10).json()
        if info["result"]["status"] == "DONE":
            break
        time.sleep(0.01)
    sheets = zipfile.ZipFile(io.BytesIO(httpx.get(info["result"]["file"], timeout=10).content))
    rows = json.loads(sheets.read("delivered.json"))
    assert rows and isinstance(rows[0]["orderId"], int) and rows[0]["yourSku"].startswith("MS-")
    assert isinstance(rows[0]["deliveredPriceSumWithVatAndDiscounts"], float)
    # another store's report is refused (once the 1-per-2-minutes limit lets the request through)
    for _ in range(50):
        bad = httpx.post(running.url + "/v2/reports/goods-realization/generate", params={"format": "CSV"},
                         json={"campaignId": 1, "year": today.year, "month": today.month}, headers=headers,
                         timeout=10)
        if bad.status_code != 420:
            break
        time.sleep(0.1)
    assert bad.status_code == 403 and bad.json()["status"] == "ERROR"


def test_each_month_is_its_own_report(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=20, time_scale=1000)
    adapter = open_account(ym_account(running))
    ids = _handed_over(running, adapter, 3)
    today = date.today()
    last_month_day = today.replace(day=1) - timedelta(days=3)
    httpx.post(running.url + "/_sandbox/x/deliver", json={"orders": [ids[0]], "on": last_month_day.isoformat()},
               timeout=10).raise_for_status()
    httpx.post(running.url + "/_sandbox/x/deliver", json={"orders": [ids[1]]}, timeout=10).raise_for_status()
    earlier = adapter.realization_report(last_month_day.replace(day=1), last_month_day)
    assert {ln.order_native_id for ln in earlier.lines if ln.kind == "sale"} == {ids[0]}
    both = adapter.realization_report(last_month_day.replace(day=1), today)
    assert {ln.order_native_id for ln in both.lines if ln.kind == "sale"} == {ids[0], ids[1]}
    assert len(both.report_id.split(",")) == 2  # one report per month
    quiet = (today.replace(day=1) - timedelta(days=70)).replace(day=1)  # a month with no sales: NO_DATA
    assert adapter.realization_report(quiet, quiet + timedelta(days=20)).lines == []


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v2/businesses/{b}/offer-prices", {}),
    ("POST", "/v2/campaigns/{c}/offer-prices", {}),
    ("POST", "/v2/reports/goods-realization/generate?format=CSV", {"campaignId": "{c}", "year": 2026, "month": 1}),
    ("GET", "/v2/reports/info/goods-realization-000001", None),
])
def test_a_fifth_request_in_flight_gets_420(sandbox_factory, method, path, body) -> None:
    running = sandbox_factory("yandex_market", seed=5, time_scale=1000, validate=False)
    app = running.app
    running.app.faults.latency_ms = 1500  # keep requests in flight while all six start, on a busy box too
    url = running.url + path.format(b=app.business_id, c=app.campaign_id)
    if body and body.get("campaignId") == "{c}":
        body = {**body, "campaignId": app.campaign_id}
    codes: list[int] = []

    def one() -> None:
        codes.append(httpx.request(method, url, json=body, headers=dict(running.credentials), timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state(running)["parallel_refused"] == 2
    assert codes.count(420) >= 2
