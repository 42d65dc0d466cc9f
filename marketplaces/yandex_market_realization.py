"""Yandex.Market's realization report read into the common report lines (the adapter's helper).

Owns: reading the file of `POST /v2/reports/goods-realization/generate?format=CSV` — a ZIP archive with
one CSV file per sheet, each headed by the documented CSV column names (delimiter `,` or `;`, UTF-8 with
or without BOM; dates `YYYY-MM-DD` or `DD.MM.YYYY`; money with `.` or `,`) — into `ReportLine`s:

- sheet `delivered`: a sale per row (`DELIVERED_COUNT`, `DELIVERED_PRICE_SUM_WITH_VAT_AND_DISCOUNTS`);
- sheet `returned`: a return per row (`RETURNED_COUNT`, `RETURN_PRICE_SUM_WITH_VAT_AND_DISCOUNTS`, negative);
- sheet `lost_items`: Market's compensation for goods lost in delivery (`COMPENSATION_AMOUNT` less
  `DECOMPENSATION_AMOUNT`), paid to the seller;
- sheets `transferred_to_delivery` and `unredeemed` move no money (goods on their way, goods the buyer
  did not take) and are kept as counts in `native_totals` only.

The report itself lists no marketplace fee: every fee Market charged for an order comes from the
order's stats (`POST /v2/campaigns/{campaignId}/stats/orders`, `commissions[]`, one entry per service)
and is spread over the order's lines in this report by their share of its revenue — the sale's services
onto its sales, a return's services (`RETURN_PROCESSING`, `RETURNED_ORDERS_STORAGE`) onto its returns.
Each fee keeps its own type in the line's `native["fees"]`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from marketplaces.base import ReportLine

SHEETS = ("transferred_to_delivery", "delivered", "unredeemed", "returned", "lost_items")
RETURN_SERVICES = {"RETURN_PROCESSING", "RETURNED_ORDERS_STORAGE"}
# Market's services by where the common report puts them (OrdersStatsCommissionType): the rest are fees
LOGISTICS = {"FULFILLMENT", "DELIVERY_TO_CUSTOMER", "EXPRESS_DELIVERY_TO_CUSTOMER", "SORTING", "INTAKE_SORTING",
             "CROSSREGIONAL_DELIVERY", "RETURN_PROCESSING", "FULFILLMENT_WITHDRAW"}
STORAGE = {"RETURNED_ORDERS_STORAGE"}
ACQUIRING = {"AGENCY", "PAYMENT_TRANSFER"}  # taking the buyer's payment and transferring it
# what the report says of Market's figures it cannot compare, or of ours Market gives no figure for
NOTES = {  # English: the cloud shows them in the reader's language (its catalogs hold them)
    "transferred": "units handed to delivery: not a sale, nothing to compare",
    "unredeemed": "units not redeemed: not a sale, nothing to compare",
    "compensation": "compensations for lost goods: in other deductions, with a minus",
    "to_pay": "Market's realization report has no payout total; the fees come from each order's stats",
    "fee": "Market gives no commission total in its realization report",
    "logistics": "Market gives no logistics total in its realization report",
}
CENT = Decimal("0.01")
COUNT_TOTALS = ("sold", "returned", "transferred", "unredeemed")  # Market's figures that count units, not roubles


class ReportFileError(ValueError):
    """The report file cannot be read (not a ZIP, a sheet without its columns, a bad number or date)."""


def _money(value: str, column: str) -> Decimal:
    text = (value or "").replace("\u00a0", "").replace(" ", "").replace(",", ".")
    if not text:
        return Decimal(0)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ReportFileError(f"{column}: not a number: {value!r}") from None


def _count(value: str, column: str) -> int:
    amount = _money(value, column)
    if amount != amount.to_integral_value():
        raise ReportFileError(f"{column}: not a whole number: {value!r}")
    return int(amount)


def _day(value: str, column: str) -> date | None:
    text = (value or "").strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    raise ReportFileError(f"{column}: not a date: {value!r}")


def read_sheets(data: bytes) -> dict[str, list[dict[str, str]]]:
    """The archive's sheets as rows keyed by the CSV column names (a sheet missing from it: no rows)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ReportFileError("the report file is not a ZIP archive") from None
    out: dict[str, list[dict[str, str]]] = {name: [] for name in SHEETS}
    with archive:
        for info in archive.infolist():
            stem = info.filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if stem not in out or not info.filename.lower().endswith(".csv"):
                continue
            text = archive.read(info).decode("utf-8-sig")
            first = text.split("\n", 1)[0]
            delimiter = ";" if first.count(";") > first.count(",") else ","
            out[stem] = [dict(r) for r in csv.DictReader(io.StringIO(text), delimiter=delimiter)]
    return out


def _need(row: Mapping[str, str], sheet: str, *columns: str) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        raise ReportFileError(f"sheet {sheet}: no column {', '.join(missing)}")


