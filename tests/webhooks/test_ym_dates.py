"""Yandex.Market's shipment date moved (ORDER_UPDATED / SHIPMENT_DATE_UPDATED): the YM sandbox moves an order's
shipment date (`POST /_sandbox/x/shipment_date`) and pushes the thin notification to the cloud over real HTTP;
the cloud (its app, its push worker, real SQLite or PostgreSQL) re-reads the order, moves its ship-by — the
assembly deadline the order list sorts by — and says so in the order's history, once: the duplicate
delivery changes nothing, and a poll afterwards agrees. DELIVERY_DATE_UPDATED and UNKNOWN have no place in
the order model: acknowledged (200) and stored nowhere. A malformed ORDER_UPDATED is refused with 400, one
about a foreign store with 403; the sandbox's control refuses bad requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from cloud_sync.schema import open_db
from marketplaces.sandbox.yandex_market_spec import register
from marketplaces.spec import load_specs

from .conftest import (  # noqa: TID252 - the fixtures' helpers
    account_of,
    post_json,
    push_idle,
    push_rows,
    pushing_cloud,
    wait_for,
    ym_answer_errors,
)

register()


def _moment(iso: str | None) -> datetime:
    assert iso, "no ship-by stored"
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _midnight(day: str) -> datetime:
    """YM's shipmentDate as the adapter reads it: that day's 00:00 UTC."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)


def _answer_ok(body: bytes, resp: httpx.Response) -> None:
    assert ym_answer_errors(body, resp) == []


def _conforms(body: dict[str, Any]) -> None:
    """The sandbox's push held to the official Notification API spec (its discriminated `oneOf`: ORDER_UPDATED's
    own required fields and enums)."""
    assert load_specs("yandex_market_notification").request_errors(
        "POST", "/notification", body=json.dumps(body).encode()) == []
    assert datetime.fromisoformat(body["updatedAt"].replace("Z", "+00:00")).tzinfo is not None  # date-time


@pytest.fixture
def cloud(sandboxes, tmp_path) -> Iterator[dict[str, Any]]:
    """The YM sandbox pushing (each notification delivered twice) to the cloud's app over real HTTP."""
    ym = sandboxes("yandex_market")
    db_path = str(tmp_path / "cloud.sqlite")
    open_db(db_path).close()
    with pushing_cloud(ym, "ym-dates", db_path) as (served, url):  # Market appends /notification itself
        yield {"ym": ym, "acc": served.acc, "cfg": served.cfg, "adapter": served.adapter, "conn": served.conn,
               "url": url + "/notification", "db_path": db_path}


