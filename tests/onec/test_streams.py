"""A 1C package of catalog files followed by offer files is parsed by two child processes at once and
applied side by side (`cloud_sync.onec.pipeline.streams` / `side_by_side`): the outcome — every table,
the summary, the warnings — is what reading the files in order gives, whichever stream runs ahead; a
file that carries what the other stream writes sends the package through again, in order; a broken
file in either stream leaves the database as it was."""

from __future__ import annotations

import pytest

from cloud_sync.onec import pipeline
from cloud_sync.onec.importer import import_files
from cloud_sync.onec.parser import CommerceMLError
from cloud_sync.schema import open_db

from .test_pipeline import HEAD, run, snapshot


def test_which_packages_are_read_as_two_streams():
    assert pipeline.streams(["a/import.xml", "a/offers.xml"]) == (["a/import.xml"], ["a/offers.xml"])
    assert pipeline.streams(["import0_1.xml", "offers0_1.xml", "prices0_1.xml", "rests0_1.xml"]) == (
        ["import0_1.xml"], ["offers0_1.xml", "prices0_1.xml", "rests0_1.xml"])
    assert pipeline.streams(["ut__import___1.xml", "ut__import___2.xml", "ut__offers___1.xml"]) == (
        ["ut__import___1.xml", "ut__import___2.xml"], ["ut__offers___1.xml"])
    assert pipeline.streams(["offers.xml", "import.xml"]) is None  # offers first: in order
    assert pipeline.streams(["import.xml", "offers.xml", "import2.xml"]) is None
    assert pipeline.streams(["import.xml", "catalog.xml"]) is None  # a name that says nothing
    assert pipeline.streams(["offers.xml", "rests.xml"]) is None  # one stream only
    assert pipeline.streams(["reimported.xml", "offers.xml"]) is None
    assert pipeline.streams(["a/import.xml", "a/offers.xml", "b/offers.xml"]) is None  # one name twice


def write_catalog(path, n: int, *, groups: int = 7) -> None:
    """A catalog of n items (with properties, so it parses slower than its offers)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEAD + "<Классификатор><Группы>")
        f.write("".join(f"<Группа><Ид>g{g}</Ид><Наименование>Группа {g}</Наименование></Группа>"
                        for g in range(groups)))
        f.write("</Группы></Классификатор><Каталог><Ид>c</Ид><Товары>\n")
        for i in range(n):
            f.write(f"<Товар><Ид>item-{i}</Ид><Штрихкод>{4600000000000 + i}</Штрихкод><Артикул>A-{i}</Артикул>"
                    f"<Наименование>Товар {i}</Наименование><Группы><Ид>g{i % groups}</Ид></Группы>"
                    "<ЗначенияРеквизитов><ЗначениеРеквизита><Наименование>Вес</Наименование><Значение>0,5"
                    "</Значение></ЗначениеРеквизита></ЗначенияРеквизитов></Товар>\n")
        f.write("</Товары></Каталог></КоммерческаяИнформация>\n")


def write_offers(path, ids: list[str], *, bad_at: int | None = None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEAD + "<ПакетПредложений><ТипыЦен><ТипЦены><Ид>p</Ид><Наименование>Розничная</Наименование>"
                "</ТипЦены></ТипыЦен><Предложения>\n")
        for k, oid in enumerate(ids):
            if k == bad_at:
                f.write("<Предложение><Ид>cut")
                return
            extra = f"<Штрихкод>2900000{k:06d}</Штрихкод>" if k % 5 == 0 else ""
            f.write(f"<Предложение><Ид>{oid}</Ид>{extra}<Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>"
                    f"{k},5</ЦенаЗаЕдиницу></Цена></Цены><Склад ИдСклада=\"w\" КоличествоНаСкладе=\"{k % 9}\"/>"
                    "</Предложение>\n")
        f.write("</Предложения></ПакетПредложений></КоммерческаяИнформация>\n")


def spy_children(monkeypatch) -> list[list[str]]:
    started: list[list[str]] = []
    real = pipeline.ChildParser

    def counting(paths):
        started.append([str(p).rsplit("/", 1)[-1] for p in paths])
        return real(paths)

    monkeypatch.setattr(pipeline, "ChildParser", counting)
    return started


def test_offers_running_ahead_of_their_items_come_out_as_in_order(tmp_path, monkeypatch):
    """The offers file is small and parses in no time, the catalog is large: most offers reach the
    writer before their items. They wait for the catalog; no placeholder is made for an item the
    catalog describes later, characteristics take their item's name, an offer's barcode joins its
    item's, and an offer of an item nobody describes is still reported — as reading in order does."""
    n = 6000
    imp, off = tmp_path / "import.xml", tmp_path / "offers.xml"
    write_catalog(imp, n)
    ids = [f"item-{i}" for i in range(n - 1, -1, -3)] + ["item-7#red", "ghost-1", "ghost-2#xl"]
    write_offers(off, ids)
    in_order = run(tmp_path / "one.db", [imp, off], two_process=False)
    started = spy_children(monkeypatch)
    side_by_side = run(tmp_path / "two.db", [imp, off], two_process=True)
    assert started == [["import.xml"], ["offers.xml"]]  # two children, one per stream
    assert side_by_side == in_order
    summary, tables = side_by_side
    assert summary["unknown_offers"] == 2 and summary["variants"] == 2
    assert [w for w in summary["warnings"] if "not described" in w] == [
        "offers.xml: 2 offer(s) name items 1C has not described in the catalog; kept as placeholder items "
        "until it does: ghost-1, ghost-2#xl"]
    names = {row[0]: row[2] for row in tables["items"]}
    assert names["item-7#red"] == "Товар 7" and names["ghost-1"] == "ghost-1"
    assert ("2900000000000", f"item-{n - 1}") in tables["item_barcodes"]
    assert len(tables["item_prices"]) == len(ids)


