"""Reports: the commission agent report per account and period, and the stock reports.

Owns the tables `commission_reports` and `commission_report_rows` (every report built, kept for the 1C
export and for comparison) and `report_builds` (the reports asked for on the page, built in the
background by the service's jobs with their progress: `queue_build`, `run_next_build`, `build_status`).

The commission agent report is built from the adapter's `realization_report(from, to)`: each line is
resolved to the 1C item its card is linked to (by card id, offer id or barcode; a card of N units
counts N item units) and summed per item - quantity sold and returned, revenue, marketplace fee,
acquiring, logistics, storage, penalties, other deductions, and to pay: what the marketplace transfers,
every deduction taken (revenue less all of them). Lines of no card (storage,
penalties of the account) go to one "account services" row; lines of unlinked cards get a row of their
own per offer id, so nothing is dropped. The totals are the sum of every line and are reconciled to
the marketplace's own totals (`RealizationReport.native_totals`, by our keys - whichever the adapter
gives) to the kopeck, line by line; a figure of the marketplace's own that we cannot compare is listed
with the adapter's word on it (`RealizationReport.notes`).

Stock reports read the ledger (cloud_sync/stock/ledger.py tables `stock_levels`, `fbo_stock`) and the
catalog's warehouse map: per own warehouse; per account with FBS (what the account's FBS warehouses
can offer from the ledger, before allocation rules) and FBO (read back from the marketplace) apart.

Exports: CSV (`;`-separated, UTF-8 with BOM, so a Russian Excel opens it as is) and XLSX (openpyxl).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cloud_sync import i18n
from cloud_sync.catalog.view import card_index, cards_for_pricing
from cloud_sync.db import transaction
from cloud_sync.i18n import N_
from cloud_sync.orders import after_handover
from marketplaces.base import RealizationReport

MIGRATIONS = [
    """
    CREATE TABLE commission_reports (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        marketplace TEXT NOT NULL DEFAULT '',
        period_from TEXT NOT NULL,
        period_to TEXT NOT NULL,
        native_report_id TEXT NOT NULL DEFAULT '',
        totals TEXT NOT NULL,           -- JSON {name: Decimal text}
        native_totals TEXT NOT NULL,    -- JSON, as the marketplace gave them
        reconciled INTEGER,             -- 1 all compared totals agree, 0 some differ, NULL nothing to compare
        differences TEXT NOT NULL DEFAULT '[]',
        built_ts REAL NOT NULL
    );
    CREATE INDEX commission_reports_account ON commission_reports(account, period_from);
    CREATE TABLE commission_report_rows (
        report_id TEXT NOT NULL REFERENCES commission_reports(id) ON DELETE CASCADE,
        row_no INTEGER NOT NULL,
        item_id TEXT,
        article TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        offer_ids TEXT NOT NULL DEFAULT '',
        sold INTEGER NOT NULL, returned INTEGER NOT NULL,
        revenue TEXT NOT NULL, fee TEXT NOT NULL, logistics TEXT NOT NULL, other TEXT NOT NULL, to_pay TEXT NOT NULL,
        PRIMARY KEY (report_id, row_no)
    );
    """,
    """
    -- units received back at the sites in the period (cloud_sync.orders.after_handover), good and defective
    ALTER TABLE commission_report_rows ADD COLUMN back_good INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE commission_report_rows ADD COLUMN back_defective INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- the deductions the marketplace's report names apart (before, inside fee and other)
    ALTER TABLE commission_report_rows ADD COLUMN acquiring TEXT NOT NULL DEFAULT '0';
    ALTER TABLE commission_report_rows ADD COLUMN storage TEXT NOT NULL DEFAULT '0';
    ALTER TABLE commission_report_rows ADD COLUMN penalty TEXT NOT NULL DEFAULT '0';
    ALTER TABLE commission_reports ADD COLUMN notes TEXT NOT NULL DEFAULT '{}';
    -- reports built in the background (the page asks, a job builds, the page follows the progress)
    CREATE TABLE report_builds (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        period_from TEXT NOT NULL,
        period_to TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',   -- queued, running, done, failed
        progress REAL NOT NULL DEFAULT 0,       -- 0..1
        stage TEXT NOT NULL DEFAULT 'queued',   -- queued, reading, saving, done, failed
        error TEXT NOT NULL DEFAULT '',
        report_id TEXT,
        created_ts REAL NOT NULL,
        started_ts REAL,
        finished_ts REAL
    );
    CREATE INDEX report_builds_state ON report_builds(state, created_ts);
    """,
    """
    -- the marketplace's totals that count units, not money (JSON list of their names)
    ALTER TABLE commission_reports ADD COLUMN native_counts TEXT NOT NULL DEFAULT '[]';
    """,
]

MONEY = ("revenue", "fee", "acquiring", "logistics", "storage", "penalty", "other", "to_pay")
COUNTS = ("sold", "returned")
TOTAL_KEYS = COUNTS + MONEY
ZERO = Decimal(0)
TOLERANCE = Decimal("0.01")

HEADERS_RU = {
    "article": "Артикул 1С", "name": "Номенклатура", "offer_ids": "Артикулы маркетплейса",
    "sold": "Продано, шт", "returned": "Возвращено, шт", "revenue": "Выручка", "fee": "Комиссия маркетплейса",
    "acquiring": "Эквайринг", "logistics": "Логистика", "storage": "Хранение", "penalty": "Штрафы",
    "other": "Прочие удержания", "to_pay": "К перечислению",
    "back_good": "Вернулось на склад, шт", "back_defective": "Из них брак, шт",
}
BACK = ("back_good", "back_defective")  # what came back to the sites in the period (our own count)


class ReportError(ValueError):
    """A report cannot be built or written (bad period, unknown account, unwritable file)."""


@dataclass
class ItemRow:
    key: str  # item id, "offer:<offer id>" for an unlinked card, "account" for account services
    item_id: str | None = None
    article: str = ""
    name: str = ""
    offer_ids: list[str] = field(default_factory=list)
    sold: int = 0
    returned: int = 0
    revenue: Decimal = ZERO
    fee: Decimal = ZERO
    acquiring: Decimal = ZERO
    logistics: Decimal = ZERO
    storage: Decimal = ZERO
    penalty: Decimal = ZERO
    other: Decimal = ZERO
    to_pay: Decimal = ZERO
    back_good: int = 0  # units received back at the sites in the period, put back on hand
    back_defective: int = 0  # ... found defective (kept in the defect warehouse)

    def values(self) -> dict[str, Any]:
        return {"article": self.article, "name": self.name, "offer_ids": ", ".join(self.offer_ids),
                **{k: getattr(self, k) for k in TOTAL_KEYS + BACK}}


@dataclass
class Difference:
    name: str
    ours: Decimal
    marketplace: Decimal

    @property
    def delta(self) -> Decimal:
        return self.ours - self.marketplace


@dataclass
class CommissionReport:
    account: str
    marketplace: str
    period_from: date
    period_to: date
    rows: list[ItemRow]
    totals: dict[str, Decimal]
    native_totals: dict[str, Decimal]
    compared: dict[str, Decimal]  # total name -> our figure, for every total the marketplace gave
    differences: list[Difference]
    not_compared: list[str]
    native_report_id: str = ""
    lines: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # native total -> how it entered, or why not compared
    native_counts: set[str] = field(default_factory=set)  # native totals that count units (not money)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def reconciled(self) -> bool | None:
        """True when every total the marketplace gave agrees; None when it gave none we know."""
        if not self.compared:
            return None
        return not self.differences


def build_commission_report(conn: sqlite3.Connection, report: RealizationReport, *, marketplace: str = "") -> CommissionReport:
    """Sum the realization report per 1C item and reconcile the totals with the marketplace's."""
    index = card_index(conn, report.account)
    barcodes = _barcode_index(conn)
    rows: dict[str, ItemRow] = {}
    for line in report.lines:
        card = index.get(line.card_id) or index.get(line.offer_id)
        item_id = card.item_id if card else None
        if item_id is None and line.barcode and barcodes.get(line.barcode):
            item_id = barcodes[line.barcode]
        pack = card.pack_size if card and card.item_id else 1
        if item_id:
            key = item_id
        elif line.offer_id or line.card_id:
            key = f"offer:{line.offer_id or line.card_id}"
        else:
            key = "account"
        row = rows.get(key)
        if row is None:
            row = rows[key] = ItemRow(key=key, item_id=item_id)
        offer = line.offer_id or (card.offer_id if card else "")
        if offer and offer not in row.offer_ids:
            row.offer_ids.append(offer)
        if line.kind == "sale":
            row.sold += abs(line.quantity) * pack
        elif line.kind == "return":
            row.returned += abs(line.quantity) * pack
        for k in MONEY:
            setattr(row, k, getattr(row, k) + Decimal(getattr(line, k) or 0))
    for item_id, back in after_handover.returned_units(conn, report.account, report.period_from.isoformat(),
                                                       report.period_to.isoformat()).items():
        row = rows.get(item_id) or rows.setdefault(item_id, ItemRow(key=item_id, item_id=item_id))
        row.back_good, row.back_defective = back["good"], back["defective"]
    _name_rows(conn, rows)
    ordered = sorted(rows.values(), key=lambda r: (r.key == "account", r.item_id is None, r.article, r.key))
    totals = {k: sum((Decimal(getattr(r, k)) for r in ordered), ZERO) for k in TOTAL_KEYS}
    totals["sold"] = Decimal(sum(r.sold for r in ordered))
    totals["returned"] = Decimal(sum(r.returned for r in ordered))
    for k in BACK:
        totals[k] = Decimal(sum(getattr(r, k) for r in ordered))
    # the marketplace's counts are in cards, not item units: compare them with card counts
    card_counts = {
        "sold": Decimal(sum(abs(x.quantity) for x in report.lines if x.kind == "sale")),
        "returned": Decimal(sum(abs(x.quantity) for x in report.lines if x.kind == "return")),
    }
    compared: dict[str, Decimal] = {}
    differences: list[Difference] = []
    not_compared: list[str] = []
    for name, theirs in report.native_totals.items():
        if name not in TOTAL_KEYS:
            not_compared.append(name)
            continue
        ours = card_counts[name] if name in COUNTS else totals[name]
        compared[name] = ours
        if abs(ours - Decimal(theirs)) > (ZERO if name in COUNTS else TOLERANCE):
            differences.append(Difference(name, ours, Decimal(theirs)))
    return CommissionReport(
        account=report.account, marketplace=marketplace, period_from=report.period_from,
        period_to=report.period_to, rows=ordered, totals=totals,
        native_totals={k: Decimal(v) for k, v in report.native_totals.items()}, compared=compared,
        differences=differences, not_compared=not_compared, native_report_id=report.report_id,
        lines=len(report.lines), notes=dict(report.notes), native_counts=set(report.counts),
    )


