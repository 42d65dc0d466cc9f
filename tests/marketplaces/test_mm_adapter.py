"""The Megamarket adapter against its sandbox over real HTTP, every exchange held to marketsync's
Megamarket schemas (written from ../shared/specs/megamarket/README.md; no official spec exists):
token in the body, success only when success == 1, a non-library User-Agent, <= 300 items a request,
manualPrice/save with isDeleted false, lots one unit each, box codes merchantId*shipmentId*N, the
Честный ЗНАК code on marked lots, PDF stickers, and "not supported" where the API has no call."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import (
    AccountConfig,
    AuthError,
    MarketplaceError,
    NotSupported,
    PriceChange,
    StockLevel,
)
from marketplaces.http import Exchange, add_exchange_hook, remove_exchange_hook
from marketplaces.sandbox.megamarket import register_schemas

register_schemas()  # the contract checker validates megamarket exchanges against our schemas


def mm_account(running, **options) -> AccountConfig:
    app = running.app
    opts = {"merchant_id": app.merchant_id, "shipping_point": app.shipping_point, **options}
    return AccountConfig(name="mm-test", marketplace="megamarket", base_url=running.url,
                         credentials=dict(running.credentials), endpoints=opts.pop("endpoints", {}),
                         time_scale=app.time_scale, options=opts)


@pytest.fixture
def mm(sandbox_factory):
    running = sandbox_factory("megamarket", seed=30, time_scale=1000)
    return running, open_account(mm_account(running))


def state(running) -> dict:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()


def test_envelope_token_user_agent_and_batches(mm) -> None:
    running, adapter = mm
    seen: list[Exchange] = []
    add_exchange_hook(seen.append)
    try:
        wh = adapter.warehouses()[0].native_id
        levels = [StockLevel(f"MS-{i:05d}", f"MS-{i:05d}", wh, i) for i in range(1, 31)]
        assert all(r.ok for r in adapter.push_stocks(levels))
        prices = adapter.push_prices([PriceChange(f"MS-{i:05d}", f"MS-{i:05d}", Decimal("990.40"),
                                                  old_price=Decimal("1500")) for i in range(1, 11)])
        assert all(r.ok for r in prices)
    finally:
        remove_exchange_hook(seen.append)
    assert state(running)["stocks"]["MS-00030"] == 30 and state(running)["prices"]["MS-00001"] == 990
    for ex in seen:
        body = json.loads(ex.request_body)
        assert body["meta"] == {} and body["data"]["token"] == "***"  # masked in what tests and logs see
        assert not ex.request_headers["User-Agent"].lower().startswith(("python", "httpx"))
    price_body = json.loads(next(ex for ex in seen if ex.endpoint == "prices_save").request_body)
    assert {p["isDeleted"] for p in price_body["data"]["prices"]} == {False}
    assert {p["price"] for p in price_body["data"]["prices"]} == {990}


def test_large_pushes_go_300_at_a_time(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=700, time_scale=1000)
    adapter = open_account(mm_account(running))
    wh = adapter.warehouses()[0].native_id
    results = adapter.push_stocks([StockLevel(f"MS-{i:05d}", f"MS-{i:05d}", wh, 3) for i in range(1, 701)])
    assert len(results) == 700 and all(r.ok for r in results)
    st = state(running)
    assert st["by_path"]["/api/merchantIntegration/v1/offerService/stock/update"] == 3 and st["throttled"] == 0


def test_success_zero_inside_http_200_is_a_failure(mm) -> None:
    running, adapter = mm
    results = adapter.push_stocks([StockLevel("NO-SUCH", "NO-SUCH", adapter.warehouse_id, 1)])
    assert not results[0].ok and "OFFER_NOT_FOUND" in results[0].error
    cfg = mm_account(running)
    cfg.credentials = {"token": "wrong-token-value"}
    with pytest.raises(AuthError) as err:
        list(open_account(cfg).list_cards())
    assert "wrong-token-value" not in str(err.value)
    bot = httpx.post(running.url + "/api/market/v1/orderService/order/search",
                     json={"meta": {}, "data": {"token": running.credentials["token"]}},
                     headers={"User-Agent": "python-requests/2.31"}, timeout=10)
    assert bot.status_code == 403 and bot.json()["success"] == 0


def test_not_supported_calls_say_so(mm) -> None:
    _, adapter = mm
    for call in (lambda: adapter.set_visibility(["MS-00001"], False), lambda: adapter.realization_report(None, None),
                 lambda: adapter.read_stocks("fbo")):
        with pytest.raises(NotSupported) as err:
            call()
        assert err.value.marketplace == "megamarket"


def test_lots_flow_box_codes_marks_sticker(mm) -> None:
    import pypdfium2 as pdfium
    import zxingcpp

    running, adapter = mm
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 12}, timeout=10).json()["orders"]
    orders = {o.native_id: o for o in adapter.new_orders()}
    assert set(ids) == set(orders)
    multi = next(o for o in orders.values() if len(o.lines) > 1 and any(ln.marking_required for ln in o.lines))
    assert all(ln.quantity == 1 and ln.native["status"] == "NEW" for ln in multi.lines)
    sid = multi.native_id
    assert adapter.set_order_status(sid, "confirm", order_code=f"MS-{sid[-4:]}").native_status == "CONFIRMED"
    assert adapter.set_order_status(sid, "confirm").already
    with pytest.raises(MarketplaceError, match="marking code"):
        adapter._send_move(adapter.get_order(sid), "assemble",
                           [ln for ln in adapter.get_order(sid).lines], {})
    codes = {ln.native_id: [f"010460700000001421{sid}{ln.native_id}"] for ln in multi.lines if ln.marking_required}
    packed = adapter.set_order_status(sid, "assemble", marking_codes=codes)
    assert packed.ok and packed.native_status == "PACKED"
    label = adapter.get_label(sid)
    assert label.barcode_text == f"{running.app.merchant_id}*{sid}*1"
    assert (label.width_mm, label.height_mm) == (100.0, 70.0)
    page = pdfium.PdfDocument(label.data)[0].render(scale=203 / 72, grayscale=True).to_pil()  # a 203 dpi printer
    bw = page.point(lambda v: 255 if v > 127 else 0)
    assert [r.text for r in zxingcpp.read_barcodes(bw)] == [label.barcode_text]
    assert adapter.set_order_status(sid, "ship").native_status == "SHIPPED"
    assert adapter.set_order_status(sid, "ship").already
    other = next(i for i in ids if i != sid)
    cancelled = adapter.set_order_status(other, "cancel", reason="OUT_OF_STOCK")
    assert cancelled.ok and cancelled.native_status == "MERCHANT_CANCELED"
    lots = state(running)["order_moves"]
    assert all(lots[sid].count(f"{ln.native_id}:{st}") == 1 for ln in multi.lines
               for st in ("CONFIRMED", "PACKED", "SHIPPED"))
    cards = list(adapter.list_cards())
    assert len(cards) == 30 and cards[0].barcodes == ["4607000000014"]


def test_the_sticker_names_the_order_when_the_cloud_gave_no_order_code(mm) -> None:
    """The cloud confirms without an order code of its own: the sticker still reads the order's number
    (the shipment id the seller knows), never "Order -"."""
    import pypdfium2 as pdfium

    running, adapter = mm
    httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
    order = next(iter(adapter.new_orders()))
    sid = order.native_id
    adapter.set_order_status(sid, "confirm")  # as cloud_sync.orders.mp_actions does: no order_code
    codes = {ln.native_id: [f"010460700000001421{sid}{ln.native_id}"] for ln in order.lines if ln.marking_required}
    assert adapter.set_order_status(sid, "assemble", marking_codes=codes).ok
    assert adapter.get_order(sid).number == sid
    text = pdfium.PdfDocument(adapter.get_label(sid).data)[0].get_textpage().get_text_range()
    assert f"Order {sid}" in text and "Order -" not in text


def test_an_order_code_megamarket_would_refuse_gives_way_to_the_number_not_to_a_dash(mm) -> None:
    """An order code with characters Megamarket does not take (Cyrillic, a slash, a space) was left out of
    the confirmation, and the sticker read "Order -": the next valid number (the shipment id) goes instead."""
    import pypdfium2 as pdfium

    running, adapter = mm
    httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
    order = next(iter(adapter.new_orders()))
    sid = order.native_id
    assert adapter.set_order_status(sid, "confirm", order_code="МС 12/3").ok
    codes = {ln.native_id: [f"010460700000001421{sid}{ln.native_id}"] for ln in order.lines if ln.marking_required}
    assert adapter.set_order_status(sid, "assemble", marking_codes=codes).ok
    text = pdfium.PdfDocument(adapter.get_label(sid).data)[0].get_textpage().get_text_range()
    assert f"Order {sid}" in text and "Order -" not in text and "-\r\n" not in text
