"""Cards into 1C: marketplace cards that match no 1C item become items of 1C's catalog, then are linked.

Owns the batch the seller previews and confirms: `proposals(conn)` — one new item per article among the
cards that are unlinked, not unlinked by hand, and match no 1C item by barcode or article (every
account's cards of one article make one item: its name, article, the barcodes of all its cards, their
packed dimensions and photos' URLs); `item_body` — the item as 1C's OData takes it
(`Catalog_Номенклатура`: Description, НаименованиеПолное, Артикул, the folder, kind and unit keys, the
weight and dimensions with 1C's «Использовать/Числитель/Знаменатель/ЕдиницаИзмерения» fields where the
units are configured, the photos' URLs in a text attribute) and each barcode as a record of
`InformationRegister_ШтрихкодыНоменклатуры`; `create_in_1c` — the HTTP, an item whose article 1C already
holds is taken as it is (so a batch sent again after a lost answer makes no double); `record` — what 1C
answered into the cloud's nomenclature (the item's id is its Ref_Key, as 1C's CommerceML exchange keys
it), after which the cards link by barcode as every card does (catalog.cards.auto_link).

The OData settings are `[onec.odata]` of cloud.toml (config_sections.ODataSection).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature
from cloud_sync.config_sections import ODataSection, section_password
from cloud_sync.onec.odata import ODataConnection, ODataFailure, literal

EMPTY_REF = "00000000-0000-0000-0000-000000000000"
DIMENSION_FIELDS = (("weight", "Вес", "kg"), ("length", "Длина", "cm"), ("width", "Ширина", "cm"),
                    ("height", "Высота", "cm"))
NAME_MAX = 150  # Description of 1C's catalog «Номенклатура»


@dataclass
class NewItem:
    """One item to create in 1C, from the cards of one article."""

    article: str
    name: str
    barcodes: list[str] = field(default_factory=list)
    dimensions: dict[str, float] = field(default_factory=dict)  # length/width/height cm, weight kg
    photos: list[str] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)  # "account/card_id"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ItemSettings:
    base_url: str
    login: str = ""
    password: str = field(default="", repr=False)
    timeout_s: float = 30.0
    catalog: str = ODataSection.items_catalog
    barcodes_register: str = ODataSection.barcodes_register
    parent_key: str = ""
    kind_key: str = ""
    unit_key: str = ""
    kg_key: str = ""
    cm_key: str = ""
    photos_field: str = ODataSection.photos_field


def item_settings(section: ODataSection) -> ItemSettings:
    """From `[onec.odata]` as read at load (the password read now)."""
    return ItemSettings(base_url=section.base_url, login=section.login, password=section_password(section),
                        timeout_s=section.timeout_s, catalog=section.items_catalog,
                        barcodes_register=section.barcodes_register, parent_key=section.items_parent_key,
                        kind_key=section.item_kind_key, unit_key=section.unit_key, kg_key=section.kg_key,
                        cm_key=section.cm_key, photos_field=section.photos_field)


@dataclass
class Outcome:
    article: str
    ref_key: str = ""
    created: bool = False  # False with a ref_key: 1C already had the article
    barcodes_written: int = 0
    error: str = ""


# ---------------------------------------------------------------- the batch


def proposals(conn: sqlite3.Connection, account: str | None = None) -> list[NewItem]:
    """The items the unmatched cards would make, one per article (cards without an article are left out:
    1C's item needs one to be found again)."""
    known_barcodes = {r[0] for r in conn.execute(
        "SELECT b.barcode FROM item_barcodes b JOIN items i ON i.id=b.item_id WHERE i.deleted=0")}
    known_articles = {r[0] for r in conn.execute("SELECT article FROM items WHERE deleted=0 AND article!=''")}
    extra = {(r["account"], r["native_id"]): r for r in conn.execute(
        "SELECT account, native_id, dimensions, photos FROM cards" + (" WHERE account=?" if account else ""),
        (account,) if account else ())}
    by_article: dict[str, NewItem] = {}
    for c in catalog.cards(conn, account=account, linked=False):
        if c.locked or not c.offer_id.strip() or c.offer_id in known_articles:
            continue
        if any(b in known_barcodes for b in c.barcodes):
            continue
        item = by_article.setdefault(c.offer_id, NewItem(article=c.offer_id, name=(c.title or c.offer_id)[:NAME_MAX]))
        item.barcodes += [b for b in c.barcodes if b and b not in item.barcodes]
        item.cards.append(f"{c.account}/{c.card_id}")
        row = extra.get((c.account, c.card_id))
        if row is not None:
            if not item.dimensions:
                item.dimensions = {k: float(v) for k, v in json.loads(row["dimensions"] or "{}").items()}
            item.photos += [u for u in json.loads(row["photos"] or "[]") if u not in item.photos]
    return sorted(by_article.values(), key=lambda i: i.article)


def item_body(item: NewItem, s: ItemSettings) -> dict[str, Any]:
    """The item as 1C's OData takes it (only the fields whose settings are given)."""
    body: dict[str, Any] = {"Description": item.name, "НаименованиеПолное": item.name, "Артикул": item.article}
    for key, name in ((s.parent_key, "Parent_Key"), (s.kind_key, "ВидНоменклатуры_Key"),
                      (s.unit_key, "ЕдиницаИзмерения_Key")):
        if key:
            body[name] = key
    for dim, prefix, unit in DIMENSION_FIELDS:
        unit_key = s.kg_key if unit == "kg" else s.cm_key
        value = item.dimensions.get(dim)
        if unit_key and value:
            body.update({f"{prefix}Использовать": True, f"{prefix}Числитель": float(value),
                         f"{prefix}Знаменатель": 1.0, f"{prefix}ЕдиницаИзмерения_Key": unit_key})
    if s.photos_field and item.photos:
        body[s.photos_field] = "Фото: " + "\n".join(item.photos)
    return body


def barcode_body(ref_key: str, barcode: str) -> dict[str, Any]:
    return {"Штрихкод": barcode, "Номенклатура_Key": ref_key, "Характеристика_Key": EMPTY_REF,
            "Упаковка_Key": EMPTY_REF}


def create_in_1c(items: Sequence[NewItem], s: ItemSettings, *, client: Any = None) -> list[Outcome]:
    """Create each item (and its barcodes) in 1C; an item 1C already holds by article is taken as it is.
    One item's refusal does not stop the others: it is reported in its outcome, in 1C's words."""
    odata = ODataConnection(s.base_url, s.login, s.password, timeout_s=s.timeout_s, client=client)
    out: list[Outcome] = []
    try:
        for item in items:
            result = Outcome(item.article)
            try:
                found = odata.find(s.catalog, f"Артикул eq {literal(item.article)} and DeletionMark eq false",
                                   "Ref_Key")
                if found:
                    result.ref_key = str(found[0]["Ref_Key"])
                else:
                    result.ref_key = str(odata.create(s.catalog, item_body(item, s))["Ref_Key"])
                    result.created = True
                if s.barcodes_register:
                    for barcode in item.barcodes:
                        have = odata.find(s.barcodes_register, f"Штрихкод eq {literal(barcode)}", "Номенклатура_Key")
                        if not have:
                            odata.create(s.barcodes_register, barcode_body(result.ref_key, barcode))
                            result.barcodes_written += 1
                        elif have[0].get("Номенклатура_Key") != result.ref_key:
                            raise ODataFailure(f"штрихкод {barcode} в 1С уже у другого товара")
            except (ODataFailure, KeyError, TypeError) as exc:
                result.error = f"«{item.name}» ({item.article}): {exc}"
            out.append(result)
    finally:
        odata.close()
    return out


def record(conn: sqlite3.Connection, items: Sequence[NewItem], outcomes: Sequence[Outcome]) -> catalog.LinkReport:
    """The items 1C holds now into the cloud's nomenclature, then the cards linked to them by barcode or
    article (inside the caller's transaction)."""
    by_article = {i.article: i for i in items}
    made = []
    for o in outcomes:
        item = by_article.get(o.article)
        if item is None or not o.ref_key or o.error:
            continue
        props = {name: _number(item.dimensions[dim]) for dim, name, _ in DIMENSION_FIELDS if item.dimensions.get(dim)}
        if item.photos:
            props["Фото"] = "; ".join(item.photos)
        made.append(nomenclature.Item(id=o.ref_key, name=item.name, article=item.article,
                                      barcodes=list(item.barcodes), properties=props))
    if made:
        nomenclature.upsert_items(conn, made)
    return catalog.auto_link(conn, suggestions=False)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
