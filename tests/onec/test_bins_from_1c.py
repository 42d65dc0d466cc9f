"""1C's storage bins reach the sites: CommerceML has no bin element, so 1C sends one where it does as a
requisite or a property «Ячейка» of the item or of its offer; it lands in the item's bin and goes down to
the sites in the next `catalog` message (the link's existing contract)."""

from __future__ import annotations

import json

from cloud_sync.onec.importer import import_files
from cloud_sync.schema import open_db

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<КоммерческаяИнформация ВерсияСхемы="2.08">\n'


def _req(name: str, value: str) -> str:
    return (f"<ЗначенияРеквизитов><ЗначениеРеквизита><Наименование>{name}</Наименование>"
            f"<Значение>{value}</Значение></ЗначениеРеквизита></ЗначенияРеквизитов>")


def package(folder, offers_bin: str = "C-03"):
    imp, off = folder / "import.xml", folder / "offers.xml"
    imp.write_text(HEAD + '<Классификатор><Ид>k</Ид><Свойства><Свойство><Ид>p-bin</Ид><Наименование>Адрес хранения'
                   "</Наименование></Свойство></Свойства></Классификатор><Каталог><Ид>c</Ид><Товары>"
                   "<Товар><Ид>a</Ид><Наименование>Кружка</Наименование>" + _req("Ячейка", "A-01") + "</Товар>"
                   "<Товар><Ид>b</Ид><Наименование>Рюкзак</Наименование><ЗначенияСвойств><ЗначенияСвойства>"
                   "<Ид>p-bin</Ид><Значение>B-02</Значение></ЗначенияСвойства></ЗначенияСвойств></Товар>"
                   "<Товар><Ид>c</Ид><Наименование>Носки</Наименование></Товар>"
                   "</Товары></Каталог></КоммерческаяИнформация>", encoding="utf-8")
    off.write_text(HEAD + "<ПакетПредложений><Предложения>"
                   "<Предложение><Ид>a</Ид><Количество>1</Количество></Предложение>"
                   f"<Предложение><Ид>c</Ид>{_req('Ячейка', offers_bin)}<Количество>2</Количество></Предложение>"
                   "</Предложения></ПакетПредложений></КоммерческаяИнформация>", encoding="utf-8")
    return [imp, off]


def test_a_bin_requisite_or_property_of_1c_becomes_the_items_bin(tmp_path):
    conn = open_db(tmp_path / "cloud.db")
    import_files(conn, package(tmp_path))
    bins = dict(conn.execute("SELECT id, bin FROM items ORDER BY id").fetchall())
    assert bins == {"a": "A-01", "b": "B-02", "c": "C-03"}
    props = json.loads(conn.execute("SELECT properties FROM items WHERE id='b'").fetchone()[0])
    assert "Адрес хранения" not in props  # the bin, not a card property to publish
    import_files(conn, package(tmp_path, offers_bin="C-04"))  # 1C moved the socks
    assert conn.execute("SELECT bin FROM items WHERE id='c'").fetchone()[0] == "C-04"
    conn.close()


def test_the_bins_go_down_to_the_site_in_its_catalog(tmp_path):
    from cloud_sync.config import parse_config
    from cloud_sync.orders import site_messages

    conn = open_db(tmp_path / "cloud.db")
    import_files(conn, package(tmp_path))
    conn.execute("UPDATE items SET updated_at=datetime('now', '-1 minute')")
    cfg = parse_config({"sites": {"site-1": {"warehouses": ["default"]}}})
    assert site_messages.send_site_catalogs(conn, cfg) == 3
    rows = conn.execute("SELECT type, payload FROM link_outbox").fetchall()
    (kind, payload), = rows
    items = {i["item_id"]: i.get("bin") for i in json.loads(payload)["body"]["items"]}
    assert kind == "catalog" and items == {"a": "A-01", "b": "B-02", "c": "C-03"}
    conn.close()
