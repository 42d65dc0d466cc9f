"""Small SVG charts of our own (no chart library): lines per series over days or over time, drawn on
the server, so a page needs no script to show them. `line_chart` returns safe SVG markup.

What makes them readable: a day without orders is a zero, never a line drawn across it; a stock level
is drawn as steps (it holds until the next move); the x labels are thinned to the room they have (never
printed over each other) and written by Babel for the page's language; the legend sits under the plot,
never over the lines; an item's chart is titled with its article and 1C name."""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from html import escape
from itertools import pairwise
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton, format_time
from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import Markup

from cloud_sync.i18n import money, number
from marketplaces import profiles

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"]
CHAR_W = 6.5  # the width of one character of the axis text (10 px), for thinning the labels
LEGEND_ROW = 16
TZ = ZoneInfo("Europe/Moscow")


def day_label(d: date) -> str:
    """«07.11» (ru), «11/7» (en): a day on an axis, by Babel."""
    return format_skeleton("dMM", d, locale=str(get_locale()))


def moment_label(ts: float) -> str:
    """«07.11 09:05»: a moment on an axis, in the seller's time zone."""
    dt = datetime.fromtimestamp(ts, TZ)
    lang = str(get_locale())
    return f"{format_skeleton('dMM', dt, locale=lang)} {format_time(dt, 'short', locale=lang)}"


def thinned(labels: list[tuple[float, str]], room: float) -> list[tuple[float, str]]:
    """Every n-th label so that the labels fit side by side in `room` pixels (the last one always kept)."""
    if not labels:
        return []
    widest = max(len(text) for _x, text in labels) * CHAR_W + 8
    fits = max(1, int(room // widest))
    step = max(1, math.ceil(len(labels) / fits))
    kept = labels[::step]
    if kept[-1] != labels[-1]:
        kept = kept[:-1] + [labels[-1]] if len(kept) > 1 else [labels[-1]]
    return kept


def _nice_top(y: float) -> float:
    """The top of the y axis: a round number at or above y (1, 2, 2.5, 5 × 10^n)."""
    if y <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(y))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= y:
            return m * base
    return 10 * base


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, width: int = 640, height: int = 220,
               x_labels: list[tuple[float, str]] | None = None, unit: str = "", steps: bool = False,
               money_axis: bool = False, chart_id: str = "") -> Markup:
    """Lines (or steps) per series; the legend below the plot, one coloured mark and name per series."""
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    points = [p for pts in series.values() for p in pts]
    if not points:
        empty = _("no data yet")
        return Markup(f'<svg class="chart"{ident} width="{width}" height="60" role="img"'
                      f' aria-label="{escape(title)}"><text x="8" y="20" class="chart-title">{escape(title)}</text>'
                      f'<text x="8" y="44">{escape(empty)}</text></svg>')
    lang = str(get_locale())
    names = sorted(series)
    # the legend under the plot: as many per row as fit
    legend_w = [len(n) * CHAR_W + 26 for n in names]
    rows, x = 1, 0.0
    for w in legend_w:
        if x and x + w > width - 16:
            rows, x = rows + 1, 0.0
        x += w
    plot_h = height
    height = plot_h + rows * LEGEND_ROW + 4
    ys = [p[1] for p in points]
    y0, y1 = min(0.0, min(ys)), _nice_top(max(ys))

    def y_text(y: float) -> str:
        return money(round(y), lang) if money_axis else number(round(y, 1) if y1 < 5 else round(y), lang) + unit

    pad_l = max(40, int(max(len(y_text(y1)), len(y_text(y0))) * CHAR_W) + 10)
    pad_r, pad_t, pad_b = 14, 24, 28
    xs = [p[0] for p in points] + [x for x, _t in (x_labels or [])]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(y: float) -> float:
        return plot_h - pad_b - (y - y0) / (y1 - y0) * (plot_h - pad_t - pad_b)

    out = [f'<svg class="chart"{ident} viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
           f' aria-label="{escape(title)}"><text x="8" y="15" class="chart-title">{escape(title)}</text>']
    counts = all(float(y).is_integer() for y in ys)  # orders, units: no "0,5 orders" on the axis
    for frac in (0, 0.5, 1):
        y = y0 + (y1 - y0) * frac
        out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>')
        if not counts or float(y).is_integer():
            out.append(f'<text x="{pad_l - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">{escape(y_text(y))}</text>')
    shown = thinned(sorted(x_labels or []), width - pad_l - pad_r)
    for n, (x, label) in enumerate(shown):
        anchor = "start" if n == 0 and len(shown) > 1 else "end" if n == len(shown) - 1 and len(shown) > 1 else "middle"
        out.append(f'<text x="{sx(x):.1f}" y="{plot_h - 10}" text-anchor="{anchor}" class="x-label">'
                   f'{escape(label)}</text>')
    colours = {p.title: p.colour for p in profiles().values()}  # a marketplace's line in its own colour
    colours.update({name: p.colour for name, p in profiles().items()})
    lx, ly = 8.0, plot_h + 4
    for n, name in enumerate(names):
        color = colours.get(name, PALETTE[n % len(PALETTE)])
        pts = sorted(series[name])
        if steps:  # a level holds until the next move: across, then up or down
            coords = [f"{sx(pts[0][0]):.1f},{sy(pts[0][1]):.1f}"]
            for (_xa, ya), (xb, yb) in pairwise(pts):
                coords.append(f"{sx(xb):.1f},{sy(ya):.1f}")
                coords.append(f"{sx(xb):.1f},{sy(yb):.1f}")
            coords.append(f"{width - pad_r:.1f},{sy(pts[-1][1]):.1f}")
            path = " ".join(coords)
        else:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}" data-series="'
                   f'{escape(name)}"><title>{escape(name)}</title></polyline>')
        if len(pts) == 1:
            out.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{color}"/>')
        w = legend_w[n]
        if lx > 8 and lx + w > width - 16:
            lx, ly = 8.0, ly + LEGEND_ROW
        out.append(f'<g class="legend"><rect x="{lx:.1f}" y="{ly + 2:.1f}" width="12" height="10" fill="{color}"/>'
                   f'<text x="{lx + 16:.1f}" y="{ly + 11:.1f}">{escape(name)}</text></g>')
        lx += w
    out.append("</svg>")
    return Markup("".join(out))


