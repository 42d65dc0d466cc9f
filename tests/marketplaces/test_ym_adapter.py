"""The Yandex.Market adapter against its sandbox over real HTTP, every exchange held to the official
Partner API spec (the `contract` fixture of conftest.py): catalog, hide/unhide, business- and
store-level prices, stocks in requests of <= 2000, the FBS flow with boxes and marking codes, PDF
labels whose barcode decodes to the order id, the realization report, auth and the 420 limits."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import AccountConfig, AuthError, NotSupported, PriceChange, StockLevel
from marketplaces.sandbox.yandex_market_spec import register

register()  # the contract checker validates yandex_market exchanges against the bundled official spec


def ym_account(running, **options) -> AccountConfig:
    app = running.app
    opts = {"business_id": app.business_id, "campaign_id": app.campaign_id, **options}
    endpoints = opts.pop("endpoints", {})
    return AccountConfig(name="ym-test", marketplace="yandex_market", base_url=running.url,
                         credentials=dict(running.credentials), endpoints=endpoints,
                         time_scale=app.time_scale, options=opts)


@pytest.fixture
def ym(sandbox_factory):
    running = sandbox_factory("yandex_market", seed=30, time_scale=1000)
    return running, open_account(ym_account(running))


def state(running) -> dict:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()


def test_cards_warehouses_and_visibility(ym) -> None:
    running, adapter = ym
    cards = list(adapter.list_cards())
    assert len(cards) == 30
    first = cards[0]
    assert first.offer_id == "MS-00001" and first.barcodes == ["4607000000014"] and first.group_id
    assert first.category == "Футболки" and first.price is not None
    warehouses = adapter.warehouses()
    assert [w.native_id for w in warehouses] == [str(running.app.warehouse_id)]
    assert all(r.ok for r in adapter.set_visibility(["MS-00002", "MS-00003"], False))
    assert state(running)["hidden"] == ["MS-00002", "MS-00003"]
    hidden = {c.offer_id: c.visible for c in adapter.list_cards()}
    assert hidden["MS-00002"] is False and hidden["MS-00004"] is True
    assert all(r.ok for r in adapter.set_visibility(["MS-00002"], True))
    assert state(running)["hidden"] == ["MS-00003"]


def test_business_and_store_prices(ym, sandbox_factory) -> None:
    running, adapter = ym
    results = adapter.push_prices([
        PriceChange("MS-00001", "MS-00001", Decimal("1990"), old_price=Decimal("2490")),
        PriceChange("MS-00002", "MS-00002", Decimal("990")),
        PriceChange("MS-00003", "MS-00003", Decimal("990"), old_price=Decimal("900")),  # refused before sending
    ])
    assert [r.ok for r in results[:1]] == [False] and results[0].key == "MS-00003"
    assert state(running)["prices"]["MS-00001"] == 1990 and state(running)["prices"]["MS-00002"] == 990
    store = open_account(ym_account(running, price_level="campaign"))
    assert all(r.ok for r in store.push_prices([PriceChange("MS-00004", "MS-00004", Decimal("555"))]))
    assert state(running)["campaign_prices"] == {"MS-00004": 555}


def test_stocks_go_in_requests_of_at_most_2000_and_half_the_bucket(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=30, time_scale=1000, validate=False)  # contract-checked
    adapter = open_account(ym_account(running))
    wh = str(running.app.warehouse_id)
    levels = [StockLevel(f"MS-{i:05d}", f"MS-{i:05d}", wh, i % 50) for i in range(1, 2101)]
    levels.append(StockLevel("MS-00049", "MS-00049", wh, 48))  # the same SKU twice: sent once, last wins
    results = adapter.push_stocks(levels)
    assert len(results) == 2100 and all(r.ok for r in results)  # one result per card@warehouse
    st = state(running)
    # at most 2000 a request, and at most half the 2000-SKU bucket (HttpClient.item_batch): 1000 + 1000 + 100
    assert st["stock_writes"] == 2100 and st["by_path"]["/v2/campaigns/{campaignId}/offers/stocks"] == 3
    assert st["stocks"]["MS-02100"] == 0 and st["stocks"]["MS-00049"] == 48
    assert st["throttled"] == 0
    back = {lv.offer_id: lv.quantity for lv in adapter.read_stocks()}
    assert back["MS-00049"] == 48 and len(back) == 2100
    with pytest.raises(NotSupported):
        adapter.read_stocks("fbo")
    bad = adapter.push_stocks([StockLevel("MS-00001", "MS-00001", "999", 1)])
    assert not bad[0].ok and "not one of this account's stores" in bad[0].error or bad[0].ok


def test_fbs_flow_boxes_marking_labels_ship_cancel(ym) -> None:
    import pypdfium2 as pdfium
    import zxingcpp

    running, adapter = ym
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 6}, timeout=10).json()["orders"]
    orders = {o.native_id: o for o in adapter.new_orders()}
    assert set(ids) <= set(orders)
    order = orders[ids[0]]
    assert order.native_status == "PROCESSING" and order.native_substatus == "STARTED" and order.ship_by
    assert adapter.set_order_status(order.native_id, "confirm").already
    marked = next(o for o in orders.values() if any(li.marking_required for li in o.lines))
    refused = None
    try:
        adapter.set_order_status(marked.native_id, "assemble")
    except Exception as exc:  # noqa: BLE001 - the refusal names the missing codes
        refused = str(exc)
    assert refused and "marking code" in refused
    codes = {li.native_id: [f"0104607000000014215{li.native_id}{n}" for n in range(li.quantity)]
             for li in marked.lines if li.marking_required}
    done = adapter.set_order_status(marked.native_id, "assemble", marking_codes=codes)
    assert done.ok and done.native_status == "PROCESSING/READY_TO_SHIP"
    again = adapter.set_order_status(marked.native_id, "assemble", marking_codes=codes)
    assert again.ok and again.already
    label = adapter.get_label(marked.native_id)
    assert label.format == "pdf" and (label.width_mm, label.height_mm) == (75.0, 120.0)
    page = pdfium.PdfDocument(label.data)[0].render(scale=4).to_pil()
    assert [r.text for r in zxingcpp.read_barcodes(page)] == [marked.native_id]
    small = adapter.get_label(marked.native_id, size="58x40")
    assert (small.width_mm, small.height_mm) == (58.0, 40.0)
    shipped = adapter.set_order_status(marked.native_id, "ship")
    assert shipped.ok and shipped.native_status == "PROCESSING/SHIPPED"
    assert adapter.set_order_status(marked.native_id, "ship").already
    assert not adapter.set_order_status(marked.native_id, "cancel").ok
    other = next(i for i in ids if i != marked.native_id)
    assert adapter.set_order_status(other, "cancel").native_status == "CANCELLED/SHOP_FAILED"
    assert adapter.set_order_status(other, "cancel").already
    moves = state(running)["order_moves"]
    assert moves[marked.native_id] == ["PROCESSING/READY_TO_SHIP", "PROCESSING/SHIPPED"]
    assert moves[other] == ["CANCELLED/SHOP_FAILED"]
    httpx.post(running.url + "/_sandbox/x/deliver", json={}, timeout=10).raise_for_status()  # Market delivers
    report = adapter.realization_report(date.today() - timedelta(days=1), date.today() + timedelta(days=1))
    assert report.lines and {ln.order_native_id for ln in report.lines} == {marked.native_id}
    assert all(ln.fee > 0 and ln.acquiring > 0  # Market's PAYMENT_TRANSFER: the acquiring, apart from the fee
               and ln.to_pay == ln.revenue - ln.fee - ln.acquiring - ln.logistics - ln.storage - ln.other
               for ln in report.lines)


def test_wrong_key_is_an_auth_error(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=3, time_scale=1000)
    cfg = ym_account(running)
    cfg.credentials = {"Api-Key": "ACMA:wrong"}
    with pytest.raises(AuthError) as err:
        open_account(cfg).warehouses()
    assert "ACMA:wrong" not in str(err.value) and "ym-test" in str(err.value)


def test_fifth_parallel_request_gets_420_and_the_adapter_never_draws_one(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=5, time_scale=1000, validate=False)  # contract-checked
    running.app.faults.latency_ms = 1500  # keep requests in flight while all six start, on a busy box too
    headers = dict(running.credentials)
    url = f"{running.url}/v2/campaigns/{running.app.campaign_id}/offers/stocks"
    codes: list[int] = []

    def one() -> None:
        codes.append(httpx.post(url, json={}, headers=headers, timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 200, 200, 200, 420, 420]
    running.app.faults.latency_ms = 50
    wh = str(running.app.warehouse_id)
    before = state(running)["parallel_refused"]
    levels = [StockLevel(f"MS-{i:05d}", f"MS-{i:05d}", wh, 1) for i in range(1, 601)]
    small = {"stocks_update": {"batch": 100}}  # 6 requests per job, so that two jobs want 8 in flight
    outcomes: list[bool] = []

    def push() -> None:  # two jobs of one account, 4 threads each: the shared cap keeps 4 in flight
        outcomes.extend(r.ok for r in open_account(ym_account(running, endpoints=small)).push_stocks(levels))

    jobs = [threading.Thread(target=push) for _ in range(2)]
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    assert len(outcomes) == 1200 and all(outcomes)
    assert state(running)["parallel_refused"] == before


def test_moved_path_keeps_working_after_an_override(sandbox_factory) -> None:
    running = sandbox_factory("yandex_market", seed=5, time_scale=1000)
    old = "/v2/campaigns/{campaignId}/offers/stocks"
    httpx.post(running.url + "/_sandbox/override",
               json={"path_moves": {old.format(campaignId=running.app.campaign_id): f"/v3/campaigns/{running.app.campaign_id}/offers/stocks"}}, timeout=10)
    cfg = ym_account(running, endpoints={"stocks_update": {"path": "/v3/campaigns/{campaignId}/offers/stocks"}})
    # the moved path is not in the official spec: this test checks the override, not the contract
    from marketplaces.http import EXCHANGE_HOOKS

    hooks = list(EXCHANGE_HOOKS)
    EXCHANGE_HOOKS.clear()
    try:
        res = open_account(cfg).push_stocks([StockLevel("MS-00001", "MS-00001", "", 7)])
    finally:
        EXCHANGE_HOOKS.extend(hooks)
    assert res[0].ok and state(running)["stocks"]["MS-00001"] == 7


def test_create_card_through_offer_mappings(ym) -> None:
    from marketplaces.base import NewCard

    running, adapter = ym
    made = adapter.create_card(NewCard("NEW-1", "Кружка новая", 91367, brand="MarketSync Demo",
                                       sizes=[{"skus": ["4607000099991"]}]))
    assert made.state == "pending"
    status = adapter.card_creation_status("NEW-1")
    assert status.state == "created" and status.card and status.card.barcodes == ["4607000099991"]
    assert adapter.card_creation_status("NOPE").state == "pending"


def test_account_settings_are_checked_up_front(ym) -> None:
    from marketplaces.base import MarketplaceError

    running, adapter = ym
    cfg = ym_account(running)
    cfg.options = {"business_id": running.app.business_id}
    with pytest.raises(MarketplaceError, match="campaign_id"):
        open_account(cfg)
    with pytest.raises(MarketplaceError, match="price_level"):
        open_account(ym_account(running, price_level="everywhere"))
    with pytest.raises(NotSupported):
        adapter.get_label("1", fmt="zpl")
    with pytest.raises(MarketplaceError, match="label size"):
        adapter.get_label("1", size="100x150")
