"""Yandex.Market's Notification API as the cloud receives it, over real HTTP from the YM sandbox:
ORDER_CREATED / ORDER_STATUS_UPDATED / ORDER_CANCELLED stored before the answer, duplicates ignored,
PING answered at once, requests and answers held to the official Notification API spec, malformed
pushes refused with 400 and stored nowhere, wrong token / foreign store / source refused with 403."""

from __future__ import annotations

import time

import httpx

from cloud_sync import db as cloud_db
from cloud_sync.orders import pushes
from cloud_sync.orders.pushes import PushWorker
from marketplaces import open_account
from marketplaces.sandbox.yandex_market_spec import register

from .conftest import account_of, post_json, push_rows, wait_for, ym_answer_errors  # noqa: TID252 - the fixtures' helpers


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn


register()






def check_spec(body: bytes, resp: httpx.Response) -> None:
    assert ym_answer_errors(body, resp) == []


def test_sandbox_pushes_created_status_cancelled_with_duplicates(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    acc = account_of(ym, "ym-1")
    rx = receiver_factory([acc])
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.push_url("ym-1"), "duplicates": 1}, timeout=10)
    ids = httpx.post(ym.url + "/_sandbox/orders", json={"count": 3}, timeout=10).json()["orders"]
    httpx.post(ym.url + "/_sandbox/x/cancel", json={"orders": [ids[2]]}, timeout=10)
    assert httpx.post(ym.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
    assert wait_for(lambda: len(rx.events) == 4)
    time.sleep(0.2)
    kinds = sorted((e.kind, e.order_native_id) for _, e in rx.events)
    assert kinds == sorted([("created", i) for i in ids] + [("cancelled", ids[2])])
    stored = push_rows(rx.db_path)
    assert len(stored) == 4 and all(r["duplicates"] == 1 and r["handled_at"] for r in stored)
    log = ym.app.push.summary()
    assert log["delivered"] == 8 and log["failed_attempts"] == 0
    # the order key of a push equals what polling returns: one order, whichever comes first
    polled = {o.native_id for o in open_account(acc).new_orders()}
    assert {i for i in ids[:2]} <= polled and all(k[1] in set(ids) for k in kinds)


def test_status_update_after_ready_to_ship(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    acc = account_of(ym, "ym-2")
    rx = receiver_factory([acc])
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.push_url("ym-2")}, timeout=10)
    oid = httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"][0]
    adapter = open_account(acc)
    order = adapter.get_order(oid)
    codes = {ln.native_id: [f"0104607000000014215{ln.native_id}{n}" for n in range(ln.quantity)]
             for ln in order.lines if ln.marking_required}
    assert adapter.set_order_status(oid, "assemble", marking_codes=codes).ok
    assert wait_for(lambda: any(e.kind == "status" for _, e in rx.events))
    status = next(e for _, e in rx.events if e.kind == "status")
    assert status.native_status == "PROCESSING" and status.native["substatus"] == "READY_TO_SHIP"
    assert status.dedup_key == f"ym:{ym.app.campaign_id}:{oid}:status:PROCESSING/READY_TO_SHIP"