def _barcode_index(conn: sqlite3.Connection) -> dict[str, str]:
    """barcode -> item, only for barcodes of exactly one item."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for barcode, item in conn.execute("SELECT barcode, item_id FROM item_barcodes"):
        if barcode in seen:
            out.pop(barcode, None)
            continue
        seen.add(barcode)
        out[barcode] = item
    return out


def _name_rows(conn: sqlite3.Connection, rows: dict[str, ItemRow]) -> None:
    for row in rows.values():
        if row.item_id:
            r = conn.execute("SELECT article, name FROM items WHERE id=?", (row.item_id,)).fetchone()
            if r:
                row.article, row.name = r["article"], r["name"]
        elif row.key == "account":
            row.name = "Услуги маркетплейса (без товара)"
        else:
            row.name = "Карточка не связана с номенклатурой"


def fetch_commission_report(conn: sqlite3.Connection, market: Any, period_from: date, period_to: date,
                            *, save: bool = True, progress: Callable[[int, int], None] | None = None
                            ) -> CommissionReport:
    """Ask the adapter for the realization report, build the commission report, keep it. `progress`
    hears the adapter's (calls done, calls expected) as it reads."""
    if period_to < period_from:
        raise ReportError(f"the period ends ({period_to}) before it starts ({period_from})")
    native = market.realization_report(period_from, period_to, **({"progress": progress} if progress else {}))
    report = build_commission_report(conn, native, marketplace=market.name)
    if save:
        save_report(conn, report)
    return report


