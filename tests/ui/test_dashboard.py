"""Charts people read and the dashboard: a day without orders is a zero (no line drawn across it), stock
history in steps, x labels that never overlap, the legend under the plot, titles with the article and
name; revenue, units, cancellations, late orders and the items sold most per marketplace for a period."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from cloud_sync.db import transaction
from cloud_sync.orders import intake
from cloud_sync.stock import ledger
from cloud_sync.web.pages import charts
from marketplaces.base import Order, OrderLine


def _orders(conn, cfg, now: datetime) -> None:
    conn.executemany("INSERT INTO items(id, article, name) VALUES (?,?,?)",
                     [("0d1f-guid-1", "ART-1", "Кружка белая 300 мл"), ("0d1f-guid-2", "ART-2", "Чехол синий")])
    conn.commit()
    orders = [Order(native_id=f"N{i}", marketplace="wildberries", account="wb1", native_status="new",
                    created_at=now - timedelta(days=d), ship_by=now - timedelta(days=d) + timedelta(hours=h),
                    lines=[OrderLine(card_id="101", offer_id=art, quantity=q, price=Decimal("4390"))])
              for i, (d, h, art, q) in enumerate([(0, 30, "ART-1", 2), (0, 30, "ART-2", 1), (20, -1, "ART-1", 1)])]
    intake.ingest(conn, cfg, orders)
    with transaction(conn):
        conn.execute("UPDATE order_lines SET item_id=CASE offer_id WHEN 'ART-1' THEN '0d1f-guid-1'"
                      " ELSE '0d1f-guid-2' END")


def test_the_dashboard_counts_per_marketplace_for_the_chosen_period(as_user, cloud):
    _, conn, cfg = cloud
    now = datetime.now(UTC)
    _orders(conn, cfg, now)
    c = as_user("masha")
    page = c.get("/dashboard?days=7")
    assert page.status_code == 200
    row = re.search(r'<tr data-marketplace="wildberries">(.*?)</tr>', page.text).group(1)
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
    assert cells == ["13\xa0170\xa0₽", "3", "2", "0", "0"]  # the order 20 days ago is outside 7 days
    assert "<b>ART-1</b> Кружка белая 300 мл" in page.text  # the top item by article and 1C name, no GUID
    assert "0d1f-guid" not in page.text
    month = c.get("/dashboard?days=30").text
    row = re.search(r'<tr data-marketplace="wildberries">(.*?)</tr>', month).group(1)
    assert re.findall(r'<td class="num[^"]*">([^<]*)</td>', row) == ["17\xa0560\xa0₽", "4", "3", "0", "1"]  # one late
    bad = c.get("/dashboard?from=2026-11-30&to=2026-11-01")
    assert bad.status_code == 400 and 'id="err-to"' in bad.text


def test_a_day_without_orders_is_zero_and_labels_never_overlap(as_user, cloud):
    _, conn, cfg = cloud
    now = datetime.now(UTC)
    _orders(conn, cfg, now)
    page = as_user("masha").get("/dashboard?days=30").text
    svg = re.search(r'<svg class="chart" id="chart-orders".*?</svg>', page).group(0)
    points = re.search(r'<polyline [^>]*points="([^"]+)"', svg).group(1).split()
    assert len(points) == 30  # every day of the period is a point: zeros between the orders, no diagonal
    ys = [float(p.split(",")[1]) for p in points]
    assert len(set(ys[1:-1])) == 2  # the 20-days-ago order (1) among zeros
    labels = [(float(x), t) for x, t in re.findall(r'<text x="([\d.]+)"[^>]*class="x-label">([^<]+)</text>', svg)]
    assert 3 <= len(labels) < 30 and labels[-1][1] == now.date().strftime("%d.%m")  # Russian: «06.12»
    for (xa, ta), (xb, tb) in pairwise(labels):  # the labels stand apart by more than their width
        assert xb - xa > 6.5 * max(len(ta), len(tb)), (ta, tb)
    plot_bottom = max(float(y) for y in re.findall(r'<line [^>]*y1="([\d.]+)"', svg))
    legend_top = min(float(y) for y in re.findall(r'<g class="legend"><rect x="[\d.]+" y="([\d.]+)"', svg))
    assert legend_top > plot_bottom  # the legend is under the plot, not over the lines
    assert "Wildberries" in svg


def test_stock_history_is_drawn_in_steps_and_titled_by_article_and_name(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('0d1f-guid-1', 'ART-1', 'Кружка белая 300 мл')")
    conn.commit()
    for qty in (5, 2, 9):
        with transaction(conn):
            ledger.set_balances(conn, "main", {"0d1f-guid-1": qty}, source="1c")
    with cloud[0].test_request_context("/"):
        svg = str(charts.stock_history(conn, "0d1f-guid-1"))
    assert "ART-1 «Кружка белая 300 мл»" in svg and "0d1f-guid" not in svg
    pts = re.search(r'<polyline [^>]*points="([^"]+)"', svg).group(1).split()
    assert len(pts) == 2 * 3  # each move: across at the old level, then up or down
    for a, b in pairwise(pts):  # every segment is level or upright: steps, no slopes
        (xa, ya), (xb, yb) = (map(float, a.split(",")), map(float, b.split(",")))
        assert xa == xb or ya == yb


def test_the_service_reads_the_dashboard_before_anyone_asks_and_old_figures_are_read_again_aside(
        as_user, cloud, monkeypatch):
    """The first /dashboard after a start read every order of the period in the request (about a second
    over 100,000 orders), and again in a request each minute: the running service now reads the default
    period at its start, and figures older than a minute are shown while a thread reads them again."""
    import time as time_mod

    from cloud_sync.web.pages import dashboard

    _, conn, cfg = cloud
    now = datetime.now(UTC)
    _orders(conn, cfg, now)
    dashboard._CACHE.clear()
    assert dashboard.warm(cfg.db_path)
    deadline = time_mod.monotonic() + 20
    while dashboard._READING and time_mod.monotonic() < deadline:
        time_mod.sleep(0.05)
    reads = []
    real = charts.per_day
    monkeypatch.setattr(charts, "per_day", lambda *a, **kw: reads.append(a) or real(*a, **kw))
    c = as_user("masha")
    page = c.get("/dashboard")  # the default period: read already
    assert page.status_code == 200 and 'data-marketplace="wildberries"' in page.text
    assert reads == []
    key = next(iter(dashboard._CACHE))
    stamp, table, rows = dashboard._CACHE[key]
    dashboard._CACHE[key] = (stamp - 2 * dashboard.KEEP_S, table, rows)  # a minute and more ago
    assert c.get("/dashboard").status_code == 200  # shown at once from what was kept ...
    deadline = time_mod.monotonic() + 20
    while (not reads or dashboard._READING) and time_mod.monotonic() < deadline:
        time_mod.sleep(0.05)
    assert len(reads) == 1 and dashboard._CACHE[key][0] > stamp  # ... and read again beside the request
