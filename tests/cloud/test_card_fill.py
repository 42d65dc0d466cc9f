"""Filling a new card from a 1C item by the seller's per-category rules (cloud_sync.catalog.card_fill):
required characteristics and dimensions enforced before anything is sent, errors in Russian."""

from __future__ import annotations

import pytest

from cloud_sync.catalog import card_fill, nomenclature
from cloud_sync.db import transaction
from marketplaces.base import CategoryAttribute

ATTRS = [CategoryAttribute(1, "Цвет", True, "strings", 2), CategoryAttribute(2, "Объем", True, "number", unit="мл"),
         CategoryAttribute(3, "Страна производства", False, "strings", 1)]
DIMS = {"Габарит_Длина": "12", "Габарит_Ширина": "9", "Габарит_Высота": "10", "Габарит_Вес": "1,4"}


def _item(conn, **props: str) -> None:
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id="I1", name="Кружка белая", article="MUG-1",
                                                           barcodes=["4600000000011"], properties=props)])


def test_required_characteristics_and_dimensions_are_named_when_missing(conn) -> None:
    _item(conn, Цвет="белый")
    with pytest.raises(card_fill.CardFillError) as err:
        card_fill.new_card(conn, "mp", "I1", "10", ATTRS)
    text = str(err.value)
    assert "не заполнены обязательные характеристики: Цвет, Объем" in text
    assert "в 1С не заданы габариты упаковки: длина, ширина, высота, вес" in text
    with transaction(conn):
        card_fill.save_rules(conn, "mp", "10", [card_fill.FillRule(1, "Цвет", property="Цвет")])
    with pytest.raises(card_fill.CardFillError, match=r"характеристики: Объем —"):
        card_fill.new_card(conn, "mp", "I1", "10", ATTRS)


def test_values_are_typed_as_the_category_asks_and_rules_are_kept_per_category(conn) -> None:
    _item(conn, Цвет="белый; чёрный; синий", **{"Объём": "350 мл"}, **DIMS)
    with transaction(conn):
        card_fill.save_rules(conn, "mp", "10", [card_fill.FillRule(1, "Цвет", property="Цвет"),
                                                 card_fill.FillRule(2, "Объем", property="Объём"),
                                                 card_fill.FillRule(3, "Страна производства", value="Россия")])
    new = card_fill.new_card(conn, "mp", "I1", "10", ATTRS, price=590)
    assert new.characteristics == [{"id": 1, "value": ["белый", "чёрный"]}, {"id": 2, "value": 350},
                                   {"id": 3, "value": ["Россия"]}]
    assert new.dimensions == {"length": 12, "width": 9, "height": 10, "weightBrutto": 1.4}
    assert new.sizes == [{"techSize": "0", "wbSize": "", "price": 590, "skus": ["4600000000011"]}]
    with pytest.raises(card_fill.CardFillError):  # another category has no rules yet
        card_fill.new_card(conn, "mp", "I1", "11", ATTRS)


def test_a_property_that_does_not_read_as_a_number_is_named(conn) -> None:
    _item(conn, Цвет="белый", **{"Объём": "большой"}, **DIMS)
    with transaction(conn):
        card_fill.save_rules(conn, "mp", "10", [card_fill.FillRule(1, property="Цвет"),
                                                 card_fill.FillRule(2, property="Объём")])
    with pytest.raises(card_fill.CardFillError, match="свойство «Объём» = 'большой' — не число"):
        card_fill.new_card(conn, "mp", "I1", "10", ATTRS)
