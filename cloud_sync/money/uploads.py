"""Price lists uploaded as CSV or XLSX, turned into one price document — validated whole first.

The first row names the columns (case-insensitive; Russian names accepted): one target column
`item` (артикул/код 1С), `category` (категория), `card` (карточка/offer id) or `all`, and one of
`price` (цена) / `percent` (процент), optionally `discount_percent` (скидка), `old_price`
(старая цена), `min_price` (мин. цена). Every row is checked by the price documents' own line parser (cloud_sync.money.price_docs);
any bad row refuses the whole file with every problem listed by row — nothing is applied from a file
that is not entirely good. Limits: 5 MB, 20,000 rows.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from cloud_sync.money import price_docs

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
COLUMNS = {
    "item": "item", "артикул": "item", "код 1с": "item", "товар": "item",
    "category": "category", "категория": "category",
    "card": "card", "карточка": "card", "offer_id": "card",
    "all": "all",
    "price": "price", "цена": "price",
    "percent": "percent", "процент": "percent",
    "discount_percent": "discount_percent", "скидка": "discount_percent",
    "old_price": "old_price", "старая цена": "old_price",
    "min_price": "min_price", "мин. цена": "min_price", "минимальная цена": "min_price",
}


class UploadError(ValueError):
    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _rows(filename: str, data: bytes) -> list[list[Any]]:
    name = filename.lower()
    if name.endswith(".xlsx"):
        from openpyxl import load_workbook  # lazy: heavy, only an .xlsx upload needs it

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
            raise UploadError(f"{filename}: not a readable XLSX file ({exc.__class__.__name__})") from None
        ws = wb.worksheets[0]
        out = [list(r) for i, r in enumerate(ws.iter_rows(values_only=True)) if i <= MAX_ROWS + 1]
        wb.close()
        return out
    if name.endswith(".csv"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1251")
            except UnicodeDecodeError:
                raise UploadError(f"{filename}: the text is neither UTF-8 nor Windows-1251") from None
        dialect = csv.excel
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=";,\t")
        except csv.Error:
            pass
        return [r for r in csv.reader(io.StringIO(text), dialect)]
    raise UploadError(f"{filename}: upload a .csv or .xlsx file")


def parse_upload(filename: str, data: bytes, account: str, comment: str = "") -> price_docs.PriceDocument:
    """A price document from an uploaded file, or UploadError listing every bad row."""
    if not data:
        raise UploadError("the file is empty")
    if len(data) > MAX_BYTES:
        raise UploadError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    rows = [r for r in _rows(filename, data) if any(str(c).strip() for c in r if c is not None)]
    if len(rows) < 2:
        raise UploadError("the file needs a header row and at least one price row")
    if len(rows) > MAX_ROWS + 1:
        raise UploadError(f"the file has more than {MAX_ROWS} rows")
    header = [COLUMNS.get(str(c or "").strip().lower()) for c in rows[0]]
    unknown = [str(c) for c, h in zip(rows[0], header, strict=False) if c not in (None, "") and h is None]
    problems: list[str] = []
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    if not any(h in ("item", "category", "card", "all") for h in header):
        problems.append("no target column (item, category, card or all)")
    if not any(h in ("price", "percent") for h in header):
        problems.append("no price or percent column")
    if problems:
        raise UploadError("the file is refused, nothing was applied", problems)
    lines: list[dict[str, Any]] = []
    for n, row in enumerate(rows[1:], 2):
        raw: dict[str, Any] = {}
        for h, cell in zip(header, row, strict=False):
            if h is None or cell is None or str(cell).strip() == "":
                continue
            raw[h] = True if h == "all" else str(cell).strip()
        try:
            price_docs.parse_line(raw)
        except price_docs.PriceDocumentError as exc:
            problems += [f"row {n}: {p}" for p in exc.problems]
            continue
        lines.append(raw)
    if problems:
        raise UploadError("the file is refused, nothing was applied", problems)
    try:
        return price_docs.parse_document({"account": account, "lines": lines, "comment": comment or f"upload {filename}"})
    except price_docs.PriceDocumentError as exc:
        raise UploadError("the file is refused, nothing was applied", exc.problems) from None
