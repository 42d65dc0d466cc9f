"""Every manager page read in real headless Chromium, as a seller reads it: in Russian by default (no
visible Latin word outside a short list of brands, units and codes), in English once the user switches
(no Cyrillic word but the seller's own data), and on a 390 px phone screen without sideways scrolling
(the navigation folds into a menu button).

The pages are enumerated from the app's page blueprints (a new page without a sample address here fails
the test), over one database with something on every page: orders of all four marketplaces (one late, one
with an unlinked card, one failed marketplace call), linked and unlinked cards, stock, a zero-guard hold,
a price document waiting for a confirmation, a price rule, an offline site.

Playwright drives Debian's chromium (/usr/bin/chromium); screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.money import economics, price_list, price_rules
from cloud_sync.orders import intake
from cloud_sync.schema import open_db
from cloud_sync.stock import fbo, ledger
from cloud_sync.web.app import PAGES, create_app
from marketplaces.base import Card, Order, OrderLine, SaleFees, StockLevel

from .conftest import start_db

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
pytestmark = [pytest.mark.browser]

MPS = {"wb1": "wildberries", "oz1": "ozon", "ym1": "yandex_market", "mm1": "megamarket"}
# What may stay in Latin letters on a Russian page: brands, units and codes a seller writes that way.
LATIN_ALLOWED = {"marketsync", "wildberries", "ozon", "telegram", "fbs", "fbo", "xlsx", "csv", "api", "http",
                 "english", "push"}  # push: Ozon's cabinet names its tab «Push-уведомления»
# The seller's own data the test typed in (user names, warehouse and site names): not the UI's words.
DATA_WORDS = {"olga", "masha", "petya", "main", "north"}
# the switch back names its language in that language; two marketplaces' brands are written in Cyrillic
CYRILLIC_ALLOWED = {"русский", "яндекс", "маркет", "мегамаркет"}
SAMPLES = {  # the arguments of the pages whose address has them
    "orders.order": {"key": "wb1:N0"},
    "prices.document": {"doc_id": "doc-1"},
    "rules.page": {"rule_id": "rule-1"},
    "reports.download": None, "reports.saved_download": None,  # files (XLSX/CSV), not pages
    "reports.build_progress": None,  # JSON for the report's progress bar
    "orders.download": None,
    "ui.suggest_items": None,  # JSON for the fields that offer items as you type
    "prices.suggest_cards": None,  # JSON for the price lines' field that offers cards as you type
}
QUERIES = {
    "stocks.why_page": "?item=ART-1&account=wb1",
    "products.suggest": "?account=wb1&card_id=102",
}


def _data(conn, cfg) -> None:
    now = datetime.now(UTC)
    conn.executemany("INSERT INTO items(id, article, name) VALUES (?,?,?)",
                     [("0d1f-guid-1", "ART-1", "Кружка белая 300 мл"), ("0d1f-guid-2", "ART-2", "Чехол синий")])
    conn.commit()
    for account, mp in MPS.items():
        catalog.import_cards(conn, account, mp, [
            Card(native_id="101", offer_id="ART-1", title="Кружка керамическая белая", barcodes=["4600000000017"],
                 category="Посуда"),
            Card(native_id="102", offer_id="ODD-9", title="Кружка 2 шт", category="Посуда")])
        catalog.auto_link(conn, account)
    with transaction(conn):
        ledger.set_balances(conn, "main", {"0d1f-guid-1": 5, "0d1f-guid-2": 7}, source="1c")
        conn.execute("UPDATE items SET bin='B-01' WHERE id IN ('0d1f-guid-1', '0d1f-guid-2')")  # 1C's «Ячейка»
        nom.site_bin_came(conn, "north", "0d1f-guid-1", "K-07", at=time.time(), warehouse="main", by="Анна")
    orders = []
    for i, (account, mp) in enumerate(MPS.items()):
        orders.append(Order(native_id=f"N{i}", marketplace=mp, account=account, native_status="new",
                            created_at=now - timedelta(days=1), ship_by=now + timedelta(hours=1 - 2 * i),
                            lines=[OrderLine(card_id="101", offer_id="ART-1", quantity=2, price=Decimal("19390"),
                                             title="Кружка керамическая белая")]))
    orders.append(Order(native_id="N9", marketplace="wildberries", account="wb1", native_status="new",
                        created_at=now, ship_by=now + timedelta(days=1),
                        lines=[OrderLine(card_id="102", offer_id="ODD-9", quantity=1, price=Decimal("990"))]))
    intake.ingest(conn, cfg, orders)
    with transaction(conn):
        oid = conn.execute("SELECT id FROM orders WHERE key='oz1:N1'").fetchone()[0]
        conn.execute("UPDATE order_actions SET state='failed', attempts=20, error='HTTP 500' WHERE order_id=?",
                     (oid,))
        conn.execute("INSERT INTO stock_push_holds(account, reason, cards, listed, created_ts) VALUES"
                      " ('wb1', 'would zero 2 of 2 listed cards (more than 50%)', 2, 2, ?)", (time.time(),))
        conn.execute("INSERT INTO price_documents(id, account, comment, lines, status, problems, created_at)"
                     " VALUES ('doc-1', 'wb1', 'Распродажа', ?, 'draft', '[\"line 1: a drop of 40%\"]', ?)",
                     ('{"rounding": "1", "lines": [{"item": "ART-1", "percent": "-40"}]}', now.isoformat()))
    with transaction(conn):
        conn.execute("INSERT INTO commission_reports(id, account, marketplace, period_from, period_to, totals,"
                     " native_totals, reconciled, differences, built_ts) VALUES ('rep-1', 'wb1', 'wildberries',"
                     " '2026-11-01', '2026-11-07', '{}', '{\"to_pay\": \"60692.5\", \"forPaySum\": \"62782.5\"}', 0,"
                     " '[[\"to_pay\", \"62782.5\", \"60692.5\"]]', ?)",
                     (time.time(),))
        conn.execute("INSERT INTO report_builds(id, account, period_from, period_to, state, progress, stage, report_id,"
                     " created_ts) VALUES ('build-1', 'wb1', '2026-11-01', '2026-11-07', 'done', 1, 'done', 'rep-1', ?)",
                     (time.time(),))
        conn.execute("INSERT INTO report_builds(id, account, period_from, period_to, state, progress, stage,"
                     " created_ts) VALUES ('build-2', 'wb1', '2026-11-08', '2026-11-14', 'running', 0.45, 'reading', ?)",
                     (time.time(),))
    price_rules.add_rule(conn, account="wb1", text="-10% пятница 18:00, вернуть понедельник 09:00")
    r = price_rules.add_rule(conn, account="wb1", text="-20% суббота 10:00, вернуть суббота 20:00",
                             lines=[{"item": "0d1f-guid-1"}])
    with transaction(conn):  # a rule with a held document and an overlap: its page says both in words
        conn.execute("UPDATE price_rules SET id='rule-1', last_error='price document doc-2 needs confirmation, nothing was sent' WHERE id=?",
                     (r.id,))
        conn.execute("INSERT INTO price_documents(id, account, comment, source, lines, status, problems, created_at)"
                     " VALUES ('doc-2', 'wb1', 'price rule -20% суббота', 'rule:rule-1', ?, 'draft', '[\"line 1: a drop of 40%\"]', ?)",
                     ('{"rounding": "1", "lines": [{"item": "ART-1", "percent": "-20"}]}', now.isoformat()))
    # the prices page's unit economics (one part the marketplace's, two estimated) and the FBO stock lines
    with transaction(conn):
        nom.upsert_price_type(conn, "cost", "Себестоимость", is_cost=True)
        nom.set_item_price(conn, "0d1f-guid-1", "cost", Decimal(400))
        price_list.record_read_prices(conn, "wb1", {"101": ("ART-1", price_list.Price(Decimal(1990)))})
        fbo.record(conn, "wb1", [StockLevel("101", "ART-1", "507", 3, "fbo", warehouse_name="Коледино"),
                                 StockLevel("101", "ART-1", "120762", 9, "fbo", warehouse_name="Электросталь")])
        fbo.record(conn, "wb1", [StockLevel("101", "ART-1", "507", 3, "fbo", warehouse_name="Коледино")])
    economics.record(conn, "wb1", [SaleFees("101", commission_percent=Decimal("19.5"))], {"101": Decimal(1990)})


@pytest.fixture
def served(tmp_path, users_db):
    start_db(users_db, tmp_path / "cloud.sqlite")
    accounts = {a: {"marketplace": mp, "base_url": "http://127.0.0.1:9", "credentials": {"Authorization": "x-1"},
                    "warehouses": {"10": "main"}} for a, mp in MPS.items()}
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")}, "accounts": accounts,
                        "sites": {"north": {"warehouses": ["main"]}}})
    conn = open_db(cfg.db_path)
    _data(conn, cfg)
    app = create_app(cfg)
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        conn.close()


def _page_urls(app) -> list[str]:
    """Every GET address of the page blueprints (and the print forms), with sample arguments."""
    names = {p.bp.name for p in PAGES}
    urls, missing = [], []
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if endpoint.split(".")[0] not in names or "GET" not in (rule.methods or set()) or endpoint == "ui.static":
            continue
        if SAMPLES.get(endpoint, {}) is None:
            continue
        args = SAMPLES.get(endpoint) or {} if rule.arguments else {}
        if rule.arguments and not args:
            missing.append(endpoint)
            continue
        path = rule.rule
        for k, v in args.items():
            path = re.sub(rf"<(?:[^:>]+:)?{k}>", v, path)
        urls.append(path + QUERIES.get(endpoint, ""))
    assert not missing, f"pages without a sample address in this test: {missing}"
    return sorted(set(urls)) + ["/print/pick/wb1:N0", "/print/prices/doc-1", "/print/stock/fbs", "/orders?q=N1",
                                "/stocks?account=wb1", "/prices?account=wb1",
                                "/reports?build=build-1", "/reports?build=build-2"]


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-zА-Яа-яЁё][A-Za-zА-Яа-яЁё0-9_'’.-]*", text)


def _latin(text: str) -> set[str]:
    """Latin words a person reads: not codes (with digits), not the allowed brands and units."""
    found = set()
    for w in _words(text):
        w = w.strip(".-'’")
        if not re.search(r"[A-Za-z]{2}", w) or re.search(r"\d", w):
            continue
        parts = [p for p in re.split(r"[.\-_]", w) if re.search(r"[A-Za-z]", p)]
        if all(p.lower() in LATIN_ALLOWED | DATA_WORDS for p in parts):
            continue
        found.add(w)
    return found


def _cyrillic(text: str, data: str) -> set[str]:
    return {w for w in _words(text) if re.search(r"[А-Яа-яЁё]", w) and w.lower() not in CYRILLIC_ALLOWED
            and w not in data}


def _read(page) -> str:
    """The text a person reads on the page (the title too); what a page marks as a code (<code>: a
    marketplace's own status, a CSV column, a credential's name) is not a word of the UI."""
    page.evaluate("document.querySelectorAll('code').forEach(e => { e.textContent = ''; })")
    return page.inner_text("body") + " " + page.title()


def _login(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "olga")
    page.fill("input[name=password]", "owner password 1")
    page.click("#login")
    page.wait_for_url(re.compile(r".*/attention$"))


def test_every_manager_page_reads_in_russian_then_in_english(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    urls = _page_urls(app)
    assert {"/attention", "/orders", "/products", "/prices", "/stocks", "/reports", "/sites",
            "/settings"} <= set(urls)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    latin: dict[str, set[str]] = {}
    cyrillic: dict[str, set[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(locale="ru-RU").new_page()
        page.goto(f"{url}/login")
        latin["/login"] = _latin(_read(page))
        _login(page, url)
        russian: dict[str, str] = {}
        for path in urls:
            r = page.goto(url + path)
            assert r is not None and r.status == 200, (path, r and r.status)
            shot = re.sub(r"[^\w-]+", "-", path.strip("/")) or "home"
            page.screenshot(path=str(ARTIFACTS / f"ru-{shot}.png"), full_page=True)
            text = _read(page)
            russian[path] = text
            bad = _latin(text)
            if bad:
                latin[path] = bad
        assert "38 780 ₽" in russian["/orders"].replace("\u00a0", " ")  # 2 × 19 390 ₽, as Russians write it
        assert "Новый" in russian["/orders"] and "Требует внимания" in russian["/attention"]
        assert "0d1f-guid" not in russian["/orders"] + russian["/attention"]  # items named by article, not GUID
        assert "К перечислению: 62 782,50 ₽ / 60 692,50 ₽" in russian["/attention"].replace("\u00a0", " ")
        # the user switches to English on the page; the choice stays with the user
        page.goto(f"{url}/orders")
        with page.expect_navigation():
            page.select_option("#language", "en")
        assert page.locator("html").get_attribute("lang") == "en"
        for path in urls:
            page.goto(url + path)
            text = _read(page)
            bad = _cyrillic(text, data=russian_data(russian[path]))
            if bad:
                cyrillic[path] = bad
        page.goto(f"{url}/attention")
        assert "Needs attention" in page.inner_text("body")
        page.goto(f"{url}/orders")
        assert "38,780 ₽" in page.inner_text("body").replace("\u00a0", " ")
        browser.close()
    latin = {k: v for k, v in latin.items() if v}
    assert not latin, f"Latin words on Russian pages: {latin}"
    cyrillic = {k: v for k, v in cyrillic.items() if not k.startswith("/print/")}  # print forms stay Russian
    assert not cyrillic, f"Russian words on English pages: {cyrillic}"


def russian_data(_text: str) -> str:
    """The seller's own Russian data the test typed (item names, card titles, categories, comments, and
    the names the marketplace gives its warehouses)."""
    return ("Кружка белая 300 мл Чехол синий керамическая Посуда 2 шт Распродажа пятница вернуть понедельник "
            "-10% «Кружка белая 300 мл» «Кружка» суббота Коледино Электросталь")  # + the marketplace's warehouse names


def test_manager_pages_fit_a_390px_phone_screen(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    wide: dict[str, int] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                      has_touch=True, locale="ru-RU")
        page = context.new_page()
        _login(page, url)
        for path in _page_urls(app):
            if path.startswith("/print/"):
                continue  # paper forms, printed on A4
            page.goto(url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                wide[path] = width
        assert not wide, f"pages wider than a 390 px phone: {wide}"
        page.goto(f"{url}/orders")
        nav = page.locator("header.top nav")
        assert not nav.is_visible()  # folded away
        page.click("label.menu-button")
        assert nav.is_visible() and page.locator("header.top nav a", has_text="Остатки").is_visible()
        page.screenshot(path=str(ARTIFACTS / "orders-phone.png"))
        browser.close()


def test_an_error_is_shown_beside_its_field_in_view_and_keeps_what_was_typed(served):
    from playwright.sync_api import sync_playwright

    _, url = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 390, "height": 700}, locale="ru-RU").new_page()
        _login(page, url)
        page.goto(f"{url}/products")
        page.fill("#link-form #f-card_id", "ODD-9")
        page.fill("#link-form #f-item_id", "Самовар")
        with page.expect_navigation():
            page.click("#link-form button[type=submit]")
        error = page.locator("#err-item_id")
        assert "нет товара 1С с таким артикулом или названием" in error.inner_text()
        box = error.bounding_box()
        assert box is not None and 0 <= box["y"] <= 700, box  # brought into view, not 3,000 px below
        assert page.input_value("#link-form #f-item_id") == "Самовар"
        assert page.input_value("#link-form #f-card_id") == "ODD-9"
        browser.close()


def test_an_item_is_offered_by_article_or_name_as_you_type(served):
    from playwright.sync_api import sync_playwright

    _, url = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(locale="ru-RU").new_page()
        _login(page, url)
        page.goto(f"{url}/settings")
        page.locator("#minimum-form #f-item").press_sequentially("Чехол", delay=30)
        page.locator("#items-list option").first.wait_for(state="attached")
        offered = page.eval_on_selector_all("#items-list option", "os => os.map(o => [o.value, o.textContent])")
        assert offered == [["ART-2", "Чехол синий"]]  # the article and the 1C name; no GUID anywhere
        page.fill("#minimum-form #f-item", "ART-2")
        page.fill("#minimum-form #f-minimum", "3")
        with page.expect_navigation():
            page.click("#minimum-form button[type=submit]")
        assert "критический остаток ART-2: меньше 3" in page.inner_text("body")
        browser.close()


def test_a_card_is_offered_by_article_or_title_as_a_price_line_is_typed(served):
    """The price editor's «Которые» field asks for the account's cards as typed (the page no longer carries
    every card of the account in a list)."""
    from playwright.sync_api import sync_playwright

    _, url = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(locale="ru-RU").new_page()
        _login(page, url)
        page.goto(f"{url}/prices?account=wb1")
        assert page.eval_on_selector_all("#offers option", "os => os.length") == 0
        page.locator("#key_0").press_sequentially("2 шт", delay=30)
        page.locator("#offers option").first.wait_for(state="attached")
        offered = page.eval_on_selector_all("#offers option", "os => os.map(o => [o.value, o.textContent])")
        assert offered == [["ODD-9", "Кружка 2 шт"]]  # the card's article and the name the seller knows
        browser.close()


def test_the_manager_sees_the_bin_the_site_keeps_an_item_in(served):
    """A bin set at the site on a receipt (sent up as `item_bin`: tests/edge/test_browser.py) shows on the
    Stocks page beside 1C's; an item the site set none for shows 1C's «Ячейка»."""
    from playwright.sync_api import expect, sync_playwright

    _app, url = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
        _login(page, url)
        page.goto(url + "/stocks")
        expect(page.locator("#levels th", has_text="Ячейка")).to_be_visible()
        expect(page.locator("#levels tr[data-item='0d1f-guid-1'] td.bin")).to_have_text("K-07 на складе (1С: B-01)")
        expect(page.locator("#levels tr[data-item='0d1f-guid-2'] td.bin")).to_have_text("B-01 из 1С")
        page.screenshot(path=str(ARTIFACTS / "stocks-bins.png"))
        browser.close()

