"""The commission agent report for 1C: as an XLSX laid out like 1C's document «Отчет комиссионера
(агента) о продажах» (the parties with INN/KPP and the contract above the goods table; dates as date
cells, money as numbers with two decimals; the reconciliation on a second sheet), and, where the seller
published 1C's standard OData REST interface, as that document created in 1C directly.

The parties are the legal details entered in Settings (`parties`, `store_parties`, `check_legal`: stored
settings of kind `legal`, scope `seller` for the seller, the account's name for its marketplace).

The report itself is the cloud's (`cloud_sync.money.reports.CommissionReport`, built from the marketplace's
realization report, saved in `commission_reports`/`commission_report_rows`); `saved_report` reads a
saved one back. Rows keep the 1C item id (`Ид` from the CommerceML exchange = the item's Ref_Key in
1C; `product#characteristic` for a characteristic).

OData: `POST {base}/odata/standard.odata/{document}?$format=json` with the header fields and the
goods table, Basic auth; with `post = true` then `POST …({document}(guid'…'))/Post()`. Names of the
document, its table and fields differ between configurations (УТ 11 / КА 2 / ERP: Document_ОтчетКомиссионера,
Бухгалтерия: Document_ОтчетКомиссионераОПродажах), so they are settings with those defaults. Nothing
is sent when a row's item id is not a 1C GUID: the whole document or nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.access import secrets
from cloud_sync.config_sections import (
    ODATA_FIELDS,
    LegalSettings,
    ODataAccount,
    ODataSection,
    legal_problems,
    section_password,
)
from cloud_sync.money.reports import CommissionReport, ItemRow, reconciliation_table
from cloud_sync.onec.odata import odata_error
from cloud_sync.onec.orders_out import MARKETPLACE_TITLES

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
COLUMNS = ["№", "Код (Ид 1С)", "Артикул", "Номенклатура", "Характеристика", "Количество", "Цена", "Сумма",
           "% вознаграждения", "Сумма вознаграждения", "Эквайринг", "Логистика", "Хранение", "Штрафы",
           "Прочие удержания", "К перечислению", "Возвращено, шт"]
MONEY_COLUMNS = {7, 8, 10, 11, 12, 13, 14, 15, 16}  # 1-based, as openpyxl counts
PERCENT_COLUMN = 9
MONEY_FORMAT = "#,##0.00"
DATE_FORMAT = "DD.MM.YYYY"
LEGAL = "legal"  # the kind of the stored settings (cloud_sync.access.secrets) that hold the parties
LEGAL_KEYS = ("name", "inn", "kpp", "contract_number", "contract_date")
SELLER_SCOPE = "seller"  # the seller's own details; an account's name is the scope of its marketplace's


class CommissionError(ValueError):
    """The report cannot be written or sent; the message never holds a secret."""


def saved_report(conn: sqlite3.Connection, report_id: str) -> CommissionReport:
    """A report the cloud built and saved (reports.save_report), read back."""
    r = conn.execute("SELECT * FROM commission_reports WHERE id=?", (report_id,)).fetchone()
    if r is None:
        raise CommissionError(f"no commission report {report_id!r}")
    rows = [ItemRow(key=x["item_id"] or f"row:{x['row_no']}", item_id=x["item_id"], article=x["article"],
                    name=x["name"], offer_ids=[o for o in x["offer_ids"].split(", ") if o], sold=x["sold"],
                    returned=x["returned"], revenue=Decimal(x["revenue"]), fee=Decimal(x["fee"]),
                    logistics=Decimal(x["logistics"]), other=Decimal(x["other"]), to_pay=Decimal(x["to_pay"]),
                    acquiring=Decimal(x["acquiring"]), storage=Decimal(x["storage"]), penalty=Decimal(x["penalty"]),
                    back_good=x["back_good"], back_defective=x["back_defective"])
            for x in conn.execute("SELECT * FROM commission_report_rows WHERE report_id=? ORDER BY row_no",
                                  (report_id,))]
    totals = {k: Decimal(v) for k, v in json.loads(r["totals"]).items()}
    return CommissionReport(account=r["account"], marketplace=r["marketplace"],
                            period_from=date.fromisoformat(r["period_from"]),
                            period_to=date.fromisoformat(r["period_to"]), rows=rows, totals=totals,
                            native_totals={k: Decimal(v) for k, v in json.loads(r["native_totals"]).items()},
                            compared={}, differences=[], not_compared=[], native_report_id=r["native_report_id"],
                            notes=json.loads(r["notes"]), native_counts=set(json.loads(r["native_counts"])),
                            id=r["id"])


def _split(item_id: str | None) -> tuple[str, str]:
    if not item_id:
        return "", ""
    product, _, characteristic = item_id.partition("#")
    return product, characteristic


def _price(row: ItemRow) -> Decimal:
    return (row.revenue / row.sold).quantize(Decimal("0.01")) if row.sold else Decimal(0)


def _percent(row: ItemRow) -> Decimal:
    return (row.fee * 100 / row.revenue).quantize(Decimal("0.01")) if row.revenue else Decimal(0)


@dataclass
class Party:
    """One side of the commission contract as 1C's document names it."""

    name: str = ""
    inn: str = ""
    kpp: str = ""


