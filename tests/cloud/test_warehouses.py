"""One decision of which own warehouse serves a marketplace warehouse, taken by the orders and by the push
planner alike: an order from a marketplace warehouse no own warehouse serves is a problem the manager
sees, never a reservation in a warehouse whose stock is not published there."""

from __future__ import annotations

from dataclasses import replace

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.orders import intake, listing
from cloud_sync.stock import ledger, warehouses
from cloud_sync.stock import push as stock_push

from .conftest import ACCOUNTS, card_id, order, seed


def _pick_tasks(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM link_outbox WHERE type='pick_task'").fetchone()[0]


def test_order_from_an_unmapped_marketplace_warehouse_is_a_problem_not_a_reservation(conn, cfg):
    items = seed(conn, 3)
    stray = replace(order("wb", "W-99", card_id("wb", 1)), warehouse_id="99")  # wb maps only "10"
    res = intake.ingest(conn, cfg, [stray])
    assert (res.new, res.reserved, res.problems) == (1, 0, 1)
    o = listing.list_orders(conn)[0]
    assert o["stage"] == "problem" and o["warehouse"] == "" and o["site"] is None
    assert "склад маркетплейса 99 кабинета wb не связан с нашим складом" in o["problem"]
    assert ledger.level(conn, items[0].item_id, "main").reserved == 0
    assert _pick_tasks(conn) == 0
    assert conn.execute("SELECT COUNT(*) FROM order_actions").fetchone()[0] == 0  # never confirmed
    events = [(e["kind"], e["detail"]) for e in listing.get_order(conn, "wb:W-99")["events"]]
    assert events == [("received", "new"), ("problem", o["problem"])]


def test_orders_and_the_push_planner_agree_on_every_warehouse(conn, cfg):
    seed(conn, 3)
    with transaction(conn):
        catalog.record_warehouses(conn, "oz", [("20", "Ozon FBS", "fbs", "main"), ("21", "Ozon FBS 2", "fbs", None),
                                               ("fbo-1", "Ozon FBO", "fbo", None)])
    published = warehouses.account_warehouses(conn, cfg, "oz")
    for mp_wh in ("20", "21", "fbo-1", "nowhere"):
        assert warehouses.serving_warehouse(conn, cfg, "oz", mp_wh) == published.get(mp_wh)
    stock_push.plan_all(conn, cfg)
    pushed_to = {r[0] for r in conn.execute("SELECT DISTINCT warehouse_id FROM stock_push_queue WHERE account='oz'")}
    assert pushed_to == {"20"}


def test_an_account_that_maps_nothing_is_served_by_its_default_warehouse_but_not_its_fbo(conn):
    accounts = {name: {"marketplace": mp, "base_url": "http://127.0.0.1:9"} for name, (mp, _) in ACCOUNTS.items()}
    cfg = parse_config({"accounts": accounts, "sites": {"site-1": {"warehouses": ["main"]}}}, env={})
    items = seed(conn, 3)
    with transaction(conn):  # as sync_warehouses records them: FBS to the default warehouse, FBO to none
        catalog.record_warehouses(conn, "ym", [("30", "YM FBS", "fbs", "main"), ("fbo-1", "YM FBO", "fbo", None)])
    assert warehouses.serving_warehouse(conn, cfg, "ym", "30") == "main"
    assert warehouses.serving_warehouse(conn, cfg, "ym", "31") == "main"  # a new one, not read yet: FBS
    assert warehouses.serving_warehouse(conn, cfg, "ym", "fbo-1") is None
    res = intake.ingest(conn, cfg, [order("ym", "Y-1", card_id("ym", 1)),
                                    replace(order("ym", "Y-2", card_id("ym", 2)), warehouse_id="fbo-1")])
    assert (res.reserved, res.problems) == (1, 1)
    assert ledger.level(conn, items[0].item_id, "main").reserved == 1
    assert listing.get_order(conn, "ym:Y-2")["stage"] == "problem"
