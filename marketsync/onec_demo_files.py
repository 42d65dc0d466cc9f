"""CommerceML 2 files for the demo's "1C": the demo catalog as a УНФ-style import.xml and offers.xml.

The demo feeds them through the same 1C import that a seller's 1C uses, so the nomenclature, the
barcodes, the prices (retail and cost) and the warehouse balances reach the cloud the real way.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from marketplaces.sandbox.seed import DemoItem

WAREHOUSE_ID = "wh-main"
WAREHOUSE_NAME = "Основной склад"
RETAIL_PRICE_TYPE = "pt-retail"
COST_PRICE_TYPE = "pt-cost"

FORMED_AT = "2026-11-26T09:00:00"  # the morning package's ДатаФормирования (1C's local time)


def _head(formed_at: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<КоммерческаяИнформация ВерсияСхемы="2.08" ДатаФормирования="{formed_at}">\n')


def demo_bin(index: int) -> str:
    """The demo warehouse's bin of item `index`: rows A.., eight shelves each (A-01 … A-08, B-01 …)."""
    return f"{chr(ord('A') + (index - 1) // 8 % 26)}-{(index - 1) % 8 + 1:02d}"


def write_files(items: list[DemoItem], folder: Path, formed_at: str = FORMED_AT) -> list[Path]:
    """import.xml and offers.xml of the demo catalog, formed by 1C at `formed_at` (its local time)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = sorted({it.category for it in items})
    group_id = {name: f"grp-{i + 1}" for i, name in enumerate(groups)}
    imp = [_head(formed_at), "<Классификатор><Ид>demo-classifier</Ид><Наименование>Демо</Наименование><Группы>\n"]
    for name in groups:
        imp.append(f"<Группа><Ид>{group_id[name]}</Ид><Наименование>{escape(name)}</Наименование></Группа>\n")
    imp.append("</Группы></Классификатор>\n")
    imp.append('<Каталог СодержитТолькоИзменения="false"><Ид>demo-catalog</Ид><ИдКлассификатора>demo-classifier</ИдКлассификатора>'
               "<Наименование>Демо</Наименование><Товары>\n")
    for it in items:
        imp.append(
            f"<Товар><Ид>{it.item_id}</Ид><Штрихкод>{it.barcode}</Штрихкод><Артикул>{it.article}</Артикул>"
            f"<Наименование>{escape(it.name)}</Наименование>"
            f'<БазоваяЕдиница Код="796" НаименованиеПолное="Штука">шт</БазоваяЕдиница>'
            f"<Группы><Ид>{group_id[it.category]}</Ид></Группы>"
            # the bin at the warehouse: CommerceML has no element for it, 1C sends it as a requisite
            f"<ЗначенияРеквизитов><ЗначениеРеквизита><Наименование>Ячейка</Наименование>"
            f"<Значение>{demo_bin(it.index)}</Значение></ЗначениеРеквизита></ЗначенияРеквизитов></Товар>\n"
        )
    imp.append("</Товары></Каталог></КоммерческаяИнформация>\n")

    off = [_head(formed_at), '<ПакетПредложений СодержитТолькоИзменения="false"><Ид>demo-offers</Ид>'
           "<Наименование>Демо</Наименование><ИдКаталога>demo-catalog</ИдКаталога>"
           "<ИдКлассификатора>demo-classifier</ИдКлассификатора><ТипыЦен>"
           f"<ТипЦены><Ид>{RETAIL_PRICE_TYPE}</Ид><Наименование>Розничная</Наименование><Валюта>RUB</Валюта></ТипЦены>"
           f"<ТипЦены><Ид>{COST_PRICE_TYPE}</Ид><Наименование>Себестоимость</Наименование><Валюта>RUB</Валюта></ТипЦены>"
           f"</ТипыЦен><Склады><Склад><Ид>{WAREHOUSE_ID}</Ид><Наименование>{WAREHOUSE_NAME}</Наименование></Склад></Склады>"
           "<Предложения>\n"]
    for it in items:
        off.append(
            f"<Предложение><Ид>{it.item_id}</Ид><Штрихкод>{it.barcode}</Штрихкод><Артикул>{it.article}</Артикул>"
            f"<Наименование>{escape(it.name)}</Наименование><Цены>"
            f"<Цена><ИдТипаЦены>{RETAIL_PRICE_TYPE}</ИдТипаЦены><ЦенаЗаЕдиницу>{it.price}</ЦенаЗаЕдиницу>"
            "<Валюта>RUB</Валюта><Единица>шт</Единица><Коэффициент>1</Коэффициент></Цена>"
            f"<Цена><ИдТипаЦены>{COST_PRICE_TYPE}</ИдТипаЦены><ЦенаЗаЕдиницу>{it.cost}</ЦенаЗаЕдиницу>"
            "<Валюта>RUB</Валюта><Единица>шт</Единица><Коэффициент>1</Коэффициент></Цена></Цены>"
            f"<Количество>{it.stock}</Количество>"
            f'<Склад ИдСклада="{WAREHOUSE_ID}" КоличествоНаСкладе="{it.stock}"/></Предложение>\n'
        )
    off.append("</Предложения></ПакетПредложений></КоммерческаяИнформация>\n")
    imp_path, off_path = folder / "import.xml", folder / "offers.xml"
    imp_path.write_text("".join(imp), "utf-8")
    off_path.write_text("".join(off), "utf-8")
    return [imp_path, off_path]
