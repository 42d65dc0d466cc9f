"""Pushes and polling together, through the cloud's real app (cloud_sync.web.app.create_app registers the
push endpoints and wires them to cloud_sync.orders): every order is created once, whichever path sees
it first, for Yandex.Market and Ozon (thin pushes, details fetched) and Megamarket (the push carries the
order)."""

from __future__ import annotations

import httpx
import pytest

from cloud_sync.orders import intake
from cloud_sync.web.push import push_url

from .conftest import served_cloud, wait_for  # noqa: TID252 - the fixtures' helpers


@pytest.mark.parametrize("market", ["yandex_market", "megamarket", "ozon"])
def test_push_and_poll_never_create_an_order_twice(market, sandboxes, tmp_path) -> None:
    sb = sandboxes(market)
    with served_cloud(sb, f"{market}-main", str(tmp_path / "cloud.sqlite")) as served:
        acc, cfg, adapter, conn = served.acc, served.cfg, served.adapter, served.conn
        httpx.post(sb.url + "/_sandbox/x/push", json={"url": push_url(served.base, acc), "duplicates": 1}, timeout=10)
        first = httpx.post(sb.url + "/_sandbox/orders", json={"count": 3}, timeout=10).json()["orders"]
        intake.poll(conn, cfg, adapter)  # polling races the pushes for the same orders
        second = httpx.post(sb.url + "/_sandbox/orders", json={"count": 2}, timeout=10).json()["orders"]
        assert httpx.post(sb.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]

        def handled() -> bool:
            return conn.execute("SELECT COUNT(*) FROM push_events WHERE handled_at IS NULL").fetchone()[0] == 0

        assert wait_for(handled)
        intake.poll(conn, cfg, adapter)
        rows = conn.execute("SELECT native_id, COUNT(*) FROM orders WHERE account=? GROUP BY native_id",
                            (acc.name,)).fetchall()
        assert sorted(r[0] for r in rows) == sorted(first + second)
        assert all(r[1] == 1 for r in rows)
        pushed = conn.execute("SELECT COUNT(*), SUM(duplicates) FROM push_events").fetchone()
        assert pushed[0] == 5 and pushed[1] == 5