def report_lines(sheets: Mapping[str, list[dict[str, str]]], fees: Mapping[str, list[dict[str, Any]]],
                 period_from: date, period_to: date) -> tuple[list[ReportLine], dict[str, Decimal]]:
    """The report's lines within the period and Market's own figures from the file (`native_totals`):
    `fees` are the orders' `commissions` by order id (stats/orders)."""
    lines: list[ReportLine] = []
    totals = {"sold": Decimal(0), "returned": Decimal(0), "revenue": Decimal(0), "transferred": Decimal(0),
              "unredeemed": Decimal(0), "compensation": Decimal(0)}

    def within(day: date | None) -> bool:
        return day is not None and period_from <= day <= period_to

    for row in sheets.get("delivered", []):
        _need(row, "delivered", "ORDER_ID", "YOUR_SKU", "DELIVERED_COUNT", "DELIVERY_DATE",
              "DELIVERED_PRICE_SUM_WITH_VAT_AND_DISCOUNTS")
        day = _day(row["DELIVERY_DATE"], "DELIVERY_DATE")
        if not within(day):
            continue
        qty = _count(row["DELIVERED_COUNT"], "DELIVERED_COUNT")
        revenue = _money(row["DELIVERED_PRICE_SUM_WITH_VAT_AND_DISCOUNTS"], "DELIVERED_PRICE_SUM_WITH_VAT_AND_DISCOUNTS")
        lines.append(_line("sale", row, qty, revenue, day))
        totals["sold"] += qty
        totals["revenue"] += revenue
    for row in sheets.get("returned", []):
        _need(row, "returned", "ORDER_ID", "YOUR_SKU", "RETURNED_COUNT", "RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE",
              "RETURN_PRICE_SUM_WITH_VAT_AND_DISCOUNTS")
        day = _day(row["RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE"], "RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE")
        if not within(day):
            continue
        qty = _count(row["RETURNED_COUNT"], "RETURNED_COUNT")
        revenue = _money(row["RETURN_PRICE_SUM_WITH_VAT_AND_DISCOUNTS"], "RETURN_PRICE_SUM_WITH_VAT_AND_DISCOUNTS")
        lines.append(_line("return", row, -qty, -revenue, day))
        totals["returned"] += qty
        totals["revenue"] -= revenue
    for row in sheets.get("lost_items", []):
        _need(row, "lost_items", "ORDER_ID", "YOUR_SKU", "COMPENSATION_DATE", "COMPENSATION_AMOUNT")
        day = _day(row["COMPENSATION_DATE"], "COMPENSATION_DATE")
        if not within(day):
            continue
        paid = _money(row["COMPENSATION_AMOUNT"], "COMPENSATION_AMOUNT") - \
            _money(row.get("DECOMPENSATION_AMOUNT", ""), "DECOMPENSATION_AMOUNT")
        line = _line("other", row, 0, Decimal(0), day)
        line.other, line.to_pay = -paid, paid
        line.native["compensation"] = str(paid)
        lines.append(line)
        totals["compensation"] += paid
    for sheet, column, date_column, key in (
            ("transferred_to_delivery", "TRANSFERRED_TO_DELIVERY_COUNT", "TRANSFERRED_TO_DELIVERY_DATE", "transferred"),
            ("unredeemed", "UNREDEEMED_COUNT", "UNREDEEMED_WAREHOUSE_OR_SC_ACCEPT_DATE", "unredeemed")):
        for row in sheets.get(sheet, []):
            _need(row, sheet, column, date_column)
            if within(_day(row[date_column], date_column)):
                totals[key] += _count(row[column], column)
    _spread_fees(lines, fees)
    return lines, totals


def _line(kind: Any, row: Mapping[str, str], qty: int, revenue: Decimal, day: date | None) -> ReportLine:
    offer = str(row.get("YOUR_SKU") or "")
    return ReportLine(kind=kind, offer_id=offer, card_id=offer, quantity=qty, revenue=revenue, fee=Decimal(0),
                      logistics=Decimal(0), other=Decimal(0), to_pay=revenue, date=day,
                      order_native_id=str(row.get("ORDER_ID") or ""), native={"row": dict(row), "fees": {}})


def _spread_fees(lines: list[ReportLine], fees: Mapping[str, list[dict[str, Any]]]) -> None:
    """Each order's commissions onto its lines of this report (sales or returns, see the module doc),
    by revenue share, to the kopeck: the last line takes the remainder so the order's sums stay whole."""
    for order_id, commissions in fees.items():
        for side, kinds in (("sale", None), ("return", RETURN_SERVICES)):
            mine = [ln for ln in lines if ln.order_native_id == order_id and ln.kind == side]
            if not mine:
                continue
            chosen = [c for c in commissions if (c.get("type") in RETURN_SERVICES) == (kinds is not None)]
            weights = [abs(ln.revenue) for ln in mine]
            whole = sum(weights, Decimal(0))
            for c in chosen:
                amount = Decimal(str(c.get("actual") or 0)).quantize(CENT)
                kind = str(c.get("type") or "OTHER")
                left = amount
                for i, ln in enumerate(mine):
                    part = left if i == len(mine) - 1 else \
                        (amount * weights[i] / whole if whole else amount / len(mine)).quantize(CENT)
                    left -= part
                    ln.native["fees"][kind] = str(Decimal(ln.native["fees"].get(kind, 0)) + part)
                    if kind in LOGISTICS:
                        ln.logistics += part
                    elif kind in STORAGE:
                        ln.storage += part
                    elif kind in ACQUIRING:
                        ln.acquiring += part
                    else:
                        ln.fee += part
                    ln.to_pay -= part


def order_ids(lines: Iterable[ReportLine]) -> list[str]:
    """The orders the lines name, each once, in order."""
    return list(dict.fromkeys(ln.order_native_id for ln in lines if ln.order_native_id))
