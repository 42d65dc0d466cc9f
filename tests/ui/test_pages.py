"""The pages over real data: orders of several marketplaces in one list with bulk actions and each
order's history, the charts (our own SVG), and the price document editor down to its preview."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud_sync.catalog import cards as catalog
from cloud_sync.orders import intake, listing
from cloud_sync.web.pages import charts
from marketplaces.base import Card, Order, OrderLine

from .conftest import form_token

MPS = {"wb1": "wildberries", "oz1": "ozon", "ym1": "yandex_market", "mm1": "megamarket"}


def _orders(conn, cfg, n: int = 8) -> list[str]:
    now = datetime.now(UTC)
    batch = []
    for i in range(n):
        account = list(MPS)[i % 4]
        batch.append(Order(native_id=f"N{i}", marketplace=MPS[account], account=account, native_status="new",
                           created_at=now - timedelta(days=i % 3), ship_by=now + timedelta(hours=10 - i),
                           lines=[OrderLine(card_id=f"c{i}", offer_id=f"OFF-{i}", quantity=1, price=Decimal("990"))]))
    intake.ingest(conn, cfg, batch)
    return [f"{o.account}:{o.native_id}" for o in batch]


def test_orders_of_every_marketplace_in_one_list_sorted_by_deadline(as_user, cloud):
    _, conn, cfg = cloud
    keys = _orders(conn, cfg)
    c = as_user("petya")  # packers see the orders too
    page = c.get("/orders").text
    shown = re.findall(r'data-marketplace="(\w+)"', page)
    assert set(shown) == set(MPS.values())
    numbers = re.findall(r'<a href="/orders/[^"]+">(N\d)</a>', page)
    assert numbers == [f"N{i}" for i in range(7, -1, -1)]  # the nearest deadline first
    only = c.get("/orders?account=oz1").text
    assert set(re.findall(r'data-marketplace="(\w+)"', only)) == {"ozon"}
    history = c.get(f"/orders/{keys[0]}").text
    assert 'id="history"' in history and "требует внимания" in history  # its card is not linked: said so
    assert "карточка не связана с товаром 1С: OFF-0" in history  # the stored problem, in Russian


def test_bulk_actions_run_through_the_order_flow(as_user, cloud):
    _, conn, cfg = cloud
    keys = _orders(conn, cfg, 4)
    c = as_user("masha")
    token = form_token(c.get("/orders").text)
    r = c.post("/orders/bulk", data={"csrf_token": token, "action": "cancel", "keys": keys[:2],
                                     "reason": "buyer called"})
    assert r.status_code == 200 and "отменить: выполнено для 2 заказов" in r.text
    assert {o["status"] for o in listing.list_orders(conn) if o["key"] in keys[:2]} == {"cancelled"}
    detail = listing.get_order(conn, keys[0])
    assert any("buyer called (masha)" in e["detail"] for e in detail["events"])
    r = c.post("/orders/bulk", data={"csrf_token": token, "action": "take", "keys": keys[2:]})
    assert "ещё ждёт — карточка не связана с товаром 1С" in r.text  # not linked: checked again, the reason said
    r = c.post("/orders/bulk", data={"csrf_token": token, "action": "labels", "keys": keys[2:3]})
    assert "напечатать этикетки: выполнено для 1 заказа" in r.text
    oid = conn.execute("SELECT id FROM orders WHERE key=?", (keys[2],)).fetchone()[0]
    assert conn.execute("SELECT state FROM order_actions WHERE order_id=? AND action='label'", (oid,)).fetchone()[0] \
        == "pending"  # the order flow fetches the label again and sends it to the site's printer
    r = c.post("/orders/bulk", data={"csrf_token": token, "action": "take", "keys": ["ghost:1"]})
    assert r.status_code == 400 and "неизвестные заказы: ghost:1" in r.text


def test_charts_are_our_own_svg_per_marketplace(cloud):
    app, conn, cfg = cloud
    _orders(conn, cfg)
    with app.test_request_context("/reports"):  # the charts speak the reader's language (Russian here)
        count_chart, revenue_chart = charts.orders_per_day(conn, days=7)
        empty = charts.stock_history(conn, "nothing")
    for mp in ("Wildberries", "Ozon", "Яндекс Маркет", "Мегамаркет"):  # as sellers write them, not our codes
        assert f"<title>{mp}</title>" in count_chart and f"<title>{mp}</title>" in revenue_chart
    assert count_chart.count("<polyline") == 4 and "<script" not in count_chart
    assert "Заказы по площадкам по дням" in count_chart and "пока нет данных" in empty


def test_price_editor_previews_a_document_against_the_price_list(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I1', 'ART-1', 'Кружка')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="ART-1", title="Кружка",
                                                           barcodes=["460000000001"], category="Посуда")])
    catalog.auto_link(conn, "wb1")
    c = as_user("masha")
    page = c.get("/prices?account=wb1").text
    assert 'data-offer="ART-1"' in page
    r = c.post("/prices/preview", data={"csrf_token": form_token(page), "account": "wb1", "rows": "6",
                                        "scope_0": "item", "key_0": "ART-1", "price_0": "555"})
    assert r.status_code == 200 and 'id="apply-form"' in r.text
    assert re.search(r'class="num new-price"><b>555\xa0₽</b>', r.text)  # money as the locale writes it
    r = c.post("/prices/preview", data={"csrf_token": form_token(page), "account": "wb1", "rows": "6",
                                        "scope_0": "item", "key_0": "NO-SUCH", "price_0": "555"})
    assert r.status_code == 400 and 'id="err-line_0"' in r.text  # beside its row of the editor
    assert "неизвестный товар" in r.text and "NO-SUCH" in r.text and 'id="apply-form"' not in r.text
    assert conn.execute("SELECT COUNT(*) FROM price_documents").fetchone()[0] == 0


def test_stocks_search_and_why_this_number(as_user, cloud):
    _, conn, _ = cloud
    from cloud_sync.db import transaction
    from cloud_sync.stock import ledger

    for i, name in enumerate(["Кружка белая", "Чехол синий", "Носки"], 1):
        conn.execute("INSERT INTO items(id, article, name) VALUES (?,?,?)", (f"I{i}", f"ART-{i}", name))
    with transaction(conn):
        ledger.set_balances(conn, "main", {"I1": 5, "I2": 7, "I3": 0}, source="1c")
    c = as_user("petya")
    shown = re.compile(r'<tr data-item="(I\d)">')
    assert shown.findall(c.get("/stocks").text) == ["I1", "I2", "I3"]
    assert shown.findall(c.get("/stocks?q=ART-2").text) == ["I2"]
    assert shown.findall(c.get("/stocks?q=Чехол").text) == ["I2"]
    assert shown.findall(c.get("/stocks?q=I3").text) == ["I3"]
    why = c.get("/stocks/why?item=ART-1&account=wb1")
    assert why.status_code == 200 and "<svg" in why.text, why.text
    assert "своему складу" in why.text, re.search(r"<pre.*?</pre>", why.text, re.S).group(0)
    bad = c.get("/stocks/why?item=NOPE&account=wb1")
    assert bad.status_code == 400 and 'id="err-item"' in bad.text and "неизвестный товар" in bad.text


def test_products_queue_link_by_hand_and_refusals(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I1', 'ART-1', 'Кружка')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="ART-1", title="Кружка"),
                                                      Card(native_id="102", offer_id="ODD-9", title="Кружка 2 шт")])
    c = as_user("masha")
    page = c.get("/products?linked=no").text
    assert "2 карточки, не связано: 2" in page
    r = c.post("/products/autolink", data={"csrf_token": form_token(page)})
    assert 'id="link-report"' in r.text and "ODD-9" in r.text  # left for a person, with the reason
    assert "1 карточка, не связано: 1" in c.get("/products?linked=no").text
    sug = c.get("/products/suggest?account=wb1&card_id=102").text
    assert 'id="suggestions"' in sug and 'data-item="I1"' in sug  # «Кружка 2 шт» resembles «Кружка»
    r = c.post("/products/link", data={"csrf_token": form_token(page), "account": "wb1", "card_id": "102",
                                       "item_id": "I1", "pack": "0"})
    assert r.status_code == 400 and 'id="err-pack"' in r.text
    r = c.post("/products/link", data={"csrf_token": form_token(page), "account": "wb1", "card_id": "102",
                                       "item_id": "ghost", "pack": "2"})
    assert r.status_code == 400 and 'id="err-item_id"' in r.text
    assert catalog.card(conn, "wb1", "102").item_id is None
    r = c.post("/products/link", data={"csrf_token": form_token(page), "account": "wb1", "card_id": "102",
                                       "item_id": "I1", "pack": "2"})
    assert r.status_code == 200
    linked = catalog.card(conn, "wb1", "102")
    assert (linked.item_id, linked.pack) == ("I1", 2)
    r = c.post("/products/visibility", data={"csrf_token": form_token(page), "card_ids": ["wb1|101"],
                                             "visible": "no"})
    assert r.status_code == 400 and 'id="err-vis_account"' in r.text  # no adapter for wb1 here: said, not done
    assert catalog.card(conn, "wb1", "101").visible
