"""Small SVG charts of our own (no chart library): lines per series over days or over time, drawn on
the server, so a page needs no script to show them. `line_chart` returns safe SVG markup."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from html import escape

from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import Markup

from cloud_sync.i18n import number
from marketplaces import profiles

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"]


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, width: int = 640, height: int = 220,
               x_labels: list[tuple[float, str]] | None = None, unit: str = "") -> Markup:
    pad_l, pad_r, pad_t, pad_b = 56, 12, 24, 28
    points = [p for pts in series.values() for p in pts]
    if not points:
        empty = _("no data yet")
        return Markup(f'<svg class="chart" width="{width}" height="60" role="img" aria-label="{escape(title)}">'
                      f'<text x="8" y="20">{escape(title)}: {escape(empty)}</text></svg>')
    lang = str(get_locale())
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > 0 else 1.0

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(y: float) -> float:
        return height - pad_b - (y - y0) / (y1 - y0) * (height - pad_t - pad_b)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
           f' aria-label="{escape(title)}"><text x="{pad_l}" y="14" class="chart-title">{escape(title)}</text>']
    for frac in (0, 0.5, 1):
        y = y0 + (y1 - y0) * frac
        out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>'
                   f'<text x="{pad_l - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">{escape(number(round(y), lang))}'
                   f'{escape(unit)}</text>')
    for x, label in (x_labels or [])[:: max(1, len(x_labels or []) // 8)]:
        out.append(f'<text x="{sx(x):.1f}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>')
    colours = {name: p.colour for name, p in profiles().items()}  # a marketplace's line in its own colour
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = colours.get(name, PALETTE[n % len(PALETTE)])
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"><title>{escape(name)}'
                   f'</title></polyline>')
        out.append(f'<text x="{width - pad_r - 4}" y="{pad_t + 12 * n + 4}" text-anchor="end" style="fill:{color}">'
                   f'{escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def orders_per_day(conn: sqlite3.Connection, days: int = 30, today: date | None = None) -> tuple[Markup, Markup]:
    """(orders per marketplace per day, revenue per marketplace per day) over the last `days` days. Every
    order placed counts as an order; cancelled and returned ones bring no revenue."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    counts: dict[str, dict[int, float]] = defaultdict(dict)
    revenue: dict[str, dict[int, float]] = defaultdict(dict)
    for r in conn.execute(
            "SELECT o.marketplace, substr(o.created_at, 1, 10) AS day, COUNT(DISTINCT o.id),"
            " COALESCE(SUM(CASE WHEN o.status IN ('cancelled', 'returned') THEN 0"
            " ELSE CAST(l.price AS REAL) * l.quantity END), 0) FROM orders o"
            " LEFT JOIN order_lines l ON l.order_id=o.id WHERE o.created_at>=? GROUP BY 1, 2",
            (first.isoformat(),)):
        try:
            d = (date.fromisoformat(r[1]) - first).days
        except ValueError:
            continue
        counts[r[0]][d] = float(r[2])
        revenue[r[0]][d] = float(r[3])
    labels = [(float(i), (first + timedelta(days=i)).strftime("%d.%m")) for i in range(days)]

    def filled(table: dict[str, dict[int, float]]) -> dict[str, list[tuple[float, float]]]:
        return {mp: [(float(i), per.get(i, 0.0)) for i in range(days)] for mp, per in table.items()}

    def titled(table: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
        known = profiles()
        return {(known[mp].title if mp in known else mp): pts for mp, pts in table.items()}

    return (line_chart(titled(filled(counts)), title=_("Orders per marketplace per day"), x_labels=labels),
            line_chart(titled(filled(revenue)), title=_("Revenue per marketplace per day"), x_labels=labels,
                       unit=" ₽"))


def stock_history(conn: sqlite3.Connection, item_id: str, limit: int = 500) -> Markup:
    """On hand and available of an item over time, per own warehouse, from the ledger's moves."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rows = conn.execute("SELECT ts, warehouse, on_hand_after, reserved_after FROM stock_moves WHERE item_id=?"
                        " ORDER BY id DESC LIMIT ?", (item_id, limit)).fetchall()
    for ts, wh, on_hand, reserved in reversed(rows):
        series[_("%(warehouse)s: on hand", warehouse=wh)].append((ts, on_hand))
        series[_("%(warehouse)s: available", warehouse=wh)].append((ts, on_hand - reserved))
    ticks = sorted({r[0] for r in rows})
    labels = [(t, datetime.fromtimestamp(t, UTC).strftime("%d.%m %H:%M")) for t in ticks]
    item = conn.execute("SELECT article, name FROM items WHERE id=?", (item_id,)).fetchone()
    named = f"{item['article']} «{item['name']}»" if item else item_id  # the article and name, not a GUID
    return line_chart(dict(series), title=_("Stock history of %(item)s", item=named), x_labels=labels)
