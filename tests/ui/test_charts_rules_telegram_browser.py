"""Issue 17's points 4 and 6 as a seller does them, in Russian, in headless Chromium against a cloud served
over HTTP with the Wildberries sandbox behind it (real HTTP): the dashboard for a chosen period, a rule
limited to a category, the rule's page that explains an overlap and confirms a held price document (the
prices reach the sandbox), and a second Telegram chat that takes only new orders, checked with «Проверить»."""

from __future__ import annotations

import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from cloud_sync.access import secrets
from cloud_sync.config import parse_config
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.money import price_list, price_rules
from cloud_sync.orders import intake
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.web.app import create_app
from marketplaces.base import Order, OrderLine
from marketplaces.sandbox.registry import start_sandbox

from .conftest import PASSWORDS, start_db

TOKEN = "123456789:AAF-secret-browser-token-never-shown"


@pytest.fixture
def served(tmp_path, users_db, bot_api_for, monkeypatch):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("no chromium on this machine: make install provides it")
    monkeypatch.setenv(secrets.BOT_TOKEN_ENV, "")
    bot = bot_api_for(TOKEN)
    wb = start_sandbox("wildberries", seed=3, time_scale=60)
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")}, "link": {"enabled": False},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": wb.url,
                                             "credentials": dict(wb.credentials)}}})
    cfg.alerts = AlertsConfig(base_url=bot.url, chat_id="-100123")
    conn = open_db(cfg.db_path)
    adapters = accounts.open_adapters(cfg)
    sync.sync_cards(conn, cfg, adapters)
    price_list.read_prices(conn, "wb1", adapters["wb1"])
    now = datetime.now(UTC)
    intake.ingest(conn, cfg, [Order(native_id=f"N{i}", marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=now - timedelta(days=d), ship_by=now + timedelta(hours=5),
                                    lines=[OrderLine(card_id="400000001", offer_id="MS-00001", quantity=1,
                                                     price=Decimal("4390"))])
                              for i, d in enumerate((0, 1, 20))])
    app = create_app(cfg, adapters=adapters)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        page = browser.new_page()
        url = f"http://127.0.0.1:{server.server_port}"
        page.goto(f"{url}/login")
        page.fill("input[name=name]", "olga")
        page.fill("input[name=password]", PASSWORDS["olga"])
        page.click("button[type=submit]")
        yield page, url, conn, adapters, wb, bot
        browser.close()
    server.shutdown()
    wb.stop()
    conn.close()


def test_the_dashboard_for_a_chosen_period(served):
    page, url, *_ = served
    with page.expect_navigation():  # each click loads a page: read it once it has loaded, not the one before
        page.click("#nav-dashboard")
    assert page.locator("h1").inner_text().startswith("Сводка")
    with page.expect_navigation():
        page.click("#days-7")
    row = page.locator('#figures tr[data-marketplace="wildberries"] td').all_inner_texts()
    assert row[0] == "Wildberries" and row[1].replace("\u00a0", " ") == "8 780 ₽" and row[3] == "2"
    page.fill("#f-from", (datetime.now(UTC) - timedelta(days=29)).date().isoformat())
    page.fill("#f-to", datetime.now(UTC).date().isoformat())
    with page.expect_navigation():
        page.click("#period-form button[type=submit]")
    row = page.locator('#figures tr[data-marketplace="wildberries"] td').all_inner_texts()
    assert row[1].replace("\u00a0", " ") == "13 170 ₽" and row[3] == "3"
    assert "MS-00001" in page.locator("#top-items").inner_text()
    labels = page.locator("#chart-orders text.x-label").all()
    boxes = [b.bounding_box() for b in labels]
    for a, b in zip(boxes, boxes[1:], strict=False):  # drawn, they never touch
        assert a["x"] + a["width"] < b["x"]
    plot = page.locator("#chart-orders polyline").first.bounding_box()
    legend = page.locator("#chart-orders g.legend").first.bounding_box()
    assert legend["y"] >= plot["y"] + plot["height"]  # under the lines, not over them


def test_a_category_rule_its_overlap_and_its_held_document_confirmed_from_its_page(served):
    page, url, conn, adapters, wb, _bot = served
    page.goto(f"{url}/prices?account=wb1")
    page.fill("#f-rule", "-10% пятница 18:00, вернуть понедельник 09:00")
    page.fill("#f-rule_category", "Футболки")
    page.click("#rule-form button[type=submit]")
    assert "правило добавлено" in page.inner_text("body")
    now = datetime.now(UTC)
    big = price_rules.add_rule(conn, account="wb1", lines=[{"all": True, "percent": "-70"}], name="Распродажа",
                               start=(now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
                               end=(now + timedelta(days=8)).strftime("%Y-%m-%d %H:%M"), tz="UTC")
    events = price_rules.run_due(conn, adapters.__getitem__, now=now)  # the weekend rule applies if it is time
    assert [e.action for e in events if e.rule_id == big.id] == ["held"]
    page.goto(f"{url}/prices?account=wb1")
    page.click("a:has-text(\"-10% пятница 18:00\")")
    body = page.inner_text("body")
    assert "категория «Футболки»: −10 % от цены прайс-листа" in body
    assert "Пересекается с правилом «Распродажа»" in body and "не складываются" in body
    page.click("#rule-overlaps p.overlap a")  # «открыть» the other rule
    assert "Ждёт вашего подтверждения" in page.inner_text("#rule-why")
    page.click("#confirm-held")
    assert "подтверждено: цены отправлены" in page.inner_text("body")
    assert "Действует" in page.inner_text("#rule-why")
    sent = price_list.current_prices(conn, "wb1")
    assert sent["400000001"].price == Decimal(318)  # 1060 − 70 %, through the sandbox over HTTP
    assert price_rules.rule(conn, big.id).state == "active"
    fresh = price_list.read_prices(conn, "wb1", adapters["wb1"])  # the sandbox kept what was sent
    assert fresh and price_list.current_prices(conn, "wb1")["400000001"].price == Decimal(318)


def test_a_second_chat_takes_only_new_orders_and_is_checked(served):
    page, url, conn, _adapters, _wb, bot = served
    page.goto(f"{url}/settings")
    page.fill("#f-bot_token", TOKEN)
    page.click("#f-bot_token >> xpath=ancestor::form//button[@type='submit']")
    page.fill("#f-new_chat_id", "-100777")
    page.fill("#f-new_title", "Склад")
    page.check("#new-chat-form input[value=order_new]")
    page.click("#new-chat-form button[type=submit]")
    assert "в чат Склад идут: новые заказы" in page.inner_text("body")
    page.click('#alert-chats tr[data-chat="-100777"] button.chat-test')
    assert "Telegram ответил: ok" in page.inner_text("body")
    assert bot.requests[-1][1]["chat_id"] == "-100777"
    assert re.search(r"новые заказы", page.locator('#alert-chats tr[data-chat="-100777"]').inner_text())
