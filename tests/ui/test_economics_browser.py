"""The prices page's «Прибыль после удержаний» column read in real headless Chromium: the profit after the
marketplace's fees, its parts, the estimated ones marked, in Russian (issue 16 point 4)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.money import economics, price_list
from cloud_sync.schema import open_db
from cloud_sync.web.app import create_app
from marketplaces.base import Card, SaleFees

from .conftest import PASSWORDS, start_db

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser]


def test_the_economics_column_in_a_browser(tmp_path, users_db) -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "pricing": {"estimate_logistics": 80},
                        "accounts": {"oz1": {"marketplace": "ozon", "base_url": "http://127.0.0.1:9",
                                             "credentials": {"Client-Id": "1", "Api-Key": "x"}}}})
    conn = open_db(cfg.db_path)
    with transaction(conn):
        nom.upsert_items(conn, [nom.Item(id="i1", name="Кружка", article="MS-1")])
        nom.upsert_price_type(conn, "cost", "Себестоимость", is_cost=True)
        nom.set_item_price(conn, "i1", "cost", Decimal(500))
        catalog.import_cards(conn, "oz1", "ozon", [Card("11", "MS-1", title="Кружка"), Card("12", "MS-2", title="Чехол")])
        catalog.link(conn, "oz1", "11", "i1")
        price_list.record_read_prices(conn, "oz1", {"11": ("MS-1", price_list.Price(Decimal(1000))),
                                                     "12": ("MS-2", price_list.Price(Decimal(300)))})
    economics.record(conn, "oz1", [SaleFees("11", commission_percent=Decimal(15), acquiring=Decimal(15))],
                     {"11": Decimal(1000)})
    server = make_server("127.0.0.1", 0, create_app(cfg), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page()
            page.goto(url + "/login")
            page.fill("input[name=name]", "masha")
            page.fill("input[name=password]", PASSWORDS["masha"])
            page.click("button[type=submit]")
            page.goto(url + "/prices?account=oz1")
            cell = page.locator('tr[data-offer="MS-1"] td.economics').inner_text()
            # 1000 − 150 − 80 (estimated, from the settings) − 15 − 500 = 255 (25.5 %)
            assert "255" in cell and "25,5" in cell, cell
            assert "комиссия 150" in cell.replace("\u00a0", " ") and "логистика 80" in cell.replace("\u00a0", " ")
            assert "*" in cell.split("логистика")[1].split("·")[0]  # the estimate is marked
            assert "*" not in cell.split("комиссия")[1].split("·")[0]  # Ozon's own figure is not
            other = page.locator('tr[data-offer="MS-2"] td.economics').inner_text()
            assert "себестоимости" in other  # no 1C cost: no profit claimed
            assert page.locator("#economics-note").is_visible()
            browser.close()
    finally:
        server.shutdown()
        conn.close()
