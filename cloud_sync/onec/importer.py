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
from cloud_sync.onec import pipeline, store
from cloud_sync.onec.parser import (
    DEFAULT_WAREHOUSE,
    Document,
    Group,
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
                 cost_price_types: Iterable[str] = (), progress: Callable[[str], None] | None = None,
                 two_process: bool | None = None) -> ImportResult:
    """Import CommerceML files in one transaction. Raises parser.CommerceMLError (nothing applied).

    `two_process`: parse in a child process while this one writes (`pipeline.ChildParser`); by default
    when the files are large enough (`pipeline.PIPELINE_MIN_BYTES`) and the platform can fork. Both
    ways write the same rows (`pipeline.prepared`)."""
    paths = list(paths)
    if two_process is None:
        two_process = pipeline.worth_it(paths)
    result = ImportResult(prices={} if details else None)
    with _import_settings(conn), transaction(conn):
        run = _Run(conn, result, set(cost_price_types))
        child = None
        if two_process:
            try:
                child = pipeline.ChildParser(paths)
            except (OSError, RuntimeError):  # no process to be had (limits, a frozen program): parse here
                child = None
        if child is not None:
            with child:
                for path in paths:
                    name = os.path.basename(os.fspath(path))
                    if progress:
                        progress(name)
                    run.file(name, child.file_batches(name))
        else:
            for path in paths:
                name = os.path.basename(os.fspath(path))
                if progress:
                    progress(name)
                run.file(name, pipeline.prepared(parse(path)))
    return result


@contextmanager
def _import_settings(conn: sqlite3.Connection) -> Iterator[None]:
    """For the run only: a larger page cache (bounded: CACHE_KB) and temporary tables in memory (the
    ledger's staging table). Durability is not touched: synchronous stays as the database has it.

    The objects alive before the run (modules, the web app) are frozen out of Python's cyclic garbage
    collector meanwhile: the records streaming through trigger dozens of full collections, each of
    which would walk them all again (measured: ~1 s of CPU per 100,000 items). They are unfrozen after;
    nothing is kept alive by it (a frozen object only waits for the next collection after the run).
    The young generation's threshold is raised meanwhile (`pipeline.GC_THRESHOLD`): the row batches are
    hundreds of thousands of fresh tuples, which the default would walk several times over."""
    old_cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size={-CACHE_KB}")
    if not conn.in_transaction:  # temp_store may only change outside a transaction
        conn.execute("PRAGMA temp_store=MEMORY")
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], pipeline.GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
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
        # items 1C described in this run: known (and no placeholder) without asking the database
        self.run_items: set[str] = set()
        self.unknown: list[str] = []
        self.stock_mismatch: list[str] = []
        self.ledger_notes: list[str] = []
        self.file_name = ""

    def file(self, name: str, batches: Iterable[tuple]) -> None:
        """Apply one file's batches (`pipeline.prepared`, here or from the child process)."""
        self.file_name = name
        self.unknown, self.stock_mismatch, self.ledger_notes = [], [], []
        for batch in batches:
            kind = batch[0]
            if kind == "items":
                self.items(*batch[1:])
            elif kind == "offers":
                self.offers(*batch[1:])
            else:
                self.record(batch[1])
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

    def record(self, rec: object) -> None:
        if isinstance(rec, Group):
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

    def items(self, items: list[tuple]) -> None:
        """Catalog items (a deleted item is kept, orders refer to it, and flagged deleted)."""
        rows, barcode_pairs, deleted = pipeline.item_rows(items)
        if rows:
            nom.upsert_item_rows(self.conn, rows, barcode_pairs)
            ids = [row[0] for row in rows]
            if self.placeholders_exist:
                store.forget_unknown_offers(self.conn, ids)
            self.run_items.update(ids)
            self.r.barcodes.update(b for b, _ in barcode_pairs)
            self.r.items += len(rows)
        if deleted:
            nom.mark_items_deleted(self.conn, deleted)
            self.r.deleted += len(deleted)

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

    def offers(self, rows: list[tuple], price_rows: list[tuple[str, str, str]], currencies: dict[str, str],
               balances: list[tuple[str, str, str, int]], notes: list[str], mismatches: list[str],
               warehouses: list[str], totals: dict[str, str]) -> None:
        r = self.r
        r.offers += len(rows)
        run_items = self.run_items
        wanted: set[str] = set()  # items to ask the database about: not described in this run, or a base
        for row in rows:
            oid = row[0]
            item_id = oid.partition("#")[0]
            if item_id != oid or item_id not in run_items:
                wanted.add(item_id)
        known, placeholders = self._lookup(wanted) if wanted else ({}, set())
        new_items: list[nom.Item] = []
        extra_barcodes: list[tuple[str, str]] = []
        unknown: list[str] = []
        deleted: list[str] = []
        barcodes = r.barcodes
        for oid, name, article, offer_barcodes, characteristics, is_deleted in rows:
            item_id = oid.partition("#")[0]
            if item_id == oid and item_id in run_items:
                base, base_known = None, True
            else:
                base = known.get(item_id)
                base_known = base is not None and item_id not in placeholders
            if oid != item_id:  # a characteristic: the item is the product#characteristic
                r.variants += 1
                chars = ", ".join(v for v in characteristics.values() if v)
                if not base_known:
                    unknown.append(oid)
                name = name or (f"{base['name']} ({chars})" if base is not None and chars
                                else (base["name"] if base is not None else oid))
                new_items.append(nom.Item(
                    id=oid, name=name, article=article or (base["article"] if base is not None else ""),
                    group_id=base["group_id"] if base is not None else None,
                    unit=base["unit"] if base is not None else "шт",
                    barcodes=list(offer_barcodes), properties=dict(characteristics)))
            elif base_known:
                extra_barcodes.extend((b, oid) for b in offer_barcodes)
            else:
                unknown.append(oid)
                new_items.append(nom.Item(id=oid, name=name or oid, article=article, barcodes=list(offer_barcodes)))
            if offer_barcodes:
                barcodes.update(offer_barcodes)
            if is_deleted:
                deleted.append(oid)
        for type_id, cur in currencies.items():
            if type_id not in self.known_price_types:
                nom.upsert_price_type(self.conn, type_id, type_id, cur)
                self.known_price_types.add(type_id)
                r.warnings.append(f"{self.file_name}: price type {type_id} is not described "
                                  "(no ТипЦены); kept under its id")
            r.price_types.add(type_id)
        if r.prices is not None:
            for oid, type_id, price in price_rows:
                r.prices.setdefault(oid, {})[type_id] = Decimal(price)
        self.stock_mismatch.extend(mismatches)
        for wid in warehouses:
            if wid not in self.known_warehouses:
                name = DEFAULT_WAREHOUSE_NAME if wid == DEFAULT_WAREHOUSE else wid
                store.upsert_warehouses(self.conn, [(wid, name)], keep_names=True)
                self.known_warehouses.add(wid)
            r.warehouses.add(wid)
        stock_total = r.stock_total
        for wid, qty in totals.items():
            stock_total[wid] = stock_total.get(wid, _ZERO) + Decimal(qty)
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
            nom.set_item_price_rows(self.conn, price_rows)
        if balances:
            store.apply_balance_rows(self.conn, balances, ref=f"1c:{self.file_name}")
            self.ledger_notes.extend(notes)