@dataclass
class Parties:
    """The seller (комитент, принципал), the marketplace (комиссионер, агент) and their contract: [legal] of
    cloud.toml, overridden by what is entered in Settings (stored settings of kind `legal`: scope `seller`
    for the seller, the account's name for its marketplace and contract)."""

    seller: Party = field(default_factory=Party)
    marketplace: Party = field(default_factory=Party)
    contract_number: str = ""
    contract_date: date | None = None


def parties(conn: sqlite3.Connection, account: str, configured: LegalSettings | None = None) -> Parties:
    """The legal details of the seller and the account's marketplace: cloud.toml's [legal] (`configured`),
    each field overridden by what the owner entered in Settings."""
    configured = configured or LegalSettings()
    stored: dict[str, dict[str, str]] = {SELLER_SCOPE: configured.seller.values()}
    for name, party in configured.accounts.items():
        stored[name] = party.values()
    for r in secrets.settings(conn, LEGAL):
        stored.setdefault(r["scope"], {})[r["key"]] = r["value"]
    own, theirs = stored.get(SELLER_SCOPE, {}), stored.get(account, {})
    try:
        signed = date.fromisoformat(theirs["contract_date"]) if theirs.get("contract_date") else None
    except ValueError:
        signed = None
    return Parties(seller=Party(own.get("name", ""), own.get("inn", ""), own.get("kpp", "")),
                   marketplace=Party(theirs.get("name", ""), theirs.get("inn", ""), theirs.get("kpp", "")),
                   contract_number=theirs.get("contract_number", ""), contract_date=signed)


def check_legal(values: dict[str, str]) -> dict[str, str]:
    """What is wrong with legal details typed in Settings (field -> message in Russian); {} when nothing."""
    said = {"inn": "ИНН — 10 цифр у организации или 12 у ИП", "kpp": "КПП — 9 цифр",
            "contract_date": "дата договора в виде 2026-01-31"}
    return {key: said[key] for key in legal_problems(values)}


def store_parties(conn: sqlite3.Connection, scope: str, values: dict[str, str]) -> None:
    """Keep the legal details of the seller (scope `seller`) or of an account's marketplace and contract."""
    for key in LEGAL_KEYS:
        if key in values:
            secrets.put_setting(conn, LEGAL, scope, key, values[key].strip())


def table_rows(report: CommissionReport) -> list[list[Any]]:
    out = []
    for n, r in enumerate(report.rows, 1):
        characteristic = _split(r.item_id)[1]
        out.append([n, r.item_id or "", r.article, r.name, characteristic, r.sold, _price(r), r.revenue,
                    _percent(r), r.fee, r.acquiring, r.logistics, r.storage, r.penalty, r.other, r.to_pay,
                    r.returned])
    return out


def _party_text(party: Party, fallback: str) -> str:
    parts = [party.name or fallback]
    if party.inn:
        parts.append(f"ИНН {party.inn}")
    if party.kpp:
        parts.append(f"КПП {party.kpp}")
    return ", ".join(parts)


