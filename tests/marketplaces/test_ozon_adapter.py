"""The Ozon adapter against the Ozon sandbox, both held to the official spec (the `contract` fixture).

Real HTTP to a sandbox on 127.0.0.1 at a time scale, so the 30 s / 1 h per-item windows pass quickly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pypdfium2 as pdfium
import pytest
import zxingcpp

from marketplaces import open_account
from marketplaces.base import AccountConfig, BadResponse, CardMaker, NotSupported, PriceChange, StockLevel
from marketplaces.sandbox.seed import demo_items


@pytest.fixture
def oz(sandbox_factory, account_for):
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    return sb, open_account(account_for(sb))


def test_products_link_by_barcode_and_archive(oz) -> None:
    sb, adapter = oz
    cards = list(adapter.list_cards())
    items = {i.barcode: i for i in demo_items(20)}
    assert len(cards) == 20 and all(items[c.barcodes[0]].article == c.offer_id for c in cards)
    assert all(c.category_id and c.price for c in cards)
    assert adapter.set_visibility([cards[2].native_id], False)[0].ok
    assert {c.native_id for c in adapter.list_cards() if not c.visible} == {cards[2].native_id}
    assert adapter.set_visibility([cards[2].native_id], True)[0].ok
    assert isinstance(adapter, CardMaker)  # products are created through /v3/product/import (test_ozon_cards.py)


def test_stocks_with_per_item_answers_inside_200(oz) -> None:
    sb, adapter = oz
    cards = list(adapter.list_cards())
    whs = adapter.warehouses()
    levels = [StockLevel(c.native_id, c.offer_id, w.native_id, i) for i, c in enumerate(cards) for w in whs]
    results = adapter.push_stocks(levels)
    assert len(results) == 60 and all(r.ok for r in results)
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["stocks"][f"{cards[5].native_id}@{whs[1].native_id}"] == 5 and state["throttled_items"] == 0
    # the same pair again at once: the adapter waits out Ozon's 30 s (time-scaled) instead of drawing
    # TOO_MANY_REQUESTS; an unknown product comes back failed, not retried
    again = adapter.push_stocks([StockLevel(cards[5].native_id, cards[5].offer_id, whs[1].native_id, 9),
                                 StockLevel("123", "NOPE", whs[1].native_id, 1)])
    by_key = {r.key: r for r in again}
    assert by_key[f"{cards[5].native_id}@{whs[1].native_id}"].ok
    bad = by_key[f"123@{whs[1].native_id}"]
    assert not bad.ok and not bad.retryable and "PRODUCT_NOT_FOUND" in bad.error
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["throttled_items"] == 0 and state["throttled"] == 0


def test_too_many_requests_inside_200_is_retried_only_as_retryable(sandbox_factory, account_for) -> None:
    """A second client of the same Client-Id under another account name does not share the gate, so
    Ozon answers TOO_MANY_REQUESTS per item; the adapter reports it retryable and sends it again."""
    sb = sandbox_factory("ozon", seed=5, time_scale=20)  # the 30 s window lasts 1.5 s: a busy box still
    first = open_account(account_for(sb, name="a", limit_key="a"))  # pushes twice inside it
    second = open_account(account_for(sb, name="b", limit_key="b"))
    card = next(iter(first.list_cards()))
    wh = first.warehouses()[0].native_id
    assert first.push_stocks([StockLevel(card.native_id, card.offer_id, wh, 3)])[0].ok
    res = second.push_stocks([StockLevel(card.native_id, card.offer_id, wh, 4)])
    assert res[0].ok  # refused once inside 200, then accepted after the window
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["throttled_items"] >= 1 and state["stocks"][f"{card.native_id}@{wh}"] == 4


def test_prices_with_old_price_and_the_hourly_item_limit(oz) -> None:
    sb, adapter = oz
    card = next(iter(adapter.list_cards()))
    res = adapter.push_prices([PriceChange(card.native_id, card.offer_id, Decimal("990"), old_price=Decimal("1290"))])
    assert res[0].ok
    assert httpx.get(sb.url + "/_sandbox/state").json()["prices"][card.native_id] == {"price": "990.00",
                                                                                       "old_price": "1290.00"}
    bad = adapter.push_prices([PriceChange(card.native_id, card.offer_id, Decimal("990"), old_price=Decimal("900"))])
    assert not bad[0].ok and not bad[0].retryable and "INVALID_OLD_PRICE" in bad[0].error
    outcomes = [adapter.push_prices([PriceChange(card.native_id, card.offer_id, Decimal(1000 + i))])[0]
                for i in range(10)]
    assert [r.ok for r in outcomes] == [True] * 9 + [False]
    assert outcomes[-1].retryable and "10 times" in outcomes[-1].error
    assert httpx.get(sb.url + "/_sandbox/state").json()["throttled_items"] == 0  # never sent


def test_posting_cycle_label_and_report(oz) -> None:
    sb, adapter = oz
    numbers = httpx.post(sb.url + "/_sandbox/orders", json={"count": 3}).json()["orders"]
    orders = adapter.new_orders()
    assert sorted(o.native_id for o in orders) == sorted(numbers)
    cards = {c.native_id for c in adapter.list_cards()}
    assert all(ln.card_id in cards for o in orders for ln in o.lines)
    for o in orders:
        assert adapter.set_order_status(o.native_id, "confirm").ok
        change = adapter.set_order_status(o.native_id, "assemble")
        assert change.ok and change.native_status == "awaiting_deliver" and not change.already
    assert adapter.set_order_status(orders[0].native_id, "assemble").already
    label = adapter.get_label(orders[0].native_id)
    assert label.format == "pdf" and label.data.startswith(b"%PDF") and label.width_mm > 0
    page = pdfium.PdfDocument(label.data)[0].render(scale=4).to_pil()
    assert [r.text for r in zxingcpp.read_barcodes(page)] == [orders[0].native_id]
    with pytest.raises(NotSupported):
        adapter.get_label(orders[0].native_id, fmt="png")
    assert adapter.set_order_status(orders[2].native_id, "cancel", reason_id=352).native_status == "cancelled"
    shipped = [adapter.set_order_status(o.native_id, "ship") for o in orders[:2]]
    assert all(s.ok and s.native_status == "delivering" for s in shipped)
    state = httpx.get(sb.url + "/_sandbox/state").json()
    assert state["transitions"][orders[0].native_id] == ["awaiting_packaging", "awaiting_deliver", "delivering"]
    assert state["transitions"][orders[2].native_id] == ["awaiting_packaging", "awaiting_deliver", "cancelled"]
    today = datetime.now(UTC).date()
    report = adapter.realization_report(today.replace(day=1), today)
    sales = [ln for ln in report.lines if ln.kind == "sale"]
    assert sorted(ln.offer_id for ln in sales) == sorted(o.lines[0].offer_id for o in orders[:2])
    assert all(ln.fee > 0 and ln.to_pay == ln.revenue - ln.fee for ln in sales)
    # and the delivery charges of the two postings sold, per item of each posting (transaction/list)
    charged = [ln for ln in report.lines if ln.kind == "logistics"]
    assert {ln.offer_id for ln in charged} == {ln.offer_id for ln in sales}
    assert sum((ln.logistics for ln in charged), Decimal(0)) == Decimal("152.00")


def test_bad_answers_are_typed_errors(hostile) -> None:
    config = AccountConfig(name="ozon-shop-2", marketplace="ozon", base_url=hostile.url,
                           credentials={"Client-Id": "777", "Api-Key": "secret-ozon-key-abc"}, time_scale=1000)
    adapter = open_account(config)
    cases = [
        (b"<!DOCTYPE html><html>maintenance</html>", "text/html", None, "HTML"),
        (b'{"postings": [{"posting_number": "1-1-1"', "application/json", None, "not valid JSON"),
        (b'{"postings": [{"posting_number": "1-1-1", "status": "awaiting_packaging"}], "has_next": false}',
         "application/json", None, "missing"),
        (b'{"postings": [{"posting_number": "1-1-1", "status": "beamed_up", "in_process_at": "2026-11-01T00:00:00Z",'
         b' "products": [{"sku": 1, "quantity": 1, "price": {"amount": "1"}}]}]}', "application/json", None,
         "unknown status"),
        (b'{"postings": [', "application/json", 300, "cut short"),
    ]
    for body, ctype, length, words in cases:
        hostile.answer(200, body, ctype=ctype, length=length)
        with pytest.raises(BadResponse) as err:
            adapter.new_orders()
        text = str(err.value)
        assert words in text and "account=ozon-shop-2" in text and "endpoint=postings_unfulfilled" in text
        assert "secret-ozon-key-abc" not in text
    hostile.answer(200, b'{"result": [{"product_id": 1, "warehouse_id": 2, "updated": "maybe", "errors": "x"}]}')
    res = adapter.push_stocks([StockLevel("1", "A", "2", 5)])
    assert not res[0].ok  # an unreadable per-item answer is never taken as success


def test_a_stock_push_fills_the_window_with_many_requests_in_flight(sandbox_factory, account_for,
                                                                     monkeypatch) -> None:
    """Ozon's stock window (80 requests a minute) reopens its slots together, one window after they were
    used: a push keeps many requests in flight (16 by default), so a window's requests go out together
    and the next window does not start later by the time it took to send them one by one."""
    sb = sandbox_factory("ozon", seed=400, time_scale=60, validate=False)
    adapter = open_account(account_for(sb))
    cards = list(adapter.list_cards())
    whs = [w.native_id for w in adapter.warehouses()]
    httpx.post(sb.url + "/_sandbox/faults", json={"latency_ms": 60}, timeout=10).raise_for_status()
    lock, in_flight, most = threading.Lock(), [0], [0]
    real = httpx.Client.request

    def counted(self, *args, **kwargs):  # the real request, counted while it is under way
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(httpx.Client, "request", counted)
    results = adapter.push_stocks([StockLevel(c.native_id, c.offer_id, wh, 1) for c in cards for wh in whs])
    assert len(results) == 400 * len(whs) >= 1200 and all(r.ok for r in results)  # 12 requests or more
    assert most[0] >= 4 * 2, f"at most {most[0]} requests in flight"
