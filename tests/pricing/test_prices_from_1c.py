"""Prices from 1C price types: markup, rounding, crossed-out price, a floor of cost plus a minimum margin,
currency — each 1C price change recomputes only the affected cards, through the price documents' guards:
applied when none trips, held for confirmation when one does. Against the real WB sandbox over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud_sync.catalog import nomenclature as nom
from cloud_sync.config import ConfigError, load_config, parse_config
from cloud_sync.db import transaction
from cloud_sync.money import price_list, price_sources
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

N = 5


@pytest.mark.parametrize("value,rounding,expected", [
    ("1234.4", "1", "1234"), ("1234.5", "1", "1235"), ("1234", "10", "1230"), ("1235", "10", "1240"),
    ("1234", "9", "1239"), ("1240", "9", "1249"), ("1239", "9", "1239"), ("1234", "99", "1299"),
    ("99.994", "0.01", "99.99"),
])
def test_rounding(value, rounding, expected):
    assert price_sources.round_price(Decimal(value), rounding) == Decimal(expected)


def test_the_section_is_checked_at_start():
    base = {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9"}
    with pytest.raises(ConfigError, match="rounding"):
        parse_config({"accounts": {"wb": {**base, "prices_from_1c": {"price_type": "x", "rounding": "5"}}}}, env={})
    with pytest.raises(ConfigError, match="price_type"):
        parse_config({"accounts": {"wb": {**base, "prices_from_1c": {"markup_percent": 10}}}}, env={})


@pytest.fixture
def shop(tmp_path):
    sandbox = start_sandbox("wildberries", seed=N, time_scale=50.0)
    creds = ", ".join(f'"{k}" = "{v}"' for k, v in sandbox.credentials.items())
    path = tmp_path / "cloud.toml"
    path.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
time_scale = 50.0
[link]
enabled = false
[accounts.wb]
marketplace = "wildberries"
base_url = "{sandbox.url}"
credentials = {{ {creds} }}
[accounts.wb.prices_from_1c]
price_type = "Розничная"
markup_percent = 10
rounding = "9"
crossed_out_percent = 25
min_margin_percent = 20
""")
    cfg = load_config(path)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    items = [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id")]
    with transaction(conn):
        nom.upsert_price_type(conn, "pt-retail", "Розничная")
        nom.upsert_price_type(conn, "pt-cost", "Себестоимость", is_cost=True)
        nom.upsert_price_type(conn, "pt-usd", "Опт USD", "USD")
        for n, item in enumerate(items):
            nom.set_item_price(conn, item, "pt-retail", Decimal(1000 + 100 * n))
            nom.set_item_price(conn, item, "pt-cost", Decimal(500))
    adapters, _ = accounts.open_with_settings(conn, cfg, accounts.SyncReport())
    sync.sync_cards(conn, cfg, adapters)
    yield cfg, conn, adapters, sandbox, items
    for a in adapters.values():
        accounts.close_adapter(a)
    conn.close()
    sandbox.stop()


def wb_price(sandbox, conn, item_id):
    """What the WB sandbox now asks for the item's card: (price, crossed-out) as a buyer sees them."""
    card = conn.execute("SELECT card_id FROM card_links WHERE account='wb' AND item_id=?", (item_id,)).fetchone()[0]
    nm = conn.execute("SELECT group_id FROM cards WHERE account='wb' AND native_id=?", (card,)).fetchone()[0]
    p = sandbox.app.state()["prices"][str(nm)]
    return Decimal(p["price"]) * (100 - p["discount"]) / 100, Decimal(p["price"])


def test_1c_prices_reach_the_marketplace_then_only_changes_follow(shop):
    cfg, conn, adapters, sandbox, items = shop
    (first,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert first.state == "applied", first
    assert first.cards == N
    # 1000 × 1.10 = 1100 → 1109; crossed out 1109 × 1.25 = 1386.25 → 1389 (WB: whole-percent discount)
    price, crossed = wb_price(sandbox, conn, items[0])
    assert crossed == 1389 and abs(price - Decimal(1109)) <= Decimal("14"), (price, crossed)
    assert price_list.current_prices(conn, "wb")
    # nothing changed in 1C: nothing is sent
    (again,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert again.state == "nothing"
    # 1C changes one price: one card recomputed
    with transaction(conn):
        nom.set_item_price(conn, items[1], "pt-retail", Decimal(1150))
    (one,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert one.state == "applied" and one.cards == 1
    price, crossed = wb_price(sandbox, conn, items[1])  # 1150 × 1.10 = 1265 → 1269; 1269 × 1.25 → 1589
    assert crossed == 1589 and abs(price - Decimal(1269)) <= Decimal("16"), (price, crossed)


def test_a_1c_price_that_trips_a_guard_is_held_and_the_floor_holds(shop):
    cfg, conn, adapters, sandbox, items = shop
    price_sources.run(conn, cfg, adapters.__getitem__)
    before = wb_price(sandbox, conn, items[2])
    with transaction(conn):  # a typo in 1C: 120 instead of 1200 — a 90 % drop
        nom.set_item_price(conn, items[2], "pt-retail", Decimal(120))
        nom.set_item_price(conn, items[3], "pt-retail", Decimal(300))  # below cost + 20 %: floor 600 → 609
    (held,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert held.state == "held" and held.document, held
    assert wb_price(sandbox, conn, items[2]) == before  # nothing sent
    assert any("ниже себестоимости" in n for n in held.notes)
    status = conn.execute("SELECT status FROM price_documents WHERE id=?", (held.document,)).fetchone()[0]
    assert status == "draft"
    assert conn.execute("SELECT COUNT(*) FROM alert_outbox WHERE kind='price_source'").fetchone()[0] == 1


def test_unknown_price_type_and_currency_without_rate_are_refused_in_words(shop):
    cfg, conn, adapters, sandbox, items = shop
    src = cfg.accounts["wb"].prices_from_1c
    src.price_type = "Нет такого"
    (res,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert res.state == "error" and "нет типа цен «Нет такого»" in res.detail
    src.price_type = "Опт USD"
    with transaction(conn):
        nom.set_item_price(conn, items[0], "pt-usd", Decimal(12))
    (res,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert res.state == "error" and "курс" in res.detail
    src.currency_rate = Decimal("90")
    src.min_margin_percent = None
    (res,) = price_sources.run(conn, cfg, adapters.__getitem__)
    assert res.state in ("applied", "held") and res.cards == 1
