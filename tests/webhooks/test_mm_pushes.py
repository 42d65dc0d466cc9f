"""Megamarket's order/new and order/cancel pushes as the cloud receives them, over real HTTP from the
Megamarket sandbox: the envelope answer with success, one lot per unit, duplicates ignored, stored
before the answer, malformed pushes 400 and stored nowhere, wrong token / foreign merchant 403; and
the sandbox retrying while the answer is not `success: 1`."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import httpx
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cloud_sync import db as cloud_db
from marketplaces import open_account
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.spec import load_specs

from .conftest import account_of, push_rows, wait_for  # noqa: TID252 - the fixtures' helpers


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn


register_schemas()






def test_order_new_and_cancel_from_the_sandbox(sandboxes, receiver_factory) -> None:
    mm = sandboxes("megamarket")
    acc = account_of(mm, "mm-1")
    rx = receiver_factory([acc])
    httpx.post(mm.url + "/_sandbox/x/push", json={"url": rx.push_url("mm-1"), "duplicates": 2}, timeout=10)
    ids = httpx.post(mm.url + "/_sandbox/orders", json={"count": 4}, timeout=10).json()["orders"]
    httpx.post(mm.url + "/_sandbox/x/cancel", json={"orders": [ids[0]]}, timeout=10)
    assert httpx.post(mm.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
    assert wait_for(lambda: len(rx.events) == 5)
    time.sleep(0.2)
    created = [e for _, e in rx.events if e.kind == "created"]
    assert sorted(e.order_native_id for e in created) == sorted(ids)
    for e in created:  # the push carries the whole order: one line per unit, each with its lot status
        assert e.order is not None and e.order.native_id == e.order_native_id
        # placed now (the push carries no creationDate), to be packed by the handover's packingDate
        assert abs((e.order.created_at - datetime.now(UTC)).total_seconds()) < 60
        assert e.order.ship_by is not None and e.order.created_at < e.order.ship_by
        assert all(ln.quantity == 1 and ln.native["status"] == "NEW" for ln in e.order.lines)
        assert [ln.native_id for ln in e.order.lines] == [str(i) for i in range(1, len(e.order.lines) + 1)]
    cancel = next(e for _, e in rx.events if e.kind == "cancelled")
    assert cancel.order_native_id == ids[0] and cancel.dedup_key.startswith(f"mm:{mm.app.merchant_id}:{ids[0]}:cancel:")
    assert all(r["duplicates"] == 2 for r in push_rows(rx.db_path)) and len(push_rows(rx.db_path)) == 5
    assert mm.app.push.summary()["failed_attempts"] == 0
    adapter = open_account(acc)
    polled = {o.native_id: o for o in adapter.new_orders()}
    assert set(polled) == set(ids[1:])  # the same keys polling gives: never two orders for one shipment
    # ...and the same assembly deadline (the push's packingDate, order/get's packingTimeLimit): a poll or a
    # re-read of a pushed order finds nothing moved (it once read shippingTimeLimit: 4 h later, a "move")
    for e in created:
        if e.order_native_id in polled:
            assert polled[e.order_native_id].ship_by == e.order.ship_by
            assert adapter.get_order(e.order_native_id).ship_by == e.order.ship_by


def test_answers_follow_the_push_schema(sandboxes, receiver_factory) -> None:
    mm = sandboxes("megamarket")
    rx = receiver_factory([account_of(mm, "mm-2")])
    spec = load_specs("megamarket_push")
    body = json.dumps({"meta": {}, "data": {"merchantId": mm.app.merchant_id, "shipments": [{
        "shipmentId": "9300000009999", "shipmentDate": "2026-11-27T10:00:00+03:00",
        "items": [{"itemIndex": "1", "offerId": "MS-00001", "price": 990, "finalPrice": 990, "quantity": 1}]}]}})
    assert spec.request_errors("POST", "/order/new", body=body.encode()) == []
    for _ in range(2):
        resp = httpx.post(rx.push_url("mm-2") + "/order/new", content=body,
                          headers={"Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 200 and resp.json() == {"data": {}, "meta": {}, "success": 1}
        assert spec.response_errors("POST", "/order/new", 200, body=resp.content, content_type="application/json",
                                    request_body=body.encode()) == []
    assert [(r["dedup_key"], r["duplicates"]) for r in push_rows(rx.db_path)] == [
        (f"mm:{mm.app.merchant_id}:9300000009999:new", 1)]


def test_malformed_wrong_token_and_foreign_merchant(sandboxes, receiver_factory) -> None:
    mm = sandboxes("megamarket")
    rx = receiver_factory([account_of(mm, "mm-3")])
    url = rx.push_url("mm-3")
    mid = mm.app.merchant_id
    bad = [
        ("/order/new", b"{"),
        ("/order/new", b'{"data": {"merchantId": %d, "shipments": []}}' % mid),
        ("/order/new", b'{"data": {"merchantId": %d, "shipments": [{"shipmentId": "93", "items": '
                       b'[{"itemIndex": "1", "offerId": "A", "quantity": 3}]}]}}' % mid),
        ("/order/cancel", b'{"data": {"merchantId": %d, "shipments": [{"shipmentId": "abc", "items": '
                          b'[{"itemIndex": "1"}]}]}}' % mid),
        ("/order/cancel", b'{"data": {"shipments": [{"shipmentId": "93", "items": [{"itemIndex": "1"}]}]}}'),
    ]
    for path, body in bad:
        resp = httpx.post(url + path, content=body, headers={"Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 400, body
        assert resp.json()["success"] == 0 and resp.json()["error"][0]["message"]
    good = b'{"data": {"merchantId": %d, "shipments": [{"shipmentId": "93", "items": [{"itemIndex": "1"}]}]}}'
    assert httpx.post(url.rsplit("/", 1)[0] + "/nope/order/cancel", content=good % mid, timeout=10).status_code == 403
    assert httpx.post(url + "/order/cancel", content=good % 42, timeout=10).status_code == 403
    assert push_rows(rx.db_path) == []
    assert httpx.post(url + "/order/cancel", content=good % mid, timeout=10).json()["success"] == 1


class FlakyReceiver:
    """A stand-in seller endpoint that fails `fails` times (success 0 with HTTP `status`), then succeeds."""

    def __init__(self, fails: int, status: int = 200) -> None:
        self.fails = fails
        self.status = status
        self.seen: list[str] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def app(self, environ, start_response):
        req = Request(environ)
        self.seen.append(req.path)
        ok = len(self.seen) > self.fails
        body = json.dumps({"data": {}, "meta": {}, "success": 1 if ok else 0})
        return Response(body, status=200 if ok else self.status,
                        content_type="application/json")(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_sandboxes_retry_while_the_answer_is_not_a_success(sandboxes) -> None:
    flaky = FlakyReceiver(fails=2)
    try:
        mm = sandboxes("megamarket")
        httpx.post(mm.url + "/_sandbox/x/push", json={"url": flaky.url}, timeout=10)
        httpx.post(mm.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
        assert httpx.post(mm.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
        assert flaky.seen == ["/order/new"] * 3
        assert [e["ok"] for e in mm.app.push.summary()["log"]] == [False, False, True]
    finally:
        flaky.stop()
    flaky = FlakyReceiver(fails=1, status=500)
    try:
        ym = sandboxes("yandex_market")
        httpx.post(ym.url + "/_sandbox/x/push", json={"url": flaky.url}, timeout=10)
        httpx.post(ym.url + "/_sandbox/x/ping", json={}, timeout=10)
        assert httpx.post(ym.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
        assert flaky.seen == ["/notification"] * 2  # a 500 is retried; YM needs HTTP 200
    finally:
        flaky.stop()