def test_a_moved_shipment_date_moves_the_ship_by_once_and_a_poll_agrees(cloud) -> None:
    from cloud_sync.orders import intake

    ym, conn, acc = cloud["ym"], cloud["conn"], cloud["acc"]
    [number] = httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
    push_idle(ym)

    def order() -> Any:
        return conn.execute("SELECT id, ship_by, stage FROM orders WHERE account=? AND native_id=?",
                            (acc.name, number)).fetchone()

    def settled() -> bool:
        return conn.execute("SELECT COUNT(*) FROM push_events WHERE handled_at IS NULL").fetchone()[0] == 0

    assert wait_for(lambda: order() is not None)
    oid, first, _ = order()
    was = ym.app.orders[int(number)].shipment_date
    assert _moment(first) == _midnight(was.isoformat())
    later = (was + timedelta(days=3)).isoformat()

    moved = httpx.post(ym.url + "/_sandbox/x/shipment_date", json={"order_id": int(number), "shipment_date": later},
                       timeout=10)
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"order_id": int(number), "shipment_date": later, "old_shipment_date": was.isoformat(),
                            "pushed": True}
    push_idle(ym)
    assert wait_for(lambda: _moment(order()[1]) == _midnight(later)), order()
    assert wait_for(settled)

    def history() -> list[tuple[str, str, str]]:
        return conn.execute("SELECT kind, detail, source FROM order_events WHERE order_id=? AND kind='ship_by'",
                            (oid,)).fetchall()

    [(kind, detail, source)] = history()
    assert (kind, source) == ("ship_by", "marketplace")
    old, new = detail.split(" → ")
    assert (_moment(old), _moment(new)) == (_moment(first), _midnight(later))
    [pushed] = push_rows(cloud["db_path"], "SELECT dedup_key, duplicates, outcome, body FROM push_events"
                                           " WHERE kind='ship_by'")
    body = json.loads(pushed["body"])
    _conforms(body)  # the sandbox's push, held to ORDER_UPDATED's own schema
    assert (body["notificationType"], body["updateType"], body["orderId"]) == (
        "ORDER_UPDATED", "SHIPMENT_DATE_UPDATED", int(number))
    assert (pushed["dedup_key"], pushed["duplicates"], pushed["outcome"]) == (
        f"ym:{ym.app.campaign_id}:{number}:shipment_date:{body['updatedAt']}", 1, "ship_by")  # delivered twice

    # the same notification once more (Market resends until it gets 200): acknowledged, counted, nothing changes
    again = post_json(cloud["url"], pushed["body"].encode())
    assert again.status_code == 200
    _answer_ok(pushed["body"].encode(), again)
    # the delivery date moved, or something unnamed: acknowledged and stored nowhere
    for update in ("DELIVERY_DATE_UPDATED", "UNKNOWN"):
        other = json.dumps(dict(body, updateType=update))
        answer = post_json(cloud["url"], other.encode())
        assert answer.status_code == 200, answer.text
        _answer_ok(other.encode(), answer)
    assert wait_for(settled)
    assert [tuple(r) for r in push_rows(cloud["db_path"], "SELECT kind, duplicates FROM push_events"
                                                          " WHERE kind='ship_by'")] == [("ship_by", 2)]
    assert _moment(order()[1]) == _midnight(later) and len(history()) == 1

    # polling afterwards agrees: the order's shipmentDate is the stored ship-by, nothing is said again; the
    # order left with the first-mile shipment of its new day
    intake.poll(conn, cloud["cfg"], cloud["adapter"])
    intake.refresh_statuses(conn, cloud["cfg"], cloud["adapter"])
    read = cloud["adapter"].get_order(number)
    assert _moment(order()[1]) == _midnight(later) == read.ship_by
    assert read.native["delivery"]["shipment"]["id"] == int(later.replace("-", "")) * 10 + 1
    assert len(history()) == 1
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE native_id=?", (number,)).fetchone()[0] == 1


