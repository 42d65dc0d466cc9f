"""The seller sets a category's fill rules once on the products pages (headless Chromium against a cloud
served over HTTP, the category and its characteristics asked of the WB sandbox over real HTTP), and the
next card of that category is filled by them."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from cloud_sync.catalog import card_fill, nomenclature
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.service import accounts
from cloud_sync.web.app import create_app
from marketplaces.sandbox.registry import start_sandbox

from .conftest import PASSWORDS, start_db


def test_rules_set_on_the_page_fill_the_next_card(tmp_path, users_db) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("no chromium on this machine: make install provides it")
    from playwright.sync_api import sync_playwright

    wb = start_sandbox("wildberries", seed=3, time_scale=60)
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")}, "link": {"enabled": False},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": wb.url,
                                             "credentials": dict(wb.credentials)}}})
    conn = open_db(cfg.db_path)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(
            id="I9", name="Кружка синяя", article="MUG-9", barcodes=["4607000099939"],
            properties={"Цвет": "синий", "Материал": "фарфор", "Объём": "300", "Длина": "10", "Ширина": "10",
                        "Высота": "11", "Вес": "0.5"})])
    adapters = accounts.open_adapters(cfg)
    app = create_app(cfg, adapters=adapters)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium)
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "masha")
            page.fill("input[name=password]", PASSWORDS["masha"])
            page.click("button[type=submit]")
            page.goto(f"{url}/products")
            page.click("#fill-rules-link")
            page.fill("#f-q", "Круж")
            page.click("#category-search button[type=submit]")
            page.click("#categories a")
            page.locator("#rules tr.required").first.wait_for()  # the category's page, loaded (a loaded box is slow)
            rows = page.locator("#rules tr.required td:first-child").all_text_contents()
            assert rows == ["Цвет", "Материал изделия", "Объем"]
            page.fill("input[name=property_14177449]", "Цвет")
            page.fill("input[name=property_12]", "Материал")
            page.click("#save-rules")
            page.wait_for_load_state()
            said = page.locator("p.msg").all_text_contents()
            page.fill("input[name=property_90630]", "Объём")
            page.fill("input[name=value_14177451]", "Россия")
            page.click("#save-rules")
            page.wait_for_load_state()
            said_again = page.locator("p.msg").all_text_contents()
            kept = page.input_value("input[name=property_90630]")
            browser.close()
        assert said == ["Сохранено. Обязательные без правила: Объем"] and said_again == ["Сохранено"]
        assert kept == "Объём"
        adapter = adapters["wb1"]
        new = card_fill.new_card(conn, "wildberries", "I9", "1367", adapter.category_attributes("1367"), price=450)
        assert adapter.create_card(new).state == "pending"
    finally:
        server.shutdown()
        conn.close()
        wb.stop()
    sent = wb.app.card_queue[0][2] if wb.app.card_queue else None
    made = sent or next(c for c in wb.app.cards.values() if c["vendorCode"] == "MUG-9")
    values = {c["id"]: c["value"] for c in made["characteristics"]}
    assert values == {14177449: ["синий"], 12: ["фарфор"], 90630: 300, 14177451: ["Россия"]}
    assert not wb.app.spec_violations

