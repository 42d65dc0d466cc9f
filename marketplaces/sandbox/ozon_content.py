"""The Ozon sandbox's description categories and what each category's product type asks of a product.

Owns the data behind `/v1/description-category/tree`, `/v1/description-category/attribute` and
`/v1/description-category/attribute/values[/search]` (a small tree holding the demo catalog's categories:
description_category_id 17028900 + subject, type_id 90000 + subject, as seeded), and the checks a product
import goes through as on Ozon (../shared/specs/ozon: "the product won't be created if you fill in
incorrectly or don't specify mandatory characteristics ... real volume and weight ... don't specify 0"):
each problem becomes an error of the import task's item (`/v1/product/import/info`) with the attribute's
id and name. Pure data and checks: no HTTP, no adapter.
"""

from __future__ import annotations

from typing import Any

from marketplaces.sandbox.seed import CATEGORIES

CATEGORIES_BY_SUBJECT = [(subject, name) for name, subject in CATEGORIES]

PARENT = {192: "Одежда", 155: "Одежда", 1367: "Дом и сад", 49: "Аксессуары", 515: "Электроника"}
DESC = {192: "Футболки и топы", 155: "Носки", 1367: "Посуда", 49: "Рюкзаки и сумки", 515: "Чехлы для смартфонов"}

# dictionary id -> {value id: value}
DICTIONARIES: dict[int, dict[int, str]] = {
    28732849: {970000001: "MarketSync Demo", 970000002: "Нет бренда"},  # Бренд
    1494: {61571: "белый", 61574: "черный", 61576: "синий", 61577: "красный", 61579: "зеленый", 61584: "серый"},
    1935: {90295: "Россия", 90296: "Китай", 90297: "Турция"},  # Страна-изготовитель
    64: {62001: "хлопок", 62002: "керамика", 62003: "полиэстер", 62004: "силикон", 62005: "нейлон"},  # Материал
}


def _attr(aid: int, name: str, kind: str = "String", *, required: bool = False, dictionary: int = 0,
          collection: bool = False, max_count: int = 0) -> dict[str, Any]:
    return {"id": aid, "name": name, "type": kind, "is_required": required, "dictionary_id": dictionary,
            "is_collection": collection, "max_value_count": max_count, "category_dependent": False,
            "group_id": 0, "group_name": "", "is_aspect": False, "attribute_complex_id": 0,
            "complex_is_collection": False}


COMMON = [
    _attr(85, "Бренд", required=True, dictionary=28732849),
    _attr(9048, "Название модели (для объединения в одну карточку)", required=True),
    _attr(10096, "Цвет товара", required=True, dictionary=1494, collection=True, max_count=5),
    _attr(4389, "Страна-изготовитель", dictionary=1935, collection=True, max_count=3),
    _attr(4191, "Аннотация"),
]
SPECIFIC: dict[int, list[dict[str, Any]]] = {
    192: [_attr(4495, "Состав материала", required=True, dictionary=64, collection=True, max_count=5)],
    155: [_attr(4495, "Состав материала", dictionary=64, collection=True, max_count=5)],
    1367: [_attr(5309, "Материал", required=True, dictionary=64, collection=True, max_count=3),
           _attr(8415, "Объем, мл", "Decimal", required=True)],
    49: [_attr(5309, "Материал", required=True, dictionary=64, collection=True, max_count=3),
         _attr(8416, "Объем, л", "Decimal")],
    515: [_attr(5309, "Материал", dictionary=64, collection=True, max_count=3),
          _attr(5219, "Модель телефона", required=True, collection=True, max_count=20)],
}


def ids(subject: int) -> tuple[int, int]:
    return 17028900 + subject, 90000 + subject


def subject_of(desc_id: int, type_id: int) -> int | None:
    subject = type_id - 90000
    return subject if subject in PARENT and desc_id == 17028900 + subject else None


def tree() -> list[dict[str, Any]]:
    """The category tree: parents -> description categories -> product types (`disabled` parents)."""
    parents: dict[str, list[dict[str, Any]]] = {}
    for name, subject in CATEGORIES:
        desc_id, type_id = ids(subject)
        parents.setdefault(PARENT[subject], []).append({
            "description_category_id": desc_id, "category_name": DESC[subject], "disabled": False,
            "children": [{"type_id": type_id, "type_name": name, "disabled": False, "children": []}]})
    return [{"description_category_id": 17020000 + n, "category_name": parent, "disabled": True, "children": kids}
            for n, (parent, kids) in enumerate(sorted(parents.items()))]


def attributes(subject: int) -> list[dict[str, Any]]:
    return [dict(a) for a in COMMON + SPECIFIC.get(subject, [])]


def problems(subject: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    """Ozon's errors for an imported item of this category (Russian messages, attribute id and name)."""
    known = {a["id"]: a for a in attributes(subject)}
    given = {a.get("id"): a for a in item.get("attributes") or []}
    out: list[dict[str, Any]] = []

    def error(code: str, message: str, attr: dict[str, Any] | None = None, field: str = "") -> None:
        out.append({"code": code, "message": message, "state": "imported", "level": "error", "field": field,
                    "attribute_id": attr["id"] if attr else 0, "attribute_name": attr["name"] if attr else ""})

    for aid, attr in known.items():
        values = (given.get(aid) or {}).get("values") or []
        if attr["is_required"] and not any(v.get("value") or v.get("dictionary_value_id") for v in values):
            error("REQUIRED_ATTRIBUTE_MISSING", f"Не заполнена обязательная характеристика «{attr['name']}»", attr)
    for aid, a in given.items():
        attr = known.get(aid)
        values = a.get("values") or []
        if attr is None:
            error("ATTRIBUTE_NOT_IN_CATEGORY", f"Характеристики {aid} нет в этой категории", None, "attributes")
            continue
        if not attr["is_collection"] and len(values) > 1 or attr["max_value_count"] and len(values) > attr["max_value_count"]:
            error("TOO_MANY_VALUES", f"Слишком много значений у «{attr['name']}»", attr)
        for v in values:
            if attr["dictionary_id"]:
                if int(v.get("dictionary_value_id") or 0) not in DICTIONARIES[attr["dictionary_id"]]:
                    error("DICTIONARY_VALUE_NOT_FOUND",
                          f"Значение «{v.get('value', '')}» не из справочника характеристики «{attr['name']}»", attr)
            elif attr["type"] in ("Decimal", "Integer"):
                try:
                    float(str(v.get("value", "")).replace(",", "."))
                except ValueError:
                    error("INVALID_VALUE", f"«{attr['name']}» должно быть числом", attr)
    for dim in ("depth", "width", "height", "weight"):
        if not isinstance(item.get(dim), int) or item[dim] <= 0:
            error("INVALID_DIMENSIONS", "Укажите реальные габариты и вес товара (не 0)", None, dim)
            break
    if item.get("dimension_unit") not in ("mm", "cm", "in") or item.get("weight_unit") not in ("g", "kg", "lb"):
        error("INVALID_UNITS", "Единицы габаритов: mm, cm или in; веса: g, kg или lb", None, "dimension_unit")
    for url in item.get("images") or []:
        if not str(url).startswith(("http://", "https://")) or not str(url).lower().split("?")[0].endswith(
                (".jpg", ".jpeg", ".png")):
            error("INVALID_IMAGE", f"Изображение должно быть ссылкой на JPG или PNG: {url}", None, "images")
    try:
        if float(item.get("price") or 0) <= 0:
            error("INVALID_PRICE", "Цена должна быть больше 0", None, "price")
    except ValueError:
        error("INVALID_PRICE", "Цена должна быть числом", None, "price")
    return out
