"""Filling a new marketplace card from a 1C item: the seller's fill rules per category, checked before sending.

Owns the table `card_fill_rules`: for one marketplace category (WB subject), which 1C item property fills
each characteristic the category asks for, or a fixed value (the seller edits it once per category; every
later card of that category is filled the same way). `new_card` builds a `NewCard` from an item: its
name, article (vendor code), barcodes, dimensions and weight from the 1C properties (`DIMENSIONS`), the
characteristics by the rules, photos by URL; a required characteristic left empty, or a missing
dimension, refuses the card before anything is sent, naming what is missing in Russian.

Knows no marketplace by name and no HTTP: the category's characteristics come from the adapter
(`marketplaces.base.CardMaker.category_attributes`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from marketplaces.base import CategoryAttribute, NewCard

MIGRATIONS = [
    """
    CREATE TABLE card_fill_rules (
        marketplace TEXT NOT NULL,
        category_id TEXT NOT NULL,
        attribute_id INTEGER NOT NULL,
        attribute_name TEXT NOT NULL DEFAULT '',
        property TEXT NOT NULL DEFAULT '',   -- the 1C item property whose value fills it ('' = none)
        value TEXT NOT NULL DEFAULT '',      -- a fixed value, used when the property is empty or unset
        updated_ts REAL NOT NULL,
        PRIMARY KEY (marketplace, category_id, attribute_id)
    );
    """,
]

# The 1C item properties a card's packed dimensions (cm) and weight (kg) are read from, first found wins:
# the requisites 1C's CommerceML exchange sends, and the «Габарит_…» additional properties some configurations use.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "length": ("Длина", "Габарит_Длина", "Длина упаковки"),
    "width": ("Ширина", "Габарит_Ширина", "Ширина упаковки"),
    "height": ("Высота", "Габарит_Высота", "Высота упаковки"),
    "weightBrutto": ("Вес", "Габарит_Вес", "Вес брутто"),
}
DIMENSION_WORDS = {"length": "длина", "width": "ширина", "height": "высота", "weightBrutto": "вес"}
PHOTO_PROPERTIES = ("Фото", "Картинки", "Изображения")  # 1C properties holding photo URLs, "; "-separated


class CardFillError(ValueError):
    """A card cannot be filled from its 1C item; the message says what is missing, in Russian."""


@dataclass
class FillRule:
    attribute_id: int
    attribute_name: str = ""
    property: str = ""
    value: str = ""


def save_rules(conn: sqlite3.Connection, marketplace: str, category_id: str, rules: Sequence[FillRule],
               now: float | None = None) -> None:
    """Replace the fill rules of one category (a rule with neither property nor value is dropped)."""
    now = time.time() if now is None else now
    conn.execute("DELETE FROM card_fill_rules WHERE marketplace=? AND category_id=?", (marketplace, category_id))
    conn.executemany(
        "INSERT INTO card_fill_rules(marketplace, category_id, attribute_id, attribute_name, property, value,"
        " updated_ts) VALUES (?,?,?,?,?,?,?)",
        [(marketplace, category_id, r.attribute_id, r.attribute_name, r.property.strip(), r.value.strip(), now)
         for r in rules if r.property.strip() or r.value.strip()])


def rules(conn: sqlite3.Connection, marketplace: str, category_id: str) -> dict[int, FillRule]:
    return {r["attribute_id"]: FillRule(r["attribute_id"], r["attribute_name"], r["property"], r["value"])
            for r in conn.execute("SELECT * FROM card_fill_rules WHERE marketplace=? AND category_id=?",
                                  (marketplace, category_id))}


def item_properties(conn: sqlite3.Connection, item_id: str) -> dict[str, str]:
    row = conn.execute("SELECT properties FROM items WHERE id=? AND deleted=0", (item_id,)).fetchone()
    return json.loads(row[0] or "{}") if row else {}


def _number(text: str) -> Decimal | None:
    cleaned = re.sub(r"[^\d,.\-]", "", text.replace("\u00a0", "")).replace(",", ".")
    try:
        return Decimal(cleaned) if cleaned else None
    except InvalidOperation:
        return None


def attribute_value(attr: CategoryAttribute, text: str) -> list[str] | int | float | None:
    """A 1C text as the marketplace wants the characteristic: a list of strings ("; " or "," separated,
    at most `max_count`) or one number; None when it does not read as one."""
    text = text.strip()
    if not text:
        return None
    if attr.kind == "number":
        n = _number(text)
        if n is None:
            return None
        return int(n) if n == n.to_integral_value() else float(n)
    parts = [p.strip() for p in re.split(r";|\n", text) if p.strip()]
    return parts[: attr.max_count] if attr.max_count else parts


def dimensions(props: dict[str, str]) -> tuple[dict[str, int | float], list[str]]:
    """Packed dimensions (whole cm, rounded up, at least 1) and weight (kg, 3 decimals) from the 1C properties, and
    the words of those missing."""
    out: dict[str, int | float] = {}
    missing = []
    for key, names in DIMENSIONS.items():
        n = next((v for v in (_number(props.get(name, "")) for name in names) if v is not None and v > 0), None)
        if n is None:
            missing.append(DIMENSION_WORDS[key])
        elif key == "weightBrutto":
            out[key] = float(n.quantize(Decimal("0.001")))
        else:
            out[key] = max(1, int(n.to_integral_value(rounding=ROUND_CEILING)))  # a box never shrinks
    return out, missing


def new_card(conn: sqlite3.Connection, marketplace: str, item_id: str, category_id: str,
             attributes: Sequence[CategoryAttribute], *, brand: str = "", price: Decimal | int = 0,
             size: str = "0", description: str = "", photos: Sequence[str] = ()) -> NewCard:
    """The card of a 1C item in a category, filled by the category's rules; raises CardFillError naming
    every required characteristic left empty and every missing dimension (nothing is sent then)."""
    r = conn.execute("SELECT * FROM items WHERE id=? AND deleted=0", (item_id,)).fetchone()
    if r is None:
        raise CardFillError(f"в 1С нет товара {item_id!r}")
    if not r["article"]:
        raise CardFillError(f"у товара «{r['name']}» в 1С нет артикула: он нужен как артикул продавца")
    props = json.loads(r["properties"] or "{}")
    barcodes = [b[0] for b in conn.execute("SELECT barcode FROM item_barcodes WHERE item_id=? ORDER BY barcode",
                                           (item_id,))]
    by_id = rules(conn, marketplace, category_id)
    filled: list[dict] = []
    missing: list[str] = []
    unreadable: list[str] = []
    for attr in attributes:
        rule = by_id.get(attr.id)
        value = None
        if rule is not None:
            text = props.get(rule.property, "") if rule.property else ""
            value = attribute_value(attr, text) if text.strip() else None
            if value is None and text.strip():
                unreadable.append(f"«{attr.name}» (свойство «{rule.property}» = {text!r} — не число)")
            if value is None and rule.value:
                value = attribute_value(attr, rule.value)
        if value is not None:
            filled.append({"id": attr.id, "value": value})
        elif attr.required:
            missing.append(attr.name + (f" (свойство 1С «{rule.property}» пусто)" if rule and rule.property else ""))
    dims, no_dims = dimensions(props)
    problems = []
    if missing:
        problems.append("не заполнены обязательные характеристики: " + ", ".join(missing)
                        + " — укажите для них свойство 1С или значение в правилах заполнения категории")
    if unreadable:
        problems.append("не читаются значения: " + ", ".join(unreadable))
    if no_dims:
        problems.append("в 1С не заданы габариты упаковки: " + ", ".join(no_dims)
                        + " (свойства «Длина», «Ширина», «Высота» в см и «Вес» в кг)")
    if problems:
        raise CardFillError(f"карточку товара «{r['name']}» нельзя отправить: " + "; ".join(problems))
    photo_urls = list(photos) or [u.strip() for name in PHOTO_PROPERTIES for u in props.get(name, "").split(";")
                                  if u.strip()]
    return NewCard(
        offer_id=r["article"], title=r["name"][:60], subject_id=int(category_id) if category_id.isdigit() else 0,
        category_id=category_id, brand=brand,
        description=description or props.get("Описание", ""), characteristics=filled,
        sizes=[{"techSize": size, "wbSize": "" if size == "0" else size, "price": int(price), "skus": barcodes}],
        dimensions=dims, photos=photo_urls, marked=bool(r["marked"]),
    )