# ---------------------------------------------------------------- builds in the background
# The page asks for a report (`queue_build`), a job builds it (`run_next_build`, run by the service's
# jobs) while the page follows `build_status`; no request waits for the marketplace.

READ_SHARE = 0.9  # of the progress bar: reading the marketplace's report; the rest: summing and saving


def queue_build(conn: sqlite3.Connection, account: str, period_from: date, period_to: date) -> str:
    """A build of this report queued (or the one already queued or running for the same account and
    period: pressing «Сформировать» twice builds once); its id."""
    if period_to < period_from:
        raise ReportError(f"the period ends ({period_to}) before it starts ({period_from})")
    with transaction(conn):
        r = conn.execute("SELECT id FROM report_builds WHERE account=? AND period_from=? AND period_to=? AND state IN"
                         " ('queued','running')", (account, period_from.isoformat(), period_to.isoformat())).fetchone()
        if r:
            return r[0]
        build_id = uuid.uuid4().hex[:16]
        conn.execute("INSERT INTO report_builds(id, account, period_from, period_to, created_ts) VALUES (?,?,?,?,?)",
                     (build_id, account, period_from.isoformat(), period_to.isoformat(), time.time()))
    return build_id


def build_status(conn: sqlite3.Connection, build_id: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT * FROM report_builds WHERE id=?", (build_id,)).fetchone()
    return dict(r) if r else None


def requeue_interrupted(conn: sqlite3.Connection) -> int:
    """Builds a stopped service left running start again from the beginning."""
    with transaction(conn):
        return conn.execute("UPDATE report_builds SET state='queued', progress=0, stage='queued'"
                            " WHERE state='running'").rowcount


def _claim(conn: sqlite3.Connection) -> sqlite3.Row | None:
    if conn.execute("SELECT 1 FROM report_builds WHERE state='queued' LIMIT 1").fetchone() is None:
        # nothing asked for (the job looks twice a second): no write lock taken — on PostgreSQL an
        # ordinary write transaction stops every other writer of the store, keyed ones too, until it ends
        return None
    with transaction(conn):
        r = conn.execute("SELECT * FROM report_builds WHERE state='queued' ORDER BY created_ts LIMIT 1").fetchone()
        if r is None:
            return None
        conn.execute("UPDATE report_builds SET state='running', stage='reading', started_ts=? WHERE id=?",
                     (time.time(), r["id"]))
    return r


def _mark(conn: sqlite3.Connection, build_id: str, **values: Any) -> None:
    with transaction(conn):
        conn.execute(f"UPDATE report_builds SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                     (*values.values(), build_id))


def run_next_build(conn: sqlite3.Connection, market_for: Callable[[str], Any]) -> str | None:
    """Build the oldest queued report, telling its progress as the adapter reads; its id, or None when
    none waits. `market_for(account)` gives the account's adapter (a context manager holding it for the
    build). A failure is kept on the build (its text, for the page) and raised no further."""
    build = _claim(conn)
    if build is None:
        return None
    build_id = build["id"]

    def progress(done: int, steps: int) -> None:
        _mark(conn, build_id, progress=READ_SHARE * min(done, steps) / max(steps, 1), stage="reading")

    try:
        with market_for(build["account"]) as market:
            report = fetch_commission_report(conn, market, date.fromisoformat(build["period_from"]),
                                             date.fromisoformat(build["period_to"]), save=False, progress=progress)
        _mark(conn, build_id, progress=0.95, stage="saving")
        save_report(conn, report)
    except Exception as exc:  # noqa: BLE001 - any failure ends the build, told on the page
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        text = exc.for_seller() if hasattr(exc, "for_seller") else str(exc)
        _mark(conn, build_id, state="failed", stage="failed", error=str(text)[:500], finished_ts=time.time())
        return build_id
    _mark(conn, build_id, state="done", stage="done", progress=1.0, report_id=report.id, finished_ts=time.time())
    return build_id


def save_report(conn: sqlite3.Connection, report: CommissionReport) -> str:
    with transaction(conn):
        conn.execute(
            "INSERT INTO commission_reports(id, account, marketplace, period_from, period_to, native_report_id,"
            " totals, native_totals, reconciled, differences, built_ts, notes, native_counts)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (report.id, report.account, report.marketplace, report.period_from.isoformat(),
             report.period_to.isoformat(), report.native_report_id,
             json.dumps({k: str(v) for k, v in report.totals.items()}),
             json.dumps({k: str(v) for k, v in report.native_totals.items()}),
             None if report.reconciled is None else int(report.reconciled),
             json.dumps([[d.name, str(d.ours), str(d.marketplace)] for d in report.differences]), time.time(),
             json.dumps(report.notes, ensure_ascii=False), json.dumps(sorted(report.native_counts))),
        )
        conn.executemany(
            "INSERT INTO commission_report_rows(report_id, row_no, item_id, article, name, offer_ids, sold, returned,"
            " revenue, fee, logistics, other, to_pay, back_good, back_defective, acquiring, storage, penalty)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(report.id, n, r.item_id, r.article, r.name, ", ".join(r.offer_ids), r.sold, r.returned,
              str(r.revenue), str(r.fee), str(r.logistics), str(r.other), str(r.to_pay), r.back_good,
              r.back_defective, str(r.acquiring), str(r.storage), str(r.penalty))
             for n, r in enumerate(report.rows, 1)],
        )
    return report.id


