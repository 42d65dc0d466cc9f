"""Defects found by driving the manager UI end to end, each held by a test: the report download is the
report on screen (no second, rate-limited marketplace call), the health check tells strangers nothing,
the sites API tells what the Sites page tells, and the price editor's row count cannot break or stall it."""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

from openpyxl import load_workbook

from cloud_sync.access import users
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.web.app import create_app
from marketplaces.base import RealizationReport, ReportLine

from .conftest import form_token, login, start_db


class CountingReports:
    """An account whose realization report is counted: WB answers it about once a minute."""

    name = "wildberries"

    def __init__(self) -> None:
        self.calls = 0

    def realization_report(self, period_from: date, period_to: date, *, progress=None) -> RealizationReport:
        self.calls += 1
        line = ReportLine(kind="sale", offer_id="ART-1", card_id="101", quantity=2, revenue=Decimal("2000"),
                          fee=Decimal("300"), logistics=Decimal("50"), other=Decimal("0"), to_pay=Decimal("1650"))
        return RealizationReport(account="wb1", period_from=period_from, period_to=period_to, lines=[line],
                                 native_totals={"revenue": Decimal("2000"), "to_pay": Decimal("1600"),
                                                "commission_ours": Decimal("1")})

    def close(self) -> None:
        pass


def test_the_report_downloads_are_the_report_on_screen_without_asking_the_marketplace_again(cloud):
    _, conn, cfg = cloud
    market = CountingReports()
    app = create_app(cfg, adapters={"wb1": market})
    c = app.test_client()
    assert login(c, "masha").status_code == 302
    token = form_token(c.get("/reports").text)
    page = c.post("/reports", data={"csrf_token": token, "account": "wb1", "from": "2026-11-01", "to": "2026-11-07"},
                  follow_redirects=True)
    assert page.status_code == 200 and market.calls == 1
    links = dict(re.findall(r'id="dl-(xlsx|csv)" href="([^"]+)"', page.text))
    xlsx = c.get(links["xlsx"].replace("&amp;", "&"))
    assert xlsx.status_code == 200 and xlsx.headers["Content-Disposition"].endswith(
        "commission-wb1-2026-11-01-2026-11-07.xlsx")
    csv = c.get(links["csv"].replace("&amp;", "&"))
    assert csv.status_code == 200
    assert market.calls == 1  # the downloads asked the marketplace nothing
    book = load_workbook(io.BytesIO(xlsx.data), read_only=True)
    recon = {r[0]: r[1:] for r in book["Сверка"].iter_rows(values_only=True)}
    assert recon["Выручка"][3] == "сходится" and recon["К перечислению"][3] == "расхождение"  # as on the page
    assert recon["commission_ours"][3] == "не сравнивается"
    assert "РАСХОДИТСЯ" in csv.data.decode("utf-8-sig")  # the preamble says the report disagrees
    assert c.get("/reports/commission/nope.xlsx").status_code == 404
    packer = app.test_client()
    login(packer, "petya")
    assert packer.get(links["csv"].replace("&amp;", "&")).status_code == 403


