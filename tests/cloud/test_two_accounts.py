"""Two Wildberries accounts of one seller: one 1C catalog, one ledger, each cabinet with its own
allocation (and prices); the orders of both are served from the same stock, and the last unit sold on
one cabinet is taken off the other at once. Real WB sandboxes over HTTP, the real adapters."""

from __future__ import annotations

import pytest

from cloud_sync.config import load_config
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.stock import ledger
from cloud_sync.stock import push as stock_push
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

N = 6


@pytest.fixture
def two(tmp_path):
    shops = {name: start_sandbox("wildberries", seed=N, time_scale=50.0) for name in ("wb-a", "wb-b")}
    text = '[cloud]\ndb_path = "cloud.sqlite"\ntime_scale = 50.0\n[link]\nenabled = false\n'
    for name, s in shops.items():
        creds = ", ".join(f'"{k}" = "{v}"' for k, v in s.credentials.items())
        text += (f'[accounts.{name}]\nmarketplace = "wildberries"\nbase_url = "{s.url}"\ncredentials = {{ {creds} }}\n'
                 f'warehouses = {{ "700001" = "main" }}\n')
        if name == "wb-b":
            text += "allocation = { share = 0.5, buffer = 1 }\n"
    path = tmp_path / "cloud.toml"
    path.write_text(text)
    cfg = load_config(path)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    adapters, _ = accounts.open_with_settings(conn, cfg, accounts.SyncReport())
    yield cfg, conn, adapters, shops
    for a in adapters.values():
        accounts.close_adapter(a)
    conn.close()
    for s in shops.values():
        s.stop()


def shown(shop) -> dict[str, int]:
    return {f"{chrt}": n for (wh, chrt), n in shop.app.stocks.items() if wh == 700001}


def push_all(conn, cfg, adapters):
    for _ in range(50):
        stock_push.plan(conn, cfg)
        for name, a in adapters.items():
            stock_push.send_account(conn, cfg, name, a)
        if not any(stock_push.pending(conn).values()) and not conn.execute("SELECT 1 FROM stock_dirty").fetchone():
            return


def test_two_cabinets_one_ledger_their_own_allocation(two):
    cfg, conn, adapters, shops = two
    sync.sync_cards(conn, cfg, adapters)
    push_all(conn, cfg, adapters)
    link = {(r[0], r[1]): r[2] for r in conn.execute("SELECT account, card_id, item_id FROM card_links")}
    for name, shop in shops.items():
        for chrt, qty in shown(shop).items():
            available = ledger.level(conn, link[(name, chrt)], "main").available
            want = available if name == "wb-a" else max(0, int(available * 0.5) - 1)
            assert qty == want, (name, chrt, qty, available)
    # orders on both cabinets reserve from the one ledger
    before = sum(lv.reserved for lv in ledger.levels(conn))
    made = {name: shop.app.make_orders(2) for name, shop in shops.items()}
    sync.sync_orders(conn, cfg, adapters)
    keys = {r[0] for r in conn.execute("SELECT key FROM orders WHERE stage='reserved'")}
    assert {f"{n}:{o}" for n, ids in made.items() for o in ids} <= keys
    assert sum(lv.reserved for lv in ledger.levels(conn)) == before + 4


def test_the_last_unit_sold_on_one_cabinet_leaves_the_other_at_once(two):
    cfg, conn, adapters, shops = two
    sync.sync_cards(conn, cfg, adapters)
    push_all(conn, cfg, adapters)
    link = {(r[0], r[1]): r[2] for r in conn.execute("SELECT account, card_id, item_id FROM card_links")}
    # the scarcest item: sell its last units on cabinet A, one order at a time
    chrt = min(shown(shops["wb-a"]), key=lambda c: (shown(shops["wb-a"])[c] or 99))
    item = link[("wb-a", chrt)]
    other = next(c for (a, c), i in link.items() if a == "wb-b" and i == item)
    for _ in range(20):
        if ledger.level(conn, item, "main").available <= 0:
            break
        shops["wb-a"].app.stocks[(700001, int(chrt))] = 1  # the buyer can only order this card
        for key in list(shops["wb-a"].app.stocks):
            if key[1] != int(chrt):
                shops["wb-a"].app.stocks[key] = 0
        shops["wb-a"].app.make_orders(1)
        sync.sync_orders(conn, cfg, adapters)
        push_all(conn, cfg, adapters)
    assert ledger.level(conn, item, "main").available == 0
    assert shown(shops["wb-b"])[other] == 0
