"""The exchange endpoint driven by a 1C client emulator over real HTTP (werkzeug on 127.0.0.1, a free
port): the sequences 1C runs, and every refusal it must get as a clear "failure" with nothing applied."""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
import zipfile
from decimal import Decimal

from cloud_sync import db as cloud_db
from cloud_sync.db import connect
from cloud_sync.onec.orders_out import OrderFor1C, OrderLine1C, enqueue_order, last_status
from cloud_sync.onec.parser import Document, parse


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn



def count(db, sql) -> int:
    conn = cloud_conn(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def session(url, onec_client, kind="catalog"):
    c = onec_client(url, kind)
    assert c.checkauth().text.startswith("success")
    r = c.init()
    assert r.status_code == 200 and "file_limit=" in r.text
    return c


def test_checkauth_challenge_and_cookie(exchange_server, onec_client):
    url, cfg, _ = exchange_server()
    c = onec_client(url)
    r = c.call("checkauth")
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"] and r.text.startswith("failure")
    r = c.call("checkauth", auth=("1c", "hunter2-bad"))
    assert r.status_code == 401 and r.text.startswith("failure") and "hunter2" not in r.text
    r = c.checkauth()
    lines = r.text.splitlines()
    assert lines[0] == "success" and lines[1] == cfg.cookie_name and len(lines[2]) == 32
    assert lines[3] == f"sessid={lines[2]}"
    r = c.init()
    assert r.text.splitlines()[:2] == ["zip=yes", f"file_limit={cfg.file_limit}"]


def test_catalog_upload_in_chunks_then_import(exchange_server, onec_client, corpus, tmp_path):
    url, cfg, _ = exchange_server(file_limit=8192, zip=False)
    c = session(url, onec_client)
    assert c.zip is False and c.file_limit == 8192
    for name in ("import0_1.xml", "offers0_1.xml"):
        data = (corpus / f"ut11-2.07__{name}").read_bytes()
        answers = c.upload(name, data)
        assert len(answers) == -(-len(data) // 8192) > 5
        assert all(a.text == "success\n" for a in answers)
        final, progress = c.import_until_done(name)
        assert final == "success\n" and progress >= 1
    assert c.call("deactivate").text == "success\n"
    assert c.call("complete").text == "success\n"
    db = cfg.db_path
    assert count(db, "SELECT COUNT(*) FROM items WHERE id NOT IN (SELECT offer_id FROM onec_unknown_offers)") == 36
    assert count(db, "SELECT COUNT(*) FROM item_prices") == 44
    assert count(db, "SELECT COUNT(*) FROM onec_warehouses") == 3


def test_catalog_as_zip(exchange_server, onec_client, corpus, make_zip):
    url, cfg, _ = exchange_server()
    c = session(url, onec_client)
    assert c.zip is True
    archive = make_zip({"import.xml": (corpus / "unf-2.08__import.xml").read_bytes(),
                         "offers.xml": (corpus / "unf-2.08__offers.xml").read_bytes(),
                         "import_files/ab/picture.jpg": b"\xff\xd8\xff" + b"0" * 100})
    assert [a.text for a in c.upload("import.zip", archive, chunk=1000)] == ["success\n"] * (-(-len(archive) // 1000))
    assert c.import_until_done("import.xml")[0] == "success\n"
    assert c.import_until_done("offers.xml")[0] == "success\n"
    assert count(cfg.db_path, "SELECT COUNT(*) FROM items WHERE id LIKE '%#%'") == 2
    assert count(cfg.db_path, "SELECT COUNT(*) FROM item_groups") == 5


def test_import_polling_never_waits_for_a_writer(exchange_server, onec_client, corpus):
    """While the database is being written (a long import holds it), 1C's `mode=import` polls still answer
    at once: they only read; the session's keep-alive is left for later."""
    import time

    url, cfg, _ = exchange_server(zip=False)
    c = session(url, onec_client)
    c.upload("import.xml", (corpus / "unf-2.08__import.xml").read_bytes())
    assert c.import_until_done("import.xml")[0] == "success\n"
    writer = connect(cfg.db_path)
    writer.execute("UPDATE onec_sessions SET last_seen=datetime('now', '-10 minutes')")  # due for a keep-alive
    writer.execute("BEGIN IMMEDIATE")  # as an import's transaction does
    try:
        started = time.monotonic()
        assert c.call("import", filename="import.xml").text == "success\n"
        assert time.monotonic() - started < 5  # not the 30 s a writer may be waited for
    finally:
        writer.execute("ROLLBACK")
    assert c.call("import", filename="import.xml").text == "success\n"
    assert count(cfg.db_path, "SELECT COUNT(*) FROM onec_sessions WHERE last_seen > datetime('now', '-1 minutes')") == 1
    writer.close()


def test_refusals_are_failures_with_nothing_applied(exchange_server, onec_client, corpus, caplog):
    caplog.set_level(logging.WARNING, logger="marketsync.onec")
    url, cfg, _ = exchange_server(file_limit=4096)
    db = cfg.db_path
    # no cookie at all
    anon = onec_client(url)
    r = anon.call("init")
    assert r.text.startswith("failure\n") and "checkauth" in r.text
    # a cookie the server never gave
    anon.cookie = (cfg.cookie_name, "0" * 32)
    assert anon.call("init").text.startswith("failure\n")
    # a file before init: out of order
    c = onec_client(url)
    c.checkauth()
    r = c.call("file", method="POST", body=b"<x/>", filename="import.xml")
    assert r.text.startswith("failure\n") and "init" in r.text
    c.init()
    # a chunk larger than the file_limit announced at init
    r = c.call("file", method="POST", body=b"x" * 5000, filename="import.xml")
    assert r.text.startswith("failure\n") and "file_limit" in r.text
    # a file name leaving the exchange folder
    r = c.call("file", method="POST", body=b"x", filename="../../etc/evil.xml")
    assert r.text.startswith("failure\n") and "unsafe" in r.text
    # import of a file never uploaded
    assert "not uploaded" in c.call("import", filename="offers.xml").text
    # a chunk after the import of that file began
    data = (corpus / "unf-2.08__import.xml").read_bytes()
    c.upload("import.xml", data)
    assert c.import_until_done("import.xml")[0] == "success\n"
    r = c.call("file", method="POST", body=b"more", filename="import.xml")
    assert r.text.startswith("failure\n") and "out of order" in r.text
    # the refused chunk did not touch the imported catalog, and every refusal left a log line
    assert count(db, "SELECT COUNT(*) FROM items") == 2
    assert caplog.text.count("1C exchange refused") >= 7


def test_truncated_upload_and_hostile_xml_import_nothing(exchange_server, onec_client, corpus):
    url, cfg, _ = exchange_server(zip=False)
    c = session(url, onec_client)
    data = (corpus / "ut11-2.07__import0_1.xml").read_bytes()
    c.upload("import.xml", data[: len(data) // 2])  # the second half never came
    final, _ = c.import_until_done("import.xml")
    assert final.startswith("failure\n") and "not well-formed" in final and "nothing was imported" in final
    assert count(cfg.db_path, "SELECT COUNT(*) FROM items") == 0
    c2 = session(url, onec_client)
    evil = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>1</Ид><Наименование>&x;</Наименование>"
            "</Товар></Товары></Каталог></КоммерческаяИнформация>").encode()
    c2.upload("import.xml", evil)
    final, _ = c2.import_until_done("import.xml")
    assert final.startswith("failure\n") and "hostile" in final and "root:" not in final
    assert count(cfg.db_path, "SELECT COUNT(*) FROM items") == 0


def test_zip_bomb_and_broken_archive_refused(exchange_server, onec_client, tmp_path, make_zip):
    url, cfg, _ = exchange_server(max_zip_ratio=100)
    c = session(url, onec_client)
    bomb = make_zip({"import.xml": b"<" + b"\x00" * (20 * 1024 * 1024)})
    c.upload("bomb.zip", bomb)
    final, _ = c.import_until_done("import.xml")
    assert final.startswith("failure\n") and "zip bomb" in final
    assert not any(p.name == "import.xml" for p in (tmp_path / "exchange").rglob("*"))
    c2 = session(url, onec_client)
    c2.upload("broken.zip", make_zip({"import.xml": b"<a/>" * 1000})[:-30])
    final, _ = c2.import_until_done("import.xml")
    assert final.startswith("failure\n") and "archive" in final
    c3 = session(url, onec_client)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../outside.xml", b"<a/>")
    c3.upload("trav.zip", buf.getvalue())
    final, _ = c3.import_until_done("outside.xml")
    assert final.startswith("failure\n")
    assert not (tmp_path / "outside.xml").exists() and not (tmp_path.parent / "outside.xml").exists()
    assert count(cfg.db_path, "SELECT COUNT(*) FROM items") == 0


def _orders():
    return [
        OrderFor1C("wb-1001", "wildberries", "main", "1001", "2026-11-26T10:15:00+00:00",
                   [OrderLine1C("item-1", "Чашка «Утро»", Decimal(2), Decimal("450.00"), Decimal("67.50")),
                    OrderLine1C("item-2#red", "Кружка, красная", Decimal(1), Decimal("399.90"))]),
        OrderFor1C("ozon-77", "ozon", "second", "0123-4567-1", "2026-11-26T11:00:00+00:00",
                   [OrderLine1C("item-3", "Блюдце", Decimal(3), Decimal("120.00"), Decimal("18.00"))]),
    ]


def test_orders_query_success_query_again(exchange_server, onec_client):
    url, cfg, _ = exchange_server()
    conn = connect(cfg.db_path)
    for o in _orders():
        enqueue_order(conn, o)
    c = session(url, onec_client, "sale")
    r = c.call("query")
    assert r.headers["Content-Type"].endswith("charset=windows-1251")
    assert r.content.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    root = ET.fromstring(r.content)  # valid XML in the encoding it declares
    assert root.tag == "КоммерческаяИнформация" and root.get("ВерсияСхемы")
    docs = [d for d in parse(io.BytesIO(r.content), name="query.xml") if isinstance(d, Document)]
    want = _orders()
    assert [d.id for d in docs] == [o.id for o in want]
    for d, o in zip(docs, want, strict=True):
        assert d.operation == "Заказ товара" and d.number == o.number and d.date == o.created_at[:10]
        assert d.amount == o.total
        assert d.requisites["Кабинет"] == o.account and d.requisites["Номер заказа маркетплейса"] == o.number
        assert [(ln.id, ln.name, ln.quantity, ln.price) for ln in d.lines] == \
               [(ln.item_id, ln.name, ln.quantity, ln.price) for ln in o.lines]
        fees = [Decimal(ln.requisites["Комиссия маркетплейса"]) if "Комиссия маркетплейса" in ln.requisites else None
                for ln in d.lines]
        assert fees == [ln.fee for ln in o.lines]
        assert d.counterparties[0]["Ид"] == f"{o.marketplace}#{o.account}"
    # without success the same orders come again
    assert len([d for d in parse(io.BytesIO(c.call("query").content)) if isinstance(d, Document)]) == 2
    assert c.call("success").text == "success\n"
    again = c.call("query")
    assert [d for d in parse(io.BytesIO(again.content)) if isinstance(d, Document)] == []
    # a new order after that goes out alone
    enqueue_order(conn, OrderFor1C("ym-5", "yandex_market", "main", "5", "2026-11-26T12:00:00+00:00",
                                   [OrderLine1C("item-1", "Чашка", Decimal(1), Decimal(450))]))
    third = [d.id for d in parse(io.BytesIO(c.call("query").content)) if isinstance(d, Document)]
    assert third == ["ym-5"]
    conn.close()


def test_orders_in_utf8_when_configured(exchange_server, onec_client):
    url, cfg, _ = exchange_server(encoding="utf-8")
    conn = connect(cfg.db_path)
    enqueue_order(conn, _orders()[0])
    c = session(url, onec_client, "sale")
    r = c.call("query")
    assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert "Чашка «Утро»".encode() in r.content
    conn.close()


FEEDBACK = """<?xml version="1.0" encoding="windows-1251"?>
<КоммерческаяИнформация ВерсияСхемы="2.05">
<Документ><Ид>wb-1001</Ид><Номер>1001</Номер><Дата>2026-11-26</Дата><ХозОперация>Заказ товара</ХозОперация>
<Сумма>1299.90</Сумма><ЗначенияРеквизитов>
<ЗначениеРеквизита><Наименование>Проведен</Наименование><Значение>true</Значение></ЗначениеРеквизита>
<ЗначениеРеквизита><Наименование>Номер отгрузки по 1С</Наименование><Значение>ТД-000481</Значение></ЗначениеРеквизита>
<ЗначениеРеквизита><Наименование>Дата отгрузки по 1С</Наименование><Значение>2026-11-26</Значение></ЗначениеРеквизита>
</ЗначенияРеквизитов></Документ>
<Документ><Ид>ozon-77</Ид><Номер>0123-4567-1</Номер><Дата>2026-11-26</Дата><ХозОперация>Заказ товара</ХозОперация>
<Сумма>360.00</Сумма><ЗначенияРеквизитов>
<ЗначениеРеквизита><Наименование>Отменен</Наименование><Значение>true</Значение></ЗначениеРеквизита>
</ЗначенияРеквизитов></Документ>
</КоммерческаяИнформация>
"""


def test_status_feedback_from_1c(exchange_server, onec_client):
    url, cfg, _ = exchange_server()
    c = session(url, onec_client, "sale")
    r = c.call("file", method="POST", body=FEEDBACK.encode("cp1251"), filename="documents___1.xml")
    assert r.text == "success\n"
    conn = connect(cfg.db_path)
    assert last_status(conn, "wb-1001") == "shipped"
    assert last_status(conn, "ozon-77") == "cancelled"
    assert conn.execute("SELECT onec_number FROM onec_order_statuses WHERE order_id='wb-1001'").fetchone()[0] == "ТД-000481"
    # a broken feedback file is refused and applies nothing
    r = c.call("file", method="POST", body=FEEDBACK.encode("cp1251")[:300], filename="documents___2.xml")
    assert r.text.startswith("failure\n") and "no status was applied" in r.text
    assert conn.execute("SELECT COUNT(*) FROM onec_order_statuses").fetchone()[0] == 2
    conn.close()


def test_info_and_unknown_modes(exchange_server, onec_client):
    url, _, _ = exchange_server()
    c = session(url, onec_client, "sale")
    root = ET.fromstring(c.call("info").content)
    assert root.tag == "Справочник" and root.find("Статусы") is not None
    assert c.call("nonsense").text.startswith("failure\n")


def test_expired_session_is_refused_and_its_uploads_removed(exchange_server, onec_client, tmp_path):
    url, cfg, _ = exchange_server(zip=False)
    c = session(url, onec_client)
    c.upload("import.xml", b"<partial")
    folder = tmp_path / "exchange" / c.cookie[1]
    assert folder.is_dir()
    conn = connect(cfg.db_path)
    conn.execute("UPDATE onec_sessions SET last_seen=datetime('now', '-7 hours')")
    conn.close()
    r = c.call("import", filename="import.xml")
    assert r.text.startswith("failure\n") and "expired" in r.text
    assert onec_client(url).checkauth().text.startswith("success")  # a new session sweeps the old uploads
    assert not folder.exists()


def test_second_exchange_in_one_session_imports_its_own_files(exchange_server, onec_client, corpus):
    url, cfg, _ = exchange_server(zip=False)
    c = session(url, onec_client)
    c.upload("import.xml", (corpus / "unf-2.08__import.xml").read_bytes())
    assert c.import_until_done("import.xml")[0] == "success\n"
    c.init()  # 1C starts over without a new checkauth
    c.upload("import.xml", (corpus / "ut11-2.07__import0_1.xml").read_bytes())
    final, progress = c.import_until_done("import.xml")
    assert final == "success\n" and progress >= 1
    assert count(cfg.db_path, "SELECT COUNT(*) FROM items") == 2 + 36


def test_config_section_reads_secrets_from_the_environment(tmp_path, monkeypatch):
    from flask import Flask

    from cloud_sync.config import parse_config
    from cloud_sync.onec.exchange import ExchangeConfig, register_exchange

    monkeypatch.setenv("ONEC_TEST_PASSWORD", "from-env")
    section = parse_config({"onec": {"password_env": "ONEC_TEST_PASSWORD", "file_limit": 1000, "zip": False,
                                      "encoding": "utf-8"}}).onec
    cfg = ExchangeConfig.from_section(section, db_path=str(tmp_path / "c.db"), work_dir=str(tmp_path))
    assert (cfg.password, cfg.file_limit, cfg.zip, cfg.encoding) == ("from-env", 1000, False, "utf-8")
    assert "from-env" not in repr(cfg)

    cloud = parse_config({"onec": {"password_env": "ONEC_UNSET_VARIABLE"}})
    assert register_exchange(Flask("x"), cloud, str(tmp_path / "c.db")) is False  # no password: not served


def test_queued_orders_go_in_the_order_they_were_queued_even_after_a_refresh(tmp_path):
    """`pending_orders` lists the queue in the order orders were first put in it. It sorted by SQLite's
    rowid, which is PostgreSQL's ctid there: a refreshed order (its payload updated) moved to the end."""
    from dataclasses import replace

    from cloud_sync.onec.orders_out import pending_orders
    from cloud_sync.schema import open_db

    conn = open_db(tmp_path / "cloud.db")
    queued = [OrderFor1C(f"wb-{n}", "wildberries", "main", str(n), "2026-11-26T10:15:00+00:00",
                         [OrderLine1C("item-1", "Чашка", Decimal(1), Decimal(450))]) for n in range(1, 6)]
    for o in queued:
        enqueue_order(conn, o)
    enqueue_order(conn, replace(queued[0], status="cancelled"))  # refreshed: keeps its place
    enqueue_order(conn, replace(queued[2], comment="позвонить"))
    pending = pending_orders(conn)
    assert [o.id for o in pending] == [o.id for o in queued]
    assert pending[0].status == "cancelled" and pending[2].comment == "позвонить"
    conn.close()
