"""What the 1C importer writes, prepared from the parser's records — in this process, or in a child
process that parses while this one writes.

`prepared(records)` turns the parser's stream into batches of plain rows, the per-row work the
database does not need to wait for: plain item tuples, price rows, 1C balances with the ledger's
whole-unit figure, stock totals, mismatches. The importer applies
them (`importer._Run.apply`); both import paths use it, so they write the same rows.

`child_batches(paths)` runs `parse` + `prepared` for each file in a child process (multiprocessing:
fork when this process has one thread, forkserver otherwise — which, as multiprocessing does, imports
the program's main module again in the fork server: it must keep its work under `if __name__ ==
"__main__"`, as the `marketsync` console script does) and yields its batches here as they come:
parsing (one core) and writing to SQLite (the other) overlap. The batches travel pickled through a
pipe, one at a time — the child waits while the pipe is full, so memory stays bounded on both sides.
Row batches go as marshal data (plain tuples, lists, dicts and strings: several times cheaper to load
than pickle), other records pickled. A failure in the child (bad or hostile XML, an unreadable number, the child dying) is raised here as
`CommerceMLError` with the parser's one-line message, so the importer's transaction rolls back. When
the importer stops early (its own error), the child is stopped.

Batch messages (plain tuples, cheap to pickle):
  ("items", items)   items: (id, article, name, group_id, unit, marked, gtin, bin, properties,
                     barcodes, deleted); `item_rows` makes them the database's rows
  ("offers", offers, price_rows, price_currencies, balances, notes, mismatches, warehouses, totals)
      offers: (id, name, article, barcodes, characteristics, deleted); price_rows: (offer_id, type_id,
      price_text); price_currencies: {type_id: currency} in order of first sight; balances: (offer_id,
      warehouse_id, quantity_text, ledger_quantity); notes: ledger notes; mismatches: offer ids whose
      total differs from their warehouses; warehouses: ids in order of first sight; totals:
      {warehouse_id: quantity_text} of this batch
  ("record", record)                             any other parser record (group, price type, ...)
  ("end",)                                       the end of one file (child only)
  ("error", message)                             the child failed (child only)
"""

from __future__ import annotations

import gc
import json
import marshal
import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from cloud_sync.onec.parser import DEFAULT_WAREHOUSE, CatalogItem, CommerceMLError, Offer, Record, parse

BATCH = 2000
_ZERO = Decimal(0)
_properties_json = json.JSONEncoder(ensure_ascii=False).encode  # as nomenclature writes them

Batch = tuple


def _item_batch(items: list[CatalogItem]) -> Batch:
    # as plain as marshal takes them; their rows (the properties' JSON) are made by the writing side,
    # `item_rows`, which has time to spare while the parser is the slower of the two
    return ("items", [(rec.item.id, rec.item.article, rec.item.name, rec.item.group_id, rec.item.unit,
                       rec.item.marked, rec.item.gtin, rec.item.bin, rec.item.properties, rec.item.barcodes,
                       rec.deleted) for rec in items])


def item_rows(items: list[tuple]) -> tuple[list[tuple], list[tuple[str, str]], list[str]]:
    """(item rows for `nomenclature.upsert_item_rows`, their (barcode, item_id) pairs, the ids 1C marked
    deleted) of an "items" batch."""
    rows = []
    pairs: list[tuple[str, str]] = []
    deleted: list[str] = []
    encode = _properties_json
    for item_id, article, name, group_id, unit, marked, gtin, bin_, properties, barcodes, is_deleted in items:
        rows.append((item_id, article, name, group_id, unit, int(marked), gtin, bin_, encode(properties)))
        if barcodes:
            pairs.extend((b, item_id) for b in dict.fromkeys(barcodes) if b)
        if is_deleted:
            deleted.append(item_id)
    return rows, pairs, deleted


def _offer_batch(offers: list[Offer]) -> Batch:
    rows = []
    price_rows: list[tuple[str, str, str]] = []
    currencies: dict[str, str] = {}
    balances: list[tuple[str, str, str, int]] = []
    notes: list[str] = []
    mismatches: list[str] = []
    warehouses: dict[str, None] = {}
    totals: dict[str, Decimal] = {}
    for o in offers:
        oid = o.id
        rows.append((oid, o.name, o.article, o.barcodes, o.characteristics, o.deleted))
        if o.deleted:
            continue
        for type_id, price in o.prices.items():
            if type_id not in currencies:
                currencies[type_id] = o.currencies.get(type_id) or "RUB"
            price_rows.append((oid, type_id, str(price)))
        stock = o.stock
        if stock:
            if o.quantity is not None and sum(stock.values()) != o.quantity:
                mismatches.append(oid)
        elif o.quantity is not None:
            stock = {DEFAULT_WAREHOUSE: o.quantity}
        for wid, qty in stock.items():
            warehouses[wid] = None
            totals[wid] = totals.get(wid, _ZERO) + qty
            whole = int(qty) if qty >= 0 else 0
            if whole != qty:
                notes.append(f"{oid} at {wid}: 1C states {qty}, the ledger takes {whole}")
            balances.append((oid, wid, str(qty), whole))
    return ("offers", rows, price_rows, currencies, balances, notes, mismatches, list(warehouses),
            {w: str(q) for w, q in totals.items()})