def per_day(conn: sqlite3.Connection, first: date, last: date,
            now: datetime | None = None) -> dict[str, dict[str, dict[int, float]]]:
    """Orders, revenue, units, cancellations and late orders per marketplace per day (day = index from
    `first`), from the orders placed from `first` to `last`, in one pass: every order placed counts;
    cancelled and returned ones bring no revenue; an order is late when packed after its assembly deadline,
    or not packed (nor handed over) with its deadline past."""
    now = now or datetime.now(UTC)
    table: dict[str, dict[str, dict[int, float]]] = {k: defaultdict(dict) for k in
                                                     ("orders", "revenue", "units", "cancelled", "late")}
    span = (first.isoformat(), (last + timedelta(days=1)).isoformat())
    rows = [(r[0], r[1], dict(zip(("orders", "cancelled", "late"), r[2:], strict=True))) for r in conn.execute(
        "SELECT marketplace, substr(created_at, 1, 10), COUNT(*), SUM(status IN ('cancelled', 'returned')),"
        " SUM(ship_by IS NOT NULL AND status NOT IN ('cancelled', 'returned') AND CASE WHEN packed_ts IS NOT NULL"
        " THEN packed_ts > (julianday(ship_by) - 2440587.5) * 86400 ELSE status NOT IN ('handed_over', 'delivered')"
        " AND julianday(ship_by) < julianday(?) END)"
        " FROM orders WHERE created_at>=? AND created_at<? GROUP BY 1, 2", (now.isoformat(), *span))]
    rows += [(r[0], r[1], {"revenue": r[2], "units": r[3]}) for r in conn.execute(
        "SELECT o.marketplace, substr(o.created_at, 1, 10), SUM(CAST(l.price AS REAL) * l.quantity), SUM(l.units)"
        " FROM orders o JOIN order_lines l ON l.order_id=o.id WHERE o.created_at>=? AND o.created_at<?"
        " AND o.status NOT IN ('cancelled', 'returned') GROUP BY 1, 2", span)]
    for mp, day, values in rows:
        try:
            d = (date.fromisoformat(day) - first).days
        except ValueError:
            continue
        for name, value in values.items():
            table[name][mp][d] = float(value or 0)
    return table


def daily_charts(conn: sqlite3.Connection, first: date, last: date,
                 table: dict[str, dict[str, dict[int, float]]] | None = None) -> tuple[Markup, Markup]:
    """(orders per marketplace per day, revenue per marketplace per day) from `first` to `last`: a
    marketplace with no order on a day has a zero there."""
    days = (last - first).days + 1
    table = table or per_day(conn, first, last)
    labels = [(float(i), day_label(first + timedelta(days=i))) for i in range(days)]
    known = profiles()

    def filled(per_mp: dict[str, dict[int, float]]) -> dict[str, list[tuple[float, float]]]:
        return {(known[mp].title if mp in known else mp): [(float(i), per.get(i, 0.0)) for i in range(days)]
                for mp, per in per_mp.items()}

    return (line_chart(filled(table["orders"]), title=_("Orders per marketplace per day"), x_labels=labels,
                       chart_id="chart-orders"),
            line_chart(filled(table["revenue"]), title=_("Revenue per marketplace per day"), x_labels=labels,
                       money_axis=True, chart_id="chart-revenue"))


def orders_per_day(conn: sqlite3.Connection, days: int = 30, today: date | None = None) -> tuple[Markup, Markup]:
    """(orders per marketplace per day, revenue per marketplace per day) over the last `days` days."""
    today = today or datetime.now(UTC).date()
    return daily_charts(conn, today - timedelta(days=days - 1), today)


def stock_history(conn: sqlite3.Connection, item_id: str, limit: int = 500) -> Markup:
    """On hand and available of an item over time, per own warehouse, from the ledger's moves, as steps."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rows = conn.execute("SELECT ts, warehouse, on_hand_after, reserved_after FROM stock_moves WHERE item_id=?"
                        " ORDER BY id DESC LIMIT ?", (item_id, limit)).fetchall()
    for ts, wh, on_hand, reserved in reversed(rows):
        series[_("%(warehouse)s: on hand", warehouse=wh)].append((ts, on_hand))
        series[_("%(warehouse)s: available", warehouse=wh)].append((ts, on_hand - reserved))
    ticks = sorted({r[0] for r in rows})
    labels = [(t, moment_label(t)) for t in ticks]
    item = conn.execute("SELECT article, name FROM items WHERE id=?", (item_id,)).fetchone()
    named = f"{item['article']} «{item['name']}»" if item else item_id  # the article and name, not a GUID
    return line_chart(dict(series), title=_("Stock history of %(item)s", item=named), x_labels=labels, steps=True,
                      chart_id="chart-stock")
