"""The parser's memory does not grow with the catalog: the Python allocation peak (tracemalloc) for a
8,000-item file is about that of a 1,000-item file (records leave the tree as soon as they are out)."""

from __future__ import annotations

import tracemalloc

from cloud_sync.onec.parser import parse

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<КоммерческаяИнформация ВерсияСхемы="2.08">\n'


def catalog(path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEAD + "<Каталог><Ид>c</Ид><Товары>\n")
        for i in range(n):
            f.write(f"<Товар><Ид>item-{i}</Ид><Штрихкод>{4600000000000 + i}</Штрихкод><Артикул>A-{i}</Артикул>"
                    f"<Наименование>Товар {i}</Наименование><Группы><Ид>g</Ид></Группы></Товар>\n")
        f.write("</Товары></Каталог>\n<ПакетПредложений><Предложения>\n")
        for i in range(n):
            f.write(f"<Предложение><Ид>item-{i}</Ид><Цены><Цена><ИдТипаЦены>p</ИдТипаЦены><ЦенаЗаЕдиницу>{i},5"
                    f"</ЦенаЗаЕдиницу></Цена></Цены><Склад ИдСклада=\"w\" КоличествоНаСкладе=\"{i % 7}\"/></Предложение>\n")
        f.write("</Предложения></ПакетПредложений></КоммерческаяИнформация>\n")


def peak(path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for _ in parse(path))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_does_not_grow_with_the_catalog(tmp_path):
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    catalog(small, 1_000)
    catalog(large, 8_000)
    n_small, p_small = peak(small)
    n_large, p_large = peak(large)
    assert (n_small, n_large) == (2_002, 16_002)  # items + offers + the two package records
    assert p_large < p_small * 1.5 + 256 * 1024, (p_small, p_large)