def test_the_open_health_check_tells_a_stranger_only_that_the_cloud_lives(cloud):
    app, conn, _ = cloud
    stranger = app.test_client()
    r = stranger.get("/api/health")
    assert r.status_code == 200 and r.get_json() == {"ok": True}
    assert "wb1" not in r.text  # no account names, no link, no jobs and their last errors
    token = users.new_token(conn, "masha", "monitor")
    r = stranger.get("/api/health", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.get_json()["accounts"] == ["wb1"] and "jobs" in r.get_json()
    packer = users.new_token(conn, "petya", "packer's")  # a packer: alive or not, nothing more (issue 21)
    assert stranger.get("/api/health", headers={"Authorization": f"Bearer {packer}"}).get_json() == {"ok": True}


def test_the_price_editor_takes_a_broken_or_huge_row_count_as_a_plain_form(as_user):
    c = as_user("masha")
    token = form_token(c.get("/prices?account=wb1").text)
    for rows in ("abc", "-1", "99999999999"):
        r = c.post("/prices/preview", data={"csrf_token": token, "account": "wb1", "rows": rows})
        assert r.status_code == 400 and 'id="err-line_0"' in r.text, rows  # "fill in at least one line"


def test_the_sites_api_tells_what_the_sites_page_tells(tmp_path, users_db):
    import json
    import time

    from cloud_sync.config import parse_config
    from cloud_sync.schema import open_db
    from sitelink import store

    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "sites": {"s1": {"name": "Склад", "warehouses": ["wh1"]}}})
    conn = open_db(cfg.db_path)
    store.ensure_schema(conn)
    now = time.time()
    conn.execute("INSERT INTO link_peers(peer, state, state_at, last_seen) VALUES ('s1', 'online', ?, ?)", (now, now))
    printer = {"kind": "printer", "name": "zebra", "online": False, "detail": "no paper"}
    conn.execute("INSERT INTO sites(id, last_seen, devices) VALUES ('s1', NULL, ?)", (json.dumps([printer]),))
    conn.commit()
    app = create_app(cfg)
    token = users.new_token(conn, "petya", "handheld")
    site = app.test_client().get("/api/sites", headers={"Authorization": f"Bearer {token}"}).get_json()[0]
    assert site["id"] == "s1" and site["online"] is True and site["last_seen"]  # the link saw it just now
    assert site["devices"] == [printer]  # a list, not a JSON text inside the JSON
    conn.close()


def test_a_manager_sees_the_held_stock_pushes_on_the_stocks_page_and_confirms_them(as_user, cloud):
    import time

    from cloud_sync.stock import push as stock_push

    _, conn, _ = cloud
    now = time.time()
    hold = conn.execute("INSERT INTO stock_push_holds(account, reason, cards, listed, created_ts)"
                        " VALUES ('wb1', 'would zero 3 of 4 listed cards (75% > 20%)', 3, 4, ?)", (now,)).lastrowid
    conn.executemany("INSERT INTO stock_push_queue(account, card_id, warehouse_id, offer_id, item_id, quantity,"
                     " priority, cause, state, hold_id, next_try, queued_ts, origin_ts)"
                     " VALUES ('wb1', ?, 'w1', ?, 'I1', 0, 0, 'source', 'held', ?, ?, ?, ?)",
                     [(f"c{i}", f"OFF-{i}", hold, now, now, now) for i in range(3)])
    conn.commit()
    packer = as_user("petya")
    page = packer.get("/stocks").text
    assert 'id="holds"' in page and "75% &gt; 20%" in page and "Confirm" not in page  # seen, not confirmable
    r = packer.post(f"/stocks/holds/{hold}/confirm", data={"csrf_token": form_token(page)})
    assert r.status_code == 403 and stock_push.holds(conn)[0]["held"] == 3
    manager = as_user("masha")
    page = manager.get("/stocks").text
    form = re.search(r'<form method="post" action="([^"]+)" class="confirm-hold">', page)
    assert form is not None, "the held push can be confirmed from the page"
    r = manager.post(form.group(1), data={"csrf_token": form_token(page)})
    assert r.status_code == 200 and "3 остатка уходят сейчас" in r.text
    assert stock_push.holds(conn) == [] and stock_push.pending(conn) == {"pending": 3}
    assert conn.execute("SELECT confirmed_by FROM stock_push_holds").fetchone()[0] == "masha"
    assert 'id="holds"' not in r.text
    assert manager.post("/stocks/holds/999/confirm", data={"csrf_token": form_token(page)}).status_code == 404


