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
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from cloud_sync.catalog import nomenclature as nom
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
from cloud_sync.stock import ledger

BATCH = 2000
_ZERO = Decimal(0)
CACHE_KB = 32 * 1024  # SQLite page cache during an import (the default 2 MB is outgrown by 100,000 items)
DEFAULT_WAREHOUSE_NAME = "Склад 1С (без разбивки по складам)"
_COST_WORDS = ("себестоим", "закуп", "cost")

# 1C writes ДатаФормирования in its own local time, without an offset; `[onec] timezone` says which.
DEFAULT_TIMEZONE = "Europe/Moscow"


def formed_ts(text: str, timezone: str = DEFAULT_TIMEZONE) -> float | None:
    """A CommerceML ДатаФормирования ("2026-12-06T10:05:00", an offset optional) as a Unix time; None when
    it cannot be read (the package then counts as formed now)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(timezone))
    return dt.timestamp()


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
    children_peak_mb: float = 0.0  # the parser children's resident peaks, summed (0 without a child)

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
                 two_process: bool | None = None, timezone: str = DEFAULT_TIMEZONE,
                 in_flight_horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> ImportResult:
    """Import CommerceML files in one transaction. Raises parser.CommerceMLError (nothing applied).

    `two_process`: parse in child processes while this one writes (`pipeline.ChildParser`); by default
    when the files are large enough (`pipeline.PIPELINE_MIN_BYTES`) and a child process can be had. A package
    of catalog files followed by offer files (`pipeline.streams`) is read by two children at once, one
    per stream, and applied side by side; anything else by one child, in order. Every way writes the
    same rows (`pipeline.prepared`, `_Run`).

    Balances are as of the package's ДатаФормирования (1C's local time in `timezone` unless it names its
    offset), or as of now when 1C gave none; the stock moves 1C had not booked by then (younger than
    `in_flight_horizon_s`) are kept on top of them; a package older than one already applied keeps its catalog
    and prices but not its balances (a warning says so)."""
    paths = list(paths)
    if two_process is None:
        two_process = pipeline.worth_it(paths)
    split = pipeline.streams(paths) if two_process else None
    if split is not None:
        try:
            return _import(conn, paths, details, cost_price_types, progress, True, split, timezone, in_flight_horizon_s)
        except pipeline.StreamsCrossed:
            pass  # rolled back, nothing applied: the files go again, in order, through one child
    return _import(conn, paths, details, cost_price_types, progress, two_process, None, timezone, in_flight_horizon_s)


def _import(conn: sqlite3.Connection, paths: list[str | os.PathLike[str]], details: bool,
            cost_price_types: Iterable[str], progress: Callable[[str], None] | None, two_process: bool,
            split: tuple[list[str], list[str]] | None, timezone: str = DEFAULT_TIMEZONE,
            in_flight_horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> ImportResult:
    result = ImportResult(prices={} if details else None)
    names = [os.path.basename(os.fspath(p)) for p in paths]
    with _import_settings(conn), transaction(conn):
        run = _Run(conn, result, set(cost_price_types), progress, timezone, in_flight_horizon_s)
        children: list[pipeline.ChildParser] = []
        try:
            if two_process:
                for stream in (split or (paths,)):
                    children.append(pipeline.ChildParser(stream))
        except (OSError, RuntimeError):  # no process to be had (limits, a frozen program): parse here
            for child in children:
                child.close()
            children = []
        try:
            if split is not None and len(children) == 2:
                # offers may come before their items: a price's item is checked at commit, and what an
                # offer needs of its item (placeholders, characteristics, barcodes) waits for the catalog
                conn.execute("PRAGMA defer_foreign_keys=ON")
                run.catalog_open = True
                files = {name: run.begin_file(name) for name in names}
                open_catalog = len(split[0])
                for stream, name, batch in pipeline.side_by_side(children[0], split[0], children[1], split[1]):
                    if batch is not None:
                        run.apply(files[name], batch)
                    elif stream == 0:
                        open_catalog -= 1
                        if not open_catalog:
                            run.catalog_done()
            elif children:
                for name in names:
                    run.apply_all(run.begin_file(name), children[0].file_batches(name))
            else:
                for path, name in zip(paths, names, strict=True):
                    run.apply_all(run.begin_file(name), pipeline.prepared(parse(path)))
            run.finish()
        finally:
            result.children_peak_mb = sum(child.peak_mb for child in children)
            for child in children:
                child.close()
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


@dataclass
class _File:
    """One file of the run: what its warnings will say (given in file order when the run ends)."""

    name: str
    warnings: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    stock_mismatch: list[str] = field(default_factory=list)
    ledger_notes: list[str] = field(default_factory=list)
    as_of: float | None = None  # when 1C formed the file's balances (its ДатаФормирования); None: now
    stale: bool = False  # its balances are older than ones already applied: skipped

    def summary(self) -> list[str]:
        out = list(self.warnings)
        if self.unknown:
            shown = ", ".join(self.unknown[:5]) + (", …" if len(self.unknown) > 5 else "")
            out.append(f"{self.name}: {len(self.unknown)} offer(s) name items 1C has not described in the catalog; "
                       f"kept as placeholder items until it does: {shown}")
        if self.stock_mismatch:
            shown = ", ".join(self.stock_mismatch[:5]) + (", …" if len(self.stock_mismatch) > 5 else "")
            out.append(f"{self.name}: {len(self.stock_mismatch)} offer(s) state a total <Количество> different "
                       f"from the sum of their warehouses (the warehouses were used): {shown}")
        if self.ledger_notes:
            shown = "; ".join(self.ledger_notes[:3]) + ("; …" if len(self.ledger_notes) > 3 else "")
            out.append(f"{self.name}: {len(self.ledger_notes)} balance(s) are negative or "
                       f"fractional; the stock ledger keeps whole units >= 0: {shown}")
        return out


class _Run:
    """The writing side of one import. Batches are applied as they come (`apply`); while catalog files
    are still being read beside the offer files (`catalog_open`), what an offer needs of its item —
    is it described, its name for a characteristic, its barcodes, a deletion mark — waits in `pending`
    until the catalog is complete (`catalog_done`): the outcome is the same as reading in order."""

    def __init__(self, conn: sqlite3.Connection, result: ImportResult, cost_types: set[str],
                 progress: Callable[[str], None] | None = None, timezone: str = DEFAULT_TIMEZONE,
                 in_flight_horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> None:
        self.conn = conn
        self.timezone = timezone
        self.in_flight_horizon_s = in_flight_horizon_s
        self.r = result
        self.cost_types = cost_types
        self.progress = progress
        self.known_price_types = {row[0] for row in conn.execute("SELECT id FROM price_types")}
        self.known_warehouses = {row[0] for row in conn.execute("SELECT id FROM onec_warehouses")}
        # whether any placeholder item may exist: when none does, looking for them is skipped
        self.placeholders_exist = bool(conn.execute("SELECT EXISTS (SELECT 1 FROM onec_unknown_offers)").fetchone()[0])
        # items 1C described in this run: known (and no placeholder) without asking the database
        self.run_items: set[str] = set()
        self.files: list[_File] = []
        self.catalog_open = False
        self.pending: list[tuple[_File, list]] = []

    def begin_file(self, name: str) -> _File:
        f = _File(name)
        self.files.append(f)
        if self.progress:
            self.progress(name)
        return f

    def apply_all(self, f: _File, batches: Iterable[tuple]) -> None:
        for batch in batches:
            self.apply(f, batch)

    def apply(self, f: _File, batch: tuple) -> None:
        """Apply one batch (`pipeline.prepared`, made here or in a child process) of file `f`."""
        kind = batch[0]
        if kind == "items":
            self.items(*batch[1:])
        elif kind == "offers":
            self.offers(f, *batch[1:])
        else:
            self.record(f, batch[1])

    def catalog_done(self) -> None:
        """Every catalog file is in: the offers that waited for their items are settled now."""
        self.catalog_open = False
        pending, self.pending = self.pending, []
        for f, rows in pending:
            self.resolve(f, rows)

    def finish(self) -> None:
        self.catalog_done()
        for f in self.files:
            self.r.warnings.extend(f.summary())

    def record(self, f: _File, rec: object) -> None:
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
            if rec.formed_at:
                f.as_of = formed_ts(rec.formed_at, self.timezone)
        elif isinstance(rec, Document):
            self.r.documents.append(rec)

    def items(self, rows: list[tuple], barcode_pairs: list[tuple[str, str]], deleted: list[str]) -> None:
        """Catalog items (a deleted item is kept, orders refer to it, and flagged deleted)."""
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

    def offers(self, f: _File, rows: list, price_rows: list[tuple[str, str, str]], currencies: dict[str, str],
               balances: list[tuple[str, str, str, int]], notes: list[str], mismatches: list[str],
               warehouses: list[str], totals: dict[str, str]) -> None:
        """One batch of offers: `rows` are what the offers say of their items (`pipeline._offer_batch`),
        settled now (`resolve`) or, while the catalog is still coming, when it is complete."""
        r = self.r
        r.offers += len(rows)
        run_items = self.run_items
        # an offer of an item described in this run that says nothing more needs nothing of its item
        todo = [row for row in rows if type(row) is not str or row not in run_items or "#" in row]
        if todo:
            if self.catalog_open:
                self.pending.append((f, todo))
            else:
                self.resolve(f, todo)
        for type_id, cur in currencies.items():
            if type_id not in self.known_price_types:
                nom.upsert_price_type(self.conn, type_id, type_id, cur)
                self.known_price_types.add(type_id)
                f.warnings.append(f"{f.name}: price type {type_id} is not described (no ТипЦены); kept under its id")
            r.price_types.add(type_id)
        if r.prices is not None:
            for oid, type_id, price in price_rows:
                r.prices.setdefault(oid, {})[type_id] = Decimal(price)
        f.stock_mismatch.extend(mismatches)
        for wid in warehouses:
            if wid not in self.known_warehouses:
                name = DEFAULT_WAREHOUSE_NAME if wid == DEFAULT_WAREHOUSE else wid
                store.upsert_warehouses(self.conn, [(wid, name)], keep_names=True)
                self.known_warehouses.add(wid)
            r.warehouses.add(wid)
        stock_total = r.stock_total
        for wid, qty in totals.items():
            stock_total[wid] = stock_total.get(wid, _ZERO) + Decimal(qty)
        if price_rows:
            nom.set_item_price_rows(self.conn, price_rows)
        if balances and not f.stale:
            try:
                store.apply_balance_rows(self.conn, balances, ref=f"1c:{f.name}", as_of=f.as_of,
                                         horizon_s=self.in_flight_horizon_s)
            except ledger.StaleBalance as exc:
                f.stale = True
                f.warnings.append(f"{f.name}: balances not applied, {exc}")
            else:
                f.ledger_notes.extend(notes)

    def resolve(self, f: _File, rows: list) -> None:
        """What offers say of their items, once the items they name are known: an offer of an item 1C
        has not described keeps a placeholder item (and is listed), a characteristic becomes an item of
        its own (named after its item), barcodes given with an offer join its item's, and an offer
        marked deleted marks its item. A row is the offer id alone when it says nothing more."""
        r = self.r
        run_items = self.run_items
        wanted: set[str] = set()  # items to ask the database about: not described in this run, or a base
        for row in rows:
            oid = row if type(row) is str else row[0]
            item_id = oid.partition("#")[0]
            if item_id != oid or item_id not in run_items:
                wanted.add(item_id)
        known, placeholders = self._lookup(wanted) if wanted else ({}, set())
        new_items: list[nom.Item] = []
        extra_barcodes: list[tuple[str, str]] = []
        unknown: list[str] = []
        deleted: list[str] = []
        barcodes = r.barcodes
        bins: list[tuple[str, str, str]] = []  # (bin, item id, bin) of offers that state their item's bin
        for row in rows:
            shelf = ""
            if type(row) is str:
                oid, name, article, offer_barcodes, characteristics, is_deleted = row, "", "", (), {}, False
            else:
                oid, name, article, offer_barcodes, characteristics, is_deleted, *more = row
                shelf = more[0] if more else ""
            if shelf:
                bins.append((shelf, oid, shelf))
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
        if new_items:
            nom.upsert_items(self.conn, new_items, batch=BATCH)
        if bins:  # the sites hear of a changed bin with the next catalog they are sent (updated_at)
            self.conn.executemany("UPDATE items SET bin=?, updated_at=datetime('now') WHERE id=? AND bin!=?", bins)
        if extra_barcodes:
            self.conn.executemany("INSERT OR IGNORE INTO item_barcodes(barcode, item_id) VALUES (?, ?)",
                                  extra_barcodes)
        if unknown:
            store.note_unknown_offers(self.conn, unknown, f.name)
            self.placeholders_exist = True
            f.unknown.extend(unknown)
            self.r.unknown_offers += len(unknown)
        if deleted:
            nom.mark_items_deleted(self.conn, deleted)
            self.r.deleted += len(deleted)
