"""What each marketplace shows equals what was published, after every order, on accounts whose several
marketplace warehouses ship from one own warehouse: Wildberries and Ozon take an order's units off the
card's stock at the order's warehouse by themselves (profile `stock_follows_orders`), and put them back
when the order is cancelled before it ships. Real sandboxes over HTTP, the real adapters, the planner and
sender as the running pusher calls them (no read-back of the catalogue, which would hide a wrong
`stock_published`; the sender reads back only a card whose number is UNKNOWN, and takes only the number
it queued from it)."""

from __future__ import annotations

import time

import pytest

from cloud_sync.config import load_config
from cloud_sync.db import transaction
from cloud_sync.orders import intake, mp_actions
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.stock import push as stock_push
from marketplaces import profile
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

N = 6
WAREHOUSES = {"wildberries": ("700001", "700002", "700003"),
              "ozon": ("22142605386000", "22142605386001", "22142605386002")}


@pytest.fixture(params=["wildberries", "ozon"])
def shop(request, tmp_path):
    mp = request.param
    sandbox = start_sandbox(mp, seed=N, time_scale=20.0)
    whs = ", ".join(f'"{w}" = "main"' for w in WAREHOUSES[mp])
    creds = ", ".join(f'"{k}" = "{v}"' for k, v in sandbox.credentials.items())
    path = tmp_path / "cloud.toml"
    path.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
time_scale = 20.0
[link]
enabled = false
[accounts.acc]
marketplace = "{mp}"
base_url = "{sandbox.url}"
credentials = {{ {creds} }}
warehouses = {{ {whs} }}
""")
    cfg = load_config(path)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    adapters = accounts.open_adapters(cfg)
    yield mp, sandbox, cfg, conn, adapters
    for a in adapters.values():
        accounts.close_adapter(a)
    conn.close()
    sandbox.stop()


def shown(mp: str, app) -> dict[str, int]:
    """What the marketplace shows buyers per `card@warehouse`, read from the sandbox's own state."""
    if mp == "ozon":  # `stock` is the available quantity: what is present less what orders reserved
        return {f"{pid}@{wh}": n - app.reserved.get((pid, wh), 0) for (pid, wh), n in app.stocks.items()}
    return {f"{chrt}@{wh}": n for (wh, chrt), n in app.stocks.items()}


def push_until_quiet(conn, cfg, adapter, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stock_push.plan(conn, cfg)
        stock_push.send_account(conn, cfg, "acc", adapter)
        if not stock_push.pending(conn, "acc") and not conn.execute("SELECT 1 FROM stock_dirty").fetchone():
            return
        time.sleep(0.1)
    raise AssertionError(f"pushes did not settle: {stock_push.pending(conn, 'acc')}")


def published(conn) -> dict[str, int]:
    return {f"{r[0]}@{r[1]}": r[2] for r in conn.execute(
        "SELECT card_id, warehouse_id, quantity FROM stock_published WHERE account='acc'")}


def test_the_profiles_say_who_moves_stock_by_itself():
    assert profile("wildberries").stock_follows_orders and profile("ozon").stock_follows_orders
    assert not profile("yandex_market").stock_follows_orders and not profile("megamarket").stock_follows_orders


def test_what_the_marketplace_shows_equals_what_was_published_after_every_order(shop):
    mp, sandbox, cfg, conn, adapters = shop
    adapter = adapters["acc"]
    assert cfg.accounts["acc"].stock_follows_orders
    sync.sync_cards(conn, cfg, adapters)
    push_until_quiet(conn, cfg, adapter)
    mine = published(conn)
    assert mine and all(shown(mp, sandbox.app)[k] == v for k, v in mine.items())
    mismatches = []
    for n in range(12):
        if not sandbox.app.make_orders(1):
            break
        sync.sync_orders(conn, cfg, adapters)
        push_until_quiet(conn, cfg, adapter)
        now_shown = shown(mp, sandbox.app)
        wrong = {k: (v, now_shown.get(k)) for k, v in published(conn).items() if now_shown.get(k) != v}
        if wrong:
            mismatches.append((n, wrong))
    assert mismatches == []
    # and every card shows its share of what the ledger has available
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE account='acc'").fetchone()[0] >= 6


def test_an_order_cancelled_on_the_marketplace_gives_back_and_is_pushed_again(shop):
    """Cancelled by the seller (the cloud asks the marketplace, which puts the unit back on its warehouse):
    the card is pushed again even where the planner's share for that warehouse did not move."""
    mp, sandbox, cfg, conn, adapters = shop
    adapter = adapters["acc"]
    sync.sync_cards(conn, cfg, adapters)
    push_until_quiet(conn, cfg, adapter)
    mismatches = []
    for n in range(6):
        made = sandbox.app.make_orders(1)
        if not made:
            break
        sync.sync_orders(conn, cfg, adapters)
        push_until_quiet(conn, cfg, adapter)
        oid = conn.execute("SELECT id FROM orders WHERE native_id=?", (str(made[0]),)).fetchone()[0]
        with transaction(conn):
            intake.cancel(conn, cfg, oid, reason="test")
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT 1 FROM order_actions WHERE order_id=? AND action='cancel' AND"
                               " state='done'", (oid,)).fetchone():
            assert time.monotonic() < deadline, "the cancel never reached the marketplace"
            mp_actions.run_actions(conn, cfg, adapters)
            time.sleep(0.05)
        push_until_quiet(conn, cfg, adapter)
        now_shown = shown(mp, sandbox.app)
        wrong = {k: (v, now_shown.get(k)) for k, v in published(conn).items() if now_shown.get(k) != v}
        if wrong:
            mismatches.append((n, wrong))
    assert mismatches == []
