"""«Требует внимания»: the first page a manager sees, with what needs a person now, each with its one
action: orders waiting for stock or a link (link the card), orders near or past their assembly deadline
(take into work), stock pushes the zero guard holds (confirm), price documents waiting for a
confirmation (open them), failed stock pushes (send again), failed marketplace calls of orders (try
again), sites that are not online (see the site), commission reports that disagree with the marketplace's
own totals (open the report). Reads through the domain modules (orders.records,
stock.push, the site status) and changes only through them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from cloud_sync.db import transaction
from cloud_sync.money.reports import MONEY
from cloud_sync.orders import records
from cloud_sync.stock import push as stock_push
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import event_label
from cloud_sync.web.pages.common import articles_for_ids
from cloud_sync.web.site_status import site_rows

bp = Blueprint("attention", __name__)
DEADLINE_WARNING_S = 2 * 3600.0  # "near its deadline" without an [alerts] section (its deadline_warning_s)
REPORT_TOTALS = {"revenue": lazy_gettext("Revenue"), "fee": lazy_gettext("Marketplace fee"),
                 "logistics": lazy_gettext("Logistics"), "other": lazy_gettext("Other deductions"),
                 "to_pay": lazy_gettext("To be paid"), "sold": lazy_gettext("Sold, pcs"),
                 "returned": lazy_gettext("Returned, pcs")}
COUNTED = 1000  # counted up to this ("1000+"): the page stays quick whatever piles up
SHOWN = 50  # rows of each kind on the page (the count says how many there are)


# The orders' conditions, written as the partial indexes orders_waiting and orders_due (cloud_sync.orders.records)
# are: word for word, or SQLite cannot use them and reads every order.
PAST = "('handed_over', 'delivered', 'cancelled', 'returned')"
WAITING = f"stage IN ('short', 'problem') AND status NOT IN {PAST}"
DUE = f"ship_by IS NOT NULL AND status NOT IN {PAST} AND stage NOT IN ('short', 'problem')"


def _orders(sql: str, args: list, order: str, index: str) -> tuple[list[dict], int]:
    conn = get_db()
    rows = [dict(r) for r in conn.execute(
        f"SELECT id, key, account, marketplace, number, status, stage, problem, ship_by FROM orders WHERE {sql}"
        f" ORDER BY {order} LIMIT {SHOWN}", args)]
    count = conn.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM orders INDEXED BY {index} WHERE {sql}"
                         f" LIMIT {COUNTED})", args).fetchone()[0]
    articles_for_ids(conn, rows)
    unlinked: dict[int, str] = {}  # the first card of an order that is not linked: the link action opens it
    if rows:
        for order_id, card_id in conn.execute(
                f"SELECT order_id, card_id FROM order_lines WHERE item_id IS NULL AND order_id IN"
                f" ({','.join('?' * len(rows))}) ORDER BY order_id, line_no DESC", [r["id"] for r in rows]):
            unlinked[order_id] = card_id  # the last written is the lowest line
    for r in rows:
        r["unlinked"] = (unlinked[r["id"]],) if r["id"] in unlinked else None
    return rows, count


def _collect() -> dict:
    conn = get_db()
    waiting, n_waiting = _orders(WAITING, [], order="COALESCE(ship_by, '9999'), id", index="orders_waiting")
    warn_s = ctx().cfg.alerts.deadline_warning_s if ctx().cfg.alerts else DEADLINE_WARNING_S
    soon = datetime.now(UTC) + timedelta(seconds=warn_s)
    # the text bound (14 h later: any offset a marketplace writes) walks the deadline index; julianday decides
    bound = (soon + timedelta(hours=14)).strftime("%Y-%m-%dT%H:%M:%S")
    due, n_due = _orders(f"{DUE} AND ship_by < ? AND julianday(ship_by) < julianday(?)",
                         [bound, soon.isoformat()], order="ship_by", index="orders_due")
    now = datetime.now(UTC)
    for o in due:
        try:
            when = datetime.fromisoformat(o["ship_by"].replace("Z", "+00:00"))
            o["late"] = (when if when.tzinfo else when.replace(tzinfo=UTC)) < now
        except ValueError:
            o["late"] = False
    held_prices = [dict(r) for r in conn.execute(
        "SELECT id, account, comment, source, status, created_at, problems FROM price_documents WHERE status='draft'"
        " AND problems NOT IN ('', '[]') ORDER BY created_at DESC LIMIT ?", (SHOWN,))]
    failed_pushes = [dict(r) for r in conn.execute(
        "SELECT account, COUNT(*) AS n, MAX(error) AS error FROM stock_push_queue WHERE state='failed'"
        " GROUP BY account ORDER BY account")]
    failed_calls = [dict(r) for r in conn.execute(
        "SELECT a.order_id, a.action, a.error, a.attempts, o.key, o.number, o.account FROM order_actions a"
        " JOIN orders o ON o.id=a.order_id WHERE a.state='failed' ORDER BY a.updated_ts DESC LIMIT ?", (SHOWN,))]
    offline = [s for s in site_rows() if not s["online"]]
    differing = []  # the latest commission report of each account and period that disagrees with the marketplace
    for r in conn.execute(
            "SELECT id, account, marketplace, period_from, period_to, differences FROM commission_reports c"
            " WHERE reconciled=0 AND built_ts=(SELECT MAX(built_ts) FROM commission_reports d WHERE"
            " d.account=c.account AND d.period_from=c.period_from AND d.period_to=c.period_to)"
            " ORDER BY built_ts DESC LIMIT ?", (SHOWN,)):
        d = dict(r)
        d["differences"] = [(str(REPORT_TOTALS.get(name, name)), ours, theirs, name in MONEY)
                            for name, ours, theirs in json.loads(r["differences"] or "[]")]
        differing.append(d)
    return {"waiting": waiting, "n_waiting": n_waiting, "due": due, "n_due": n_due,
            "holds": stock_push.holds(conn), "held_prices": held_prices, "failed_pushes": failed_pushes,
            "failed_calls": failed_calls, "offline": offline, "differing": differing}


def _render(messages: list | None = None, status: int = 200):
    found = _collect()
    total = (found["n_waiting"] + found["n_due"] + len(found["holds"]) + len(found["held_prices"])
             + len(found["failed_pushes"]) + len(found["failed_calls"]) + len(found["offline"])
             + len(found["differing"]))
    return render_template("cloud/attention.html", active="attention", total=total, messages=messages or [],
                           **found), status


@bp.get("/attention")
def index():
    return _render()


@bp.post("/attention/pushes/retry")
def retry_pushes():
    account = request.form.get("account", "")
    n = stock_push.retry_failed(get_db(), account)
    ctx().wake()
    return _render(messages=[("ok", _("%(account)s: %(n)s stock pushes go out again", account=account, n=n))])


@bp.post("/attention/calls/retry")
def retry_call():
    try:
        order_id = int(request.form.get("order_id", ""))
    except ValueError:
        return _render(messages=[("error", _("no such order"))], status=400)
    action = request.form.get("action", "")
    if not records.retry_failed_action(get_db(), order_id, action, time.time()):
        return _render(messages=[("error", _("this call has not failed (or was retried already)"))], status=409)
    user = current_user()
    with transaction(get_db()):
        records.log_event(get_db(), order_id, "note", f"{action} retried by {user.name if user else '?'}")
    ctx().wake()
    return _render(messages=[("ok", _("%(action)s will be tried again now", action=event_label(action)))])