def test_a_catalog_file_that_also_carries_offers_is_read_again_in_order(tmp_path, monkeypatch):
    """import.xml with a ПакетПредложений of its own: its offers and offers.xml's could land in either
    order side by side, so the package goes again through one child, in order; the result is the
    in-order one (offers.xml's price, read last, wins)."""
    imp, off = tmp_path / "import.xml", tmp_path / "offers.xml"
    with open(imp, "w", encoding="utf-8") as f:
        f.write(HEAD + "<Каталог><Товары><Товар><Ид>a</Ид><Наименование>A</Наименование></Товар></Товары></Каталог>"
                "<ПакетПредложений><Предложения><Предложение><Ид>a</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены>"
                "<ЦенаЗаЕдиницу>1</ЦенаЗаЕдиницу></Цена></Цены></Предложение></Предложения></ПакетПредложений>"
                "</КоммерческаяИнформация>\n")
    write_offers(off, ["a"])
    in_order = run(tmp_path / "one.db", [imp, off], two_process=False)
    started = spy_children(monkeypatch)
    again = run(tmp_path / "two.db", [imp, off], two_process=True)
    assert started == [["import.xml"], ["offers.xml"], ["import.xml", "offers.xml"]]
    assert again == in_order
    assert again[1]["item_prices"] == [("a", "p", "0.5")]


@pytest.mark.parametrize("broken", ["catalog", "offers"])
def test_a_broken_file_in_either_stream_leaves_the_database_as_it_was(tmp_path, broken):
    imp, off = tmp_path / "import.xml", tmp_path / "offers.xml"
    write_catalog(imp, 3000)
    if broken == "catalog":
        imp.write_bytes(imp.read_bytes()[:-2000])  # cut short
    write_offers(off, [f"item-{i}" for i in range(3000)], bad_at=2500 if broken == "offers" else None)
    db = tmp_path / "cloud.db"
    conn = open_db(str(db))
    try:
        before = snapshot(conn)
        with pytest.raises(CommerceMLError, match=rf"^{'import' if broken == 'catalog' else 'offers'}.xml: "
                                                  r"not well-formed XML \(line \d+\)"):
            import_files(conn, [imp, off], two_process=True)
        assert snapshot(conn) == before
        assert not conn.in_transaction
        assert conn.execute("PRAGMA defer_foreign_keys").fetchone()[0] == 0
    finally:
        conn.close()