# ---------------------------------------------------------------- exports


def commission_table(report: CommissionReport) -> tuple[list[str], list[list[Any]]]:
    cols = list(HEADERS_RU)
    body = [[r.values()[c] for c in cols] for r in report.rows]
    body.append(["", "Итого", ""] + [report.totals.get(k, ZERO) if k in MONEY else int(report.totals.get(k, 0))
                                     for k in TOTAL_KEYS + BACK])
    return [HEADERS_RU[c] for c in cols], body


RECON_HEADERS = ["Показатель", "Наш расчёт", "Маркетплейс", "Разница", "Итог", "Пояснение"]
RECON_STATES = {"agrees": "сходится", "differs": "расхождение", "not_compared": "не сравнивается"}
NOT_OURS = N_("no such figure in our report")
NOT_THEIRS = N_("the marketplace gives no total of its own")


@dataclass
class ReconLine:
    """One line of the reconciliation: a figure (ours by key, or the marketplace's under its own name), both
    sides where there are two, and the adapter's word (English, translated where shown) on it."""

    name: str
    ours: Decimal | None
    theirs: Decimal | None
    state: str  # agrees, differs, not_compared
    note: str = ""
    count: bool = False  # a count of units (a whole number), not money

    def values(self) -> list[Decimal | int | None]:
        """ours, theirs, delta: counts as whole numbers, money as it is."""
        return [None if v is None else int(v) if self.count else v for v in (self.ours, self.theirs, self.delta)]

    @property
    def delta(self) -> Decimal | None:
        return None if self.ours is None or self.theirs is None else self.ours - self.theirs


