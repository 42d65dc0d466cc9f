"""The dashboard: for a chosen period (7, 30 or 90 days, or from–to), per marketplace: revenue, units
sold, orders, cancellations, late orders (packed after their assembly deadline, or still not packed past
it) and the items sold most (by article and 1C name), with the orders and revenue per day charts
(`charts`). Reads only; a period's figures are kept in the process and read again in the background once
they are a minute old (KEEP_S), the page showing the kept ones meanwhile; the running service reads the
default period's at its start (`warm`), so no manager waits for 100,000 orders to be summed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, render_template, request
from flask_babel import gettext as _

from cloud_sync.db import connect
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.pages import charts
from marketplaces import profiles

bp = Blueprint("dashboard", __name__)
PERIODS = (7, 30, 90)
TOP = 5  # items per marketplace
MAX_DAYS = 366
SOLD = "o.status NOT IN ('cancelled', 'returned')"
KEEP_S = 60.0  # the figures of a period are read again after this long (100,000 orders take a while)
_CACHE: dict[tuple, tuple[float, dict, list[dict]]] = {}
_READING: set[tuple] = set()  # the periods being read in the background
_LOCK = threading.Lock()
log = logging.getLogger("cloud_sync.web.pages.dashboard")


def _read(conn: sqlite3.Connection, first: date, last: date) -> tuple[float, dict, list[dict]]:
    table = charts.per_day(conn, first, last)
    return time.monotonic(), table, figures(conn, first, last, table)


def _read_in_background(db_path: str, first: date, last: date) -> bool:
    """The period's figures read again in a thread of their own (once at a time); whether one started."""
    key = (db_path, first, last)
    with _LOCK:
        if key in _READING:
            return False
        _READING.add(key)

    def run() -> None:
        try:
            conn = connect(db_path)
            try:
                _CACHE[key] = _read(conn, first, last)
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - the page reads them itself next time
            log.warning("the dashboard's figures could not be read in the background", exc_info=True)
        finally:
            with _LOCK:
                _READING.discard(key)

    threading.Thread(target=run, name="dashboard-figures", daemon=True).start()
    return True


def warm(db_path: str, today: date | None = None) -> bool:
    """Read the default period's figures (the last 30 days) in the background, as the service starts."""
    today = today or datetime.now(UTC).date()
    return _read_in_background(db_path, today - timedelta(days=29), today)


def figures(conn: sqlite3.Connection, first: date, last: date,
            table: dict[str, dict[str, dict[int, float]]] | None = None) -> list[dict]:
    """One row per marketplace with an order placed from `first` to `last` (both included): the sums of
    `charts.per_day` and the items sold most."""
    table = table or charts.per_day(conn, first, last)
    rows: dict[str, dict] = {}
    for name in ("orders", "cancelled", "late", "revenue", "units"):
        for mp, per in table[name].items():
            rows.setdefault(mp, {"top": []})[name] = sum(per.values())
    span = (first.isoformat(), (last + timedelta(days=1)).isoformat())
    for mp, article, name, offer, units, revenue in conn.execute(
            f"SELECT marketplace, article, name, offer_id, units, revenue FROM (SELECT o.marketplace, i.article,"
            f" i.name, MIN(l.offer_id) AS offer_id, SUM(l.units) AS units,"
            f" SUM(CAST(l.price AS REAL) * l.quantity) AS revenue, ROW_NUMBER() OVER (PARTITION BY o.marketplace"
            f" ORDER BY SUM(l.units) DESC, SUM(CAST(l.price AS REAL) * l.quantity) DESC) AS place"
            f" FROM orders o JOIN order_lines l ON l.order_id=o.id LEFT JOIN items i ON i.id=l.item_id"
            f" WHERE o.created_at>=? AND o.created_at<? AND {SOLD}"
            f" GROUP BY o.marketplace, COALESCE(l.item_id, l.offer_id)) WHERE place<=? ORDER BY marketplace, place",
            (*span, TOP)):
        if mp in rows:
            rows[mp]["top"].append({"article": article or offer, "name": name or "", "units": units,
                                    "revenue": revenue})
    known = profiles()
    out = [{"marketplace": mp, "title": known[mp].title if mp in known else mp, **r} for mp, r in rows.items()]
    return sorted(out, key=lambda r: -r["revenue"])


def _period() -> tuple[date, date, int | None, dict[str, str]]:
    a, today, errors = request.args, datetime.now(UTC).date(), {}
    raw_from, raw_to = a.get("from", ""), a.get("to", "")
    if raw_from or raw_to:
        try:
            first = date.fromisoformat(raw_from) if raw_from else today - timedelta(days=29)
            last = date.fromisoformat(raw_to) if raw_to else today
        except ValueError:
            errors["from"] = _("a date is written like 2026-11-27")
        else:
            if last < first:
                errors["to"] = _("the end of the period is before its start")
            elif (last - first).days >= MAX_DAYS:
                errors["from"] = _("a period is at most a year")
            else:
                return first, last, None, errors
    try:
        days = int(a.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in PERIODS else 30
    return today - timedelta(days=days - 1), today, days, errors


@bp.get("/dashboard")
def index():
    first, last, days, errors = _period()
    conn = get_db()
    key = (ctx().db_path, first, last)
    kept = _CACHE.get(key)
    if kept is None:  # a period nobody asked for lately: read now
        kept = _CACHE[key] = _read(conn, first, last)
        for old in [k for k, v in _CACHE.items() if time.monotonic() - v[0] > 10 * KEEP_S]:
            _CACHE.pop(old, None)
    elif time.monotonic() - kept[0] > KEEP_S:  # a month of a big seller's orders: the kept figures meanwhile
        _read_in_background(ctx().db_path, first, last)
    _ts, table, rows = kept
    orders_chart, revenue_chart = charts.daily_charts(conn, first, last, table)
    totals = {k: sum(r[k] for r in rows) for k in ("orders", "cancelled", "late", "revenue", "units")}
    return render_template("cloud/dashboard.html", active="dashboard", rows=rows, totals=totals, first=first,
                           last=last, days=days, periods=PERIODS, errors=errors, orders_chart=orders_chart,
                           revenue_chart=revenue_chart,
                           typed={"from": request.args.get("from", ""), "to": request.args.get("to", "")}
                           ), 400 if errors else 200
