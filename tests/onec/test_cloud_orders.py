"""1C and the cloud's real order flow, through the cloud's own web app (create_app) on a free loopback
port: 1C uploads its catalog and balances, a marketplace order is ingested and reserved, 1C queries it
(with its own item ids), takes it, then cancels it — and the cancellation reaches the order."""

from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from werkzeug.serving import make_server

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.onec.parser import Document, parse
from cloud_sync.orders import intake, listing
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger
from cloud_sync.web.app import create_app
from marketplaces.base import Card, Order, OrderLine

PASSWORD = "s3cret-1c"

CATALOG = """<?xml version="1.0" encoding="windows-1251"?>
<КоммерческаяИнформация ВерсияСхемы="2.07">
<Каталог СодержитТолькоИзменения="false"><Ид>c</Ид><Товары>
<Товар><Ид>aaaa-1</Ид><Штрихкод>4600000000011</Штрихкод><Артикул>ЧШ-1</Артикул><Наименование>Чашка</Наименование></Товар>
<Товар><Ид>aaaa-2</Ид><Штрихкод>4600000000028</Штрихкод><Артикул>БЛ-2</Артикул><Наименование>Блюдце</Наименование></Товар>
</Товары></Каталог>
<ПакетПредложений><ТипыЦен><ТипЦены><Ид>p</Ид><Наименование>Розничная</Наименование></ТипЦены></ТипыЦен>
<Склады><Склад><Ид>main</Ид><Наименование>Основной</Наименование></Склад></Склады><Предложения>
<Предложение><Ид>aaaa-1</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>450</ЦенаЗаЕдиницу></Цена></Цены>
<Склад ИдСклада="main" КоличествоНаСкладе="5"/></Предложение>
<Предложение><Ид>aaaa-2</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>120</ЦенаЗаЕдиницу></Цена></Цены>
<Склад ИдСклада="main" КоличествоНаСкладе="9"/></Предложение>
</Предложения></ПакетПредложений>
</КоммерческаяИнформация>
"""