def test_an_owner_locks_a_user_out_changes_roles_and_cannot_lose_the_last_owner(as_user, cloud):
    _, conn, _ = cloud
    packer = as_user("petya")
    token = users.new_token(conn, "petya", "handheld")
    bearer = {"Authorization": f"Bearer {token}"}
    assert packer.get("/orders").status_code == 200
    manager = as_user("masha")
    r = manager.post("/settings/users/change", data={"csrf_token": form_token(manager.get("/orders").text),
                                                       "user": "petya", "action": "disable"})
    assert r.status_code == 403  # a manager may not
    owner = as_user("olga")
    csrf = form_token(owner.get("/settings").text)
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "petya", "action": "disable"})
    assert r.status_code == 200 and "petya заблокирован" in r.text
    assert packer.get("/orders").status_code == 302  # the open session ended at once
    assert owner.application.test_client().get("/api/orders", headers=bearer).status_code == 401
    assert login(owner.application.test_client(), "petya").status_code == 401
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "petya", "action": "enable"})
    assert "petya снова может входить" in r.text
    assert owner.application.test_client().get("/api/orders", headers=bearer).status_code == 200
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "petya", "action": "role",
                                                   "role": "manager"})
    assert r.status_code == 200 and users.get_user(conn, "petya").role == "manager"
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "olga", "action": "role",
                                                   "role": "manager"})
    assert r.status_code == 400 and "последний владелец" in r.text and users.get_user(conn, "olga").role == "owner"
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "olga", "action": "disable"})
    assert r.status_code == 400 and users.get_user(conn, "olga") is not None
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "ghost", "action": "disable"})
    assert r.status_code == 400 and "нет пользователя" in r.text


def test_deadlines_are_shown_in_the_managers_time_zone_not_as_bare_utc(cloud):
    """A Moscow seller read 20:30 UTC as 20:30 their time: three hours late for the assembly deadline."""
    import shutil
    import threading
    from datetime import UTC, datetime

    import pytest
    from werkzeug.serving import make_server

    from cloud_sync.orders import intake
    from marketplaces.base import Order, OrderLine

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("no chromium on this machine: make install provides it")
    from playwright.sync_api import sync_playwright

    app, conn, cfg = cloud
    due = datetime(2026, 11, 27, 20, 30, tzinfo=UTC)
    intake.ingest(conn, cfg, [Order(native_id="D1", marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=due, ship_by=due,
                                    lines=[OrderLine(card_id="c", offer_id="OFF", quantity=1, price=Decimal(1))])])
    page_html = app.test_client()
    login(page_html, "petya")
    # without scripts too: in the [ui] time zone (Moscow by default), written by Babel for the locale
    assert "27.11.2026, 23:30" in page_html.get("/orders").text
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium)
            page = browser.new_context(timezone_id="Europe/Moscow", locale="ru-RU").new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "petya")
            page.fill("input[name=password]", "packer password 1")
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/orders")
            shown = page.locator("#orders time.deadline").first.text_content()
            page.goto(f"{url}/orders/wb1:D1")
            detail = page.locator("time.deadline").text_content()
            browser.close()
    finally:
        server.shutdown()
    assert shown == detail == "27.11.2026, 23:30", shown  # Moscow is UTC+3
    assert console == []  # no script error, no missing file (the browser's icon request was a 404)


def test_a_missing_page_or_route_answers_in_the_uis_own_words(as_user, cloud):
    c = as_user("masha")
    r = c.get("/orders/wb1:no-such-order")
    assert r.status_code == 404 and 'id="refused"' in r.text and "Выйти" in r.text  # inside the UI, signed in
    r = c.get("/api/no-such-thing")
    assert r.status_code == 404 and r.is_json and r.get_json()["error"].startswith("Not Found")
    r = c.put("/api/orders", headers={"X-CSRF-Token": form_token(c.get("/orders").text)})
    assert r.status_code == 405 and r.is_json


