"""Orders: every account of every marketplace in one list (cloud_sync.orders.listing: sorted by
deadline, then unified status), filters, bulk actions (cloud_sync.orders.desk), each order's history."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, render_template, request

from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.orders import desk as order_desk
from cloud_sync.orders import handovers, listing, records
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


@bp.post("/orders/handover")
def handover():
    """«Передать курьеру»: the account's packed parcels go to its courier, one hand-over per site."""
    account = request.form.get("account", "")
    c = ctx()
    if account not in c.cfg.accounts:
        return _render(errors={"handover_account": "Выберите кабинет маркетплейса"}, status=400)
    started = handovers.start_handover(get_db(), c.cfg, account, link=c.link)
    c.wake()
    if not started:
        return _render(messages=[("warn", f"У кабинета {account} нет упакованных посылок для передачи")])
    return _render(messages=[("ok", f"Передача курьеру начата: {h['handover_id']} — площадка {h['site']}, "
                                    f"{len(h['orders'])} шт.") for h in started])


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
