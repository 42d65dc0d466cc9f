"""The manager's pages work the way sellers do: one search box, the order's date and total, columns that
sort, items chosen by their article or 1C name (never a GUID typed by hand), and «Требует внимания» as
the first page with one action for each thing that needs a person."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.orders import intake
from marketplaces.base import Card, Order, OrderLine

from .conftest import form_token

ORDER_ROW = re.compile(r'<a href="/orders/[^"]+">(N\d)</a>')


def _orders(conn, cfg) -> None:
    now = datetime.now(UTC)
    intake.ingest(conn, cfg, [
        Order(native_id=f"N{i}", marketplace="wildberries", account="wb1", native_status="new",
              created_at=now - timedelta(days=i), ship_by=now + timedelta(hours=5 - i),
              lines=[OrderLine(card_id=f"c{i}", offer_id=f"ART-{i}", quantity=2, price=Decimal("19390"))])
        for i in range(4)])


def test_orders_are_found_by_number_or_article_sorted_and_show_date_and_total(as_user, cloud):
    _, conn, cfg = cloud
    _orders(conn, cfg)
    c = as_user("masha")
    page = c.get("/orders").text
    assert ORDER_ROW.findall(page) == ["N3", "N2", "N1", "N0"]  # the nearest deadline first
    assert "38\xa0780\xa0₽" in page  # 2 × 19 390 ₽, written as Russians write money
    assert ORDER_ROW.findall(c.get("/orders?q=N2").text) == ["N2"]  # the marketplace's order number
    assert ORDER_ROW.findall(c.get("/orders?q=ART-1").text) == ["N1"]  # an article on one of its lines
    assert 'value="ART-1"' in c.get("/orders?q=ART-1").text  # the box keeps what was typed
    assert ORDER_ROW.findall(c.get("/orders?sort=created").text) == ["N3", "N2", "N1", "N0"]  # oldest first
    assert ORDER_ROW.findall(c.get("/orders?sort=-created").text) == ["N0", "N1", "N2", "N3"]
    assert ORDER_ROW.findall(c.get("/orders?sort=-deadline").text) == ["N0", "N1", "N2", "N3"]
    assert 'href="?sort=-created"' in c.get("/orders?sort=created").text  # the header sorts the other way


def test_products_sort_and_a_card_is_linked_by_article_and_1c_name(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('00000000-0000-4000-8000-000000000001', 'MUG-1',"
                 " 'Кружка белая 300 мл')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="B-CARD", title="Бокал"),
                                                      Card(native_id="102", offer_id="A-CARD", title="Ведро")])
    c = as_user("masha")
    order = re.compile(r'name="card_ids" value="wb1\|(\d+)"')
    assert order.findall(c.get("/products?sort=offer_id").text) == ["102", "101"]
    assert order.findall(c.get("/products?sort=-offer_id").text) == ["101", "102"]
    page = c.get("/products").text
    assert 'data-suggest="items"' in page  # the item field is offered items as you type: by article or name
    offered = [{"article": "MUG-1", "name": "Кружка белая 300 мл"}]  # no GUID
    assert c.get("/items/suggest?q=MUG").get_json() == offered == c.get("/items/suggest?q=белая").get_json()
    r = c.post("/products/link", data={"csrf_token": form_token(page), "account": "wb1", "card_id": "B-CARD",
                                       "item_id": "Кружка белая", "pack": "1"})
    assert r.status_code == 200, r.text
    assert catalog.card(conn, "wb1", "101").item_id == "00000000-0000-4000-8000-000000000001"
    assert "<b>Кружка белая 300 мл</b>" in r.text and "Бокал" in r.text  # the 1C name, the card's title below
    r = c.post("/products/link", data={"csrf_token": form_token(page), "account": "wb1", "card_id": "A-CARD",
                                       "item_id": "Самовар", "pack": "1"})
    assert r.status_code == 400 and 'id="err-item_id"' in r.text and 'value="Самовар"' in r.text
    assert "нет товара 1С с таким артикулом или названием" in r.text


def test_needs_attention_is_the_first_page_and_each_thing_has_its_action(as_user, cloud):
    _, conn, cfg = cloud
    _orders(conn, cfg)  # cards not linked: every order waits for a link
    now = time.time()
    with transaction(conn):
        oid = conn.execute("SELECT id FROM orders WHERE native_id='N0'").fetchone()[0]
        conn.execute("INSERT INTO order_actions(order_id, action, state, attempts, next_try, error, updated_ts)"
                     " VALUES (?, 'confirm', 'failed', 20, ?, 'HTTP 500', ?)", (oid, now, now))
        hold = conn.execute("INSERT INTO stock_push_holds(account, reason, cards, listed, created_ts) VALUES"
                            " ('wb1', 'would zero 2 of 2 listed cards (more than 50%)', 2, 2, ?)", (now,)).lastrowid
    c = as_user("masha")
    first = c.get("/", follow_redirects=True)
    assert first.request.path == "/attention"
    page = first.text
    assert 'id="att-waiting"' in page and "Связать карточку" in page
    assert 'id="att-holds"' in page and "обнулило бы 2 из 2" in page
    assert 'id="att-calls"' in page and "площадка ответила HTTP 500" in page
    assert as_user("petya").get("/", follow_redirects=True).request.path == "/orders"  # a packer: the orders
    r = c.post("/attention/calls/retry", data={"csrf_token": form_token(page), "order_id": oid, "action": "confirm"})
    assert r.status_code == 200 and 'id="att-calls"' not in r.text
    assert conn.execute("SELECT state FROM order_actions WHERE order_id=? AND action='confirm'",
                        (oid,)).fetchone()[0] == "pending"
    r = c.post(f"/stocks/holds/{hold}/confirm", data={"csrf_token": form_token(page)})
    assert r.status_code == 200
    assert 'id="att-holds"' not in c.get("/attention").text


def test_an_order_line_reads_the_1c_name_with_the_cards_title_below(as_user, cloud):
    """One name per item: the 1C name the packer's task carries too, the marketplace card's title second."""
    from cloud_sync.orders import records

    _, conn, cfg = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I-RED', 'MUG-RED', 'Кружка красная')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="MUG-RED",
                                                           title="Кружка серая керамическая")])
    catalog.auto_link(conn, "wb1")
    intake.ingest(conn, cfg, [Order(native_id="R1", marketplace="megamarket", account="wb1", native_status="NEW",
                                    created_at=datetime.now(UTC), lines=[OrderLine(
                                        card_id="101", offer_id="MUG-RED", quantity=1, price=Decimal(500),
                                        title="Кружка серая керамическая")])])
    page = as_user("masha").get("/orders/wb1:R1").text
    assert re.search(r"<b>Кружка красная</b> <small>MUG-RED</small><br><small class=\"secondary\">Кружка серая", page)
    assert records.task_line(conn, "I-RED", 1, "", "Кружка серая керамическая")["name"] == "Кружка красная"


class PricesOnly:
    """An account that takes prices (a marketplace's answer per card), counted."""

    name = "wildberries"

    def __init__(self) -> None:
        self.sent: list = []

    def push_prices(self, changes):
        from marketplaces.base import ItemResult

        self.sent += list(changes)
        return [ItemResult(c.card_id, True) for c in changes]

    def close(self) -> None:
        pass


def test_a_held_price_document_is_confirmed_or_discarded_from_its_page(cloud):
    import json

    from cloud_sync.web.app import create_app

    from .conftest import login

    _, conn, cfg = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I1', 'ART-1', 'Кружка')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="ART-1", title="Кружка")])
    catalog.auto_link(conn, "wb1")
    lines = json.dumps({"rounding": "1", "lines": [{"card": "ART-1", "price": "500"}]})
    for doc_id in ("held-1", "held-2"):
        conn.execute("INSERT INTO price_documents(id, account, comment, lines, status, problems, created_at)"
                     " VALUES (?, 'wb1', 'Распродажа', ?, 'draft', '[\"large drop\"]', '2026-12-01T10:00:00+00:00')",
                     (doc_id, lines))
    conn.commit()
    market = PricesOnly()
    app = create_app(cfg, adapters={"wb1": market})
    c = app.test_client()
    assert login(c, "masha").status_code == 302
    page = c.get("/attention").text
    assert 'href="/prices/documents/held-1"' in page  # one click from «Требует внимания»
    held = c.get("/prices/documents/held-1")
    assert held.status_code == 200 and 'id="apply-form"' in held.text and 'id="discard-form"' in held.text
    document = re.search(r'name="document" value="([^"]+)"', held.text).group(1).replace("&#34;", '"')
    r = c.post("/prices/apply", data={"csrf_token": form_token(held.text), "document": document, "confirm": "yes"})
    assert r.status_code == 200, r.text
    assert [str(x.price) for x in market.sent] == ["500"]
    assert conn.execute("SELECT status FROM price_documents WHERE id='held-1'").fetchone()[0] == "applied"
    assert conn.execute("SELECT COUNT(*) FROM price_documents").fetchone()[0] == 2  # no second document
    r = c.post("/prices/documents/held-2/discard", data={"csrf_token": form_token(held.text)})
    assert r.status_code == 200 and "черновик удалён; ничего не отправлено" in r.text
    assert conn.execute("SELECT status FROM price_documents WHERE id='held-2'").fetchone()[0] == "discarded"
    assert c.get("/prices/documents/held-2").status_code == 404
    r = c.post("/prices/apply", data={"csrf_token": form_token(held.text), "document": document.replace(
        "held-1", "held-2"), "confirm": "yes"})
    assert r.status_code == 400 and len(market.sent) == 1  # a discarded draft is never sent