def reconciliation_lines(report: CommissionReport) -> list[ReconLine]:
    """Line by line: each total the marketplace gave beside ours and whether they agree; each figure of
    the marketplace that has no counterpart of ours, with the adapter's word on how it entered the report
    or why it cannot be compared; and each of our money totals the marketplace gave no figure for."""
    differing = {d.name for d in report.differences}
    counts = set(COUNTS) | report.native_counts
    out = [ReconLine(name, ours, report.native_totals[name], "differs" if name in differing else "agrees",
                     report.notes.get(name, ""), count=name in counts) for name, ours in report.compared.items()]
    out += [ReconLine(name, None, report.native_totals[name], "not_compared", report.notes.get(name, NOT_OURS),
                      count=name in counts) for name in report.not_compared]
    out += [ReconLine(name, report.totals[name], None, "not_compared", report.notes.get(name, NOT_THEIRS))
            for name in MONEY if name not in report.native_totals and report.totals.get(name)]
    return out


def reconciliation_table(report: CommissionReport) -> tuple[list[str], list[list[Any]]]:
    """The reconciliation in Russian, for the files (XLSX, CSV)."""
    ru = i18n.translations("ru").gettext
    rows = [[HEADERS_RU.get(x.name) or ru(x.name), *("" if v is None else v for v in x.values()),
             RECON_STATES[x.state], ru(x.note) if x.note else ""] for x in reconciliation_lines(report)]
    return list(RECON_HEADERS), rows


