"""Applying parsed CommerceML files to the cloud database: nomenclature, prices, 1C balances.

`import_files(conn, paths)` runs every file in ONE transaction: a file that turns out bad halfway
(cut short, hostile, an unreadable number) rolls the whole run back, nothing half-applied. Records
are written in batches (executemany) as the parser streams them, so memory stays bounded.

Offers that name an item 1C has not described (not in this run, not in the database) are not
dropped: the item is kept as a placeholder (named from the offer, or by its id) so its prices and
stock are kept, it is listed in `onec_unknown_offers`, and the run reports it in `warnings`; the
real `Товар` replaces the placeholder when 1C sends it.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from cloud_sync import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.onec import store
from cloud_sync.onec.parser import (
    DEFAULT_WAREHOUSE,
    CatalogItem,
    Document,
    Group,
    Offer,
    Package,
    PriceType,
    Property,
    Warehouse,
    parse,
)

BATCH = 2000
_ZERO = Decimal(0)
CACHE_KB = 32 * 1024  # SQLite page cache during an import (the default 2 MB is outgrown by 100,000 items)
DEFAULT_WAREHOUSE_NAME = "Склад 1С (без разбивки по складам)"
_COST_WORDS = ("себестоим", "закуп", "cost")


@dataclass
class ImportResult:
    items: int = 0
    groups: int = 0
    properties: int = 0
    offers: int = 0
    variants: int = 0
    deleted: int = 0
    barcodes: set[str] = field(default_factory=set)
    price_types: set[str] = field(default_factory=set)
    warehouses: set[str] = field(default_factory=set)
    stock_total: dict[str, Decimal] = field(default_factory=dict)
    prices: dict[str, dict[str, Decimal]] | None = field(default_factory=dict)
    unknown_offers: int = 0
    only_changes: bool = False
    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "items": self.items,
            "groups": self.groups,
            "barcodes": len(self.barcodes),
            "price_types": len(self.price_types),
            "offers": self.offers,
            "warehouses": len(self.warehouses),
            "stock_total": {w: json_number(q) for w, q in sorted(self.stock_total.items())},
            "prices": {i: {t: json_number(p) for t, p in ps.items()} for i, ps in (self.prices or {}).items()},
            "warnings": self.warnings,
            "properties": self.properties,
            "variants": self.variants,
            "unknown_offers": self.unknown_offers,
            "deleted": self.deleted,
            "documents": len(self.documents),
            "only_changes": self.only_changes,
        }


def json_number(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def import_files(conn: sqlite3.Connection, paths: Iterable[str | os.PathLike[str]], *, details: bool = True,
                 cost_price_types: Iterable[str] = (), progress: Callable[[str], None] | None = None
                 ) -> ImportResult:
    """Import CommerceML files in one transaction. Raises parser.CommerceMLError (nothing applied)."""
    result = ImportResult(prices={} if details else None)
    with _import_settings(conn), transaction(conn):
        run = _Run(conn, result, set(cost_price_types))
        for path in paths:
            if progress:
                progress(os.path.basename(os.fspath(path)))
            run.file(path)
    return result


@contextmanager
def _import_settings(conn: sqlite3.Connection) -> Iterator[None]:
    """For the run only: a larger page cache (bounded: CACHE_KB) and temporary tables in memory (the
    ledger's staging table). Durability is not touched: synchronous stays as the database has it.

    The objects alive before the run (modules, the web app) are frozen out of Python's cyclic garbage
    collector meanwhile: the records streaming through trigger dozens of full collections, each of
    which would walk them all again (measured: ~1 s of CPU per 100,000 items). They are unfrozen after;
    nothing is kept alive by it (a frozen object only waits for the next collection after the run)."""
    old_cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size={-CACHE_KB}")
    if not conn.in_transaction:  # temp_store may only change outside a transaction
        conn.execute("PRAGMA temp_store=MEMORY")
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        conn.execute(f"PRAGMA cache_size={int(old_cache)}")


class _Run:
    def __init__(self, conn: sqlite3.Connection, result: ImportResult, cost_types: set[str]) -> None:
        self.conn = conn
        self.r = result
        self.cost_types = cost_types
        self.known_price_types = {row[0] for row in conn.execute("SELECT id FROM price_types")}
        self.known_warehouses = {row[0] for row in conn.execute("SELECT id FROM onec_warehouses")}
        # whether any placeholder item may exist: when none does, looking for them is skipped
        self.placeholders_exist = bool(conn.execute("SELECT EXISTS (SELECT 1 FROM onec_unknown_offers)").fetchone()[0])
        self.items: list[nom.Item] = []
        self.deleted: list[str] = []
        self.offers: list[Offer] = []
        self.unknown: list[str] = []
        self.stock_mismatch: list[str] = []
        self.ledger_notes: list[str] = []
        self.file_name = ""

    def file(self, path: str | os.PathLike[str]) -> None:
        self.file_name = os.path.basename(os.fspath(path))
        self.unknown, self.stock_mismatch, self.ledger_notes = [], [], []
        for rec in parse(path):
            if isinstance(rec, CatalogItem):
                self.items.append(rec.item)  # a deleted item is kept (orders refer to it), flagged deleted
                if rec.deleted:
                    self.deleted.append(rec.item.id)
                if len(self.items) >= BATCH:
                    self.flush_items()
            elif isinstance(rec, Offer):
                if self.items or self.deleted:
                    self.flush_items()
                self.offers.append(rec)
                if len(self.offers) >= BATCH:
                    self.flush_offers()
            elif isinstance(rec, Group):
                nom.upsert_group(self.conn, rec.id, rec.name, rec.parent_id)
                self.r.groups += 1
            elif isinstance(rec, Property):
                self.r.properties += 1
            elif isinstance(rec, PriceType):
                is_cost = rec.id in self.cost_types or rec.name in self.cost_types or any(
                    w in rec.name.lower() for w in _COST_WORDS)
                nom.upsert_price_type(self.conn, rec.id, rec.name, rec.currency, is_cost)
                self.known_price_types.add(rec.id)
                self.r.price_types.add(rec.id)
            elif isinstance(rec, Warehouse):
                store.upsert_warehouses(self.conn, [(rec.id, rec.name)])
                self.known_warehouses.add(rec.id)
                self.r.warehouses.add(rec.id)
            elif isinstance(rec, Package):
                self.r.only_changes = self.r.only_changes or rec.only_changes
            elif isinstance(rec, Document):
                self.r.documents.append(rec)
        self.flush_items()
        self.flush_offers()
        if self.unknown:
            shown = ", ".join(self.unknown[:5]) + (", …" if len(self.unknown) > 5 else "")
            self.r.warnings.append(
                f"{self.file_name}: {len(self.unknown)} offer(s) name items 1C has not described in the catalog; "
                f"kept as placeholder items until it does: {shown}")
        if self.stock_mismatch:
            shown = ", ".join(self.stock_mismatch[:5]) + (", …" if len(self.stock_mismatch) > 5 else "")
            self.r.warnings.append(
                f"{self.file_name}: {len(self.stock_mismatch)} offer(s) state a total <Количество> different "
                f"from the sum of their warehouses (the warehouses were used): {shown}")
        if self.ledger_notes:
            shown = "; ".join(self.ledger_notes[:3]) + ("; …" if len(self.ledger_notes) > 3 else "")
            self.r.warnings.append(f"{self.file_name}: {len(self.ledger_notes)} balance(s) are negative or "
                                   f"fractional; the stock ledger keeps whole units >= 0: {shown}")

    def flush_items(self) -> None:
        if self.items:
            nom.upsert_items(self.conn, self.items, batch=BATCH)
            if self.placeholders_exist:
                store.forget_unknown_offers(self.conn, [it.id for it in self.items])
            barcodes = self.r.barcodes
            for it in self.items:
                barcodes.update(it.barcodes)
            barcodes.discard("")
            self.r.items += len(self.items)
            self.items = []
        if self.deleted:
            nom.mark_items_deleted(self.conn, self.deleted)
            self.r.deleted += len(self.deleted)
            self.deleted = []

    def _lookup(self, ids: set[str]) -> tuple[dict[str, sqlite3.Row], set[str]]:
        known: dict[str, sqlite3.Row] = {}
        placeholders: set[str] = set()
        id_list = list(ids)
        for i in range(0, len(id_list), 500):
            part = id_list[i:i + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                    f"SELECT id, article, name, group_id, unit FROM items WHERE id IN ({marks})", part):
                known[row[0]] = row
            if self.placeholders_exist:
                placeholders.update(row[0] for row in self.conn.execute(
                    f"SELECT offer_id FROM onec_unknown_offers WHERE offer_id IN ({marks})", part))
        return known, placeholders

    def flush_offers(self) -> None:
        if not self.offers:
            return
        offers, self.offers = self.offers, []
        item_ids = [o.id.partition("#")[0] for o in offers]
        known, placeholders = self._lookup({o.id for o in offers}.union(item_ids))
        new_items: list[nom.Item] = []
        extra_barcodes: list[tuple[str, str]] = []
        unknown: list[str] = []
        deleted: list[str] = []
        price_rows: list[tuple[str, str, Decimal]] = []
        balances: list[store.Balance] = []
        r = self.r
        r.offers += len(offers)
        barcodes, price_types, known_price_types = r.barcodes, r.price_types, self.known_price_types
        warehouses, known_warehouses, stock_total = r.warehouses, self.known_warehouses, r.stock_total
        for o, item_id in zip(offers, item_ids, strict=True):
            base = known.get(item_id)
            base_known = base is not None and item_id not in placeholders
            if o.id != item_id:  # a characteristic: the item is the product#characteristic
                r.variants += 1
                chars = ", ".join(v for v in o.characteristics.values() if v)
                if not base_known:
                    unknown.append(o.id)
                name = o.name or (f"{base['name']} ({chars})" if base is not None and chars
                                  else (base["name"] if base is not None else o.id))
                new_items.append(nom.Item(
                    id=o.id, name=name, article=o.article or (base["article"] if base is not None else ""),
                    group_id=base["group_id"] if base is not None else None,
                    unit=base["unit"] if base is not None else "шт",
                    barcodes=list(o.barcodes), properties=dict(o.characteristics)))
            elif base_known:
                extra_barcodes.extend((b, o.id) for b in o.barcodes)
            else:
                unknown.append(o.id)
                new_items.append(nom.Item(id=o.id, name=o.name or o.id, article=o.article,
                                          barcodes=list(o.barcodes)))
            if o.barcodes:
                barcodes.update(o.barcodes)
            if o.deleted:
                deleted.append(o.id)
                continue
            for type_id, price in o.prices.items():
                if type_id not in known_price_types:
                    nom.upsert_price_type(self.conn, type_id, type_id, o.currencies.get(type_id) or "RUB")
                    known_price_types.add(type_id)
                    r.warnings.append(f"{self.file_name}: price type {type_id} is not described "
                                      "(no ТипЦены); kept under its id")
                price_types.add(type_id)
                price_rows.append((o.id, type_id, price))
                if r.prices is not None:
                    r.prices.setdefault(o.id, {})[type_id] = price
            stock = o.stock
            if stock:
                if o.quantity is not None and sum(stock.values()) != o.quantity:
                    self.stock_mismatch.append(o.id)
            elif o.quantity is not None:
                stock = {DEFAULT_WAREHOUSE: o.quantity}
            for wid, qty in stock.items():
                if wid not in known_warehouses:
                    name = DEFAULT_WAREHOUSE_NAME if wid == DEFAULT_WAREHOUSE else wid
                    store.upsert_warehouses(self.conn, [(wid, name)], keep_names=True)
                    known_warehouses.add(wid)
                warehouses.add(wid)
                stock_total[wid] = stock_total.get(wid, _ZERO) + qty
                balances.append(store.Balance(o.id, wid, qty))
        if new_items:
            nom.upsert_items(self.conn, new_items, batch=BATCH)
        if extra_barcodes:
            self.conn.executemany("INSERT OR IGNORE INTO item_barcodes(barcode, item_id) VALUES (?, ?)",
                                  extra_barcodes)
        if unknown:
            store.note_unknown_offers(self.conn, unknown, self.file_name)
            self.placeholders_exist = True
            self.unknown.extend(unknown)
            self.r.unknown_offers += len(unknown)
        if deleted:
            nom.mark_items_deleted(self.conn, deleted)
            self.r.deleted += len(deleted)
        if price_rows:
            nom.set_item_prices(self.conn, price_rows)
        if balances:
            notes = store.apply_balances(self.conn, balances, ref=f"1c:{self.file_name}")
            self.ledger_notes.extend(notes)
