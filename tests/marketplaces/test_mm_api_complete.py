"""Megamarket as far as its API goes (issue 18 point 2), against its sandbox over real HTTP, every exchange
held to marketsync's Megamarket schemas by the `contract` fixture: stocks and prices read back (Assortment
API `stock/getByOfferId`, `price/getByOfferId`, <= 100 offers a request), lots followed through to
DELIVERED, and what the API does not offer answered `NotSupported` with the reason in Russian — which
the reports page, the API and `marketsync sync reports` show instead of failing."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import httpx
import pytest

from cloud_sync.config import parse_config
from cloud_sync.money import price_list
from cloud_sync.schema import open_db
from cloud_sync.web.app import create_app
from marketplaces import open_account
from marketplaces.base import AccountConfig, NotSupported, PriceChange, StockLevel
from marketplaces.sandbox.megamarket import register_schemas

register_schemas()


def mm_account(running, **options) -> AccountConfig:
    app = running.app
    opts = {"merchant_id": app.merchant_id, "shipping_point": app.shipping_point, **options}
    return AccountConfig(name="mm1", marketplace="megamarket", base_url=running.url,
                         credentials=dict(running.credentials), endpoints=opts.pop("endpoints", {}),
                         time_scale=app.time_scale, options=opts)


def state(running) -> dict:
    return httpx.get(running.url + "/_sandbox/state", timeout=10).json()


def test_stocks_and_prices_read_back(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=30, time_scale=1000)
    adapter = open_account(mm_account(running, endpoints={"stocks_read": {"batch": 12}}))
    wh = adapter.warehouses()[0].native_id
    assert all(r.ok for r in adapter.push_stocks([StockLevel("MS-00001", "MS-00001", wh, 17),
                                                  StockLevel("MS-00002", "MS-00002", wh, 0)]))
    assert all(r.ok for r in adapter.push_prices([PriceChange("MS-00003", "MS-00003", Decimal("1234"))]))
    stocks = {s.offer_id: s for s in adapter.read_stocks()}
    assert len(stocks) == 30 and stocks["MS-00001"].quantity == 17 and stocks["MS-00002"].quantity == 0
    assert {s.warehouse_id for s in stocks.values()} == {wh}
    assert {k: s.quantity for k, s in stocks.items()} == state(running)["stocks"]
    assert state(running)["by_path"]["/api/merchantIntegration/assortment/v1/stock/getByOfferId"] == 3  # 12+12+6
    prices = {p.offer_id: p.price for p in adapter.read_prices()}
    assert prices["MS-00003"] == Decimal("1234")
    assert {k: int(v) for k, v in prices.items()} == state(running)["prices"]
    with pytest.raises(NotSupported) as fbo:
        adapter.read_stocks("fbo")
    assert "FBO" in fbo.value.for_seller()


def test_price_list_takes_megamarket_prices_read_back(tmp_path, sandbox_factory) -> None:
    from cloud_sync.catalog import cards as catalog
    from cloud_sync.db import transaction

    running = sandbox_factory("megamarket", seed=10, time_scale=1000)
    adapter = open_account(mm_account(running))
    assert all(r.ok for r in adapter.push_prices([PriceChange("MS-00004", "MS-00004", Decimal("777"))]))
    conn = open_db(tmp_path / "tenant.sqlite")
    with transaction(conn):
        catalog.import_cards(conn, "mm1", "megamarket", list(adapter.list_cards()))
    assert price_list.read_prices(conn, "mm1", adapter) == 10
    assert price_list.current_prices(conn, "mm1")["MS-00004"].price == Decimal("777")
    conn.close()


def test_lots_through_to_delivered(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=30, time_scale=1000)
    adapter = open_account(mm_account(running))
    sid = httpx.post(running.url + "/_sandbox/orders", json={"count": 1}, timeout=10).json()["orders"][0]
    order = adapter.get_order(sid)
    codes = {ln.native_id: [f"0104607000000014215{sid}{ln.native_id}"] for ln in order.lines}
    for action in ("confirm", "assemble", "ship"):
        assert adapter.set_order_status(sid, action, marking_codes=codes).ok
    assert httpx.post(running.url + "/_sandbox/x/deliver", json={"orders": [sid]}, timeout=10).json() == \
        {"delivered": [sid]}
    done = adapter.get_order(sid)
    assert done.native_status == "DELIVERED" and {ln.native["status"] for ln in done.lines} == {"DELIVERED"}
    assert adapter.set_order_status(sid, "ship").already  # nothing is sent again


def test_not_offered_calls_say_why_in_russian(sandbox_factory) -> None:
    running = sandbox_factory("megamarket", seed=5, time_scale=1000)
    adapter = open_account(mm_account(running))
    for call, words in ((lambda: adapter.realization_report(date(2026, 1, 1), date(2026, 1, 31)), "отчёт о реализации"),
                        (lambda: adapter.set_visibility(["MS-00001"], False), "остаток 0")):
        with pytest.raises(NotSupported) as err:
            call()
        assert words in err.value.for_seller()


@pytest.fixture
def mm_cloud(tmp_path, sandbox_factory):
    running = sandbox_factory("megamarket", seed=5, time_scale=1000)
    db = tmp_path / "cloud.sqlite"
    raw = {"cloud": {"db_path": str(db)},
           "accounts": {"mm1": {"marketplace": "megamarket", "base_url": running.url,
                                "credentials": dict(running.credentials),
                                "options": {"merchant_id": running.app.merchant_id,
                                            "shipping_point": running.app.shipping_point}}}}
    return running, raw, db


def test_reports_page_api_and_cli_say_megamarket_has_no_report(mm_cloud, tmp_path, capsys) -> None:
    from cloud_sync.access import users
    from cloud_sync.cli import money

    from ..ui.conftest import form_token

    running, raw, db = mm_cloud
    conn = open_db(db)
    users.add_user(conn, "olga", "owner password 1", "owner")
    conn.close()
    cfg = parse_config(raw)
    app = create_app(cfg, adapters={"mm1": open_account(mm_account(running))})
    client = app.test_client()
    page = client.get("/login")
    client.post("/login", data={"name": "olga", "password": "owner password 1", "csrf_token": form_token(page.text),
                                "next": "/reports"})
    form = client.get("/reports")
    answer = client.post("/reports", data={"csrf_token": form_token(form.text), "account": "mm1",
                                           "from": "2026-11-01", "to": "2026-11-30"}, follow_redirects=True)
    assert 'id="err-account"' in answer.text and "Мегамаркет не отдаёт отчёт о реализации" in answer.text
    assert "not supported" not in answer.text
    api = client.get("/api/reports/commission?account=mm1&from=2026-11-01&to=2026-11-30")
    assert api.status_code == 409 and "Мегамаркет не отдаёт отчёт о реализации" in json.dumps(api.json,
                                                                                              ensure_ascii=False)
    cfg_file = tmp_path / "cloud.toml"
    cfg_file.write_text(_toml(raw), encoding="utf-8")
    code = money.sync_reports(["--config", str(cfg_file), "--account", "mm1", "--from", "2026-11-01",
                               "--to", "2026-11-30"])
    out = capsys.readouterr()
    assert code == 0 and "Мегамаркет не отдаёт отчёт о реализации" in out.out and "error" not in out.err


def _toml(raw: dict) -> str:
    acc = raw["accounts"]["mm1"]
    creds = ", ".join(f'"{k}" = "{v}"' for k, v in acc["credentials"].items())
    opts = ", ".join(f"{k} = {v}" for k, v in acc["options"].items())
    return (f'[cloud]\ndb_path = "{raw["cloud"]["db_path"]}"\n\n[accounts.mm1]\nmarketplace = "megamarket"\n'
            f'base_url = "{acc["base_url"]}"\ncredentials = {{ {creds} }}\noptions = {{ {opts} }}\n')
