"""What the 1C importer writes, prepared from the parser's records — in this process, or in a child
process that parses while this one writes.

`prepared(records)` turns the parser's stream into batches of plain rows, the per-row work the
database does not need to wait for: plain item tuples, price rows, 1C balances with the ledger's
whole-unit figure, stock totals, mismatches. The importer applies
them (`importer._Run.apply`); both import paths use it, so they write the same rows.

`ChildParser(paths)` runs `parse` + `prepared` for each file in a child process and hands its batches
here as they come: parsing and writing to SQLite overlap. The child is a fresh interpreter
(multiprocessing's spawn: nothing inherited from this process — no lock another thread held, none of
the web app's memory; about 25 MB), which, as multiprocessing does, imports the program's main module
again: it must keep its work under `if __name__ == "__main__"`, as the `marketsync` console script
does. The batches travel through a pipe, one at a time — the child waits while the pipe is full, so
memory stays bounded on both sides. Row batches go as marshal data (plain tuples, lists, dicts and
strings: several times cheaper to load than pickle), other records pickled. A failure in the child
(bad or hostile XML, an unreadable number, the child dying) is raised here as `CommerceMLError` with
the parser's one-line message, so the importer's transaction rolls back. When the importer stops early
(its own error), the child is stopped.

A package of catalog files followed by offer files (`streams`) is read by two children at once, one
per stream, and the importer applies their batches as they come (`side_by_side`); a file that carries
what the other stream writes ends that (`StreamsCrossed`) and the package is read again, in order.

Batch messages (plain tuples, cheap to pickle):
  ("items", rows, barcode_pairs, deleted)   rows for `nomenclature.upsert_item_rows` (properties as their
                     JSON text), their (barcode, item_id) pairs, the ids 1C marked deleted
  ("offers", offers, price_rows, price_currencies, balances, notes, mismatches, warehouses, totals)
      offers: (id, name, article, barcodes, characteristics, deleted[, bin]), or the id alone for an offer
      that says nothing more of its item; price_rows: (offer_id, type_id,
      price_text); price_currencies: {type_id: currency} in order of first sight; balances: (offer_id,
      warehouse_id, quantity_text, ledger_quantity); notes: ledger notes; mismatches: offer ids whose
      total differs from their warehouses; warehouses: ids in order of first sight; totals:
      {warehouse_id: quantity_text} of this batch
  ("record", record)                             any other parser record (group, price type, ...)
  ("end", peak_mb)                                the end of one file, with the child's resident peak so far
                                                 (child only)
  ("error", message)                             the child failed (child only)
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import resource
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from cloud_sync.catalog.nomenclature import properties_json
from cloud_sync.onec.parser import DEFAULT_WAREHOUSE, CatalogItem, CommerceMLError, Offer, Record, parse

BATCH = 2000
_ZERO = Decimal(0)

Batch = tuple


def _item_batch(items: list[CatalogItem]) -> Batch:
    """("items", rows for `nomenclature.upsert_item_rows`, their (barcode, item_id) pairs, the ids 1C
    marked deleted)."""
    rows = []
    pairs: list[tuple[str, str]] = []
    deleted: list[str] = []
    encode = properties_json
    for rec in items:
        it = rec.item
        item_id = it.id
        rows.append((item_id, it.article, it.name, it.group_id, it.unit, int(it.marked), it.gtin, it.bin,
                     encode(it.properties)))
        barcodes = it.barcodes
        if barcodes:
            if len(barcodes) == 1:
                if barcodes[0]:
                    pairs.append((barcodes[0], item_id))
            else:
                pairs.extend((b, item_id) for b in dict.fromkeys(barcodes) if b)
        if rec.deleted:
            deleted.append(item_id)
    return ("items", rows, pairs, deleted)


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
        if o.bin:
            rows.append((oid, o.name, o.article, o.barcodes, o.characteristics, o.deleted, o.bin))
        elif o.name or o.article or o.barcodes or o.characteristics or o.deleted:
            rows.append((oid, o.name, o.article, o.barcodes, o.characteristics, o.deleted))
        else:
            rows.append(oid)  # says nothing of its item but its id (most offers)
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
    """Whether this platform can start a child process for the parser (multiprocessing's spawn)."""
    return "spawn" in multiprocessing.get_all_start_methods()


def worth_it(paths: Sequence[str | os.PathLike[str]], min_bytes: int = PIPELINE_MIN_BYTES) -> bool:
    """The files are large enough for the import with parser children (and a child can be started)."""
    try:
        size = sum(os.path.getsize(p) for p in paths)
    except (OSError, TypeError):
        return False
    return size >= min_bytes and available()


def _context() -> multiprocessing.context.BaseContext:
    # a fresh interpreter: fork would copy this process's memory (the web app's, counted again in the
    # child's resident size) and, with other threads alive, locks one of them held, stuck in the child
    return multiprocessing.get_context("spawn")


GC_THRESHOLD = 50_000  # young objects between cyclic collections while rows stream (the default 700
# makes the collector walk every batch of fresh tuples several times over: ~1/3 of loading them)


def _encode(batch: Batch) -> bytes:
    if batch[0] == "record":
        return b"P" + pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    return b"M" + marshal.dumps(batch, 4)


def _decode(data: bytes) -> Batch:
    return marshal.loads(data[1:]) if data[:1] == b"M" else pickle.loads(data[1:])


def _peak_mb() -> float:
    """This process's resident peak in MB (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(paths: list[str], out: multiprocessing.connection.Connection) -> None:
    send = out.send_bytes
    path = paths[0] if paths else ""
    # no cyclic garbage collection: the parser's elements and records form no cycles (they go with their
    # last reference), and a collection would only walk the batches in flight again and again
    gc.disable()
    try:
        for path in paths:
            for batch in prepared(parse(path)):
                send(_encode(batch))
            send(_encode(("end", _peak_mb())))
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
        self.peak_mb = 0.0  # the child's resident peak, as of the last file it finished

    @property
    def connection(self) -> multiprocessing.connection.Connection:
        return self._recv

    def next_batch(self, label: str) -> Batch | None:
        """The next batch of the file being read, or None at its end. Raises CommerceMLError."""
        try:
            batch = _decode(self._recv.recv_bytes())
        except (EOFError, OSError):
            self._proc.join(5)
            raise CommerceMLError(f"{label}: the parser process ended unexpectedly "
                                  f"(exit code {self._proc.exitcode})") from None
        kind = batch[0]
        if kind == "end":
            self.peak_mb = max(self.peak_mb, batch[1])
            return None
        if kind == "error":
            raise CommerceMLError(batch[1])
        return batch

    def file_batches(self, label: str) -> Iterator[Batch]:
        while (batch := self.next_batch(label)) is not None:
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


# ---------------------------------------------------------------- two files at once

_FILE_KIND = re.compile(r"(?:^|_)(import|offers|prices|rests)")  # 1C's names: import0_1.xml, offers___<id>.xml


def streams(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]] | None:
    """(catalog files, offer files) when the package can be parsed as two streams at once: 1C's catalog
    files (`import*.xml`) all come before its offer files (`offers*`, `prices*`, `rests*`), as 1C sends
    them, and there are both. None otherwise (one child reads the files in order)."""
    names = [os.path.basename(os.fspath(p)) for p in paths]
    if len(set(names)) != len(names):  # batches name their file: two files of one name go in order
        return None
    kinds = []
    for name in names:
        m = _FILE_KIND.search(name.lower())
        kinds.append("?" if m is None else "catalog" if m.group(1) == "import" else "offers")
    if "?" in kinds or "catalog" not in kinds or "offers" not in kinds:
        return None
    first_offer = kinds.index("offers")
    if "catalog" in kinds[first_offer:]:
        return None
    paths = [os.fspath(p) for p in paths]
    return paths[:first_offer], paths[first_offer:]


class StreamsCrossed(Exception):
    """A file of one stream carried what the other stream writes (a catalog file with offers, an offer
    file with items): the two cannot be applied side by side; the import runs again, in order."""


# what each stream may carry for its batches to be applied side by side with the other's
CATALOG_STREAM = ("items", "Group", "Property", "Package")
OFFER_STREAM = ("offers", "PriceType", "Warehouse", "Package")


def allowed(stream: tuple[str, ...], batch: Batch) -> bool:
    kind = batch[0]
    if kind == "record":
        return type(batch[1]).__name__ in stream
    return kind in stream


def side_by_side(catalog: ChildParser, catalog_files: list[str], offers: ChildParser,
                 offer_files: list[str]) -> Iterator[tuple[int, str, Batch | None]]:
    """The batches of two children as they come: (stream 0 catalog | 1 offers, file name, batch or None at
    the end of that file). Each stream's files and batches keep their order; which stream's batch comes
    next is whichever is ready (`multiprocessing.connection.wait`). Raises StreamsCrossed."""
    queues = {0: [os.path.basename(f) for f in catalog_files], 1: [os.path.basename(f) for f in offer_files]}
    children = {0: catalog, 1: offers}
    kinds = {0: CATALOG_STREAM, 1: OFFER_STREAM}
    by_conn = {catalog.connection: 0, offers.connection: 1}
    while by_conn:
        for conn in multiprocessing.connection.wait(list(by_conn)):
            stream = by_conn[conn]
            name = queues[stream][0]
            batch = children[stream].next_batch(name)
            if batch is None:
                queues[stream].pop(0)
                if not queues[stream]:
                    del by_conn[conn]
            elif not allowed(kinds[stream], batch):
                raise StreamsCrossed(f"{name} carries {batch[0] if batch[0] != 'record' else type(batch[1]).__name__}")
            yield stream, name, batch
