"""Bad and hostile CommerceML: a clear one-line error, a non-zero exit, and the database as it was.
Also the variants real exports come in: windows-1251, a UTF-8 BOM, decimal commas, 3.x namespaces."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.cli.onec import main
from cloud_sync.onec.parser import CommerceMLError, read_all

GOOD = """<?xml version="1.0" encoding="{enc}"?>
<КоммерческаяИнформация xmlns="{ns}" ВерсияСхемы="{ver}">
<Классификатор><Ид>c</Ид><Группы><Группа><Ид>g1</Ид><Наименование>Посуда</Наименование></Группа></Группы></Классификатор>
<Каталог СодержитТолькоИзменения="true"><Ид>c</Ид><Товары>
<Товар><Ид>i1</Ид><Артикул>ЧШ-1</Артикул><Наименование>Чашка «Утро»</Наименование><Штрихкод>4600000000011</Штрихкод>
<Группы><Ид>g1</Ид></Группы></Товар>
</Товары></Каталог>
<ПакетПредложений СодержитТолькоИзменения="true"><ТипыЦен><ТипЦены><Ид>p</Ид><Наименование>Розница</Наименование>
<Валюта>643</Валюта></ТипЦены></ТипыЦен><Предложения>
<Предложение><Ид>i1</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>1 234,50</ЦенаЗаЕдиницу></Цена></Цены>
<Остатки><Остаток><Склад><Ид>w1</Ид><Количество>3,000</Количество></Склад></Остаток></Остатки></Предложение>
</Предложения></ПакетПредложений>
</КоммерческаяИнформация>
"""


def write(tmp_path, name: str, text: str, enc: str = "utf-8", bom: bool = False):
    p = tmp_path / name
    data = text.encode(enc)
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return p


def dump(db) -> list[str]:
    """Everything in the database: SQLite's dump of the file (schema and rows); on PostgreSQL every table's
    rows (the test's schema), sorted."""
    if not cloud_db.is_postgres(db):
        conn = sqlite3.connect(db)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    conn = cloud_db.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return [f"{t}: {row}" for t in tables
                for row in sorted(repr(tuple(r)) for r in conn.execute(f"SELECT * FROM {t}"))]
    finally:
        conn.close()


@pytest.mark.parametrize("enc,ns,ver,bom", [
    ("windows-1251", "", "2.03", False),
    ("UTF-8", "urn:1C.ru:commerceml_2", "2.10", True),
    ("UTF-8", "urn:1C.ru:commerceml_3", "3.1", False),
])
def test_encodings_namespaces_and_decimal_commas(tmp_path, capsys, enc, ns, ver, bom):
    p = write(tmp_path, "import.xml", GOOD.format(enc=enc, ns=ns, ver=ver), "cp1251" if enc != "UTF-8" else "utf-8", bom)
    assert main(["import", str(p), "--db", str(tmp_path / "c.db")]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["items"] == 1 and got["groups"] == 1 and got["barcodes"] == 1
    assert got["prices"] == {"i1": {"p": 1234.5}}
    assert got["stock_total"] == {"w1": 3}
    assert got["only_changes"] is True  # an incremental package (СодержитТолькоИзменения="true")
    conn = cloud_db.connect(tmp_path / "c.db")
    conn.row_factory = None
    assert conn.execute("SELECT name, article FROM items").fetchall() == [("Чашка «Утро»", "ЧШ-1")]
    assert conn.execute("SELECT currency FROM price_types").fetchall() == [("RUB",)]


XXE = """<?xml version="1.0"?>
<!DOCTYPE КоммерческаяИнформация [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>i</Ид><Наименование>&x;</Наименование></Товар></Товары></Каталог></КоммерческаяИнформация>
"""
LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>i</Ид><Наименование>&lol3;</Наименование></Товар></Товары></Каталог></КоммерческаяИнформация>
"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE КоммерческаяИнформация SYSTEM "http://127.0.0.1:9/evil.dtd">
<КоммерческаяИнформация/>
"""


@pytest.mark.parametrize("name,text,words", [
    ("xxe.xml", XXE, "hostile"),
    ("laughs.xml", LAUGHS, "hostile"),
    ("dtd.xml", EXTERNAL_DTD, "hostile"),
    ("truncated.xml", GOOD.format(enc="UTF-8", ns="", ver="2.08")[:700], "not well-formed"),
    ("other.xml", "<?xml version='1.0'?><rss><channel/></rss>", "not CommerceML"),
    ("empty.xml", "", "not well-formed"),
    ("badprice.xml", GOOD.format(enc="UTF-8", ns="", ver="2.08").replace("1 234,50", "12три"), "unreadable price"),
])
def test_invalid_file_fails_and_leaves_the_database_as_it_was(tmp_path, capsys, name, text, words):
    db = tmp_path / "c.db"
    good = write(tmp_path, "good.xml", GOOD.format(enc="UTF-8", ns="", ver="2.08"))
    assert main(["import", str(good), "--db", str(db)]) == 0
    capsys.readouterr()
    before = dump(db)
    # a good file first in the same run: the bad one after it must roll the whole run back
    other = write(tmp_path, "good2.xml", GOOD.format(enc="UTF-8", ns="", ver="2.08").replace("i1", "i2"))
    bad = write(tmp_path, name, text)
    code = main(["import", str(other), str(bad), "--db", str(db)])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and words in err and name in err
    assert "root:" not in err  # never the content of a file the XML pointed at
    assert dump(db) == before


def test_parser_never_reads_what_the_xml_points_at(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    p = write(tmp_path, "x.xml", XXE.replace("file:///etc/passwd", secret.as_uri()))
    with pytest.raises(CommerceMLError) as exc:
        read_all(p)
    assert "TOP-SECRET" not in str(exc.value)


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.xml"), "--db", str(tmp_path / "c.db")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("data,words", [
    ('<?xml version="1.0"?>\n<!-- a comment -->\n<!DOCTYPE a [<!ENTITY x "y">]><КоммерческаяИнформация/>'.encode(), "DTD"),
    ('<?xml version="1.0" encoding="UTF-16"?><КоммерческаяИнформация/>'.encode("utf-16"), "UTF-16"),
    (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE a+AD4-<a/>', "UTF-7"),
    (b"\xef\xbb\xbf<!ENTITY x 'y'><a/>", "DTD"),
])
def test_prolog_tricks_refused(tmp_path, data, words):
    p = tmp_path / "x.xml"
    p.write_bytes(data)
    with pytest.raises(CommerceMLError) as exc:
        read_all(p)
    assert words in str(exc.value)


def test_unseekable_stream_is_read_whole(tmp_path):
    import io

    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, b):
            chunk = self.buf.read(len(b))
            b[:len(chunk)] = chunk
            return len(chunk)

    data = GOOD.format(enc="UTF-8", ns="", ver="2.08").encode()
    records = read_all(io.BufferedReader(Pipe(data)))
    assert [type(r).__name__ for r in records].count("CatalogItem") == 1
