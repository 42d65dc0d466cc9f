"""Pushes and polling together, through the cloud's real app (cloud_sync.web.app.create_app registers the
push endpoints and wires them to cloud_sync.orders): every order is created once, whichever path sees
it first, for Yandex.Market and Ozon (thin pushes, details fetched) and Megamarket (the push carries the
order)."""

from __future__ import annotations

import threading

import httpx
import pytest
from werkzeug.serving import make_server

from marketplaces import open_account

from .conftest import account_of, wait_for  # noqa: TID252 - the fixtures' helpers


@pytest.mark.parametrize("market", ["yandex_market", "megamarket", "ozon"])
def test_push_and_poll_never_create_an_order_twice(market, sandboxes, tmp_path) -> None:
    app_mod = pytest.importorskip("cloud_sync.web.app")
    from cloud_sync.config import AccountSettings, CloudConfig
    from cloud_sync.db import connect
    from cloud_sync.orders import intake

    sb = sandboxes(market)
    acc = account_of(sb, f"{market}-main")
    db_path = str(tmp_path / "cloud.sqlite")
    cfg = CloudConfig(db_path=db_path, accounts={acc.name: AccountSettings(account=acc)})
    adapter = open_account(acc)
    app = app_mod.create_app(cfg, db_path=db_path, adapters={acc.name: adapter})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        from cloud_sync.web.push import push_url

        base = f"http://127.0.0.1:{server.server_port}"
        httpx.post(sb.url + "/_sandbox/x/push", json={"url": push_url(base, acc), "duplicates": 1}, timeout=10)
        first = httpx.post(sb.url + "/_sandbox/orders", json={"count": 3}, timeout=10).json()["orders"]
        conn = connect(db_path)
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
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for bp in app.blueprints.values():
            worker = getattr(bp, "push_worker", None)
            if worker is not None:
                worker.stop()


