"""Orders: every account of every marketplace in one list (cloud_sync.orders.listing: sorted by
deadline, then unified status), filters, bulk actions (cloud_sync.orders.desk), each order's history, and
the download of every order (cloud_sync.orders.export: CSV, XLSX or JSON Lines)."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, abort, render_template, request, send_file

from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.orders import desk as order_desk
from cloud_sync.orders import export, listing, records
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.pages.common import PAGE_SIZE, accounts, args_for, page_number

bp = Blueprint("orders", __name__)


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
        errors["action"] = "a packer may not cancel orders"
    else:
        try:
            res = order_desk.run(get_db(), ctx().cfg, action, keys, by=user.name if user else "?",
                                 reason=request.form.get("reason", ""), link=ctx().link)
        except order_desk.DeskError as exc:
            errors[exc.field or "action"] = str(exc)
        else:
            ctx().wake()
            messages.append(("ok", f"{action}: {len(res.done)} order(s) done"))
            messages += [("warn", s) for s in res.skipped]
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


@bp.get("/orders/<path:key>")
def order(key: str):
    o = listing.get_order(get_db(), key)
    if o is None:
        abort(404)
    o.pop("native", None)
    return render_template("cloud/order.html", active="orders", o=o)


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
        errors = {**(errors or {}), "status": f"no status {status_filter!r}; one of {', '.join(UNIFIED_STATUSES)}"}
        status_filter, status = None, 400
    late_only = a.get("late") == "1"
    page = page_number()
    rows = listing.list_orders(get_db(), account=account, status=status_filter, late=late_only, limit=PAGE_SIZE + 1,
                              offset=(page - 1) * PAGE_SIZE)
    now = datetime.now(UTC)
    for o in rows:
        o["late"] = _late(o, now)
    return render_template("cloud/orders.html", active="orders", rows=rows[:PAGE_SIZE], has_next=len(rows) > PAGE_SIZE,
                           page=page, args=args_for(), accounts=accounts(), statuses=UNIFIED_STATUSES,
                           account=account or "", status=status_filter or "", late=late_only, errors=errors or {},
                           messages=messages or [], form=request.form), status
