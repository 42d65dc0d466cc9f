"""The prices page shows each card's unit economics (profit and margin after the marketplace's
commission, logistics and acquiring and the 1C cost; estimated parts marked *), the preview shows them at
the new price, and the stocks page lists the stock at the marketplaces' warehouses (FBO) with days of
cover and a flag where the last reading left a warehouse out."""

from __future__ import annotations

import re
from decimal import Decimal

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.money import economics, price_list
from cloud_sync.stock import fbo
from marketplaces.base import Card, SaleFees, StockLevel

from .conftest import form_token


def _seed(conn) -> None:
    with transaction(conn):
        nom.upsert_items(conn, [nom.Item(id="i1", name="Кружка керамическая", article="MS-00011")])
        nom.upsert_price_type(conn, "cost", "Себестоимость", is_cost=True)
        nom.set_item_price(conn, "i1", "cost", Decimal(400))
        catalog.import_cards(conn, "wb1", "wildberries", [Card("400000011", "MS-00011", title="Кружка", category_id="1367")])
        catalog.link(conn, "wb1", "400000011", "i1")
        price_list.record_read_prices(conn, "wb1", {"400000011": ("MS-00011", price_list.Price(Decimal(1000)))})
    economics.record(conn, "wb1", [SaleFees("400000011", commission_percent=Decimal("19.5"), source="tariffs")],
                     {"400000011": Decimal(1000)})


def test_prices_page_shows_profit_after_fees_with_estimates_marked(as_user, cloud) -> None:
    _app, conn, _cfg = cloud
    _seed(conn)
    page = as_user("masha").get("/prices?account=wb1").text
    row = re.search(r'<tr data-offer="MS-00011">.*?</tr>', page, re.S).group(0)
    # 1000 − 195 (19.5 %) − 100 (logistics, estimated) − 15 (acquiring 1.5 %, estimated) − 400 = 290
    assert "290" in row and "29" in row and "комиссия 195" in row
    assert re.search(r"логистика 100[^<]*\*", row) and re.search(r"эквайринг 15[^<]*\*", row)
    assert not re.search(r"комиссия 195[^·]*\*", row)  # WB's own figure: not an estimate
    assert "оценка" in page and "Прибыль после удержаний" in page


def test_preview_shows_economics_at_the_new_price(as_user, cloud) -> None:
    _app, conn, _cfg = cloud
    _seed(conn)
    c = as_user("masha")
    token = form_token(c.get("/prices?account=wb1").text)
    r = c.post("/prices/preview", data={"csrf_token": token, "account": "wb1", "rows": "1", "scope_0": "card",
                                        "key_0": "MS-00011", "price_0": "2000"})
    assert r.status_code == 200, r.text[:300]
    row = re.search(r'<tr class="changed" data-offer="MS-00011".*?</tr>', r.text, re.S)
    assert row, r.text[:2000]
    # 2000 − 390 (19.5 %) − 100 − 30 (1.5 %) − 400 = 1080, 54 % of the price
    cell = row.group(0).replace("\u00a0", " ").replace("\u202f", " ")
    assert "комиссия 390" in cell and "1 080" in cell and "54" in cell


def test_stocks_page_lists_fbo_with_days_of_cover_and_a_missing_warehouse(as_user, cloud) -> None:
    _app, conn, _cfg = cloud
    _seed(conn)
    with transaction(conn):
        fbo.record(conn, "wb1", [StockLevel("400000011", "", "507", 3, "fbo", warehouse_name="Коледино"),
                                 StockLevel("400000011", "", "120762", 8, "fbo", warehouse_name="Электросталь")])
    with transaction(conn):
        fbo.record(conn, "wb1", [StockLevel("400000011", "", "507", 3, "fbo", warehouse_name="Коледино")])
    page = as_user("masha").get("/stocks").text
    table = re.search(r'<table class="grid" id="fbo">.*?</table>', page, re.S).group(0)
    assert "Коледино" in table and "MS-00011" in table and "нет продаж" in table
    assert "Электросталь" in table and "не пришёл в последнем ответе" in table