def test_api_calls_with_wrongly_typed_fields_are_refused_with_a_reason_and_change_nothing(cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I1', 'ART-1', 'Кружка')")
    conn.commit()
    api = cloud[0].test_client()
    auth = {"Authorization": f"Bearer {users.new_token(conn, 'olga', 'script')}"}
    calls = [("/api/cards/create", {"account": "wb1", "item_id": "I1", "subject_id": "abc"}),
             ("/api/cards/create", {"account": "wb1", "item_id": "I1", "subject_id": 5, "price": "lots"}),
             ("/api/cards/visibility", {"account": ["wb1"], "card_ids": ["1"], "visible": True}),
             ("/api/cards/visibility", {"account": "wb1", "card_ids": "123", "visible": False}),
             ("/api/handovers", {"account": ["wb1"]}),
             ("/api/orders/wb1:1/cancel", ["not", "an", "object"]),
             ("/api/prices/preview", {"account": "wb1", "lines": [{"item": "ART-1", "price": "1e400"}]}),
             ("/api/stock/balances", {"warehouse": "mian", "balances": {"I1": 5}}),  # a typo of a warehouse
             ("/api/stock/balances", {"warehouse": "main", "balances": {"I-typo": 5}})]
    for path, body in calls:
        r = api.post(path, json=body, headers=auth)
        assert 400 <= r.status_code < 500 and r.is_json and r.get_json()["error"], (path, body, r.status_code)
    assert conn.execute("SELECT COUNT(*) FROM stock_levels").fetchone()[0] == 0
    assert api.post("/api/stock/balances", json={"warehouse": "main", "balances": {"I1": 5}},
                    headers=auth).get_json() == {"moves": 1}


def test_an_owner_sets_a_users_new_password_and_stored_dates_read_as_dates(as_user, cloud):
    _, conn, _ = cloud
    manager = as_user("masha")
    owner = as_user("olga")
    csrf = form_token(owner.get("/settings").text)
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "masha", "action": "password",
                                                   "new_password": "short"})
    assert r.status_code == 400 and "не короче 10 символов" in r.text
    assert manager.get("/orders").status_code == 200  # nothing changed
    r = owner.post("/settings/users/change", data={"csrf_token": csrf, "user": "masha", "action": "password",
                                                   "new_password": "a brand new secret"})
    assert r.status_code == 200 and "новый пароль для masha задан" in r.text and "a brand new secret" not in r.text
    assert manager.get("/orders").status_code == 302  # her old session ended
    fresh = owner.application.test_client()
    assert login(fresh, "masha").status_code == 401
    assert login(fresh, "masha", "a brand new secret").status_code == 302
    r = owner.post("/settings/telegram", data={"csrf_token": csrf, "bot_token": "123456:" + "A" * 35})
    assert r.status_code == 200
    when = re.search(r'id="bot-set">([^<]*)<', r.text)
    assert when and re.fullmatch(r"\d\d\.\d\d\.\d{4}, \d\d:\d\d", when.group(1)), when  # one date format


def test_products_are_found_by_article_title_or_barcode(as_user, cloud):
    from cloud_sync.catalog import cards as catalog
    from marketplaces.base import Card

    _, conn, _ = cloud
    catalog.import_cards(conn, "wb1", "wildberries", [
        Card(native_id="101", offer_id="MUG-RED", title="Кружка красная", barcodes=["4600000000017"]),
        Card(native_id="102", offer_id="SOCK-1", title="Носки спортивные", barcodes=["4600000000024"])])
    c = as_user("masha")

    def shown(q: str) -> list[str]:
        return re.findall(r'name="card_ids" value="wb1\|(\d+)"', c.get("/products", query_string={"q": q}).text)

    assert sorted(shown("")) == ["101", "102"]
    assert shown("mug") == ["101"] and shown("носки") == ["102"] and shown("4600000000024") == ["102"]
    assert shown("nothing like it") == []
    assert 'value="mug"' in c.get("/products?q=mug").text  # the box keeps what was typed


