"""Ozon's push notifications as the cloud receives them: parsed against the examples of Ozon's own
documentation (ozon-seller-api-swagger.json, tags push_start, push_types, service_response), answered in
its shapes (TYPE_PING `{"version","name","time"}`, an event `{"result": true}`, an error
`{"error": {"code","message","details": null}}`), over real HTTP from the Ozon sandbox into real SQLite:
a posting created there becomes one order in the cloud by push and stays one when polled; duplicates
are one event; sources outside Ozon's networks, a wrong token and another seller 403; unknown types 200
and ignored; malformed 400 and stored nowhere; the sandbox checks the URL with a PING when it is
registered and retries a delivery while the answer is not HTTP 200."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cloud_sync import db as cloud_db
from cloud_sync.web.push import create_webhooks_blueprint, push_url
from marketplaces import open_account
from marketplaces.base import AccountConfig, AuthError, BadResponse
from marketplaces.spec import specs_root

from .conftest import post_while_the_store_is_held, push_rows, served_cloud, wait_for  # noqa: TID252 - the fixtures' helpers

SPEC = specs_root() / "ozon" / "ozon-seller-api-swagger.json"
OZON_NETWORK_ADDR = "185.73.193.7"  # inside 185.73.192.0/22, one of Ozon's published networks


def spec_examples() -> dict[str, dict[str, Any]]:
    """Each notification example of Ozon's documentation (the JSON blocks of its push tags), by type."""
    tags = {t["name"]: t.get("description", "") for t in json.loads(SPEC.read_text("utf-8"))["tags"]}
    out: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```(?:json5?)?\n(\{.*?\})\n```", tags["push_start"] + tags["push_types"], re.S):
        try:
            data = json.loads(block)
        except ValueError:
            continue
        if data.get("message_type") == "string" and set(data) == {"message_type", "time"}:
            data["message_type"] = "TYPE_PING"  # the check's example says "string"; its table: TYPE_PING
        if isinstance(data.get("message_type"), str):
            out.setdefault(data["message_type"], data)
    return out






def _account(name: str = "oz", **options: Any) -> AccountConfig:
    return AccountConfig(name=name, marketplace="ozon", base_url="http://127.0.0.1:9",
                         credentials={"Client-Id": "15", "Api-Key": "k", "push_token": "s3cret"}, options=options)


def test_the_documented_examples_parse_into_events() -> None:
    examples = spec_examples()
    assert {"TYPE_PING", "TYPE_NEW_POSTING", "TYPE_POSTING_CANCELLED", "TYPE_STATE_CHANGED",
            "TYPE_CUTOFF_DATE_CHANGED", "TYPE_NEW_MESSAGE"} <= set(examples), sorted(examples)
    adapter = open_account(_account(seller_id=1))  # the new-posting example is seller 1 ...

    def parse(kind: str) -> list[Any]:
        return adapter.parse_push({"x-push-path": "notification"}, json.dumps(examples[kind]).encode())

    assert [e.kind for e in parse("TYPE_PING")] == ["ping"]
    [new] = parse("TYPE_NEW_POSTING")
    assert (new.kind, new.order_native_id, new.native_status, new.dedup_key) == (
        "created", "24319409-0021-1", "awaiting_packaging", "oz:1:24319409-0021-1:new")
    assert new.order is None  # no prices in the push: the intake reads the posting (/v3/posting/fbs/get)
    for kind in ("TYPE_DELIVERY_DATE_CHANGED", "TYPE_NEW_MESSAGE", "TYPE_CHAT_CLOSED",
                 "TYPE_CREATE_OR_UPDATE_ITEM", "TYPE_STOCKS_CHANGED"):
        if kind in examples:
            assert parse(kind) == [], kind  # acknowledged, not used
    with pytest.raises(AuthError):  # ... the others seller 15: not this account's
        parse("TYPE_POSTING_CANCELLED")
    adapter = open_account(_account())  # no seller_id option: its Client-Id (15) is the seller
    [cancel] = parse("TYPE_POSTING_CANCELLED")
    assert (cancel.kind, cancel.order_native_id, cancel.native_status, cancel.dedup_key) == (
        "cancelled", "24219509-0020-1", "cancelled", "oz:15:24219509-0020-1:cancelled")
    [state] = parse("TYPE_STATE_CHANGED")
    assert (state.kind, state.order_native_id, state.native_status) == ("status", "24219509-0020-2", "delivered")
    assert state.dedup_key == "oz:15:24219509-0020-2:state:posting_delivered@2021-02-02T15:07:46.765Z"
    [cutoff] = parse("TYPE_CUTOFF_DATE_CHANGED")  # the shipping date moved: the order's ship-by follows
    assert (cutoff.kind, cutoff.order_native_id, cutoff.dedup_key) == (
        "ship_by", "24219509-0020-2", "oz:15:24219509-0020-2:cutoff:2021-11-24T07:00:00Z")
    assert cutoff.ship_by == datetime.fromisoformat("2021-11-24T07:00:00+00:00")
    interval_gone = dict(examples["TYPE_CUTOFF_DATE_CHANGED"], new_cutoff_date="")  # "wait for a new one"
    assert adapter.parse_push({"x-push-path": "notification"}, json.dumps(interval_gone).encode()) == []
    with pytest.raises(AuthError):
        parse("TYPE_NEW_POSTING")  # seller 1