CANCEL = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация ВерсияСхемы="2.05"><Документ><Ид>wb:1001</Ид><Номер>1001</Номер><Дата>2026-11-26</Дата>
<ХозОперация>Заказ товара</ХозОперация><ЗначенияРеквизитов><ЗначениеРеквизита><Наименование>Отменен</Наименование>
<Значение>true</Значение></ЗначениеРеквизита></ЗначенияРеквизитов></Документ></КоммерческаяИнформация>
"""


@pytest.fixture
def cloud(tmp_path):
    cfg = parse_config({
        "cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
        "accounts": {"wb": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9", "warehouses": {"10": "main"}}},
        "sites": {"site-1": {"warehouses": ["main"]}},
        "onec": {"password": PASSWORD, "encoding": "windows-1251"},
    }, env={})
    app = create_app(cfg)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield cfg, f"http://127.0.0.1:{server.server_port}/bitrix/admin/1c_exchange.php"
    finally:
        server.shutdown()
        thread.join(10)


def docs(content: bytes) -> list[Document]:
    return [d for d in parse(io.BytesIO(content), name="query.xml") if isinstance(d, Document)]


def test_catalog_order_query_cancel_round_trip(cloud, onec_client):
    cfg, url = cloud
    one_c = onec_client(url)
    assert one_c.checkauth().text.startswith("success")
    one_c.init()
    one_c.upload("import.xml", CATALOG.encode("cp1251"))
    assert one_c.import_until_done("import.xml")[0] == "success\n"
    conn = open_db(cfg.db_path)
    assert ledger.level(conn, "aaaa-1", "main").on_hand == 5
    with transaction(conn):
        catalog.import_cards(conn, "wb", "wildberries", [
            Card(native_id="wb-card-1", offer_id="ЧШ-1", barcodes=["4600000000011"], title="Чашка")])
        catalog.auto_link(conn)
    intake.ingest(conn, cfg, [Order(native_id="1001", marketplace="wildberries", account="wb", native_status="new",
                                    created_at=datetime(2026, 11, 26, 9, 30, tzinfo=UTC), number="1001",
                                    lines=[OrderLine(card_id="wb-card-1", offer_id="ЧШ-1", quantity=2,
                                                     price=Decimal("399.00"))],
                                    warehouse_id="10", ship_by=datetime.now(UTC) + timedelta(hours=5))])
    assert ledger.level(conn, "aaaa-1", "main").reserved == 2

    sale = onec_client(url, "sale")
    sale.checkauth()
    sale.init()
    (d,) = docs(sale.call("query").content)
    assert d.id == "wb:1001" and d.number == "1001" and d.date == "2026-11-26"
    assert [(ln.id, ln.quantity, ln.price) for ln in d.lines] == [("aaaa-1", 2, Decimal("399.00"))]
    assert d.requisites["Маркетплейс"] == "Wildberries" and d.requisites["Отменен"] == "false"
    assert sale.call("success").text == "success\n"
    assert docs(sale.call("query").content) == []

    assert sale.call("file", method="POST", body=CANCEL.encode(), filename="documents.xml").text == "success\n"
    o = listing.get_order(conn, "wb:1001")
    assert o["stage"] == "cancelled" and any(e["kind"] == "onec_cancelled" for e in o["events"])
    assert ledger.level(conn, "aaaa-1", "main").reserved == 0
    # the order changed since 1C took it: it goes again, now cancelled
    (again,) = docs(sale.call("query").content)
    assert again.id == "wb:1001" and again.requisites["Отменен"] == "true"
    conn.close()


def test_print_forms(cloud):
    """Pick task, ship task, price document and the stock reports as printable pages of the cloud app."""
    import httpx

    from cloud_sync.money import price_docs

    cfg, url = cloud
    base = url.split("/bitrix/")[0]
    conn = open_db(cfg.db_path)
    from cloud_sync.onec.importer import import_files

    path = cfg.db_path + ".import.xml"
    with open(path, "wb") as fh:
        fh.write(CATALOG.encode("cp1251"))
    import_files(conn, [path])
    with transaction(conn):
        catalog.import_cards(conn, "wb", "wildberries", [
            Card(native_id="wb-card-1", offer_id="ЧШ-1", barcodes=["4600000000011"], title="Чашка", price=Decimal(500))])
        catalog.auto_link(conn)
        conn.execute("UPDATE items SET bin='A-01-3' WHERE id='aaaa-1'")
    intake.ingest(conn, cfg, [Order(native_id="2002", marketplace="wildberries", account="wb", native_status="new",
                                    created_at=datetime(2026, 11, 26, 9, 30, tzinfo=UTC), number="2002",
                                    lines=[OrderLine(card_id="wb-card-1", offer_id="ЧШ-1", quantity=3,
                                                     price=Decimal("399.00"))],
                                    warehouse_id="10", ship_by=datetime(2026, 11, 27, 12, 0, tzinfo=UTC))])
    doc_id = price_docs.save_document(conn, price_docs.parse_document(
        {"account": "wb", "comment": "Чёрная пятница", "lines": [{"item": "aaaa-1", "percent": "-10"}]}))
    conn.execute("UPDATE orders SET stage='packed' WHERE key='wb:2002'")
    with httpx.Client(base_url=base, timeout=30) as http:
        pick = http.get("/print/pick/wb:2002")
        assert pick.status_code == 200 and "text/html" in pick.headers["content-type"]
        for text in ("Задание на сборку № 2002", "A-01-3", "4600000000011", "aaaa-1", "Wildberries"):
            assert text in pick.text
        assert "<b>27.11.2026, 15:00</b>" in pick.text  # the deadline as every page writes a moment (Moscow)
        ship = http.get("/print/ship/wb")
        assert ship.status_code == 200 and "wb:2002" in ship.text and "Итого единиц" in ship.text
        assert "27.11.2026, 15:00" in ship.text and "2026-11-27T" not in ship.text
        prices = http.get(f"/print/prices/{doc_id}")
        assert prices.status_code == 200 and "Чёрная пятница" in prices.text and "ЧШ-1" in prices.text
        assert "500\xa0₽" in prices.text and "450\xa0₽" in prices.text  # money as Russians write it
        assert re.search(r"Создан: \d\d\.\d\d\.\d{4}, \d\d:\d\d", prices.text)  # not an ISO stamp
        fbs = http.get("/print/stock/fbs")
        assert fbs.status_code == 200 and "Остатки на своих складах (FBS)" in fbs.text and "Блюдце" in fbs.text
        for kind in ("fbo", "scheme"):
            assert http.get(f"/print/stock/{kind}").status_code == 200
        assert http.get("/print/pick/nope:1").status_code == 404
        assert http.get("/print/stock/nonsense").status_code == 404
    conn.close()