def _csv_value(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def write_csv(path: str | Path | None, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              preamble: Sequence[Sequence[Any]] = ()) -> str:
    """Write (or, with path None, return) a `;`-separated CSV; the text is returned either way."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    for p in preamble:
        w.writerow([_csv_value(x) for x in p])
    w.writerow(headers)
    for r in rows:
        w.writerow([_csv_value(x) for x in r])
    text = buf.getvalue()
    if path is not None:
        try:
            Path(path).write_text(text, encoding="utf-8-sig")
        except OSError as exc:
            raise ReportError(f"cannot write {path}: {exc.strerror}") from None
    return text


def write_xlsx(path: str | Path, sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]],
                                                         Sequence[Sequence[Any]]]]) -> None:
    """sheets: (title, headers, rows, preamble lines)."""
    from openpyxl import Workbook  # lazy: openpyxl is heavy and only an XLSX export needs it
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for title, headers, rows, preamble in sheets:
        ws = wb.create_sheet(title[:31])
        for p in preamble:
            ws.append(list(p))
        ws.append(list(headers))
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
        for r in rows:
            ws.append([float(x) if isinstance(x, Decimal) else x for x in r])
            for c, x in zip(ws[ws.max_row], r, strict=False):
                if isinstance(x, Decimal):  # money: a number with two decimals, never text
                    c.number_format = "#,##0.00"
                elif isinstance(x, datetime):
                    c.number_format = "DD.MM.YYYY HH:MM"
                elif isinstance(x, date):
                    c.number_format = "DD.MM.YYYY"
        for p in range(1, len(preamble) + 1):
            for c in ws[p]:
                if isinstance(c.value, date):
                    c.number_format = "DD.MM.YYYY"
        for col in ws.columns:
            width = max((len(str(c.value)) for c in col if c.value is not None), default=8)
            ws.column_dimensions[col[0].column_letter].width = min(60, max(10, width + 2))
    try:
        wb.save(str(path))
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror}") from None


def _preamble(report: CommissionReport) -> list[list[Any]]:
    state = {True: "сходится с маркетплейсом", False: "РАСХОДИТСЯ с маркетплейсом",
             None: "маркетплейс не дал итогов для сверки"}[report.reconciled]
    return [["Отчёт комиссионера", report.account, report.marketplace],
            ["Период", report.period_from, report.period_to],
            ["Сверка итогов", state], []]


def export_commission(report: CommissionReport, path: str | Path) -> Path:
    """To .xlsx (report, reconciliation) or .csv (report, then the reconciliation below it)."""
    path = Path(path)
    headers, rows = commission_table(report)
    rh, rr = reconciliation_table(report)
    if path.suffix.lower() == ".xlsx":
        write_xlsx(path, [("Отчёт комиссионера", headers, rows, _preamble(report)), ("Сверка", rh, rr, [])])
    elif path.suffix.lower() == ".csv":
        write_csv(path, headers, [*rows, [], rh, *rr], _preamble(report))
    else:
        raise ReportError(f"cannot export to {path.name}: use a .xlsx or .csv file name")
    return path


# ---------------------------------------------------------------- stock reports


def stock_by_warehouse(conn: sqlite3.Connection) -> tuple[list[str], list[list[Any]]]:
    """Per own warehouse and item: on hand, reserved, available."""
    rows = conn.execute(
        "SELECT s.warehouse, s.item_id, COALESCE(i.article, ''), COALESCE(i.name, ''), s.on_hand, s.reserved,"
        " s.on_hand - s.reserved FROM stock_levels s LEFT JOIN items i ON i.id=s.item_id"
        " ORDER BY s.warehouse, i.article, s.item_id").fetchall()
    return (["Склад", "Код 1С", "Артикул 1С", "Номенклатура", "В наличии", "В резерве", "Доступно"],
            [list(r) for r in rows])


def stock_warehouse_totals(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    return {r[0]: {"items": r[1], "on_hand": r[2], "reserved": r[3], "available": r[2] - r[3]}
            for r in conn.execute("SELECT warehouse, COUNT(*), SUM(on_hand), SUM(reserved) FROM stock_levels"
                                  " GROUP BY warehouse ORDER BY warehouse")}


def stock_by_account(conn: sqlite3.Connection, account: str | None = None) -> tuple[list[str], list[list[Any]]]:
    """Per account and card: FBS (what the account's FBS warehouses can offer from our ledger, in cards:
    available at the mapped own warehouses // pack size, before allocation rules) and FBO (read back
    from the marketplace), kept apart."""
    accounts = [account] if account else [r[0] for r in conn.execute("SELECT DISTINCT account FROM cards ORDER BY 1")]
    out: list[list[Any]] = []
    for acc in accounts:
        own = [r[0] for r in conn.execute(
            "SELECT DISTINCT own_warehouse FROM mp_warehouses WHERE account=? AND own_warehouse IS NOT NULL"
            " AND kind!='fbo'", (acc,))]
        for c in cards_for_pricing(conn, acc):
            if c.item_id and own:
                avail = conn.execute(
                    f"SELECT COALESCE(SUM(on_hand - reserved), 0) FROM stock_levels WHERE item_id=? AND warehouse IN"
                    f" ({','.join('?' * len(own))})", (c.item_id, *own)).fetchone()[0]
                out.append([acc, c.marketplace, "FBS", ", ".join(own), c.offer_id, c.item_id,
                            max(0, avail) // max(1, c.pack_size)])
        index = card_index(conn, acc)
        for card_id, wh, qty in conn.execute("SELECT card_id, warehouse_id, quantity FROM fbo_stock WHERE account=?"
                                             " ORDER BY warehouse_id, card_id", (acc,)):
            c = index.get(card_id)
            out.append([acc, c.marketplace if c else "", "FBO", wh, c.offer_id if c else card_id,
                        c.item_id if c else None, qty])
    return ["Аккаунт", "Маркетплейс", "Схема", "Склад", "Артикул маркетплейса", "Код 1С", "Количество"], out


def stock_by_scheme(conn: sqlite3.Connection) -> tuple[list[str], list[list[Any]]]:
    """Totals per account: FBS vs FBO, in cards."""
    _, rows = stock_by_account(conn)
    sums: dict[tuple[str, str], int] = {}
    for acc, _mp, scheme, _wh, _offer, _item, qty in rows:
        sums[(acc, scheme)] = sums.get((acc, scheme), 0) + int(qty)
    accounts = sorted({a for a, _ in sums})
    return (["Аккаунт", "FBS", "FBO"], [[a, sums.get((a, "FBS"), 0), sums.get((a, "FBO"), 0)] for a in accounts])


STOCK_REPORTS = {"warehouse": stock_by_warehouse, "account": stock_by_account, "scheme": stock_by_scheme}


def export_stock(conn: sqlite3.Connection, kind: str, path: str | Path) -> Path:
    if kind not in STOCK_REPORTS:
        raise ReportError(f"unknown stock report {kind!r}; known: {', '.join(STOCK_REPORTS)}")
    headers, rows = STOCK_REPORTS[kind](conn)
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        write_xlsx(path, [(f"Остатки ({kind})", headers, rows, [])])
    elif path.suffix.lower() == ".csv":
        write_csv(path, headers, rows)
    else:
        raise ReportError(f"cannot export to {path.name}: use a .xlsx or .csv file name")
    return path