@pytest.mark.parametrize("body", [
    b"{", b"[]", b'{"posting_number": "1-1-1"}', b'{"message_type": 5}',
    b'{"message_type": "TYPE_NEW_POSTING", "products": [{"sku": 1, "quantity": 1}], "seller_id": 15}',
    b'{"message_type": "TYPE_NEW_POSTING", "posting_number": "1-1-1", "products": [], "seller_id": 15}',
    b'{"message_type": "TYPE_NEW_POSTING", "posting_number": "1-1-1", "products": [{"sku": "x", "quantity": 1}]}',
    b'{"message_type": "TYPE_NEW_POSTING", "posting_number": 7, "products": [{"sku": 1, "quantity": 1}]}',
    b'{"message_type": "TYPE_NEW_POSTING", "posting_number": "1-1-1", "products": [{"sku": 1, "quantity": 1}],'
    b' "in_process_at": "yesterday"}',
    b'{"message_type": "TYPE_POSTING_CANCELLED", "posting_number": "1-1-1", "seller_id": "15"}',
    b'{"message_type": "TYPE_STATE_CHANGED", "posting_number": "1-1-1", "new_state": "posting_teleported"}',
])
def test_malformed_notifications_are_refused(body: bytes) -> None:
    with pytest.raises(BadResponse):
        open_account(_account()).parse_push({"x-push-path": "notification"}, body)


@pytest.fixture
def client(tmp_path) -> Iterator[Any]:
    accounts = [_account("oz", push_sources=["127.0.0.0/8"]), _account("oz-default")]
    bp = create_webhooks_blueprint(str(tmp_path / "cloud.sqlite"), accounts, None,
                                   {a.name: open_account(a) for a in accounts}, retry_base_s=0.05)
    app = Flask("ozon-answers")
    app.register_blueprint(bp)
    try:
        yield app.test_client(), str(tmp_path / "cloud.sqlite")
    finally:
        bp.push_worker.stop()


NEW = (b'{"message_type": "TYPE_NEW_POSTING", "posting_number": "40000001-0001-1", "products": [{"sku": 900000001,'
       b' "offer_id": "MS-00001", "quantity": 1}], "in_process_at": "2026-11-26T10:00:00Z", "warehouse_id": 5,'
       b' "shipment_date": "2026-11-27T10:00:00Z", "is_express": false, "seller_id": 15}')


