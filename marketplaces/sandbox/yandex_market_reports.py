"""The Yandex.Market sandbox's realization report file (`POST /v2/reports/goods-realization/generate`).

Owns: the sheets of the FBS realization report as the Partner API documentation lists them
(generateGoodsRealizationReport, "Пояснение к колонкам отчета": transferred_to_delivery, delivered,
unredeemed, returned, lost_items — each sheet's CSV column names in the documented order; the B2B
document columns are left empty, the sandbox's buyers being people), filled from the sandbox's orders
for one store and month, and packed the way `format=CSV` delivers it (a ZIP archive holding one CSV file per sheet: comma-separated,
header row of the CSV column names, UTF-8) or `format=JSON` (one JSON file per sheet, the documented
JSON column names). Dates are `YYYY-MM-DD`. `format=FILE` (XLSX, the default) is not built: asking for
it is answered 400, saying so.

The report lists goods and money for goods only: no marketplace fee or penalty is in it (those are in
the orders' stats and the services report). Pure: builds bytes from plain records, no HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

HEAD = ["ORDER_ID", "YOUR_ORDER_ID", "ORDER_TYPE", "OFFER_NAME", "YOUR_SKU", "SHOP_SKU"]
PRICE = ["PAYMENT_TYPE", "VAT", "PRICE_WITH_VAT_AND_NO_DISCOUNT", "SHOP_MARKETPLACE_DISCOUNT", "SPASIBO_DISCOUNT",
         "YANDEX_PLUS_DISCOUNT", "PRICE_WITH_VAT_AND_ALL_DISCOUNTS"]
RECEIPT = ["RNPT", "RECEIPT_ID", "RECEIPT_LINK", "RECEIPT_DATETIME"]
B2B = ["ORGANIZATION", "INN", "KPP", "ORGANIZATION_JUR_ADDRESS", "UPD_STATUS", "UPD_DATE", "UPD_NUMBER",
       "UKD_STATUS", "UKD_DATE", "UKD_NUMBER", "CONSIGNMENT_NOTE_DATE", "CONSIGNMENT_NOTE_NUMBER", "INVOICE_DATE",
       "INVOICE_NUMBER"]
ADJUSTMENT = ["ADJUSTMENT_INVOICE_DATE", "ADJUSTMENT_INVOICE_NUMBER", "REDEEMED_PRICE"]


def _sums(prefix: str) -> list[str]:
    return [f"{prefix}_PRICE_SUM_WITH_VAT_AND_NO_DISCOUNTS", f"{prefix}_DISCOUNT_SUM",
            f"{prefix}_PRICE_SUM_WITH_VAT_AND_DISCOUNTS"]


SHEETS: dict[str, list[str]] = {
    "transferred_to_delivery": HEAD + ["TRANSFERRED_TO_DELIVERY_COUNT", "ORDER_CREATION_DATE",
                                       "TRANSFERRED_TO_DELIVERY_DATE", "DELIVERY_DATE"]
    + PRICE + _sums("TRANSFERRED_TO_DELIVERY") + RECEIPT + B2B,
    "delivered": HEAD + ["TRANSFERRED_TO_DELIVERY_COUNT", "DELIVERED_COUNT", "ORDER_CREATION_DATE",
                         "TRANSFERRED_TO_DELIVERY_DATE", "DELIVERY_DATE"]
    + PRICE + _sums("DELIVERED") + RECEIPT + B2B,
    "unredeemed": HEAD + ["TRANSFERRED_TO_DELIVERY_COUNT", "UNREDEEMED_COUNT", "ORDER_CREATION_DATE",
                          "TRANSFERRED_TO_DELIVERY_DATE", "DELIVERY_DATE", "UNREDEEMED_WAREHOUSE_OR_SC_ACCEPT_DATE"]
    + PRICE + _sums("UNREDEEMED") + RECEIPT + B2B + ADJUSTMENT,
    "returned": HEAD + ["DELIVERED_COUNT", "RETURNED_COUNT", "ORDER_CREATION_DATE", "TRANSFERRED_TO_DELIVERY_DATE",
                        "DELIVERY_DATE", "RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE"]
    + PRICE + _sums("RETURN") + B2B + ADJUSTMENT + RECEIPT,
    "lost_items": HEAD + ["TRANSFERRED_TO_DELIVERY_COUNT", "ORDER_CREATION_DATE", "TRANSFERRED_TO_DELIVERY_DATE",
                          "DELIVERY_DATE"]
    + PRICE + _sums("TRANSFERRED_TO_DELIVERY") + RECEIPT
    + ["COMPENSATION_DATE", "COMPENSATION_AMOUNT", "LOST_RETURN_RECEIVED_DATE", "DECOMPENSATION_DATE",
       "DECOMPENSATION_AMOUNT"] + B2B + ADJUSTMENT[:2],
}
# the date that puts a row of each sheet into a month
SHEET_DATE = {"transferred_to_delivery": "TRANSFERRED_TO_DELIVERY_DATE", "delivered": "DELIVERY_DATE",
              "unredeemed": "UNREDEEMED_WAREHOUSE_OR_SC_ACCEPT_DATE",
              "returned": "RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE", "lost_items": "COMPENSATION_DATE"}


@dataclass(frozen=True)
class ItemMove:
    """One order line as the report sees it: what happened to its units and when."""

    order_id: int
    your_order_id: str
    offer_id: str
    offer_name: str
    market_sku: int
    count: int
    price: float  # what the buyer pays for one unit (the sandbox gives no discounts)
    created: date
    shipped: date | None = None
    delivered: date | None = None
    returned: date | None = None
    returned_count: int = 0
    lost: date | None = None  # lost in delivery: Market compensates the goods' price


def _money(value: float) -> str:
    return f"{value:.2f}"


def _row(m: ItemMove, sheet: str, count: int, extra: dict[str, str]) -> dict[str, str]:
    total = m.price * count
    prefix = {"delivered": "DELIVERED", "returned": "RETURN", "unredeemed": "UNREDEEMED"}.get(
        sheet, "TRANSFERRED_TO_DELIVERY")
    row = {"ORDER_ID": str(m.order_id), "YOUR_ORDER_ID": m.your_order_id, "ORDER_TYPE": "FBS",
           "OFFER_NAME": m.offer_name, "YOUR_SKU": m.offer_id, "SHOP_SKU": str(m.market_sku),
           "ORDER_CREATION_DATE": m.created.isoformat(),
           "TRANSFERRED_TO_DELIVERY_DATE": m.shipped.isoformat() if m.shipped else "",
           "DELIVERY_DATE": m.delivered.isoformat() if m.delivered else "",
           "PAYMENT_TYPE": "Предоплата", "VAT": "VAT_20", "PRICE_WITH_VAT_AND_NO_DISCOUNT": _money(m.price),
           "SHOP_MARKETPLACE_DISCOUNT": "0.00", "SPASIBO_DISCOUNT": "0.00", "YANDEX_PLUS_DISCOUNT": "0.00",
           "PRICE_WITH_VAT_AND_ALL_DISCOUNTS": _money(m.price),
           f"{prefix}_PRICE_SUM_WITH_VAT_AND_NO_DISCOUNTS": _money(total), f"{prefix}_DISCOUNT_SUM": "0.00",
           f"{prefix}_PRICE_SUM_WITH_VAT_AND_DISCOUNTS": _money(total)}
    row.update(extra)
    return row


def sheet_rows(moves: Iterable[ItemMove], year: int, month: int) -> dict[str, list[dict[str, str]]]:
    """The rows of every sheet for one month (a row belongs to the month of its sheet's date)."""
    def within(day: date | None) -> bool:
        return day is not None and (day.year, day.month) == (year, month)

    out: dict[str, list[dict[str, str]]] = {name: [] for name in SHEETS}
    for m in moves:
        if within(m.shipped):
            out["transferred_to_delivery"].append(_row(m, "transferred_to_delivery", m.count,
                                                       {"TRANSFERRED_TO_DELIVERY_COUNT": str(m.count)}))
        if within(m.delivered):
            out["delivered"].append(_row(m, "delivered", m.count, {"TRANSFERRED_TO_DELIVERY_COUNT": str(m.count),
                                                                   "DELIVERED_COUNT": str(m.count)}))
        if within(m.returned) and m.returned_count:
            out["returned"].append(_row(m, "returned", m.returned_count, {
                "DELIVERED_COUNT": str(m.count), "RETURNED_COUNT": str(m.returned_count),
                "RETURN_WAREHOUSE_OR_SC_ACCEPT_DATE": m.returned.isoformat() if m.returned else ""}))
        if within(m.lost):
            out["lost_items"].append(_row(m, "lost_items", m.count, {
                "TRANSFERRED_TO_DELIVERY_COUNT": str(m.count), "COMPENSATION_DATE": m.lost.isoformat() if m.lost else "",
                "COMPENSATION_AMOUNT": _money(m.price * m.count)}))
    return out


def json_name(column: str) -> str:
    """A sheet column's JSON name as the documentation lists it (ORDER_ID -> orderId)."""
    head, *rest = column.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def _json_value(column: str, value: str) -> object:
    if value == "":
        return None
    if column == "ORDER_ID" or column.endswith("_COUNT"):
        return int(value)
    if column.startswith("PRICE") or column.endswith(("_SUM", "_DISCOUNTS", "_DISCOUNT", "_AMOUNT")):
        return float(value)
    return value


def json_zip(rows: dict[str, list[dict[str, str]]], names: Sequence[str] = tuple(SHEETS)) -> bytes:
    """The `format=JSON` file: a ZIP with `<sheet>.json` per sheet, an array of rows keyed by the
    documented JSON column names (integers and numbers as such, empty values null)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            out = [{json_name(c): _json_value(c, r.get(c, "")) for c in SHEETS[name]} for r in rows.get(name, [])]
            zf.writestr(f"{name}.json", json.dumps(out, ensure_ascii=False).encode("utf-8"))
    return buf.getvalue()


def csv_zip(rows: dict[str, list[dict[str, str]]], names: Sequence[str] = tuple(SHEETS)) -> bytes:
    """The `format=CSV` file: a ZIP with `<sheet>.csv` per sheet, each with its documented header."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=SHEETS[name], restval="", lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(rows.get(name, []))
            zf.writestr(f"{name}.csv", text.getvalue().encode("utf-8"))
    return buf.getvalue()