def prepared(records: Iterable[Record], batch: int = BATCH) -> Iterator[Batch]:
    """The records as batches of rows (see the module docstring), in the order the records came."""
    items: list[CatalogItem] = []
    offers: list[Offer] = []
    for rec in records:
        if isinstance(rec, CatalogItem):
            if offers:
                yield _offer_batch(offers)
                offers = []
            items.append(rec)
            if len(items) >= batch:
                yield _item_batch(items)
                items = []
        elif isinstance(rec, Offer):
            if items:
                yield _item_batch(items)
                items = []
            offers.append(rec)
            if len(offers) >= batch:
                yield _offer_batch(offers)
                offers = []
        else:
            if items:
                yield _item_batch(items)
                items = []
            if offers:
                yield _offer_batch(offers)
                offers = []
            yield ("record", rec)
    if items:
        yield _item_batch(items)
    if offers:
        yield _offer_batch(offers)


# ---------------------------------------------------------------- the child process

PIPELINE_MIN_BYTES = 4 << 20  # below this the child's start costs more than the overlap saves


def available() -> bool:
    """Whether this platform can run the parser in a child process cheaply (fork or forkserver)."""
    methods = multiprocessing.get_all_start_methods()
    return "fork" in methods or "forkserver" in methods


def worth_it(paths: Sequence[str | os.PathLike[str]], min_bytes: int = PIPELINE_MIN_BYTES) -> bool:
    """The files are large enough for the two-process import (and the platform has fork)."""
    try:
        size = sum(os.path.getsize(p) for p in paths)
    except (OSError, TypeError):
        return False
    return size >= min_bytes and available()


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    # fork copies only the calling thread: with other threads alive (the web app's) a lock one of them
    # held would stay locked in the child, so a fresh process from the fork server is used then
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["cloud_sync.onec.pipeline"])  # each child starts with the parser loaded
    return ctx


GC_THRESHOLD = 50_000  # young objects between cyclic collections while rows stream (the default 700
# makes the collector walk every batch of fresh tuples several times over: ~1/3 of loading them)


def _encode(batch: Batch) -> bytes:
    if batch[0] == "record":
        return b"P" + pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    return b"M" + marshal.dumps(batch, 4)


def _decode(data: bytes) -> Batch:
    return marshal.loads(data[1:]) if data[:1] == b"M" else pickle.loads(data[1:])


def _child(paths: list[str], out: multiprocessing.connection.Connection) -> None:
    send = out.send_bytes
    path = paths[0] if paths else ""
    gc.freeze()  # what the child inherited is never garbage of its own
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        for path in paths:
            for batch in prepared(parse(path)):
                send(_encode(batch))
            send(_encode(("end",)))
    except CommerceMLError as exc:
        _send_error(out, str(exc))
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the importer stopped first
    except BaseException as exc:  # noqa: BLE001 — anything else still ends the import with one line
        _send_error(out, f"{os.path.basename(path)}: the parser failed: {type(exc).__name__}: {exc}")
    finally:
        out.close()


def _send_error(out: multiprocessing.connection.Connection, message: str) -> None:
    try:
        out.send_bytes(_encode(("error", message)))
    except OSError:
        pass


class ChildParser:
    """The child process parsing `paths`; `file_batches()` yields one file's batches at a time."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        ctx = _context()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=([os.fspath(p) for p in paths], send), daemon=True,
                                 name="onec-parser")
        self._proc.start()
        send.close()  # the child holds the only writing end: its exit is our EOF

    def file_batches(self, label: str) -> Iterator[Batch]:
        recv = self._recv.recv_bytes
        while True:
            try:
                batch = _decode(recv())
            except (EOFError, OSError):
                self._proc.join(5)
                raise CommerceMLError(f"{label}: the parser process ended unexpectedly "
                                      f"(exit code {self._proc.exitcode})") from None
            kind = batch[0]
            if kind == "end":
                return
            if kind == "error":
                raise CommerceMLError(batch[1])
            yield batch

    def close(self) -> None:
        """Stop the child (at once if it is still parsing) and release the pipe."""
        self._recv.close()
        self._proc.join(0.5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc.close()

    def __enter__(self) -> ChildParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