def test_ozon_answers_in_its_shapes(client) -> None:
    http, db_path = client
    url = "/push/ozon/oz/s3cret/notification"
    ping = http.post(url, data=b'{"message_type": "TYPE_PING", "time": "2026-11-26T10:00:00Z"}')
    assert ping.status_code == 200 and ping.content_type == "application/json"
    answer = ping.get_json()
    assert set(answer) == {"version", "name", "time"} and answer["name"] == "marketsync"
    datetime.fromisoformat(answer["time"].replace("Z", "+00:00"))  # a date-time (WRONG_RESULT_TIME_FIELD if not)
    for _ in range(2):  # a duplicate is acknowledged like the first (never ERROR_REQUEST_DUPLICATED)
        taken = http.post(url, data=NEW)
        assert (taken.status_code, taken.data) == (200, b'{"result": true}')
    chat = http.post(url, data=b'{"message_type": "TYPE_NEW_MESSAGE", "chat_id": "b", "seller_id": "15"}')
    assert (chat.status_code, chat.data) == (200, b'{"result": true}')  # not used: acknowledged, not stored
    cutoff = http.post(url, data=b'{"message_type": "TYPE_CUTOFF_DATE_CHANGED", "posting_number": "1-1-1",'
                                 b' "new_cutoff_date": "2021-11-24T07:00:00Z", "seller_id": 15}')
    assert cutoff.status_code == 200  # stored: the order's ship-by follows (test_ozon_dates.py)
    delivery = http.post(url, data=b'{"message_type": "TYPE_DELIVERY_DATE_CHANGED", "posting_number": "1-1-1",'
                                   b' "new_delivery_date_begin": "2021-11-24T07:00:00Z", "seller_id": 15}')
    assert (delivery.status_code, delivery.data) == (200, b'{"result": true}')  # no place for it: not stored
    bad = http.post(url, data=b"{not json")
    assert (bad.status_code, bad.data) == (400, b'{"error": {"code": "ERROR_PARAMETER_VALUE_MISSED", "message": '
                                                b'"notification body is not valid JSON (account=oz endpoint=notification)",'
                                                b' "details": null}}')
    missing = http.post(url, data=b'{"message_type": "TYPE_POSTING_CANCELLED", "seller_id": 15}')
    assert missing.status_code == 400 and missing.get_json()["error"]["code"] == "ERROR_PARAMETER_VALUE_MISSED"
    wrong = http.post("/push/ozon/oz/nope/notification", data=NEW)
    assert (wrong.status_code, wrong.data) == (
        403, b'{"error": {"code": "ERROR_UNKNOWN", "message": "wrong push token", "details": null}}')
    foreign = http.post(url, data=NEW.replace(b'"seller_id": 15', b'"seller_id": 16'))
    assert foreign.status_code == 403 and foreign.get_json()["error"]["code"] == "ERROR_UNKNOWN"
    assert http.post("/push/ozon/oz/s3cret/order/new", data=NEW).status_code == 404  # one URL only
    assert [(r["kind"], r["dedup_key"], r["duplicates"], r["order_native_id"]) for r in push_rows(db_path)] == [
        ("created", "oz:15:40000001-0001-1:new", 1, "40000001-0001-1"),
        ("ship_by", "oz:15:1-1-1:cutoff:2021-11-24T07:00:00Z", 0, "1-1-1")]


def test_a_ping_is_answered_at_once_while_another_writer_holds_the_store(client) -> None:
    """The ping's moment is recorded (Settings shows it), but never at the cost of Ozon's 5 s: while a long
    write holds the store's lock, the check is answered within PING_RECORD_WAIT_S (SQLite: simply not
    recorded; PostgreSQL: recorded, the lone statement takes no writer lock)."""
    from cloud_sync.web.push import PING_RECORD_WAIT_S

    http, db_path = client
    url = "/push/ozon/oz/s3cret/notification"
    ping = b'{"message_type": "TYPE_PING", "time": "2026-12-07T10:00:00Z"}'
    assert http.post(url, data=ping).status_code == 200
    conn = cloud_db.connect(db_path)
    try:
        [(first,)] = conn.execute("SELECT received_at FROM push_pings WHERE account='oz'").fetchall()
        conn.execute("BEGIN IMMEDIATE")  # a long write elsewhere (an import, a big intake batch)
        started = time.monotonic()
        answer = http.post(url, data=ping)
        took = time.monotonic() - started
        conn.execute("ROLLBACK")
        assert answer.status_code == 200 and set(answer.get_json()) == {"version", "name", "time"}
        assert took < PING_RECORD_WAIT_S + 1.5 < 5.0, took
        during = conn.execute("SELECT received_at FROM push_pings WHERE account='oz'").fetchone()[0]
        if cloud_db.is_postgres(conn):  # the lone UPSERT takes no writer lock there: recorded at once
            assert during > first
        else:  # SQLite's one writer was busy: answered unrecorded
            assert during == first
        assert http.post(url, data=ping).status_code == 200  # the lock gone: recorded again
        assert conn.execute("SELECT received_at FROM push_pings WHERE account='oz'").fetchone()[0] > first
    finally:
        conn.close()


