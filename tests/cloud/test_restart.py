"""The cloud killed with SIGKILL mid-flow and started again on the same database: nothing lost, nothing
applied twice. Real processes: `marketsync cloud serve` (killed, restarted), the WB and Ozon sandboxes
over HTTP (served in threads of the test), the SQLite file on disk. No site: the pick tasks wait in the
link's outbox, which is what a site that is offline sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.config import load_config
from cloud_sync.schema import open_db
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo import http_json
from marketsync.demo_catalog import seed_demo
from marketsync.procs import Service, marketsync_argv

from .conftest import wait_for


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn


pytestmark = pytest.mark.slow


def test_cloud_killed_mid_flow_loses_nothing_and_repeats_nothing(tmp_path: Path):
    n = 8
    wb = start_sandbox("wildberries", seed=n, time_scale=20.0, validate=False)
    oz = start_sandbox("ozon", seed=n, time_scale=20.0, validate=False)
    conf = tmp_path / "cloud.toml"

    def creds(s):
        return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in s.credentials.items()) + " }"

    conf.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
port = 0
time_scale = 20.0
[jobs]
orders_poll_s = 0.1
actions_s = 0.1
[link]
enabled = false
[accounts.wb]
marketplace = "wildberries"
base_url = "{wb.url}"
credentials = {creds(wb)}
[accounts.oz]
marketplace = "ozon"
base_url = "{oz.url}"
credentials = {creds(oz)}
""")
    conn = open_db(tmp_path / "cloud.sqlite")
    seed_demo(conn, load_config(conf), n)  # the demo's 1C catalog, as a 1C exchange would have brought it
    conn.close()
    cloud = None
    try:
        cloud = Service("cloud", marketsync_argv("cloud", "serve", "--config", str(conf)), tmp_path / "cloud-1.log")
        api = cloud.start(timeout=90)["url"]
        wait_for("cards linked", lambda: len(http_json("GET", f"{api}/api/cards?linked=1")) >= 2 * n)
        natives = [str(x) for x in wb.app.make_orders(3)]
        wait_for("the orders taken in", lambda: len(http_json("GET", f"{api}/api/orders")) >= 3, timeout=30)
        cloud.proc.kill()  # SIGKILL: no goodbye, whatever was in flight stays in flight
        cloud.proc.wait(10)

        cloud = Service("cloud", marketsync_argv("cloud", "serve", "--config", str(conf)), tmp_path / "cloud-2.log")
        api = cloud.start(timeout=90)["url"]
        wait_for("every order confirmed on WB",
                 lambda: all(wb.app.state()["orders"][x] == "confirm" for x in natives)
                 and all(http_json("GET", f"{api}/api/orders/wb:{x}")["confirmed"] for x in natives), timeout=60)
        db = cloud_conn(tmp_path / "cloud.sqlite")
        for x in natives:
            key = f"wb:{x}"
            assert db.execute("SELECT COUNT(*) FROM orders WHERE key=?", (key,)).fetchone()[0] == 1
            assert db.execute("SELECT COUNT(*) FROM stock_moves WHERE ref=? AND kind='reserve'", (key,)).fetchone()[0] == 1
            tasks = [json.loads(r[0])["body"]["order_id"] for r in db.execute(
                "SELECT payload FROM link_outbox WHERE type='pick_task'")]
            assert tasks.count(key) == 1
        levels = {r[0]: r[1] - r[2] for r in db.execute("SELECT item_id, on_hand, reserved FROM stock_levels")}
        cards = {r[0]: r[1] for r in db.execute("SELECT card_id, item_id FROM card_links WHERE account='oz'")}

        def ozon_matches() -> bool:
            stocks = oz.app.state()["stocks"]
            return all(sum(v for k, v in stocks.items() if k.startswith(f"{c}@")) == levels[i] for c, i in cards.items())
        wait_for("Ozon shows the ledger's numbers", ozon_matches, timeout=30)
        assert http_json("GET", f"{api}/api/summary")["errors"] == 0
        db.close()
    finally:
        if cloud is not None:
            cloud.stop()
        wb.stop()
        oz.stop()
