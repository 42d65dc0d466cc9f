"""1C re-sends its package: what changed is applied (prices, balances as ledger moves), what did not
change is left as it was (no new ledger move, an equal price not rewritten), the counts are those of
the package; the ledger is fed in one batch per offers batch and keeps reservations."""

from __future__ import annotations

from decimal import Decimal

from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.onec.importer import import_files
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<КоммерческаяИнформация ВерсияСхемы="2.08">\n'


def package(folder, prices: dict[str, str], stock_: dict[str, dict[str, int]]):
    imp, off = folder / "import.xml", folder / "offers.xml"
    imp.write_text(HEAD + "<Каталог><Ид>c</Ид><Товары>" + "".join(
        f"<Товар><Ид>{i}</Ид><Артикул>A-{i}</Артикул><Наименование>Товар {i}</Наименование>"
        f"<Штрихкод>460000000000{n}</Штрихкод></Товар>" for n, i in enumerate(prices))
        + "</Товары></Каталог></КоммерческаяИнформация>", encoding="utf-8")
    off.write_text(HEAD + "<ПакетПредложений><ТипыЦен><ТипЦены><Ид>r</Ид><Наименование>Розничная</Наименование>"
                   "</ТипЦены></ТипыЦен><Предложения>" + "".join(
                       f"<Предложение><Ид>{i}</Ид><Цены><Цена><ИдТипаЦены>r</ИдТипаЦены><ЦенаЗаЕдиницу>{p}"
                       "</ЦенаЗаЕдиницу></Цена></Цены>" + "".join(
                           f'<Склад ИдСклада="{w}" КоличествоНаСкладе="{q}"/>' for w, q in stock_[i].items())
                       + "</Предложение>" for i, p in prices.items())
                   + "</Предложения></ПакетПредложений></КоммерческаяИнформация>", encoding="utf-8")
    return [imp, off]


def test_only_changes_are_written(tmp_path):
    conn = open_db(tmp_path / "cloud.db")
    first = package(tmp_path, {"a": "10,50", "b": "20"}, {"a": {"w1": 5, "w2": 1}, "b": {"w1": 3}})
    r = import_files(conn, first)
    assert (r.items, r.offers, len(r.barcodes)) == (2, 2, 2)
    assert conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0] == 3
    with transaction(conn):
        ledger.reserve(conn, "wb:1", "a", "w1", 2)
    before = conn.total_changes  # an unchanged price is not rewritten (no row changes), a changed one is
    nom.set_item_prices(conn, [("a", "r", Decimal("10.50")), ("b", "r", Decimal(20))])
    assert conn.total_changes == before
    nom.set_item_prices(conn, [("a", "r", Decimal("10.50")), ("b", "r", Decimal(21))])
    assert conn.total_changes == before + 1

    again = package(tmp_path, {"a": "11", "b": "20"}, {"a": {"w1": 4, "w2": 1}, "b": {"w1": 3}})
    r = import_files(conn, again)
    assert (r.items, r.offers, r.warnings) == (2, 2, [])
    assert r.prices == {"a": {"r": 11}, "b": {"r": 20}}
    prices = dict(conn.execute("SELECT item_id, price FROM item_prices").fetchall())
    assert prices == {"a": "11", "b": "20"}
    # one new move: a at w1 5 -> 4, its reservation kept
    moves = conn.execute("SELECT item_id, warehouse, kind, on_hand_delta, on_hand_after, reserved_after, ref"
                         " FROM stock_moves WHERE kind='balance' ORDER BY id").fetchall()
    assert [tuple(m) for m in moves[3:]] == [("a", "w1", "balance", -1, 4, 2, "1c:offers.xml")]
    lv = ledger.level(conn, "a", "w1")
    assert (lv.on_hand, lv.reserved) == (4, 2)
    conn.close()