def write_xlsx(report: CommissionReport, path: str | Path, *, principal: str = "", number: str = "",
               on: date | None = None, legal: Parties | None = None) -> Path:
    """The report as 1C's «Отчет комиссионера (агента) о продажах» lays it out: the parties with their
    INN/KPP and the contract above the goods table (item, quantity, price, sum, commission, the
    deductions, to pay); dates are date cells, money numbers with two decimals. A second sheet holds
    the reconciliation with the marketplace's own totals."""
    from openpyxl import Workbook  # lazy: openpyxl is heavy and only the XLSX report needs it
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    on = on or date.today()
    legal = legal or Parties()
    if principal and not legal.seller.name:
        legal.seller.name = principal
    wb = Workbook()
    ws = wb.active
    ws.title = "Отчет комиссионера"
    title = MARKETPLACE_TITLES.get(report.marketplace, report.marketplace)
    ws["A1"] = f"Отчет комиссионера (агента) о продажах № {number or report.id} от {on.strftime('%d.%m.%Y')}"
    ws["A1"].font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(COLUMNS))
    bold = Font(bold=True)

    def put(row: int, col: int, value: Any, fmt: str = "") -> None:
        cell = ws.cell(row, col, value)
        if fmt:
            cell.number_format = fmt

    ws.cell(2, 1, "Дата отчета:").font = bold
    put(2, 3, on, DATE_FORMAT)
    ws.cell(3, 1, "Комиссионер (агент):").font = bold
    put(3, 3, _party_text(legal.marketplace, f"{title}, кабинет {report.account}"))
    ws.cell(4, 1, "Комитент (принципал):").font = bold
    put(4, 3, _party_text(legal.seller, ""))
    ws.cell(5, 1, "Договор:").font = bold
    put(5, 3, f"№ {legal.contract_number}" if legal.contract_number else "")
    if legal.contract_date:
        put(5, 5, "от")
        put(5, 6, legal.contract_date, DATE_FORMAT)
    ws.cell(6, 1, "Период:").font = bold
    put(6, 3, report.period_from, DATE_FORMAT)
    put(6, 4, report.period_to, DATE_FORMAT)
    top = 8
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    for c, name in enumerate(COLUMNS, 1):
        cell = ws.cell(top, c, name)
        cell.font = bold
        cell.alignment = Alignment(wrap_text=True, horizontal="center", vertical="center")
        cell.border = box
    rows = table_rows(report)
    for i, row in enumerate(rows, top + 1):
        for c, value in enumerate(row, 1):
            cell = ws.cell(i, c, float(value) if isinstance(value, Decimal) else value)
            cell.border = box
            if c in MONEY_COLUMNS:
                cell.number_format = MONEY_FORMAT
            elif c == PERCENT_COLUMN:
                cell.number_format = "0.00"
    total_row = top + len(rows) + 1
    ws.cell(total_row, 4, "Итого").font = bold
    for c, key in ((6, "sold"), (8, "revenue"), (10, "fee"), (11, "acquiring"), (12, "logistics"), (13, "storage"),
                   (14, "penalty"), (15, "other"), (16, "to_pay"), (17, "returned")):
        value = sum((getattr(r, key) for r in report.rows), Decimal(0))
        cell = ws.cell(total_row, c, float(value) if key not in ("sold", "returned") else int(value))
        cell.font = bold
        cell.border = box
        if c in MONEY_COLUMNS:
            cell.number_format = MONEY_FORMAT
    revenue = sum((r.revenue for r in report.rows), Decimal(0))
    fee = sum((r.fee for r in report.rows), Decimal(0))
    to_pay = sum((r.to_pay for r in report.rows), Decimal(0))
    ws.cell(total_row + 2, 1, f"Всего наименований {len(rows)}, на сумму {revenue:,.2f} руб.".replace(",", " "))
    ws.cell(total_row + 3, 1, f"Вознаграждение комиссионера составило {fee:,.2f} руб.".replace(",", " "))
    ws.cell(total_row + 4, 1, f"К перечислению комитенту {to_pay:,.2f} руб.".replace(",", " "))
    widths = [5, 40, 14, 44, 18, 11, 11, 13, 11, 13, 12, 12, 12, 12, 12, 14, 11]
    for c, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(c)].width = w
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    _reconciliation_sheet(wb.create_sheet("Сверка"), report)
    path = Path(path)
    try:
        wb.save(str(path))
    except OSError as exc:
        raise CommissionError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _reconciliation_sheet(ws: Any, report: CommissionReport) -> None:
    from openpyxl.styles import Font

    headers, rows = reconciliation_table(report)
    ws.append(headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([float(v) if isinstance(v, Decimal) else (None if v == "" else v) for v in row])
        for cell in ws[ws.max_row][1:4]:
            if isinstance(cell.value, float):
                cell.number_format = MONEY_FORMAT
    for col, width in zip("ABCDEF", (28, 16, 16, 14, 16, 70), strict=True):
        ws.column_dimensions[col].width = width


# ---------------------------------------------------------------- OData


@dataclass
class ODataSettings:
    """What one account's document is sent with: `[onec.odata]` of cloud.toml (config_sections.ODataSection,
    whose defaults these are) with its password read and that account's counterparty and contract."""

    base_url: str  # the published infobase, e.g. http://1c.local/trade
    login: str = ""
    password: str = field(default="", repr=False)
    document: str = ODataSection.document
    table: str = ODataSection.table
    organization_key: str = ""
    counterparty_key: str = ""  # the marketplace as a counterparty in 1C
    contract_key: str = ""
    post: bool = False  # проводить документ after creating it
    fields: dict[str, str] = field(default_factory=lambda: dict(ODATA_FIELDS))
    timeout_s: float = ODataSection.timeout_s


@dataclass
class ODataResult:
    ref_key: str
    posted: bool
    lines: int
    skipped: list[str]  # rows with no 1C item (marketplace services, unlinked cards): not in the document


class ODataError(CommissionError):
    pass


def document_body(report: CommissionReport, settings: ODataSettings, *, on: datetime | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """The JSON 1C's OData takes for the document, and the rows left out (no 1C item)."""
    f = settings.fields
    lines, skipped, bad = [], [], []
    for r in report.rows:
        product, characteristic = _split(r.item_id)
        if not product:
            skipped.append(r.name or r.key)
            continue
        if not GUID.match(product) or (characteristic and not GUID.match(characteristic)):
            bad.append(r.item_id or "")
            continue
        if not r.sold:
            continue
        line = {"LineNumber": str(len(lines) + 1), f["item"]: product, f["quantity"]: r.sold,
                f["price"]: float(_price(r)), f["amount"]: float(r.revenue), f["fee"]: float(r.fee)}
        if characteristic:
            line[f["characteristic"]] = characteristic
        lines.append(line)
    if bad:
        raise ODataError(f"{len(bad)} item id(s) are not 1C references (GUID), nothing was sent: "
                         + ", ".join(bad[:5]))
    body: dict[str, Any] = {
        "Date": (on or datetime.now()).strftime("%Y-%m-%dT%H:%M:%S"),
        "Комментарий": f"marketsync: {report.marketplace} {report.account} "
                       f"{report.period_from.isoformat()}..{report.period_to.isoformat()} ({report.id})",
        settings.table: lines,
    }
    for key, value in (("Организация_Key", settings.organization_key), ("Контрагент_Key", settings.counterparty_key),
                       ("Договор_Key", settings.contract_key)):
        if value:
            body[key] = value
    return body, skipped


def create_document(report: CommissionReport, settings: ODataSettings, *, client: Any = None) -> ODataResult:
    """Create (and with `post`, post) the document in 1C through its standard OData interface."""
    body, skipped = document_body(report, settings)
    base = settings.base_url.rstrip("/") + "/odata/standard.odata/"
    own = client is None
    client = client or httpx.Client(timeout=settings.timeout_s)
    try:
        try:
            resp = client.post(base + settings.document, params={"$format": "json"}, json=body,
                               auth=(settings.login, settings.password), headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ODataError(f"1C OData at {settings.base_url} did not answer: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise ODataError(f"1C OData refused the login {settings.login!r} (401)")
        if resp.status_code not in (200, 201):
            raise ODataError(f"1C OData refused the document ({resp.status_code}): {odata_error(resp)}")
        ref = resp.json().get("Ref_Key", "")
        posted = False
        if settings.post:
            resp = client.post(f"{base}{settings.document}(guid'{ref}')/Post()", params={"$format": "json"},
                               auth=(settings.login, settings.password), headers={"Accept": "application/json"})
            if resp.status_code not in (200, 204):
                raise ODataError(f"1C created document {ref} but did not post it ({resp.status_code}): "
                                 f"{odata_error(resp)}")
            posted = True
        return ODataResult(ref, posted, len(body[settings.table]), skipped)
    finally:
        if own:
            client.close()


def _either(own: str | None, default: str) -> str:
    return default if own is None else own


def odata_settings(section: ODataSection, account: str) -> ODataSettings:
    """From `[onec.odata]` as read at load (the password read now, from `password_env` or `password_file`);
    `[onec.odata.accounts.<account>]` keys, where set, win over the section's."""
    per_account = section.accounts.get(account, ODataAccount())
    return ODataSettings(base_url=section.base_url, login=section.login, password=section_password(section),
                         document=section.document, table=section.table, organization_key=section.organization_key,
                         counterparty_key=_either(per_account.counterparty_key, section.counterparty_key),
                         contract_key=_either(per_account.contract_key, section.contract_key), post=section.post,
                         fields={**ODATA_FIELDS, **section.fields}, timeout_s=section.timeout_s)