def test_the_price_list_of_a_big_account_comes_a_page_at_a_time_and_can_be_searched(as_user, cloud):
    from cloud_sync.catalog import cards as catalog
    from marketplaces.base import Card

    _, conn, _ = cloud
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id=str(1000 + i), offer_id=f"ART-{i:04d}",
                                                           title=f"Товар {i}") for i in range(120)])
    c = as_user("masha")
    first = c.get("/prices?account=wb1").text
    rows = re.findall(r'<tr data-offer="(ART-\d+)">', first)
    assert len(rows) == 50 and "120 карточек" in first  # not every card of the account in one page
    nxt = re.search(r'href="(/prices\?[^"]+)" id="next-page"', first).group(1).replace("&amp;", "&")
    second = re.findall(r'<tr data-offer="(ART-\d+)">', c.get(nxt).text)
    assert len(second) == 50 and not set(second) & set(rows)
    found = re.findall(r'<tr data-offer="(ART-\d+)">', c.get("/prices?account=wb1&q=ART-0077").text)
    assert found == ["ART-0077"]
    assert re.findall(r'<tr data-offer="(ART-\d+)">', c.get("/prices?account=wb1&sort=-offer_id").text)[:2] == [
        "ART-0119", "ART-0118"]
    # the price lines' field offers the account's cards as typed, not every card written into the page
    assert '<datalist id="offers"></datalist>' in first and 'data-suggest="cards"' in first
    offered = c.get("/prices/cards/suggest?account=wb1&q=ART-011").get_json()
    assert [o["article"] for o in offered] == [f"ART-{i:04d}" for i in range(110, 120)]
    assert offered[0]["name"] == "Товар 110"
    assert c.get("/prices/cards/suggest?account=nope&q=ART").get_json() == []


def test_an_owner_revokes_a_users_leaked_api_tokens_from_settings(as_user, cloud):
    app, conn, _ = cloud
    token = users.new_token(conn, "petya", "lost handheld")
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/orders", headers=bearer).status_code == 200
    owner = as_user("olga")
    page = owner.get("/settings").text
    assert "1 API-токен" in page and token not in page
    r = owner.post("/settings/users/change", data={"csrf_token": form_token(page), "user": "petya",
                                                   "action": "revoke"})
    assert r.status_code == 200 and "отозван 1 API-токен пользователя petya" in r.text
    assert app.test_client().get("/api/orders", headers=bearer).status_code == 401
    assert users.get_user(conn, "petya") is not None  # the user stays; only the tokens went


def test_an_order_sent_one_line_per_unit_reads_as_one_article_times_its_quantity(as_user, cloud):
    """Megamarket sends a line per unit: two mugs were shown as "MUG × 1, MUG × 1"."""
    from datetime import UTC, datetime

    from cloud_sync.orders import intake
    from marketplaces.base import Order, OrderLine

    _, conn, cfg = cloud
    unit = OrderLine(card_id="c1", offer_id="MUG", quantity=1, price=Decimal(500))
    intake.ingest(conn, cfg, [Order(native_id="M1", marketplace="megamarket", account="wb1", native_status="NEW",
                                    created_at=datetime.now(UTC), lines=[unit, unit,
                                    OrderLine(card_id="c2", offer_id="CUP", quantity=3, price=Decimal(90))])])
    cell = re.search(r"<td>([^<]*MUG[^<]*)</td>", as_user("masha").get("/orders").text).group(1)
    assert cell == "CUP × 3, MUG × 2"


