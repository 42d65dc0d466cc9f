"""Every real export in ../shared/corpus/commerceml imports with the right counts.

The expected figures are counted here independently, with the standard library's ElementTree over
the same bytes (the corpus is trusted input), never taken from the parser under test."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.cli.onec import main
from cloud_sync.onec.parser import Document, read_all


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn


CATALOG_RUNS = [
    ["unf-2.08__import.xml", "unf-2.08__offers.xml"],
    ["ut11-2.07__import0_1.xml", "ut11-2.07__offers0_1.xml"],
    ["unf-2.08__import.xml"],
    ["unf-2.08__offers.xml"],
    ["ut11-2.07__import0_1.xml"],
    ["ut11-2.07__offers0_1.xml"],
    ["bitrixmod-2.09__prices___d66a6b51-ce9c-4e7a-8c7c-25079721107f.xml"],
    ["bitrixmod-2.09__rests___1af6e7b8-a026-4690-9752-1c9d64cb914d.xml"],
    ["bitrixmod-2.09__prices___d66a6b51-ce9c-4e7a-8c7c-25079721107f.xml",
     "bitrixmod-2.09__rests___1af6e7b8-a026-4690-9752-1c9d64cb914d.xml"],
]


def _ln(tag: str) -> str:
    return tag.rpartition("}")[2]


def _num(text: str) -> Decimal:
    return Decimal(text.strip().replace(" ", "").replace(",", "."))


def expected(paths) -> dict:
    """Count what the files say, independently of cloud_sync.onec."""
    items: set[str] = set()
    groups = 0
    barcodes: set[str] = set()
    price_types: set[str] = set()
    offers = 0
    warehouses: set[str] = set()
    stock: dict[str, Decimal] = {}
    prices: dict[str, dict[str, Decimal]] = {}
    for path in paths:
        root = ET.parse(path).getroot()
        parents = {child: parent for parent in root.iter() for child in parent}
        for el in root.iter():
            t = _ln(el.tag)
            parent = parents.get(el)
            if t == "Товар" and parent is not None and _ln(parent.tag) == "Товары" and \
                    _ln(parents[parent].tag) == "Каталог":
                items.add(next(c.text.strip() for c in el if _ln(c.tag) == "Ид"))
            elif t == "Группа":
                groups += 1
            elif t == "Штрихкод" and el.text and el.text.strip():
                barcodes.add(el.text.strip())
            elif t == "ТипЦены":
                price_types.add(next(c.text.strip() for c in el if _ln(c.tag) == "Ид"))
            elif t == "Склад" and parent is not None and _ln(parent.tag) == "Склады":
                warehouses.add(next(c.text.strip() for c in el if _ln(c.tag) == "Ид"))
            elif t == "Предложение":
                offers += 1
                oid = next(c.text.strip() for c in el if _ln(c.tag) == "Ид")
                own: dict[str, Decimal] = {}
                total = None
                for c in el.iter():
                    ct = _ln(c.tag)
                    if ct == "Цена":
                        f = {_ln(x.tag): (x.text or "").strip() for x in c}
                        price_types.add(f["ИдТипаЦены"])
                        prices.setdefault(oid, {})[f["ИдТипаЦены"]] = _num(f["ЦенаЗаЕдиницу"])
                    elif ct == "Склад" and c.get("ИдСклада"):
                        own[c.get("ИдСклада")] = own.get(c.get("ИдСклада"), Decimal(0)) + _num(c.get("КоличествоНаСкладе"))
                    elif ct == "Остаток":
                        for s in c:
                            if _ln(s.tag) == "Склад":
                                f = {_ln(x.tag): (x.text or "").strip() for x in s}
                                own[f["Ид"]] = own.get(f["Ид"], Decimal(0)) + _num(f["Количество"])
                    elif ct == "Количество" and parents[c] is el:
                        total = _num(c.text)
                if not own and total is not None:
                    own = {"default": total}
                for w, q in own.items():
                    warehouses.add(w)
                    stock[w] = stock.get(w, Decimal(0)) + q
    return {"items": len(items), "groups": groups, "barcodes": len(barcodes), "price_types": len(price_types),
            "offers": offers, "warehouses": len(warehouses),
            "stock_total": {w: float(q) for w, q in stock.items()},
            "prices": {i: {t: float(p) for t, p in ps.items()} for i, ps in prices.items()}}


def run_cli(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return code, (json.loads(last) if code == 0 else None), err


@pytest.mark.parametrize("names", CATALOG_RUNS, ids=lambda n: "+".join(x.split("__")[0] + ":" + x.split("__")[1][:12] for x in n))
def test_corpus_imports_with_the_right_counts(corpus, tmp_path, capsys, names):
    paths = [corpus / n for n in names]
    code, got, err = run_cli(capsys, "import", *map(str, paths), "--db", str(tmp_path / "c.db"))
    assert code == 0, err
    want = expected(paths)
    for key in ("items", "groups", "barcodes", "price_types", "offers", "warehouses"):
        assert got[key] == want[key], key
    assert {w: float(q) for w, q in got["stock_total"].items()} == want["stock_total"]
    assert {i: {t: float(p) for t, p in ps.items()} for i, ps in got["prices"].items()} == want["prices"]


def test_ut11_holdout_facts(corpus, tmp_path, capsys):
    db = tmp_path / "c.db"
    code, got, err = run_cli(capsys, "import", str(corpus / "ut11-2.07__import0_1.xml"),
                             str(corpus / "ut11-2.07__offers0_1.xml"), "--db", str(db))
    assert code == 0, err
    assert got["items"] == 36
    conn = cloud_conn(db)
    assert conn.execute("SELECT article FROM items WHERE id='bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1'").fetchone() == ("PM-421-WP",)
    assert conn.execute("SELECT barcode FROM item_barcodes WHERE item_id='bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1'"
                        ).fetchall() == [("8809288404089",)]
    names = {r[0] for r in conn.execute("SELECT name FROM onec_warehouses")}
    assert names == {"Владивосток", "Новосибирск", "Москва"}
    stock = dict(conn.execute("SELECT w.name, b.quantity FROM onec_balances b JOIN onec_warehouses w ON w.id=b.warehouse_id"
                              " WHERE b.item_id='bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1'"))
    assert {k: Decimal(v) for k, v in stock.items()} == {"Владивосток": 1, "Новосибирск": 0, "Москва": 376}
    assert got["prices"]["bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1"] == {"279b6812-740b-11e8-80c8-0cc47ab29cd1": 100}
    # 8 of the 44 offers name goods the import file does not hold: reported, not dropped
    assert got["unknown_offers"] == 8
    assert any("8 offer(s) name items" in w for w in got["warnings"])
    assert conn.execute("SELECT COUNT(*) FROM onec_unknown_offers").fetchone()[0] == 8
    assert conn.execute("SELECT COUNT(*) FROM item_prices").fetchone()[0] == 44
    # the decimal comma of a numeric property is read as a number
    props = json.loads(conn.execute("SELECT properties FROM items WHERE id='bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1'").fetchone()[0])
    assert props["Габарит_Вес"] == "1.4"
    # the stock ledger holds 1C's balances too
    assert conn.execute("SELECT on_hand FROM stock_levels WHERE item_id='bd8c4e15-18f9-11e7-80c2-0cc47ab29cd1'"
                        " AND warehouse='dd306af1-19c9-11e7-80c2-0cc47ab29cd1'").fetchone() == (376,)


def test_unf_characteristics_become_items(corpus, tmp_path, capsys):
    db = tmp_path / "c.db"
    code, got, err = run_cli(capsys, "import", str(corpus / "unf-2.08__import.xml"), str(corpus / "unf-2.08__offers.xml"),
                             "--db", str(db))
    assert code == 0, err
    variants = {i: p for i, p in got["prices"].items() if i.startswith("ffce323d-c133-11e8-8111-0050569b2b72#")}
    assert len(variants) == 2
    assert all(sorted(p.values()) == [10500, 10500, 15500] for p in variants.values())
    assert got["stock_total"] == {"default": 7}  # quantities 2 and 5, no warehouse named
    conn = cloud_conn(db)
    rows = conn.execute("SELECT article, group_id FROM items WHERE id LIKE 'ffce323d-c133-11e8-8111-0050569b2b72#%'").fetchall()
    assert rows == [("NF-00005894", "ffce323c-c133-11e8-8111-0050569b2b72")] * 2
    assert conn.execute("SELECT currency FROM price_types").fetchall() == [("RUB",)] * 3  # «руб» read as RUB
    assert got["warnings"] == []


def test_rests_file_element_style(corpus, tmp_path, capsys):
    code, got, err = run_cli(capsys, "import", str(corpus / "bitrixmod-2.09__rests___1af6e7b8-a026-4690-9752-1c9d64cb914d.xml"),
                             "--db", str(tmp_path / "c.db"))
    assert code == 0, err
    assert got["offers"] == 978 and list(got["stock_total"]) == ["5d1caeb1-44b2-11e4-a628-003048c64779"]
    conn = cloud_conn(tmp_path / "c.db")
    assert conn.execute("SELECT COUNT(*) FROM onec_balances").fetchone()[0] == 978


def test_order_documents_parse(corpus):
    full = [r for r in read_all(corpus / "site-query-2.05-cp1251__orders-full.xml") if isinstance(r, Document)]
    assert [(d.number, d.amount) for d in full] == [("132", Decimal("231.74")), ("133", Decimal("14380.58"))]
    assert full[0].requisites["Статус заказа"] == "[N] Принят, ожидается оплата"
    assert sum(len(d.lines) for d in full) == 8
    assert read_all(corpus / "site-query-2.05-cp1251__orders-empty.xml") == []
    (old,) = read_all(corpus / "site-orders-2.03-cp1251__orders.xml")
    assert old.amount == Decimal("9683.42")
    services = [ln for ln in old.lines if ln.requisites.get("ТипНоменклатуры") == "Услуга"]
    assert [(ln.id, ln.amount) for ln in services] == [("ORDER_DELIVERY", Decimal("348.00"))]
    assert len(old.lines) == 2


@pytest.mark.parametrize("name", ["site-query-2.05-cp1251__orders-full.xml", "site-query-2.05-cp1251__orders-empty.xml",
                                  "site-orders-2.03-cp1251__orders.xml"])
def test_order_files_import_as_documents(corpus, tmp_path, capsys, name):
    code, got, err = run_cli(capsys, "import", str(corpus / name), "--db", str(tmp_path / "c.db"))
    assert code == 0, err
    want = sum(1 for el in ET.parse(corpus / name).getroot() if _ln(el.tag) == "Документ")
    assert got["documents"] == want and got["items"] == 0 and got["offers"] == 0


def test_query_answer_has_the_shape_of_a_sites_answer(corpus):
    """Our mode=query answer against the exact bytes a 1C-Bitrix site returns (corpus file 7): the same
    root attributes, and the fields of a document and of a goods line in the same order."""
    from cloud_sync.onec.orders_out import OrderFor1C, OrderLine1C, orders_xml

    ref = ET.parse(corpus / "site-query-2.05-cp1251__orders-full.xml").getroot()
    ours = ET.fromstring(orders_xml([OrderFor1C("wb:1", "wildberries", "main", "1", "2026-11-26T10:00:00+00:00",
                                                [OrderLine1C("i-1", "Чашка", Decimal(1), Decimal(10), Decimal(1))])]))
    assert set(ref.attrib) == set(ours.attrib)

    def order_of(el):
        return [_ln(c.tag) for c in el]

    def is_subsequence(small, big):
        it = iter(big)
        return all(x in it for x in small)

    ref_doc, our_doc = ref.find("Документ"), ours.find("Документ")
    assert is_subsequence(order_of(our_doc), order_of(ref_doc))
    assert is_subsequence(order_of(our_doc.find("Товары/Товар")), order_of(ref_doc.find("Товары/Товар")))
