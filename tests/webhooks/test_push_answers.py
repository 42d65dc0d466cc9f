"""The push endpoints' answers, byte for byte: the URL families, the status codes and the bodies each
marketplace gets back (Yandex.Market's Notification API shape, Megamarket's envelope). The marketplaces
and the sandboxes push to these URLs and read these bodies, so none of them may drift."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from flask import Flask

import marketplaces
from cloud_sync.orders import pushes
from cloud_sync.web.push import create_webhooks_blueprint
from marketplaces import open_account
from marketplaces.base import AccountConfig

LOCAL = ["127.0.0.0/8"]
YM_CREATED = (b'{"notificationType": "ORDER_CREATED", "orderId": 7, "campaignId": 22, "items": '
              b'[{"offerId": "MS-00001", "count": 1}], "createdAt": "2026-11-26T10:00:00Z"}')
MM_CANCEL = b'{"meta": {}, "data": {"merchantId": 5, "shipments": [{"shipmentId": "93", "items": [{"itemIndex": 1}]}]}}'


def _account(name: str, marketplace: str, **options: Any) -> AccountConfig:
    return AccountConfig(name=name, marketplace=marketplace, base_url="http://127.0.0.1:9",  # type: ignore[arg-type]
                         credentials={"push_token": "s3cret"}, options=options)


@pytest.fixture
def client(tmp_path) -> Iterator[Any]:
    accounts = [
        _account("ym", "yandex_market", business_id=11, campaign_id=22, push_sources=LOCAL),
        _account("ym-default", "yandex_market", business_id=11, campaign_id=22),
        _account("mm", "megamarket", merchant_id=5),
        _account("wb", "wildberries"),
    ]
    adapters = {a.name: open_account(a) for a in accounts}
    bp = create_webhooks_blueprint(str(tmp_path / "cloud.sqlite"), accounts, None, adapters, retry_base_s=0.05)
    app = Flask("push-answers")
    app.register_blueprint(bp)
    try:
        yield app.test_client()
    finally:
        bp.push_worker.stop()


def test_yandex_market_answers_in_its_notification_shape(client) -> None:
    ping = client.post("/push/yandex_market/ym/s3cret/notification", data=b'{"notificationType": "PING"}')
    assert ping.status_code == 200 and ping.content_type == "application/json"
    assert re.fullmatch(rb'\{"name": "marketsync", "version": "0\.1\.0", "time": '
                        rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"\}', ping.data), ping.data
    taken = client.post("/push/yandex_market/ym/s3cret/notification", data=YM_CREATED)
    assert taken.status_code == 200 and taken.data.startswith(b'{"name": "marketsync", "version": "0.1.0", "time": "')
    again = client.post("/push/yandex_market/ym/s3cret/notification", data=YM_CREATED)
    assert again.status_code == 200  # a duplicate is acknowledged like the first
    bad = client.post("/push/yandex_market/ym/s3cret/notification", data=b"{not json")
    assert (bad.status_code, bad.data) == (400, b'{"error": {"type": "WRONG_EVENT_FORMAT", "message": '
                                                b'"notification body is not valid JSON (account=ym endpoint=notification)"}}')
    wrong = client.post("/push/yandex_market/ym/nope/notification", data=YM_CREATED)
    assert (wrong.status_code, wrong.data) == (403, b'{"error": {"type": "UNKNOWN", "message": "wrong push token"}}')
    unknown = client.post("/push/yandex_market/nobody/s3cret/notification", data=YM_CREATED)
    assert (unknown.status_code, unknown.data) == (
        404, b'{"error": {"type": "UNKNOWN", "message": "no such push endpoint"}}')
    foreign = client.post("/push/yandex_market/mm/s3cret/notification", data=YM_CREATED)
    assert foreign.status_code == 404  # an account of another marketplace has no YM URL


def test_yandex_market_pushes_only_from_its_published_networks_by_default(client) -> None:
    outside = client.post("/push/yandex_market/ym-default/s3cret/notification", data=b'{"notificationType": "PING"}')
    assert (outside.status_code, outside.data) == (
        403, b'{"error": {"type": "UNKNOWN", "message": "source 127.0.0.1 is not allowed to push"}}')
    inside = client.post("/push/yandex_market/ym-default/s3cret/notification", data=b'{"notificationType": "PING"}',
                         environ_base={"REMOTE_ADDR": "5.45.207.10"})
    assert inside.status_code == 200


def test_megamarket_answers_in_its_envelope(client) -> None:
    taken = client.post("/push/megamarket/mm/s3cret/order/cancel", data=MM_CANCEL)  # any source by default
    assert (taken.status_code, taken.data) == (200, b'{"data": {}, "meta": {}, "success": 1}')
    bad = client.post("/push/megamarket/mm/s3cret/order/new", data=b"[]")
    assert (bad.status_code, bad.data) == (400, b'{"data": {}, "meta": {}, "success": 0, "error": [{"code": '
                                                b'"BAD_REQUEST", "message": "data.shipments is missing or empty'
                                                b' (account=mm endpoint=order/new)"}]}')
    wrong = client.post("/push/megamarket/mm/nope/order/new", data=MM_CANCEL)
    assert (wrong.status_code, wrong.data) == (403, b'{"data": {}, "meta": {}, "success": 0, "error": [{"code": '
                                                    b'"REFUSED", "message": "wrong push token"}]}')
    too_large = client.post("/push/megamarket/mm/s3cret/order/new", data=b" " * ((1 << 20) + 1))
    assert (too_large.status_code, too_large.data) == (
        413, b'{"data": {}, "meta": {}, "success": 0, "error": [{"code": "BAD_REQUEST", "message": '
             b'"push body too large"}]}')


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise sqlite3.OperationalError("disk I/O error")


def test_a_push_that_cannot_be_stored_gets_500_in_each_shape(client, monkeypatch) -> None:
    monkeypatch.setattr(pushes, "store_events", _broken)
    ym = client.post("/push/yandex_market/ym/s3cret/notification", data=YM_CREATED)
    assert (ym.status_code, ym.data) == (
        500, b'{"error": {"type": "UNKNOWN", "message": "temporarily unable to store the notification"}}')
    mm = client.post("/push/megamarket/mm/s3cret/order/cancel", data=MM_CANCEL)
    assert (mm.status_code, mm.data) == (500, b'{"data": {}, "meta": {}, "success": 0, "error": [{"code": '
                                              b'"BAD_REQUEST", "message": "temporarily unable to store the push"}]}')


def test_a_notification_is_answered_in_time_while_another_writer_holds_the_store(client, tmp_path) -> None:
    """While a long write holds the store's writer lock, a Yandex.Market notification is answered within
    PUSH_STORE_WAIT_S (Market waits 10 s, Ozon 5 s) with 500 in Market's error shape, stored nowhere; the lock
    gone, Market's next delivery is answered 200 and stored once."""
    from cloud_sync.web.push import PUSH_STORE_WAIT_S

    from .conftest import post_while_the_store_is_held  # noqa: TID252 - the fixtures' helper

    db_path = str(tmp_path / "cloud.sqlite")
    url = "/push/yandex_market/ym/s3cret/notification"
    held = post_while_the_store_is_held(lambda: client.post(url, data=YM_CREATED), db_path,
                                        give_up_s=PUSH_STORE_WAIT_S + 1.5)
    assert (held.status, held.body) == (
        500, {"error": {"type": "UNKNOWN", "message": "temporarily unable to store the notification"}})
    assert PUSH_STORE_WAIT_S - 0.5 < held.took < PUSH_STORE_WAIT_S + 1.5 < 10.0, held.took
    assert held.rows_meanwhile == 0 and _events(db_path) == []
    again = client.post(url, data=YM_CREATED)
    assert again.status_code == 200 and again.get_json()["name"] == "marketsync"
    assert _events(db_path) == [("ym:22:7:created", 0)]