def test_a_new_posting_is_answered_in_time_while_another_writer_holds_the_store(client, caplog) -> None:
    """Ozon pauses every notification of a service that takes longer than 5 s: while a long write holds the
    store's writer lock, a new posting is answered within PUSH_STORE_WAIT_S with 500 in Ozon's error shape and
    stored nowhere (Ozon delivers it again); the lock gone, the same push is answered 200 and stored once."""
    from cloud_sync.web.push import PUSH_STORE_WAIT_S

    http, db_path = client
    url = "/push/ozon/oz/s3cret/notification"
    held = post_while_the_store_is_held(lambda: http.post(url, data=NEW), db_path, give_up_s=PUSH_STORE_WAIT_S + 1.5)
    assert (held.status, held.body) == (500, {"error": {"code": "ERROR_UNKNOWN", "message": "temporarily unable to"
                                                        " store the notification", "details": None}})
    assert PUSH_STORE_WAIT_S - 0.5 < held.took < PUSH_STORE_WAIT_S + 1.5 < 5.0, held.took
    assert held.rows_meanwhile == 0 and push_rows(db_path) == []  # not acknowledged, stored nowhere
    warned = [r.getMessage() for r in caplog.records if r.name == "cloud_sync.web.push" and r.levelname == "WARNING"]
    assert any("not stored within" in m and "oz" in m for m in warned), warned
    assert not any("s3cret" in m for m in warned)
    again = http.post(url, data=NEW)  # Ozon's next delivery, the lock gone
    assert (again.status_code, again.data) == (200, b'{"result": true}')
    assert [(r["dedup_key"], r["duplicates"]) for r in push_rows(db_path)] == [("oz:15:40000001-0001-1:new", 0)]


def test_a_push_is_stored_beside_a_keyed_writer_on_postgresql(client) -> None:
    """On PostgreSQL a push's store is a keyed transaction of its account's events (`pushes.store_keys`): a
    keyed writer of other keys (a batch of new orders, a stock sender) does not hold it back; stored at once."""
    from cloud_sync.orders.intake import INTAKE_KEY
    from cloud_sync.stock.push import push_keys

    http, db_path = client
    conn = cloud_db.connect(db_path)
    try:
        if not cloud_db.is_postgres(conn):
            pytest.skip("keyed transactions are PostgreSQL's: on SQLite every write transaction takes the file's"
                        " one writer lock, so no keyed writer can run beside another (the PostgreSQL leg runs it)")
        got: list[Any] = []
        with cloud_db.transaction(conn, keys=[INTAKE_KEY, *push_keys("oz")]):  # an intake batch meanwhile
            sender = threading.Thread(target=lambda: got.append(http.post("/push/ozon/oz/s3cret/notification",
                                                                          data=NEW)), daemon=True)
            started = time.monotonic()
            sender.start()
            sender.join(5.0)  # (a push waiting for the batch must fail the test, not hang it)
            took = time.monotonic() - started
        sender.join(30)
        assert (got[0].status_code, got[0].data) == (200, b'{"result": true}')
        assert took < 1.0, took
        assert [r["dedup_key"] for r in push_rows(db_path)] == ["oz:15:40000001-0001-1:new"]
    finally:
        conn.close()


def test_ozon_pushes_only_from_its_published_networks_by_default(client) -> None:
    http, db_path = client
    url = "/push/ozon/oz-default/s3cret/notification"
    outside = http.post(url, data=NEW)
    assert (outside.status_code, outside.data) == (
        403, b'{"error": {"code": "ERROR_UNKNOWN", "message": "source 127.0.0.1 is not allowed to push",'
             b' "details": null}}')
    assert push_rows(db_path) == []
    inside = http.post(url, data=NEW, environ_base={"REMOTE_ADDR": OZON_NETWORK_ADDR})
    assert (inside.status_code, inside.data) == (200, b'{"result": true}')
    assert len(push_rows(db_path)) == 1


