"""Ozon's shipping date moved (TYPE_CUTOFF_DATE_CHANGED): the Ozon sandbox moves a posting's shipment_date
(`POST /_sandbox/x/cutoff`) and pushes the change to the cloud over real HTTP; the cloud (its app, its push
worker, real SQLite) moves the order's ship-by — the assembly deadline the order list sorts by — and says so
in the order's history, once: the duplicate delivery and a late push of an older date change nothing, and a
poll afterwards agrees; the order's page shows the move in the seller's words and times. (The delivery
date change has no place in the order model: acknowledged and stored nowhere, held in test_ozon_pushes.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from cloud_sync.access import users
from cloud_sync.i18n import when
from cloud_sync.schema import open_db

from .conftest import push_idle, pushing_cloud, wait_for  # noqa: TID252 - the fixtures' helpers

OWNER_PASSWORD = "owner password 1"


def _moment(iso: str | None) -> datetime:
    assert iso, "no ship-by stored"
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.fixture
def cloud(sandboxes, tmp_path) -> Iterator[dict[str, Any]]:
    """The Ozon sandbox pushing (each notification delivered twice) to the cloud's app over real HTTP."""
    oz = sandboxes("ozon")
    db_path = str(tmp_path / "cloud.sqlite")
    made = open_db(db_path)
    users.add_user(made, "olga", OWNER_PASSWORD, "owner")  # who reads the order's page
    made.close()
    with pushing_cloud(oz, "ozon-dates", db_path) as (served, url):
        yield {"oz": oz, "acc": served.acc, "cfg": served.cfg, "adapter": served.adapter, "conn": served.conn,
               "url": url + "/notification", "app": served.app}