def _events(db_path: str) -> list[tuple[str, int]]:
    from cloud_sync import db as cloud_db

    conn = cloud_db.connect(db_path)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT dedup_key, duplicates FROM push_events ORDER BY id")]
    finally:
        conn.close()


def test_only_marketplaces_that_push_have_push_urls(client) -> None:
    for url in ("/push/wildberries/wb/s3cret/notification", "/push/megamarket/mm/s3cret/notification",
                "/push/yandex_market/ym/s3cret/order/new", "/push/ozon/wb/s3cret/order/new"):
        assert client.post(url, data=b"{}").status_code == 404, url


def test_a_marketplace_that_declares_pushes_gets_its_urls_and_answers(tmp_path, monkeypatch) -> None:
    """A fifth marketplace, declared only in the marketplaces' registry, is served with no change here."""
    monkeypatch.setitem(marketplaces.ADAPTERS, "testmarket", "marketplaces.megamarket:MegamarketAdapter")
    mm = marketplaces.profile("megamarket")
    assert mm.push is not None
    terms = replace(mm.push, paths=("order/cancel",), sources=("10.0.0.0/8",), noun="event",
                    accepted=MappingProxyType({"ok": True}), refused=MappingProxyType({"why": "{message}"}))
    monkeypatch.setitem(marketplaces.PROFILES, "testmarket", replace(mm, name="testmarket", push=terms))
    account = _account("tm", "testmarket", merchant_id=5)
    bp = create_webhooks_blueprint(str(tmp_path / "cloud.sqlite"), [account], None, retry_base_s=0.05)
    app = Flask("fifth")
    app.register_blueprint(bp)
    client = app.test_client()
    try:
        far = client.post("/push/testmarket/tm/s3cret/order/cancel", data=MM_CANCEL)
        assert (far.status_code, far.data) == (403, b'{"why": "source 127.0.0.1 is not allowed to push"}')
        near = client.post("/push/testmarket/tm/s3cret/order/cancel", data=MM_CANCEL,
                           environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert (near.status_code, near.data) == (200, b'{"ok": true}')
        assert client.post("/push/testmarket/tm/s3cret/order/new", data=MM_CANCEL).status_code == 404
        monkeypatch.setattr(pushes, "store_events", _broken)
        failed = client.post("/push/testmarket/tm/s3cret/order/cancel", data=MM_CANCEL,
                             environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert (failed.status_code, failed.data) == (500, b'{"why": "temporarily unable to store the event"}')
    finally:
        bp.push_worker.stop()
