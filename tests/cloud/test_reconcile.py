"""The three-way stock reconciliation: 1C's last balance, the ledger with its moves in flight, and what the
marketplaces show (the real WB and Ozon sandboxes over HTTP, read back through the real adapters) —
every difference explained by named causes or flagged; `marketsync reconcile` ends with one JSON line."""

from __future__ import annotations

import json

import pytest

from cloud_sync.cli.reconcile import main as reconcile_main
from cloud_sync.config import load_config
from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.stock import ledger, reconcile
from cloud_sync.stock import push as stock_push
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

from .conftest import make_config

N = 6


def test_ledger_against_1c_explained_by_moves_in_flight_or_flagged(conn):
    cfg = make_config()
    t0 = 1_000_000.0
    with transaction(conn):
        ledger.set_balances_many(conn, [("a", "main", 5), ("b", "main", 7)], now=t0, as_of=t0)
        ledger.reserve(conn, "wb:1", "a", "main", 2, now=t0 + 1)
        ledger.site_delta(conn, "site-1", "main", "a", -2, "pick", ref="wb:1", now=t0 + 2)
    res = reconcile.reconcile(conn, cfg, now=t0 + 10)
    assert res.summary() == {"items": 2, "differences": 1, "explained": 1, "unexplained": 0}
    (d,) = res.differences
    assert (d.item_id, d.expected, d.found, d.where) == ("a", 3, 3, "1c") and "сборка -2 (wb:1)" in d.why
    # once the pick is older than the horizon and 1C still says 5, nothing explains the gap any more
    res = reconcile.reconcile(conn, cfg, now=t0 + 7200, horizon_s=3600)
    assert res.summary()["unexplained"] == 1 and "не объяснено -2" in res.unexplained[0].why
    # 1C books the shipment and says 3: no difference at all
    with transaction(conn):
        ledger.book_order_moves(conn, "wb:1", "1c shipped", now=t0 + 20)
        ledger.set_balances_many(conn, [("a", "main", 3)], now=t0 + 30, as_of=t0 + 25)
    assert reconcile.reconcile(conn, cfg, now=t0 + 40).summary()["differences"] == 0


@pytest.fixture
def shop(tmp_path):
    running = {mp: start_sandbox(mp, seed=N, time_scale=20.0) for mp in ("wildberries", "ozon")}
    blocks = []
    for name, mp in (("wb", "wildberries"), ("oz", "ozon")):
        creds = ", ".join(f'"{k}" = "{v}"' for k, v in running[mp].credentials.items())
        blocks.append(f'[accounts.{name}]\nmarketplace = "{mp}"\nbase_url = "{running[mp].url}"\n'
                      f"credentials = {{ {creds} }}\n")
    path = tmp_path / "cloud.toml"
    path.write_text('[cloud]\ndb_path = "cloud.sqlite"\ntime_scale = 20.0\n[link]\nenabled = false\n' + "".join(blocks))
    cfg = load_config(path)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    yield str(path), cfg, conn, running
    conn.close()
    for s in running.values():
        s.stop()


def test_reconcile_command_against_the_real_sandboxes(shop, capsys):
    path, cfg, conn, running = shop
    adapters, _ = accounts.open_with_settings(conn, cfg, accounts.SyncReport())
    try:
        sync.sync_cards(conn, cfg, adapters)
        sync.sync_stocks(conn, cfg, adapters)
        stock_push.plan(conn, cfg)  # the running pusher's round: nothing left to recompute
    finally:
        for a in adapters.values():
            accounts.close_adapter(a)
    assert reconcile_main(["--config", path]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == {"items": N, "differences": 0, "explained": 0, "unexplained": 0}
    assert any(line.startswith("wb: сверено") for line in out)

    # someone changed a number in the WB cabinet by hand: flagged, with what was published
    wb = running["wildberries"].app
    key = next(k for k, v in sorted(wb.stocks.items()) if v > 0)
    wb.stocks[key] += 3
    assert reconcile_main(["--config", path]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["unexplained"] == 1
    assert any("НЕ ОБЪЯСНЕНО" in line and f"{key[1]}@{key[0]}" in line and "площадка изменила" in line
               for line in out)
    last = reconcile.last(conn)
    assert last["unexplained"] == 1 and last["differences"][0]["where"] == "wb"

    # a 1C balance changed and the push is still queued: explained by that push
    item = conn.execute("SELECT item_id FROM card_links WHERE account='wb' AND card_id=?", (str(key[1]),)).fetchone()[0]
    with transaction(conn):
        ledger.set_balances_many(conn, [(item, cfg.default_warehouse, 1)])
    stock_push.plan(conn, cfg)
    assert reconcile_main(["--config", path, "--all"]) == 0
    out = capsys.readouterr().out
    assert "в очереди" in out and json.loads(out.strip().splitlines()[-1])["unexplained"] == 0
