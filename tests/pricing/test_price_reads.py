"""The marketplaces' prices come back into the price list on their own: an account just opened, an
account whose prices were pushed (a little later), every account on the schedule, and at once when a
person asks — against the real Ozon sandbox over HTTP (its `/v5/product/info/prices`)."""

from __future__ import annotations

import time

from cloud_sync.config import load_config
from cloud_sync.money import price_list, price_reads
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo


def test_due_accounts():
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.executescript(price_reads.MIGRATIONS[0])
    t = 1_000_000.0
    assert price_reads.due(conn, ["a", "b"], 3600, now=t) == ["a", "b"]  # never read
    conn.execute("INSERT INTO price_reads(account, read_ts) VALUES ('a', ?), ('b', ?)", (t, t))
    assert price_reads.due(conn, ["a", "b"], 3600, now=t + 10) == []
    price_reads.note_pushed(conn, "a", now=t + 20)
    assert price_reads.due(conn, ["a", "b"], 3600, now=t + 30) == []  # the marketplace applies it first
    assert price_reads.due(conn, ["a", "b"], 3600, now=t + 20 + price_reads.AFTER_PUSH_S) == ["a"]
    price_reads.ask(conn, ["b"], now=t + 40)
    assert "b" in price_reads.due(conn, ["a", "b"], 3600, now=t + 41)
    assert price_reads.due(conn, ["a", "b"], 3600, now=t + 3600) == ["a", "b"]  # the schedule


def test_an_opened_account_gets_its_prices_without_anyone_asking(tmp_path):
    sandbox = start_sandbox("ozon", seed=5, time_scale=50.0)
    try:
        creds = ", ".join(f'"{k}" = "{v}"' for k, v in sandbox.credentials.items())
        path = tmp_path / "cloud.toml"
        path.write_text(f'[cloud]\ndb_path = "cloud.sqlite"\n[link]\nenabled = false\n[accounts.oz]\n'
                        f'marketplace = "ozon"\nbase_url = "{sandbox.url}"\ncredentials = {{ {creds} }}\n')
        cfg = load_config(path)
        conn = open_db(cfg.db_path)
        seed_demo(conn, cfg, 5)
        adapters, _ = accounts.open_with_settings(conn, cfg, accounts.SyncReport())
        sync.sync_cards(conn, cfg, adapters)
        conn.execute("DELETE FROM price_list")
        (r,) = price_reads.read_due(conn, ["oz"], adapters.__getitem__, every_s=3600)
        assert r.prices == 5 and not r.error
        assert len(price_list.current_prices(conn, "oz")) == 5
        assert price_reads.read_due(conn, ["oz"], adapters.__getitem__, every_s=3600) == []
        assert price_reads.state(conn)["oz"]["read_ts"] <= time.time()
        for a in adapters.values():
            accounts.close_adapter(a)
        conn.close()
    finally:
        sandbox.stop()
