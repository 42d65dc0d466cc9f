"""The orders page's download of every order, and the API of waiting orders (retry now, the seller's
choices), on a real SQLite file through the app."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from openpyxl import load_workbook
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from cloud_sync.access import users
from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature
from cloud_sync.db import transaction
from cloud_sync.orders import intake
from cloud_sync.stock import ledger
from marketplaces.base import Card, Order, OrderLine

from .conftest import PASSWORDS


def _short_order(conn, cfg):
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id="it-1", name="Кружка", article="MS-00011",
                                                           barcodes=["4607000000011"])])
        catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="c1", offer_id="MS-00011",
                                                               barcodes=["4607000000011"])])
        catalog.auto_link(conn)
        ledger.set_balances(conn, "main", {"it-1": 1})
    intake.ingest(conn, cfg, [Order(native_id="77", marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=datetime.now(UTC),
                                    lines=[OrderLine(card_id="c1", offer_id="MS-00011", quantity=2,
                                                     price=Decimal("100"))],
                                    ship_by=datetime.now(UTC) + timedelta(hours=3))])


def test_the_orders_page_offers_every_order_as_csv_and_xlsx(as_user, cloud):
    app, conn, cfg = cloud
    _short_order(conn, cfg)
    c = as_user("masha")
    page = c.get("/orders")
    assert 'id="export-csv"' in page.text and 'id="export-xlsx"' in page.text
    r = c.get("/orders/export?format=csv")
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment; filename=orders-")
    assert r.data.startswith(b"\xef\xbb\xbf") and "не хватает: артикул MS-00011 «Кружка», есть 1, нужно 2" in \
        r.data.decode("utf-8-sig")
    x = c.get("/orders/export?format=xlsx")
    ws = load_workbook(io.BytesIO(x.data)).active
    assert ws.cell(2, 3).value == "77" and isinstance(ws.cell(2, 6).value, datetime)
    assert c.get("/orders/export?format=pdf").status_code == 400
    packer = as_user("petya")
    shown = packer.get("/orders")
    assert shown.status_code == 200 and 'id="export-csv"' not in shown.text
    assert packer.get("/orders/export?format=csv").status_code == 403


def test_retry_now_and_the_choices_over_the_api(cloud):
    app, conn, cfg = cloud
    _short_order(conn, cfg)
    token = users.new_token(conn, "masha", "test")
    c = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    r = c.post("/api/orders/wb1:77/retry", headers=auth)
    assert r.status_code == 200 and r.json == {"order": "wb1:77", "served": False,
                                               "reason": "не хватает: артикул MS-00011 «Кружка», есть 1, нужно 2"}
    ch = c.get("/api/orders/wb1:77/choices", headers=auth).json
    assert ch["waiting"] is True and ch["warehouses"] == []
    assert c.post("/api/orders/wb1:nope/retry", headers=auth).status_code == 404
    bad = c.post("/api/orders/wb1:77/serve-from", headers=auth, json={"warehouse": "nowhere"})
    assert bad.status_code == 422 and "нет такого склада" in bad.json["error"]
    with transaction(conn):
        ledger.set_balances(conn, "main", {"it-1": 2})
    r = c.post("/api/orders/wb1:77/retry", headers=auth)
    assert r.json["served"] is True
    assert c.get("/api/orders/wb1:77", headers=auth).json["stage"] == "reserved"


def test_a_manager_downloads_every_order_from_the_orders_page_in_the_browser(cloud, tmp_path):
    """Headless Chromium: log in, open Orders, click «XLSX»; the file saved is the spreadsheet of every order."""
    app, conn, cfg = cloud
    _short_order(conn, cfg)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            try:
                page = browser.new_page(accept_downloads=True)
                page.goto(f"{url}/login")
                page.fill("#name", "masha")
                page.fill("#password", PASSWORDS["masha"])
                page.click("#login")
                page.goto(f"{url}/orders")
                with page.expect_download() as info:
                    page.click("#export-xlsx")
                saved = tmp_path / info.value.suggested_filename
                info.value.save_as(saved)
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert saved.name.startswith("orders-") and saved.suffix == ".xlsx"
    ws = load_workbook(saved).active
    assert ws.cell(2, 1).value == "wildberries" and ws.cell(2, 3).value == "77"
    assert "не хватает: артикул MS-00011" in ws.cell(2, 13).value