def test_a_moved_shipment_date_no_push_told_is_found_by_the_re_read(sandboxes, tmp_path) -> None:
    """No push URL registered (or the notification lost): the re-read of open orders (`refresh_statuses`)
    moves the order's ship-by, said once; the control says nothing was pushed, and the same date again
    moves nothing."""
    from cloud_sync.config import AccountSettings, CloudConfig
    from cloud_sync.orders import intake
    from marketplaces import open_account

    ym = sandboxes("yandex_market")
    acc = account_of(ym, "ym-polled")
    cfg = CloudConfig(db_path=str(tmp_path / "cloud.sqlite"), accounts={acc.name: AccountSettings(account=acc)})
    conn = open_db(cfg.db_path)
    adapter = open_account(acc)
    [number] = httpx.post(ym.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
    assert intake.poll(conn, cfg, adapter).new == 1
    later = (ym.app.orders[int(number)].shipment_date + timedelta(days=1)).isoformat()
    for _ in range(2):  # the second time the same date: not moved, nothing pushed (nor would be)
        moved = httpx.post(ym.url + "/_sandbox/x/shipment_date", json={"order_id": number, "shipment_date": later},
                           timeout=10)
        assert moved.status_code == 200 and moved.json()["pushed"] is False, moved.text
    assert intake.refresh_statuses(conn, cfg, adapter) == 1
    stored = conn.execute("SELECT ship_by FROM orders WHERE native_id=?", (number,)).fetchone()[0]
    assert _moment(stored) == _midnight(later)
    intake.refresh_statuses(conn, cfg, adapter)
    assert conn.execute("SELECT COUNT(*) FROM order_events WHERE kind='ship_by'").fetchone()[0] == 1
    assert ym.app.push.summary()["delivered"] == 0
    conn.close()


def test_the_shipment_date_control_refuses_bad_requests(sandboxes) -> None:
    ym = sandboxes("yandex_market")
    ids = httpx.post(ym.url + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
    assert httpx.post(ym.url + "/_sandbox/x/cancel", json={"orders": [ids[1]]}, timeout=10).json()["cancelled"]
    day = (ym.app.orders[int(ids[0])].shipment_date + timedelta(days=1)).isoformat()
    control = ym.url + "/_sandbox/x/shipment_date"
    for body in ({"shipment_date": day}, {"order_id": "5x", "shipment_date": day},
                 {"order_id": True, "shipment_date": day}, {"order_id": int(ids[0])},
                 {"order_id": int(ids[0]), "shipment_date": "08.12.2026"},
                 {"order_id": int(ids[0]), "shipment_date": "2026-02-30"},
                 {"order_id": int(ids[0]), "shipment_date": "20261208"},
                 {"order_id": int(ids[1]), "shipment_date": day}):  # cancelled: its date no longer moves
        refused = httpx.post(control, json=body, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"], (body, refused.text)
    unknown = httpx.post(control, json={"order_id": 1, "shipment_date": day}, timeout=10)
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]
    assert ym.app.orders[int(ids[0])].shipment_date.isoformat() != day  # nothing moved


def test_malformed_or_foreign_order_updated_is_refused_and_stored_nowhere(sandboxes, receiver_factory) -> None:
    ym = sandboxes("yandex_market")
    rx = receiver_factory([account_of(ym, "ym-upd")])
    url = rx.push_url("ym-upd") + "/notification"
    good = {"notificationType": "ORDER_UPDATED", "orderId": 5, "campaignId": ym.app.campaign_id,
            "updateType": "SHIPMENT_DATE_UPDATED", "updatedAt": "2026-12-07T10:00:00.123Z"}
    _conforms(good)
    bad = [{k: v for k, v in good.items() if k != "updateType"},
           {k: v for k, v in good.items() if k != "updatedAt"},
           {k: v for k, v in good.items() if k != "orderId"},
           dict(good, orderId="5"), dict(good, campaignId=str(ym.app.campaign_id)),
           dict(good, updatedAt="yesterday"), dict(good, updateType=1)]
    for shape in bad:
        body = json.dumps(shape).encode()
        resp = post_json(url, body)
        assert resp.status_code == 400, shape
        assert resp.json()["error"]["type"] == "WRONG_EVENT_FORMAT" and resp.json()["error"]["message"]
        _answer_ok(body, resp)
    foreign = json.dumps(dict(good, campaignId=999)).encode()
    assert post_json(url, foreign).status_code == 403
    assert push_rows(rx.db_path) == [] and rx.events == []
    # well formed: the shipment date's event, keyed by the moment Market gives; the others acknowledged only
    accepted = post_json(url, json.dumps(good).encode())
    assert accepted.status_code == 200
    for update in ("DELIVERY_DATE_UPDATED", "UNKNOWN"):
        assert post_json(url, json.dumps(dict(good, updateType=update)).encode()).status_code == 200
    assert [(r["kind"], r["dedup_key"], r["order_native_id"]) for r in push_rows(rx.db_path)] == [
        ("ship_by", f"ym:{ym.app.campaign_id}:5:shipment_date:2026-12-07T10:00:00.123Z", "5")]
