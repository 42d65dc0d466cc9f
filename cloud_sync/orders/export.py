"""Every order as a seller takes it to a spreadsheet: marketplace, account, the marketplace's order id,
unified status, deadline, lines, site and the moment it first reached each status (from its history).

Formats: JSON Lines (one order per line, lines nested), CSV (`;`-separated, UTF-8 with BOM — the
commission report's writer, cloud_sync/money/reports.py) and XLSX (the same writer; times are real
date cells, in UTC).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_sync.config import UNIFIED_STATUSES, CloudConfig
from cloud_sync.money import reports

FORMATS = ("jsonl", "csv", "xlsx")

# the unified status an event of the order's history says it reached
EVENT_STATUS = {"received": "new", "reserved": "reserved", "served": "reserved", "confirmed": "in_work",
                "picked": "picking", "packed": "packed", "handed_over": "handed_over", "shipped": "handed_over",
                "cancelled": "cancelled"}

STATUS_WORDS = {"new": "новый", "in_work": "в работе", "reserved": "зарезервирован", "picking": "собирается",
                "packed": "упакован", "handed_over": "передан", "delivered": "доставлен", "cancelled": "отменён",
                "returned": "возвращён"}

HEADERS = ["Маркетплейс", "Кабинет", "Номер заказа на маркетплейсе", "Номер", "Статус", "Дедлайн сборки (UTC)",
           "Создан (UTC)", "Склад", "Пункт", "Товары", "Единиц", "Сумма", "Причина ожидания"] + [
    f"{STATUS_WORDS[s].capitalize()} (UTC)" for s in UNIFIED_STATUSES]


class ExportError(ValueError):
    """The export cannot be written; says why in the seller's words."""


def _dt(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        d = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).astimezone(UTC)


def _status_times(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, marketplace: str) -> dict[str, float]:
    """The first moment the order reached each unified status, from its history (site events at the
    site's time)."""
    times: dict[str, float] = {}
    for kind, detail, ts in conn.execute("SELECT kind, detail, ts FROM order_events WHERE order_id=? ORDER BY ts, id",
                                         (oid,)):
        status = EVENT_STATUS.get(kind)
        if kind == "status":
            native, _, sub = str(detail).partition("/")
            status = cfg.unified_status(marketplace, native, sub)
        if status and status not in times:
            times[status] = ts
    return times


def orders(conn: sqlite3.Connection, cfg: CloudConfig) -> Iterator[dict[str, Any]]:
    """Every order, earliest deadline first, as one plain dict (times as ISO 8601 UTC)."""
    for o in conn.execute("SELECT * FROM orders ORDER BY ship_by IS NULL, ship_by, id").fetchall():
        lines = [{"offer_id": ln["offer_id"], "card_id": ln["card_id"], "item_id": ln["item_id"],
                  "article": ln["article"] or "", "title": ln["title"] or ln["name"] or "",
                  "quantity": ln["quantity"], "units": ln["units"], "price": ln["price"]}
                 for ln in conn.execute("SELECT l.*, i.article, i.name FROM order_lines l LEFT JOIN items i"
                                        " ON i.id=l.item_id WHERE l.order_id=? ORDER BY l.line_no", (o["id"],))]
        times = _status_times(conn, cfg, o["id"], o["marketplace"])
        yield {"marketplace": o["marketplace"], "account": o["account"], "order_id": o["native_id"],
               "number": o["number"], "status": o["status"], "stage": o["stage"], "ship_by": o["ship_by"],
               "created_at": o["created_at"], "warehouse": o["warehouse"], "site": o["site"] or "",
               "problem": o["problem"], "lines": lines,
               "status_times": {s: datetime.fromtimestamp(times[s], UTC).isoformat() for s in UNIFIED_STATUSES
                                if s in times}}


def _row(o: dict[str, Any], *, as_dates: bool) -> list[Any]:
    def when(iso: str | None) -> Any:
        d = _dt(iso)
        if d is None:
            return ""
        return d.replace(tzinfo=None) if as_dates else d.strftime("%Y-%m-%d %H:%M:%S")
    goods = ", ".join(f"{ln['article'] or ln['offer_id']} «{ln['title']}» × {ln['quantity']}" for ln in o["lines"])
    total = sum(float(ln["price"] or 0) * ln["quantity"] for ln in o["lines"])
    return [o["marketplace"], o["account"], o["order_id"], o["number"], STATUS_WORDS.get(o["status"], o["status"]),
            when(o["ship_by"]), when(o["created_at"]), o["warehouse"], o["site"], goods,
            sum(ln["units"] for ln in o["lines"]), round(total, 2),
            o["problem"] if o["stage"] in ("short", "problem") else ""] + [
        when(o["status_times"].get(s)) for s in UNIFIED_STATUSES]


def write(conn: sqlite3.Connection, cfg: CloudConfig, fmt: str, path: str | Path) -> int:
    """Write every order to `path` in `fmt`; returns the orders written."""
    if fmt not in FORMATS:
        raise ExportError(f"формат «{fmt}» не поддерживается; можно: {', '.join(FORMATS)}")
    data = list(orders(conn, cfg))
    try:
        if fmt == "jsonl":
            with open(path, "w", encoding="utf-8") as f:
                for o in data:
                    f.write(json.dumps(o, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            reports.write_csv(path, HEADERS, [_row(o, as_dates=False) for o in data])
        else:
            reports.write_xlsx(path, [("Заказы", HEADERS, [_row(o, as_dates=True) for o in data], [])])
    except (OSError, reports.ReportError) as exc:
        raise ExportError(f"не удалось записать {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return len(data)