def test_a_moved_shipping_date_moves_the_ship_by_once_and_a_poll_agrees(cloud) -> None:
    from cloud_sync.orders import intake

    oz, conn, acc = cloud["oz"], cloud["conn"], cloud["acc"]
    [number] = httpx.post(oz.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"]
    push_idle(oz)

    def order() -> Any:
        return conn.execute("SELECT id, ship_by, stage FROM orders WHERE account=? AND native_id=?",
                            (acc.name, number)).fetchone()

    assert wait_for(lambda: order() is not None)
    oid, first, _ = order()
    assert _moment(first) == _moment(oz.app.postings[number]["shipment_date"])
    later = (_moment(first) + timedelta(days=2, hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    moved = httpx.post(oz.url + "/_sandbox/x/cutoff", json={"posting_number": number, "new_cutoff_date": later},
                       timeout=10).json()
    assert moved["shipment_date"] == later
    push_idle(oz)
    assert wait_for(lambda: _moment(order()[1]) == _moment(later)), order()
    assert wait_for(lambda: conn.execute("SELECT COUNT(*) FROM push_events WHERE handled_at IS NULL").fetchone()[0] == 0)

    def history() -> list[tuple[str, str, str]]:
        return conn.execute("SELECT kind, detail, source FROM order_events WHERE order_id=? AND kind='ship_by'",
                            (oid,)).fetchall()

    [(kind, detail, source)] = history()
    assert (kind, source) == ("ship_by", "marketplace")
    old, new = detail.split(" → ")
    assert (_moment(old), _moment(new)) == (_moment(first), _moment(later))
    # the order's page says it in the seller's words and times
    web = cloud["app"].test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text).group(1)
    assert web.post("/login", data={"name": "olga", "password": OWNER_PASSWORD, "csrf_token": token}).status_code == 302
    page = web.get(f"/orders/{acc.name}:{number}").text
    tz = cloud["cfg"].ui.timezone
    assert re.search(r"<td>срок сборки перенесён</td><td class=\"source\">маркетплейс ozon-dates</td><td><span class=\"ts\">"
                     + re.escape(when(first, "ru", tz)) + r'</span> → <span class="ts">' + re.escape(when(later, "ru", tz)),
                     page), re.findall(r"<tr><td class=\"ts\">.*?</tr>", page)
    [pushed] = conn.execute("SELECT dedup_key, duplicates, outcome FROM push_events WHERE kind='ship_by'").fetchall()
    assert tuple(pushed) == (f"oz:{oz.app.seller_id}:{number}:cutoff:{later}", 1, "ship_by")  # delivered twice

    # the same notification once more (Ozon resends): acknowledged, counted, nothing changes
    body = {"message_type": "TYPE_CUTOFF_DATE_CHANGED", "posting_number": number, "new_cutoff_date": later,
            "old_cutoff_date": moved["old_shipment_date"], "warehouse_id": oz.app.postings[number]["warehouse_id"],
            "seller_id": oz.app.seller_id}
    again = httpx.post(cloud["url"], json=body, timeout=10)
    assert (again.status_code, again.json()) == (200, {"result": True})
    # a late push of an older date (its own key): the posting's date is read, nothing moves back
    stale = dict(body, new_cutoff_date=moved["old_shipment_date"], old_cutoff_date=later)
    assert httpx.post(cloud["url"], json=stale, timeout=10).status_code == 200
    assert wait_for(lambda: conn.execute("SELECT COUNT(*) FROM push_events WHERE handled_at IS NULL").fetchone()[0] == 0
                    and conn.execute("SELECT COUNT(*) FROM push_events WHERE kind='ship_by'").fetchone()[0] == 2)
    assert _moment(order()[1]) == _moment(later) and len(history()) == 1
    assert conn.execute("SELECT duplicates FROM push_events WHERE dedup_key=?", (pushed[0],)).fetchone()[0] == 2

    # polling afterwards agrees: the posting's shipment_date is the stored ship-by, nothing is said again
    intake.poll(conn, cloud["cfg"], cloud["adapter"])
    intake.refresh_statuses(conn, cloud["cfg"], cloud["adapter"])
    assert _moment(order()[1]) == _moment(later) == cloud["adapter"].get_order(number).ship_by
    assert len(history()) == 1
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE native_id=?", (number,)).fetchone()[0] == 1



def test_a_moved_shipping_date_no_push_told_is_found_by_the_next_poll_or_re_read(sandboxes, tmp_path) -> None:
    """No push URL registered (or the notification lost): polling the unfulfilled postings moves the order's
    ship-by, and the re-read of open orders (`refresh_statuses`) does for an order polling no longer lists
    first; each move said once in the order's history, nothing said again on the next rounds."""
    from cloud_sync.config import AccountSettings, CloudConfig
    from cloud_sync.orders import intake
    from marketplaces import open_account

    from .conftest import account_of  # noqa: TID252 - the fixtures' helpers

    oz = sandboxes("ozon")
    acc = account_of(oz, "ozon-polled")
    cfg = CloudConfig(db_path=str(tmp_path / "cloud.sqlite"), accounts={acc.name: AccountSettings(account=acc)})
    conn = open_db(cfg.db_path)
    adapter = open_account(acc)
    numbers = httpx.post(oz.url + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
    assert intake.poll(conn, cfg, adapter).new == 2

    def ship_by(number: str) -> datetime:
        return _moment(conn.execute("SELECT ship_by FROM orders WHERE native_id=?", (number,)).fetchone()[0])

    def moves() -> list[str]:
        return [r[0] for r in conn.execute("SELECT o.native_id FROM order_events e JOIN orders o ON o.id=e.order_id"
                                           " WHERE e.kind='ship_by' ORDER BY e.id")]

    later = {n: (ship_by(n) + timedelta(days=1, hours=i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
             for i, n in enumerate(numbers)}
    for n in numbers:
        moved = httpx.post(oz.url + "/_sandbox/x/cutoff", json={"posting_number": n, "new_cutoff_date": later[n]},
                           timeout=10)
        assert moved.status_code == 200, moved.text
    # the re-read of open orders finds both (the account's least recently updated first)
    assert intake.refresh_statuses(conn, cfg, adapter) == 2
    assert [ship_by(n) for n in numbers] == [_moment(later[n]) for n in numbers]
    assert sorted(moves()) == sorted(numbers)
    # a poll reads the same dates: nothing moves, nothing is said again
    intake.poll(conn, cfg, adapter)
    intake.refresh_statuses(conn, cfg, adapter)
    assert len(moves()) == 2
    # moved once more: the poll of unfulfilled postings finds it first
    again = (_moment(later[numbers[0]]) + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    httpx.post(oz.url + "/_sandbox/x/cutoff", json={"posting_number": numbers[0], "new_cutoff_date": again},
               timeout=10).raise_for_status()
    intake.poll(conn, cfg, adapter)
    assert ship_by(numbers[0]) == _moment(again) and moves().count(numbers[0]) == 2
    conn.close()