def test_ping_is_answered_in_the_spec_shape_and_stored_nowhere(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    rx = receiver_factory([account_of(ym, "ym-3")])
    body = b'{"notificationType": "PING", "time": "2026-11-26T10:00:00.000Z"}'
    resp = post_json(rx.push_url("ym-3") + "/notification", body)
    assert resp.status_code == 200 and set(resp.json()) == {"version", "name", "time"}
    check_spec(body, resp)
    assert push_rows(rx.db_path) == []


def test_malformed_pushes_get_400_and_are_stored_nowhere(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    rx = receiver_factory([account_of(ym, "ym-4")])
    url = rx.push_url("ym-4") + "/notification"
    cid = ym.app.campaign_id
    bad = [
        b"{not json",
        b"<html>oops</html>",
        b'{"orderId": 1}',
        b'{"notificationType": "ORDER_CREATED", "orderId": 5, "campaignId": %d}' % cid,
        b'{"notificationType": "ORDER_CREATED", "orderId": "5", "campaignId": %d, "items": [],'
        b' "createdAt": "2026-11-26T10:00:00Z"}' % cid,
        b'{"notificationType": "ORDER_STATUS_UPDATED", "orderId": 5, "campaignId": %d, "status": "TELEPORTED",'
        b' "substatus": "X", "updatedAt": "2026-11-26T10:00:00Z"}' % cid,
        b'{"notificationType": "ORDER_CANCELLED", "orderId": 5, "campaignId": %d, "items": [{"offerId": "A"}],'
        b' "cancelledAt": "yesterday"}' % cid,
    ]
    for body in bad:
        resp = post_json(url, body)
        assert resp.status_code == 400, body
        assert resp.json()["error"]["type"] == "WRONG_EVENT_FORMAT" and resp.json()["error"]["message"]
        check_spec(body, resp)
    assert push_rows(rx.db_path) == [] and rx.events == []


def test_wrong_token_foreign_store_and_unexpected_source_are_refused(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    strict = account_of(ym, "ym-strict", push_sources=["5.45.207.0/25"])  # Market's range only
    rx = receiver_factory([account_of(ym, "ym-5"), strict])
    good = (b'{"notificationType": "ORDER_CREATED", "orderId": 7, "campaignId": %d, "items": '
            b'[{"offerId": "MS-00001", "count": 1}], "createdAt": "2026-11-26T10:00:00Z"}' % ym.app.campaign_id)
    wrong_token = rx.url + "/push/yandex_market/ym-5/not-the-secret/notification"
    assert post_json(wrong_token, good).status_code == 403
    foreign = good.replace(b'"campaignId": %d' % ym.app.campaign_id, b'"campaignId": 999')
    assert post_json(rx.push_url("ym-5") + "/notification", foreign).status_code == 403
    assert post_json(rx.push_url("ym-strict") + "/notification", good).status_code == 403
    assert push_rows(rx.db_path) == []
    accepted = post_json(rx.push_url("ym-5") + "/notification", good)
    assert accepted.status_code == 200
    check_spec(good, accepted)
    refused = post_json(wrong_token, good)
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "wrong push token"
    assert [r["dedup_key"] for r in push_rows(rx.db_path)] == [f"ym:{ym.app.campaign_id}:7:created"]


def test_stored_before_acknowledged_and_retried_until_handled(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    calls: list[str] = []

    def flaky(account: str, event) -> str:
        calls.append(event.dedup_key)
        # the event is already in the table when ingestion first sees it
        assert any(r["dedup_key"] == event.dedup_key for r in push_rows(rx.db_path))
        if len(calls) < 3:
            raise RuntimeError("ingestion down")
        return "new"

    rx = receiver_factory([account_of(ym, "ym-6")], on_event=flaky)
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.push_url("ym-6")}, timeout=10)
    httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
    assert wait_for(lambda: len(rx.events) == 1)
    # the worker records the outcome right after ingestion returns: wait for that write, not only the call
    assert wait_for(lambda: push_rows(rx.db_path)[0]["outcome"] == "new")
    row = push_rows(rx.db_path)[0]
    assert row["attempts"] == 3 and row["outcome"] == "new" and row["last_error"] == ""
    assert len(calls) == 3 and ym.app.push.summary()["delivered"] == 1  # Market saw one success at once


def test_sandbox_retries_until_the_receiver_answers(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    rx = receiver_factory([account_of(ym, "ym-7")])
    # told to lose the first two deliveries of each event: Market's retries carry it over, stored once
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.push_url("ym-7"), "fail_first": 2}, timeout=10)
    oid = httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"][0]
    assert httpx.post(ym.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
    assert [e["status"] for e in ym.app.push.summary()["log"]] == [0, 0, 200]
    assert wait_for(lambda: len(rx.events) == 1) and rx.events[0][1].order_native_id == oid
    # a wrong URL (old secret) is refused every time and never stored
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.url + "/push/yandex_market/ym-7/old-secret",
                                                  "max_attempts": 2}, timeout=10)
    httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
    assert httpx.post(ym.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
    assert [e["status"] for e in ym.app.push.summary()["log"]][3:] == [403, 403]
    assert len(push_rows(rx.db_path)) == 1


def test_the_push_worker_outlives_a_store_that_did_not_answer(sandboxes, receiver_factory, monkeypatch) -> None:
    """A store out of reach for a moment (PostgreSQL restarted: «server closed the connection») ended the
    push worker's thread for good: every later push was stored and acknowledged, and never handled."""
    failures = {"left": 2}
    real_pass = PushWorker._pass

    def store_gone_for_a_while(self, conn):
        if failures["left"]:
            failures["left"] -= 1
            raise cloud_db.pg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        return real_pass(self, conn)

    monkeypatch.setattr(pushes, "STORE_RETRY_S", 0.2, raising=False)
    monkeypatch.setattr(PushWorker, "_pass", store_gone_for_a_while)
    ym = sandboxes("yandex_market")
    rx = receiver_factory([account_of(ym, "ym-7")])
    assert wait_for(lambda: failures["left"] == 0)
    httpx.post(ym.url + "/_sandbox/x/push", json={"url": rx.push_url("ym-7")}, timeout=10)
    httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
    assert wait_for(lambda: len(rx.events) == 1), "the push was handled once the store answered again"
    assert rx.worker._thread is not None and rx.worker._thread.is_alive()