def test_an_order_past_its_deadline_and_still_ours_is_marked_late(as_user, cloud):
    from datetime import UTC, datetime, timedelta, timezone

    from cloud_sync.orders import intake
    from marketplaces.base import Order, OrderLine

    _, conn, cfg = cloud
    now = datetime.now(UTC)
    line = OrderLine(card_id="c", offer_id="OFF", quantity=1, price=Decimal(1))
    intake.ingest(conn, cfg, [Order(native_id=n, marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=now, ship_by=now + shift, lines=[line])
                              for n, shift in (("OVERDUE", timedelta(hours=-2)), ("SOON", timedelta(hours=2)),
                                               ("GONE", timedelta(hours=-3)))])
    conn.execute("UPDATE orders SET status='handed_over' WHERE native_id='GONE'")
    conn.commit()
    page = as_user("masha").get("/orders").text
    late = re.findall(r'<tr class="st-\w+ late"[^>]*>.*?<a href="/orders/[^"]+">(\w+)</a>', page, re.S)
    assert late == ["OVERDUE"]  # not the one due later, not the one already handed over
    assert page.count('class="late-flag"') == 1
    # "only late": what is burning, whatever zone the marketplace wrote the deadline in
    conn.execute("UPDATE orders SET ship_by=? WHERE native_id='SOON'",
                 ((now + timedelta(hours=2)).astimezone(timezone(timedelta(hours=3))).isoformat(),))
    conn.commit()
    shown = re.findall(r'<a href="/orders/[^"]+">(\w+)</a>', as_user("masha").get("/orders?late=1").text)
    assert shown == ["OVERDUE"]
    r = as_user("masha").get("/orders?status=burning")  # no such status: said, not an empty list
    assert r.status_code == 400 and 'id="err-status"' in r.text and "нет статуса &#39;burning&#39;" in r.text


def test_before_the_first_user_a_request_passed_on_by_a_local_reverse_proxy_is_not_let_in(tmp_path):
    """Behind nginx on the same box every visitor arrives from 127.0.0.1: only this box's own calls are."""
    from cloud_sync.config import parse_config

    c = create_app(parse_config({"cloud": {"db_path": str(tmp_path / "fresh.sqlite")}})).test_client()
    assert c.get("/api/summary").status_code == 200  # this box itself, no user yet
    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
                   {"Forwarded": "for=203.0.113.9;proto=https"}):
        assert c.get("/api/summary", headers=header).status_code == 401, header
        assert c.post("/api/settings/secrets", json={"name": "telegram/bot_token", "fields": {"value": "x"}},
                      headers=header).status_code == 401


def test_a_critical_stock_minimum_is_set_by_the_article_a_seller_knows(as_user, cloud):
    _, conn, _ = cloud
    conn.executemany("INSERT INTO items(id, article, name) VALUES (?,?,?)",
                     [("0d1f-guid-1", "MUG-RED", "Кружка красная"), ("0d1f-guid-2", "TWIN", "Один"),
                      ("0d1f-guid-3", "TWIN", "Другой")])
    conn.commit()
    owner = as_user("olga")
    csrf = form_token(owner.get("/settings").text)
    r = owner.post("/settings/minimum", data={"csrf_token": csrf, "item": "MUG-RED", "minimum": "3"})
    assert r.status_code == 200 and "критический остаток MUG-RED: меньше 3" in r.text
    assert [tuple(r) for r in conn.execute("SELECT item_id, min_quantity FROM stock_minimums")] == [("0d1f-guid-1", 3)]
    assert re.search(r"<td>MUG-RED</td><td>Кружка красная</td>", r.text)  # listed by article and name
    r = owner.post("/settings/minimum", data={"csrf_token": csrf, "item": "TWIN", "minimum": "1"})
    assert r.status_code == 400 and "подходит несколько товаров 1С" in r.text
    assert 'id="f-item" type="text" value="TWIN"' in r.text  # what was typed stays, beside its error
    r = owner.post("/settings/minimum", data={"csrf_token": csrf, "item": "0d1f-guid-3", "minimum": "1"})
    assert r.status_code == 200  # the id still works
    r = owner.post("/settings/minimum", data={"csrf_token": csrf, "item": "Кружка красная", "minimum": "4"})
    assert r.status_code == 200 and conn.execute(  # and so does the 1C name
        "SELECT min_quantity FROM stock_minimums WHERE item_id='0d1f-guid-1'").fetchone()[0] == 4


