"""Orders: every account of every marketplace in one list (cloud_sync.orders.listing: sorted by
deadline, then unified status), filters, bulk actions (cloud_sync.orders.desk), each order's history, and
the download of every order (cloud_sync.orders.export: CSV, XLSX or JSON Lines)."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flask import Blueprint, abort, render_template, request, send_file
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.orders import desk as order_desk
from cloud_sync.orders import export, handovers, listing, records
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text, status_label
from cloud_sync.web.pages.common import (
    PAGE_SIZE,
    accounts,
    args_for,
    articles_for_ids,
    item_names,
    page_number,
    sort_key,
)

bp = Blueprint("orders", __name__)
ACTIONS = {"take": lazy_gettext("take into work"), "labels": lazy_gettext("print labels"),
           "cancel": lazy_gettext("cancel")}


@bp.get("/orders")
def index():
    return _render()


@bp.post("/orders/bulk")
def bulk():
    user = current_user()
    action = request.form.get("action", "")
    keys = request.form.getlist("keys")
    errors: dict[str, str] = {}
    messages = []
    if action == "cancel" and user is not None and user.role == "packer":
        errors["action"] = _("a packer may not cancel orders")
    else:
        try:
            res = order_desk.run(get_db(), ctx().cfg, action, keys, by=user.name if user else "?",
                                 reason=request.form.get("reason", ""), link=ctx().link)
        except order_desk.DeskError as exc:
            errors[exc.field or "action"] = domain_text(exc)
        else:
            ctx().wake()
            messages.append(("ok", ngettext("%(action)s: %(num)d order done", "%(action)s: %(num)d orders done",
                                            len(res.done), action=ACTIONS.get(action, action))))
            messages += [("warn", domain_text(s)) for s in res.skipped]
    return _render(errors=errors, messages=messages, status=400 if errors else 200)


@bp.get("/orders/export")
def download():
    """Every order as a file (?format=csv|xlsx|jsonl, default csv)."""
    fmt = request.args.get("format", "csv")
    if fmt not in export.FORMATS:
        abort(400, f"формат «{fmt}» не поддерживается; можно: {', '.join(export.FORMATS)}")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"orders.{fmt}"
        export.write(get_db(), ctx().cfg, fmt, path)
        data = path.read_bytes()
    mime = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson",
            "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[fmt]
    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=f"orders-{stamp}.{fmt}")


@bp.post("/orders/handover")
def handover():
    """«Передать курьеру»: the account's packed parcels go to its courier, one hand-over per site."""
    account = request.form.get("account", "")
    c = ctx()
    if account not in c.cfg.accounts:
        return _render(errors={"handover_account": _("choose the marketplace account")}, status=400)
    started = handovers.start_handover(get_db(), c.cfg, account, link=c.link)
    c.wake()
    if not started:
        return _render(messages=[("warn", _("account %(account)s has no packed parcels to hand over", account=account))])
    return _render(messages=[("ok", _("hand-over to the courier started: %(id)s — site %(site)s, %(n)s parcel(s)",
                                      id=h["handover_id"], site=h["site"], n=len(h["orders"]))) for h in started])


@bp.get("/orders/<path:key>")
def order(key: str):
    o = listing.get_order(get_db(), key)
    if o is None:
        abort(404)
    o.pop("native", None)
    _add_total(o)
    articles_for_ids(get_db(), [o])
    names = item_names(get_db(), [ln["item_id"] for ln in o["lines"] if ln.get("item_id")])
    for ln in o["lines"]:  # the 1C name first, the marketplace card's title as a second line
        ln["item_article"], ln["item_name"] = names.get(ln.get("item_id") or "", ("", ""))
    return render_template("cloud/order.html", active="orders", o=o)


def _add_total(order: dict) -> None:
    """What the buyer pays for the order: the sum of its lines (price × quantity)."""
    total = Decimal(0)
    for ln in order["lines"]:
        try:
            total += Decimal(str(ln.get("price") or 0)) * int(ln.get("quantity") or 0)
        except (InvalidOperation, ValueError):
            continue
    order["total"] = total


def _late(order: dict, now: datetime) -> bool:
    """Past its assembly deadline and still on the seller's side."""
    if not order.get("ship_by") or order.get("status") in records.PAST_THE_SELLER:
        return False
    try:
        due = datetime.fromisoformat(order["ship_by"].replace("Z", "+00:00"))
    except ValueError:
        return False
    return (due if due.tzinfo else due.replace(tzinfo=UTC)) < now


def _render(errors: dict[str, str] | None = None, messages: list | None = None, status: int = 200):
    a = request.values
    account = a.get("account") or None
    status_filter = a.get("status") or None
    if status_filter and status_filter not in UNIFIED_STATUSES:
        errors = {**(errors or {}), "status": _("no status %(s)s; choose one from the list", s=repr(status_filter))}
        status_filter, status = None, 400
    late_only = a.get("late") == "1"
    q = a.get("q", "").strip()[:100]
    page = page_number()
    rows = listing.list_orders(get_db(), account=account, status=status_filter, late=late_only, limit=PAGE_SIZE + 1,
                              offset=(page - 1) * PAGE_SIZE, q=q, sort=sort_key()[0], descending=sort_key()[1])
    now = datetime.now(UTC)
    for o in rows:
        o["late"] = _late(o, now)
        _add_total(o)
    articles_for_ids(get_db(), rows)
    return render_template("cloud/orders.html", active="orders", rows=rows[:PAGE_SIZE], has_next=len(rows) > PAGE_SIZE,
                           page=page, args=args_for(), accounts=accounts(), statuses=[(s, status_label(s)) for s in UNIFIED_STATUSES],
                           account=account or "", status=status_filter or "", late=late_only, q=q, errors=errors or {},
                           messages=messages or [], form=request.form), status
