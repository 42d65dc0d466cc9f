"""Stocks: item × own warehouse (on hand, reserved, available), the stock at the marketplaces' own
warehouses (FBO, per warehouse, with days of cover; never published), per account FBS vs FBO
(cloud_sync.money.reports.stock_by_account), the stock pushes the zero guard holds and their confirmation
(cloud_sync.stock.push), and "why this number" (cloud_sync.stock.why) with the item's stock history
chart."""

from __future__ import annotations

import threading
import time

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext

from cloud_sync.money import reports
from cloud_sync.stock import fbo, ledger, why
from cloud_sync.stock import push as stock_push
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text, lang
from cloud_sync.web.pages import charts
from cloud_sync.web.pages.common import (
    PAGE_SIZE,
    accounts,
    args_for,
    find_item,
    item_names,
    page_number,
)

_TOTALS: dict[str, tuple[float, dict]] = {}
_TOTALS_LOCK = threading.Lock()
TOTALS_MAX_AGE_S = 2.0  # the per-warehouse sums scan every level: shared by the requests of 2 seconds

FBO_SHOWN = 200  # stock lines at the marketplaces' warehouses shown at once (the report prints them all)

bp = Blueprint("stocks", __name__)


def _totals(conn) -> dict:
    key = ctx().db_path
    now = time.monotonic()
    with _TOTALS_LOCK:
        hit = _TOTALS.get(key)
        if hit and now - hit[0] < TOTALS_MAX_AGE_S:
            return hit[1]
    totals = reports.stock_warehouse_totals(conn)
    with _TOTALS_LOCK:
        _TOTALS[key] = (now, totals)
    return totals


@bp.get("/stocks")
def index():
    return _render()


@bp.post("/stocks/holds/<int:hold_id>/confirm")
def confirm_hold(hold_id: int):
    """A person confirms the zeros the guard held: they go out to the marketplace (owners, managers)."""
    user = current_user()
    try:
        n = stock_push.confirm_hold(get_db(), hold_id, by=user.name if user else "?")
    except ValueError as exc:
        return _render(messages=[("error", domain_text(exc))], status=404)
    ctx().wake()
    return _render(messages=[("ok", ngettext("hold %(hold)s confirmed: %(num)d stock push goes out now",
                                             "hold %(hold)s confirmed: %(num)d stock pushes go out now", n,
                                             hold=hold_id))])


def _render(messages: list | None = None, status: int = 200):
    conn = get_db()
    a = request.args
    q, warehouse, account = a.get("q", "").strip(), a.get("warehouse", ""), a.get("account", "")
    page = page_number()
    # the bin: where the warehouse's site keeps the item (set there at a receipt or count), else 1C's
    sql = ("SELECT s.item_id, COALESCE(i.article, '') AS article, COALESCE(i.name, '') AS name, s.warehouse,"
           " s.on_hand, s.reserved, s.on_hand - s.reserved AS available,"
           " (SELECT b.bin FROM site_bins b WHERE b.item_id=s.item_id AND b.warehouse=s.warehouse"
           "  ORDER BY b.set_at DESC LIMIT 1) AS site_bin, COALESCE(i.bin, '') AS onec_bin FROM stock_levels s"
           " LEFT JOIN items i ON i.id=s.item_id WHERE 1=1")
    args: list = []
    if warehouse:
        sql += " AND s.warehouse=?"
        args.append(warehouse)
    if q:
        # the matching items first (one pass over items), then their levels by the primary key
        sql += (" AND s.item_id IN (SELECT ? UNION SELECT id FROM items WHERE article LIKE ? OR name LIKE ?)")
        args += [q, f"{q}%", f"%{q}%"]
    rows = conn.execute(sql + " ORDER BY s.item_id, s.warehouse LIMIT ? OFFSET ?",
                        [*args, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE]).fetchall()
    totals = _totals(conn)
    by_account = None
    if account:
        _headers, body = reports.stock_by_account(conn, account)
        names = item_names(conn, [r[5] for r in body[:500] if r[5]])
        shown = [{"marketplace": r[1], "scheme": r[2], "warehouse": r[3], "offer_id": r[4], "item_id": r[5],
                  "name": names.get(r[5] or "", ("", ""))[1], "quantity": r[6]} for r in body[:500]]
        by_account = (shown, len(body))
    fbo_lines = fbo.lines(conn, account or None)
    return render_template("cloud/stocks.html", active="stocks", rows=rows[:PAGE_SIZE],
                           fbo_lines=fbo_lines[:FBO_SHOWN], fbo_total=len(fbo_lines),
                           has_next=len(rows) > PAGE_SIZE, page=page, args=args_for(), q=q,
                           warehouse=warehouse, warehouses=sorted(totals), totals=totals, accounts=accounts(), account=account,
                           by_account=by_account, holds=stock_push.holds(conn),
                           messages=messages or []), status


@bp.get("/stocks/why")
def why_page():
    item, account = request.args.get("item", "").strip(), request.args.get("account", "")
    errors: dict[str, str] = {}
    ex = None
    if not item:
        errors["item"] = _("give the 1C item: its article or name")
    if account not in ctx().cfg.accounts:
        errors["account"] = _("choose an account")
    if not errors:
        found, _problem = find_item(get_db(), item)  # an article, a name or an id
        try:
            ex = why.why(get_db(), ctx().cfg, found or item, account, lang=lang())
        except ledger.StockError as exc:
            errors["item"] = domain_text(exc)
    chart = charts.stock_history(get_db(), ex.item_id) if ex else None
    return render_template("cloud/stock_why.html", active="stocks", ex=ex, errors=errors, item=item,

                           account=account, accounts=accounts(), chart=chart), 400 if errors and item else 200
