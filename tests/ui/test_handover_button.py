"""«Передать курьеру» on the orders page: the account's packed parcels go to its courier through the one
hand-over start (cloud_sync.orders.handovers), the site gets its `handover` in the link's outbox, and the
manager reads what started, or why nothing did, in Russian."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud_sync.orders import intake
from marketplaces.base import Order, OrderLine

from .conftest import PASSWORDS, form_token


def _packed(conn, cfg, n: int) -> list[str]:
    now = datetime.now(UTC)
    intake.ingest(conn, cfg, [Order(native_id=f"H{i}", marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=now, ship_by=now + timedelta(hours=5),
                                    lines=[OrderLine(card_id=f"c{i}", offer_id=f"OFF-{i}", quantity=1,
                                                     price=Decimal("990"))]) for i in range(n)])
    keys = [f"wb1:H{i}" for i in range(n)]
    # as the site reports them packed (the pack flow is tested in tests/cloud): on site-1's table
    conn.execute(f"UPDATE orders SET stage='packed', status='packed', site='site-1' WHERE key IN"
                 f" ({','.join('?' * n)})", keys)
    conn.commit()
    return keys


def test_the_manager_starts_a_hand_over_of_an_account(as_user, cloud):
    _, conn, cfg = cloud
    c = as_user("masha")
    page = c.get("/orders").text
    assert 'id="handover-go"' in page and "Передать курьеру" in page
    token = form_token(page)
    r = c.post("/orders/handover", data={"csrf_token": token, "account": "wb1"})
    assert r.status_code == 200 and "нет упакованных посылок" in r.text  # nothing packed yet: said, no error
    keys = _packed(conn, cfg, 2)
    r = c.post("/orders/handover", data={"csrf_token": token, "account": "wb1"})
    assert r.status_code == 200 and "Передача курьеру начата" in r.text and "пункт site-1, 2 шт." in r.text
    (row,) = conn.execute("SELECT peer, payload FROM link_outbox WHERE type='handover'").fetchall()
    body = json.loads(row[1])["body"]
    assert row[0] == "site-1" and sorted(body["order_ids"]) == keys and body["account"] == "wb1"
    r = c.post("/orders/handover", data={"csrf_token": token, "account": "wb1"})
    assert "нет упакованных посылок" in r.text  # the same parcels are not handed over twice


def test_a_hand_over_of_an_unknown_account_is_refused_in_russian(as_user, cloud):
    c = as_user("masha")
    token = form_token(c.get("/orders").text)
    r = c.post("/orders/handover", data={"csrf_token": token, "account": "nope"})
    assert r.status_code == 400 and 'id="err-handover-account"' in r.text and "Выберите кабинет" in r.text
    r = c.post("/orders/handover", data={"account": "wb1"})  # no CSRF token: refused like every form
    assert r.status_code in (400, 403)


def test_the_button_works_in_a_real_browser(cloud):
    """The manager presses «Передать курьеру» in Chromium (the senior packer asks from the packers' page;
    the cloud UI's packer role may not start one)."""
    import threading
    from pathlib import Path

    import pytest
    from werkzeug.serving import make_server

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium: make install provides it")
    from playwright.sync_api import expect, sync_playwright

    app, conn, cfg = cloud
    _packed(conn, cfg, 3)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "masha")
            page.fill("input[name=password]", PASSWORDS["masha"])
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/(attention|orders)$"))  # a manager lands on «Требует внимания»
            page.goto(f"{url}/orders")
            page.select_option("#f-handover-account", "wb1")
            page.click("#handover-go")
            expect(page.locator(".msg.ok")).to_contain_text("Передача курьеру начата")
            expect(page.locator(".msg.ok")).to_contain_text("3 шт.")
            Path("test-artifacts/ui").mkdir(parents=True, exist_ok=True)
            page.screenshot(path="test-artifacts/ui/orders-handover.png")
            browser.close()
    finally:
        server.shutdown()
    assert conn.execute("SELECT COUNT(*) FROM link_outbox WHERE type='handover'").fetchone()[0] == 1


def test_a_packer_of_the_cloud_ui_may_not_start_a_hand_over(as_user, cloud):
    _, conn, cfg = cloud
    _packed(conn, cfg, 1)
    c = as_user("petya")
    assert 'id="handover-go"' not in c.get("/orders").text  # not offered
    r = c.post("/orders/handover", data={"csrf_token": form_token(c.get("/orders").text), "account": "wb1"})
    assert r.status_code == 403
    assert conn.execute("SELECT COUNT(*) FROM link_outbox WHERE type='handover'").fetchone()[0] == 0
