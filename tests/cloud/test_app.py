"""The JSON API over the app factory (WSGI test client on a real SQLite file), and the CLI's `stock why`
and `cloud serve` (a real process, stopped by SIGTERM)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from cloud_sync.cli.cloud import stock_main
from cloud_sync.orders import intake
from cloud_sync.web.app import create_app

from .conftest import card_id, order, seed


def test_api_orders_stock_cards_events_and_refusals(db_path, conn, cfg, windows):
    items = seed(conn, 3)
    intake.ingest(conn, cfg, [order("wb", "1001", card_id("wb", 1))])
    app = create_app(cfg, db_path=db_path, adapters=windows)
    c = app.test_client()
    assert c.get("/api/summary").get_json() == {"orders_seen": 1, "orders_packed": 0, "labels_printed": 0,
                                                 "stock_pushes": 0, "errors": 0, "recovered": 0, "delivered": 0,
                                                 "returned": 0, "restocked": 0, "stuck": 0, "reduced": 0}
    assert c.get("/api/orders").get_json()[0]["key"] == "wb:1001"
    assert c.get("/api/orders/wb:1001").get_json()["lines"][0]["item_id"] == items[0].item_id
    assert c.get("/api/orders/nope").status_code == 404
    ev = c.get("/api/events?after=0").get_json()["events"]
    assert "order 1001 (wb) reserved at warehouse main; pick task sent to site-1" in [e["text"] for e in ev]
    assert c.get(f"/api/events?after={ev[-1]['id']}").get_json()["events"] == []
    for bad in ("/api/orders?limit=x", "/api/orders?offset=-1", "/api/events?after=soon"):
        r = c.get(bad)
        assert r.status_code == 400 and "query parameter" in r.get_json()["error"], bad
    lv = c.get(f"/api/stock?item={items[0].item_id}").get_json()[0]
    assert (lv["reserved"], lv["available"]) == (1, items[0].stock - 1)
    # bad input: refused with a clear error, nothing applied
    r = c.post("/api/stock/balances", json={"warehouse": "main", "balances": {items[0].item_id: -5}})
    assert r.status_code == 422 and "nothing applied" in r.get_json()["error"]
    assert c.post("/api/cards/link", json={"account": "wb"}).status_code == 400
    r = c.post("/api/cards/link", json={"account": "wb", "card_id": "wb-1", "item_id": "ghost"})
    assert r.status_code == 422 and "unknown item" in r.get_json()["error"]
    assert c.post("/api/cards/link", json={"account": "wb", "card_id": "wb-2", "item_id": items[0].item_id,
                                           "pack": 2}).status_code == 200
    assert len(c.get(f"/api/cards?item={items[0].item_id}").get_json()) == 5
    assert c.post("/api/orders/wb:1001/cancel", json={"reason": "buyer asked"}).get_json()["released"] == 1
    why = c.get(f"/api/stock/why?item={items[0].article}&account=wb").get_json()
    assert why["published"] and any("в упаковке 2" in line for line in why["lines"])  # [ui] language: Russian


def test_stock_why_cli(db_path, conn, cfg, capsys, tmp_path):
    items = seed(conn, 2)
    conf = tmp_path / "c.toml"
    conf.write_text('[accounts.wb]\nmarketplace = "wildberries"\nbase_url = "http://127.0.0.1:9"\n'
                    'warehouses = { "10" = "main" }\nallocation = { share = 0.5, buffer = 2 }\n')
    assert stock_main(["why", items[0].article, "--account", "wb", "--config", str(conf), "--db", db_path]) == 0
    out = capsys.readouterr().out
    assert "округл.вниз(25 × 0.5) = 12, − 2 = 10" in out and "ещё не отправлялось" in out  # Russian by default
    assert stock_main(["why", "NOPE", "--account", "wb", "--config", str(conf), "--db", db_path]) == 2
    assert "неизвестный товар" in capsys.readouterr().err


def test_cloud_serve_announces_itself_and_stops_on_sigterm(tmp_path, broker):
    conf = tmp_path / "cloud.toml"
    conf.write_text(f'[cloud]\ndb_path = "c.sqlite"\nport = 0\n[link]\nport = {broker.port}\n')
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", "cloud", "serve", "--config", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["role"] == "cloud" and first["url"].startswith("http://127.0.0.1:")
        import urllib.request

        with urllib.request.urlopen(first["url"] + "/api/summary", timeout=5) as r:
            assert json.loads(r.read())["orders_seen"] == 0
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