def test_a_price_rule_is_switched_only_by_on_or_off(as_user, cloud):
    from cloud_sync.money import price_rules

    _, conn, _ = cloud
    rule = price_rules.add_rule(conn, account="wb1", text="-10% Friday 18:00, back Monday 09:00")
    c = as_user("masha")
    csrf = form_token(c.get("/prices?account=wb1").text)
    assert c.post(f"/prices/rules/{rule.id}/of", data={"csrf_token": csrf}).status_code == 404  # a typo
    assert price_rules.rules(conn, "wb1")[0].enabled
    assert c.post(f"/prices/rules/{rule.id}/off", data={"csrf_token": csrf}).status_code == 200
    assert not price_rules.rules(conn, "wb1")[0].enabled


def test_the_revenue_chart_leaves_out_cancelled_orders(as_user, cloud):
    from datetime import UTC, datetime

    from cloud_sync.orders import intake
    from marketplaces.base import Order, OrderLine

    _, conn, cfg = cloud
    now = datetime.now(UTC)
    intake.ingest(conn, cfg, [Order(native_id=n, marketplace="wildberries", account="wb1", native_status="new",
                                    created_at=now, lines=[OrderLine(card_id="c", offer_id="OFF", quantity=1,
                                                                     price=Decimal(price))])
                              for n, price in (("KEPT", 1000), ("CANCELLED", 5000))])
    conn.execute("UPDATE orders SET status='cancelled' WHERE native_id='CANCELLED'")
    conn.commit()
    page = as_user("masha").get("/reports").text

    def top(title: str) -> str:  # the chart's highest axis label: its largest value
        svg = re.search(rf'aria-label="{title}">(.*?)</svg>', page, re.S).group(1)
        return re.findall(r'text-anchor="end">([^<]+)</text>', svg)[2]

    assert top("Заказы по площадкам по дням") == "2"  # both were ordered
    assert top("Выручка по площадкам по дням") == "1\xa0000\xa0₽"  # only the one not cancelled brought money


def test_any_user_changes_their_own_password(as_user, cloud):
    app = cloud[0]
    here, phone = as_user("petya"), as_user("petya")  # a packer, logged in twice
    page = here.get("/password")
    assert page.status_code == 200 and 'id="my-password"' in page.text
    csrf = form_token(page.text)

    def change(current: str, new: str, again: str):
        return here.post("/password", data={"csrf_token": csrf, "current": current, "new_password": new,
                                            "again": again})

    r = change("not my password", "fresh password 22", "fresh password 22")
    assert r.status_code == 400 and 'id="err-current"' in r.text
    r = change("packer password 1", "fresh password 22", "fresh password 23")
    assert r.status_code == 400 and 'id="err-again"' in r.text
    r = change("packer password 1", "short", "short")
    assert r.status_code == 400 and 'id="err-new_password"' in r.text
    assert login(app.test_client(), "petya").status_code == 302  # nothing changed yet
    r = change("packer password 1", "fresh password 22", "fresh password 22")
    assert r.status_code == 200 and "пароль изменён" in r.text and "fresh password 22" not in r.text
    assert here.get("/orders").status_code == 200  # this browser stays in
    assert phone.get("/orders").status_code == 302  # the other session ended
    assert login(app.test_client(), "petya").status_code == 401
    assert login(app.test_client(), "petya", "fresh password 22").status_code == 302
    assert here.post("/logout", data={"csrf_token": form_token(r.text)}).status_code == 302  # its new CSRF works


def test_the_telegram_settings_read_as_words_not_as_a_python_dict(as_user, cloud):
    _, _, cfg = cloud
    cfg.alerts = AlertsConfig(chat_id="-100123", base_url="https://bot.example", min_interval_s=1)
    page = as_user("olga").get("/settings").text
    shown = re.search(r'<p id="alerts-cfg">(.*?)</p>', page, re.S).group(1)
    assert "Чат: -100123" in shown and "Адрес API бота: https://bot.example" in shown
    assert "{" not in shown and "&#39;" not in shown