def test_sandbox_postings_reach_the_cloud_once(sandboxes, tmp_path) -> None:
    """A posting created in the Ozon sandbox becomes one order in the cloud by push (with the price the
    posting has, read by the intake), polled again it is still one; the buyer's cancellation is pushed and
    cancels it; every delivery went out twice and was stored once."""
    from cloud_sync.orders import intake

    oz = sandboxes("ozon")
    db_path = str(tmp_path / "cloud.sqlite")
    with served_cloud(oz, "ozon-main", db_path) as served:
        acc, cfg, adapter, conn, base = served.acc, served.cfg, served.adapter, served.conn, served.base
        registered = httpx.post(oz.url + "/_sandbox/x/push", json={"url": push_url(base, acc), "duplicates": 1},
                                timeout=10)
        assert registered.status_code == 200 and registered.json()["check"] == "OK", registered.text
        assert oz.app.push_checks[-1]["result"] == "OK"
        assert push_rows(db_path) == []  # the PING is answered, not stored
        made = httpx.post(oz.url + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
        assert httpx.post(oz.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]

        def orders() -> dict[str, int]:
            return dict(conn.execute("SELECT native_id, COUNT(*) FROM orders WHERE account=? GROUP BY native_id",
                                     (acc.name,)).fetchall())

        assert wait_for(lambda: set(orders()) == set(made)), orders()
        def outcomes() -> dict[str, str]:  # written by the push worker once it handled each event
            return dict(conn.execute("SELECT order_native_id, outcome FROM push_events WHERE kind='created'"))

        assert wait_for(lambda: outcomes() == dict.fromkeys(made, "new")), outcomes()  # created by the pushes
        price = conn.execute("SELECT price FROM order_lines ol JOIN orders o ON o.id = ol.order_id WHERE o.native_id=?",
                             (made[0],)).fetchone()
        assert price is not None and float(price[0]) > 0  # read from the posting: the push carries no price
        intake.poll(conn, cfg, adapter)
        assert orders() == dict.fromkeys(made, 1)  # polled again: still one each
        cancelled = httpx.post(oz.url + "/_sandbox/x/cancel", json={"postings": [made[0]]}, timeout=10).json()
        assert cancelled == {"cancelled": [made[0]]}
        assert httpx.post(oz.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
        assert wait_for(lambda: conn.execute("SELECT stage FROM orders WHERE native_id=?",
                                             (made[0],)).fetchone()[0] == "cancelled")
        rows = push_rows(db_path)
        assert sorted(r["dedup_key"] for r in rows) == sorted(
            [f"oz:{oz.app.seller_id}:{n}:new" for n in made] + [f"oz:{oz.app.seller_id}:{made[0]}:cancelled"])
        assert all(r["duplicates"] == 1 for r in rows)  # each delivered twice, stored once
        assert oz.app.push.summary()["failed_attempts"] == 0


def test_a_push_for_a_posting_polling_took_reads_nothing_again(sandboxes, tmp_path) -> None:
    """Ozon warns its new-posting pushes may lag: when a poll took the posting in first, its thin push is
    acknowledged and marked known without reading the posting again (Ozon's 50 requests/s stay for polls
    and stocks)."""
    from cloud_sync.orders import intake

    oz = sandboxes("ozon")
    db_path = str(tmp_path / "cloud.sqlite")
    with served_cloud(oz, "ozon-late", db_path) as served:
        acc, cfg, adapter, conn, base = served.acc, served.cfg, served.adapter, served.conn, served.base
        [number] = httpx.post(oz.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
        assert intake.poll(conn, cfg, adapter).new == 1  # no push URL yet: polling takes it in
        reads = oz.app.by_path.get("/v3/posting/fbs/get", 0)
        p = oz.app.postings[number]
        late = {"message_type": "TYPE_NEW_POSTING", "posting_number": number,
                "products": [{"sku": oz.app.products[p["product_id"]]["sku"], "quantity": 1}],
                "in_process_at": p["in_process_at"], "warehouse_id": p["warehouse_id"], "seller_id": oz.app.seller_id}
        taken = httpx.post(push_url(base, acc) + "/notification", json=late, timeout=10)
        assert (taken.status_code, taken.json()) == (200, {"result": True})
        assert wait_for(lambda: conn.execute("SELECT outcome FROM push_events").fetchone()[0] == "known")
        assert oz.app.by_path.get("/v3/posting/fbs/get", 0) == reads  # the posting was not read again
        assert conn.execute("SELECT COUNT(*) FROM orders WHERE native_id=?", (number,)).fetchone()[0] == 1


class OzonLikeReceiver:
    """A stand-in seller service: answers the PING as Ozon asks (or `ping_status`), fails the first
    `fails` notifications with HTTP 500, then answers `{"result": true}`."""

    def __init__(self, fails: int, ping_status: int = 200) -> None:
        self.fails = fails
        self.ping_status = ping_status
        self.seen: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/push/ozon/x/t"

    def app(self, environ, start_response):
        req = Request(environ)
        self.bodies.append(json.loads(req.get_data()))
        kind = self.bodies[-1]["message_type"]
        self.seen.append(f"{req.path.rsplit('/', 1)[-1]}:{kind}")
        if kind == "TYPE_PING":
            body = {"version": "1", "name": "stand-in", "time": "2026-11-26T10:00:00.000Z"}
            return Response(json.dumps(body), status=self.ping_status,
                            content_type="application/json")(environ, start_response)
        failing = sum(1 for s in self.seen if not s.endswith("TYPE_PING")) <= self.fails
        body = {"error": {"code": "ERROR_UNKNOWN", "message": "busy", "details": None}} if failing else {"result": True}
        return Response(json.dumps(body), status=500 if failing else 200,
                        content_type="application/json")(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_the_sandbox_checks_the_url_and_retries_on_ozons_schedule(sandboxes) -> None:
    refusing = OzonLikeReceiver(fails=0, ping_status=404)
    try:
        oz = sandboxes("ozon")
        refused = httpx.post(oz.url + "/_sandbox/x/push", json={"url": refusing.url}, timeout=10)
        assert refused.status_code == 400 and "STATUS_CODE_NOT_OK" in refused.json()["error"]
        httpx.post(oz.url + "/_sandbox/orders", json={"count": 1}, timeout=10)
        assert oz.app.push.summary()["url"] == ""  # the URL was not kept: nothing pushed
        assert refusing.seen == ["notification:TYPE_PING"]
    finally:
        refusing.stop()
    flaky = OzonLikeReceiver(fails=2)
    try:
        oz = sandboxes("ozon", seed=11)
        assert httpx.post(oz.url + "/_sandbox/x/push", json={"url": flaky.url}, timeout=10).json()["max_attempts"] == 13
        made = httpx.post(oz.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
        assert httpx.post(oz.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
        assert flaky.seen == ["notification:TYPE_PING"] + ["notification:TYPE_NEW_POSTING"] * 3
        log = oz.app.push.summary()["log"]
        assert [(e["ok"], e["status"]) for e in log] == [(False, 500), (False, 500), (True, 200)]
        assert all(e["key"] == f"new:{made[0]}" for e in log)
        moved = httpx.post(oz.url + "/_sandbox/x/cutoff", json={"posting_number": made[0],
                                                                "new_cutoff_date": "2026-12-24T07:00:00Z"}, timeout=10)
        assert moved.json()["shipment_date"] == "2026-12-24T07:00:00Z" == oz.app.postings[made[0]]["shipment_date"]
        assert httpx.post(oz.url + "/_sandbox/x/cancel", json={"postings": made}, timeout=10).json()["cancelled"] == made
        assert httpx.post(oz.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]
        examples = spec_examples()
        sent = {b["message_type"]: b for b in flaky.bodies}
        assert set(sent) == {"TYPE_PING", "TYPE_NEW_POSTING", "TYPE_POSTING_CANCELLED", "TYPE_CUTOFF_DATE_CHANGED"}
        for kind, body in sent.items():  # the sandbox's notifications in the documented shapes
            doc = examples[kind]
            assert set(body) <= set(doc), (kind, set(body) - set(doc))
            assert {k: type(v) for k, v in body.items()} == {k: type(doc[k]) for k in body}, kind
            for i, product in enumerate(body.get("products", [])):
                assert set(product) <= set(doc["products"][0]), (kind, i)
        assert {"posting_number", "products", "in_process_at", "warehouse_id", "shipment_date",
                "seller_id"} <= set(sent["TYPE_NEW_POSTING"])
        assert sent["TYPE_POSTING_CANCELLED"]["new_state"] == "posting_canceled"
        assert set(sent["TYPE_CUTOFF_DATE_CHANGED"]) == set(examples["TYPE_CUTOFF_DATE_CHANGED"])
        assert sent["TYPE_CUTOFF_DATE_CHANGED"]["new_cutoff_date"] == "2026-12-24T07:00:00Z"
    finally:
        flaky.stop()
    from marketplaces.sandbox.ozon import push_retry_wait

    waits = [push_retry_wait(n) for n in range(1, 13)]
    assert waits[0] == 5.0 and waits[:7] == sorted(waits[:7]) and waits[7:] == [600.0] * 5
