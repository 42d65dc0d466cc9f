"""The dashboard: for a chosen period (7, 30 or 90 days, or from–to), per marketplace: revenue, units
sold, orders, cancellations, late orders (packed after their assembly deadline, or still not packed past
it) and the items sold most (by article and 1C name), with the orders and revenue per day charts
(`charts`). Reads only."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, render_template, request
from flask_babel import gettext as _

from cloud_sync.web.context import get_db
from cloud_sync.web.pages import charts
from marketplaces import profiles

bp = Blueprint("dashboard", __name__)
PERIODS = (7, 30, 90)
TOP = 5  # items per marketplace
MAX_DAYS = 366
SOLD = "o.status NOT IN ('cancelled', 'returned')"


def figures(conn: sqlite3.Connection, first: date, last: date, now: datetime | None = None) -> list[dict]:
    """One row per marketplace with an order placed from `first` to `last` (both included)."""
    now = now or datetime.now(UTC)
    span = (first.isoformat(), (last + timedelta(days=1)).isoformat())
    rows: dict[str, dict] = defaultdict(lambda: {"orders": 0, "cancelled": 0, "late": 0, "revenue": 0.0,
                                                 "units": 0, "top": []})
    for mp, n, cancelled, late in conn.execute(
            "SELECT marketplace, COUNT(*), SUM(status IN ('cancelled', 'returned')),"
            " SUM(ship_by IS NOT NULL AND status NOT IN ('cancelled', 'returned') AND CASE WHEN packed_ts IS NOT NULL"
            " THEN packed_ts > (julianday(ship_by) - 2440587.5) * 86400"
            " ELSE status NOT IN ('handed_over', 'delivered') AND julianday(ship_by) < julianday(?) END)"
            " FROM orders WHERE created_at>=? AND created_at<? GROUP BY marketplace", (now.isoformat(), *span)):
        rows[mp].update(orders=n, cancelled=cancelled or 0, late=late or 0)
    for mp, revenue, units in conn.execute(
            f"SELECT o.marketplace, SUM(CAST(l.price AS REAL) * l.quantity), SUM(l.units) FROM orders o"
            f" JOIN order_lines l ON l.order_id=o.id WHERE o.created_at>=? AND o.created_at<? AND {SOLD}"
            f" GROUP BY o.marketplace", span):
        rows[mp].update(revenue=revenue or 0.0, units=units or 0)
    for mp, article, name, offer, units, revenue in conn.execute(
            f"SELECT marketplace, article, name, offer_id, units, revenue FROM (SELECT o.marketplace, i.article,"
            f" i.name, MIN(l.offer_id) AS offer_id, SUM(l.units) AS units,"
            f" SUM(CAST(l.price AS REAL) * l.quantity) AS revenue, ROW_NUMBER() OVER (PARTITION BY o.marketplace"
            f" ORDER BY SUM(l.units) DESC, SUM(CAST(l.price AS REAL) * l.quantity) DESC) AS place"
            f" FROM orders o JOIN order_lines l ON l.order_id=o.id LEFT JOIN items i ON i.id=l.item_id"
            f" WHERE o.created_at>=? AND o.created_at<? AND {SOLD}"
            f" GROUP BY o.marketplace, COALESCE(l.item_id, l.offer_id)) WHERE place<=? ORDER BY marketplace, place",
            (*span, TOP)):
        rows[mp]["top"].append({"article": article or offer, "name": name or "", "units": units, "revenue": revenue})
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
    rows = figures(conn, first, last)
    orders_chart, revenue_chart = charts.daily_charts(conn, first, last)
    totals = {k: sum(r[k] for r in rows) for k in ("orders", "cancelled", "late", "revenue", "units")}
    return render_template("cloud/dashboard.html", active="dashboard", rows=rows, totals=totals, first=first,
                           last=last, days=days, periods=PERIODS, errors=errors, orders_chart=orders_chart,
                           revenue_chart=revenue_chart,
                           typed={"from": request.args.get("from", ""), "to": request.args.get("to", "")}
                           ), 400 if errors else 200
