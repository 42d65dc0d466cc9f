"""The import with a parser child (`cloud_sync.onec.pipeline`: a child process parses while this one writes)
writes exactly what the single-process import writes, and a file that breaks mid-stream in the child
leaves the database as it was, with the parser's one-line error."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from cloud_sync.onec import pipeline
from cloud_sync.onec.importer import import_files
from cloud_sync.onec.parser import CommerceMLError
from cloud_sync.schema import open_db

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<КоммерческаяИнформация ВерсияСхемы="2.08">\n'

# every table the import writes, without the columns that hold the time of writing
TABLES = {
    "items": "id, article, name, group_id, unit, marked, gtin, bin, deleted, properties",
    "item_groups": "id, name, parent_id",
    "item_barcodes": "barcode, item_id",
    "price_types": "id, name, currency, is_cost",
    "item_prices": "item_id, price_type_id, price",
    "onec_warehouses": "id, name",
    "onec_balances": "item_id, warehouse_id, quantity",
    "onec_unknown_offers": "offer_id, file",
    "stock_levels": "item_id, warehouse, on_hand, reserved",
    "stock_moves": "item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,"
                   " source, ref, note",
    "stock_dirty": "item_id, cause",
}


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: sorted(tuple(r) for r in conn.execute(f"SELECT {cols} FROM {t}")) for t, cols in TABLES.items()}


def run(db, files, two_process: bool):
    conn = open_db(str(db))
    try:
        result = import_files(conn, files, two_process=two_process)
        return result.as_json(), snapshot(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("names", [
    ["unf-2.08__import.xml", "unf-2.08__offers.xml"],
    ["ut11-2.07__offers0_1.xml", "ut11-2.07__import0_1.xml"],  # offers first: placeholders, then the items
    ["bitrixmod-2.09__prices___d66a6b51-ce9c-4e7a-8c7c-25079721107f.xml",
     "bitrixmod-2.09__rests___1af6e7b8-a026-4690-9752-1c9d64cb914d.xml"],
])
def test_the_pipeline_writes_what_one_process_writes(tmp_path, corpus, names):
    files = [corpus / n for n in names]
    one_json, one_tables = run(tmp_path / "one.db", files, two_process=False)
    two_json, two_tables = run(tmp_path / "two.db", files, two_process=True)
    assert two_json == one_json
    assert two_tables == one_tables
    assert one_json["items"] + one_json["offers"] > 0 and one_tables["stock_moves"]


def catalog(path, n: int, *, break_at: int | None = None, bad: str = "") -> None:
    """n items and their offers; at offer `break_at` the text `bad` replaces the offer (a broken file)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEAD + "<Каталог><Ид>c</Ид><Товары>\n")
        for i in range(n):
            f.write(f"<Товар><Ид>item-{i}</Ид><Штрихкод>{4600000000000 + i}</Штрихкод><Артикул>A-{i}</Артикул>"
                    f"<Наименование>Товар {i}</Наименование></Товар>\n")
        f.write("</Товары></Каталог>\n<ПакетПредложений><Предложения>\n")
        for i in range(n):
            if i == break_at:
                f.write(bad)
                if bad.startswith("<Предложение"):
                    continue
                return  # cut short
            f.write(f"<Предложение><Ид>item-{i}</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>{i},5"
                    f"</ЦенаЗаЕдиницу></Цена></Цены><Склад ИдСклада=\"w\" КоличествоНаСкладе=\"{i % 7}\"/>"
                    "</Предложение>\n")
        f.write("</Предложения></ПакетПредложений></КоммерческаяИнформация>\n")


@pytest.mark.parametrize(("bad", "message"), [
    ("<Предложение><Ид>item-x</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>двадцать"
     "</ЦенаЗаЕдиницу></Цена></Цены></Предложение>\n", "broken.xml: unreadable price of offer item-x 'двадцать'"),
    ("<Предложение><Ид>item-y</Ид></Склад></Предложение>\n", "broken.xml: not well-formed XML (line "),
    ("<Предложение><Ид>item-z</Ид>&xxe;</Предложение>\n", "broken.xml: not well-formed XML (line "),
    ("<Предложение><Ид>cut short", "broken.xml: not well-formed XML (line "),
])
def test_a_file_broken_mid_stream_leaves_the_database_as_it_was(tmp_path, bad, message):
    good, broken = tmp_path / "good.xml", tmp_path / "broken.xml"
    catalog(good, 300)
    catalog(broken, 12_000, break_at=9_000, bad=bad)  # the child has sent many batches by then
    db = tmp_path / "cloud.db"
    run(db, [good], two_process=False)
    conn = open_db(str(db))
    try:
        before = snapshot(conn)
        with pytest.raises(CommerceMLError) as err:
            import_files(conn, [good, broken], two_process=True)
        assert str(err.value).startswith(message)
        assert "\n" not in str(err.value)
        assert snapshot(conn) == before
        assert not conn.in_transaction
    finally:
        conn.close()


def test_a_hostile_file_is_refused_by_the_child(tmp_path):
    hostile = tmp_path / "hostile.xml"
    hostile.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
                       "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>&e;</Ид></Товар></Товары></Каталог>"
                       "</КоммерческаяИнформация>\n", encoding="utf-8")
    conn = open_db(str(tmp_path / "cloud.db"))
    try:
        with pytest.raises(CommerceMLError, match=r"^hostile.xml: refused hostile XML: a DTD"):
            import_files(conn, [hostile], two_process=True)
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    finally:
        conn.close()


def test_the_path_is_chosen_by_size(tmp_path):
    small = tmp_path / "small.xml"
    catalog(small, 10)
    assert not pipeline.worth_it([small])
    assert pipeline.worth_it([small], min_bytes=small.stat().st_size)
    assert not pipeline.worth_it([tmp_path / "missing.xml"])


def test_from_a_thread_the_child_is_a_fresh_interpreter(tmp_path, corpus):
    """The exchange imports in a background thread: the child is never a fork (a lock held by another
    thread would stay locked in it) but a fresh interpreter (spawn), with the same result."""
    files = [corpus / "unf-2.08__import.xml", corpus / "unf-2.08__offers.xml"]
    one_json, one_tables = run(tmp_path / "one.db", files, two_process=False)
    out: dict = {}

    def work() -> None:
        out["method"] = pipeline._context().get_start_method()
        out["result"] = run(tmp_path / "two.db", files, two_process=True)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert out["method"] == "spawn"
    assert out["result"] == (one_json, one_tables)


def test_without_a_child_process_the_import_parses_here(tmp_path, corpus, monkeypatch):
    files = [corpus / "unf-2.08__import.xml", corpus / "unf-2.08__offers.xml"]
    expected = run(tmp_path / "one.db", files, two_process=False)

    def refused(paths):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(pipeline, "ChildParser", refused)
    assert run(tmp_path / "two.db", files, two_process=True) == expected
