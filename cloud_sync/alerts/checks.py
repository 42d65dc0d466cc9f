"""What deserves an alert: items at or below their critical stock, order events (new, short, problem,
cancelled), deadlines near or past (an order that waits for stock or a link says so, with its reason and
the seller's choices); and `tick`, what the cloud's jobs loop runs (check, then deliver).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cloud_sync.alerts.outbox import AlertSettings, DeliveryStats, deliver, enqueue
from cloud_sync.db import transaction
from cloud_sync.i18n import domain_text, service_when, translations
from cloud_sync.orders import listing
from cloud_sync.orders.waiting import WAITING as WAITING_STAGES
from cloud_sync.stock import fbo


def set_minimum(conn: sqlite3.Connection, item_id: str, min_quantity: int | None) -> None:
    """The critical stock level of an item (None removes it)."""
    with transaction(conn):
        if min_quantity is None:
            conn.execute("DELETE FROM stock_minimums WHERE item_id=?", (item_id,))
            conn.execute("DELETE FROM alert_state WHERE key=?", (f"stock:{item_id}",))
            return
        if isinstance(min_quantity, bool) or not isinstance(min_quantity, int) or min_quantity < 0:
            raise ValueError(f"minimum quantity must be a whole number >= 0, got {min_quantity!r}")
        if not conn.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone():
            raise ValueError(f"unknown item {item_id!r}")
        conn.execute("INSERT INTO stock_minimums(item_id, min_quantity) VALUES (?,?)"
                     " ON CONFLICT(item_id) DO UPDATE SET min_quantity=excluded.min_quantity", (item_id, min_quantity))


def check_critical_stock(conn: sqlite3.Connection, *, now: float | None = None) -> list[str]:
    """Raise an alert for each item whose available stock (all own warehouses) fell to its minimum or
    below; once per episode: the alert is raised again only after the item recovered."""
    _ = translations().gettext  # the service's language ([ui] language)
    now = time.time() if now is None else now
    raised: list[str] = []
    rows = conn.execute(
        "SELECT m.item_id, m.min_quantity, i.name, i.article,"
        " COALESCE((SELECT SUM(on_hand - reserved) FROM stock_levels s WHERE s.item_id=m.item_id), 0) AS available"
        " FROM stock_minimums m JOIN items i ON i.id=m.item_id").fetchall()
    active_now = {r[0] for r in conn.execute("SELECT key FROM alert_state WHERE key LIKE 'stock:%'")}
    if all((r["available"] <= r["min_quantity"]) == (f"stock:{r['item_id']}" in active_now) for r in rows):
        return raised  # nothing to raise or clear (read without the write lock): no barrier for the keyed writers
    with transaction(conn):
        for r in rows:
            key = f"stock:{r['item_id']}"
            active = conn.execute("SELECT 1 FROM alert_state WHERE key=?", (key,)).fetchone()
            if r["available"] <= r["min_quantity"]:
                if active:
                    continue
                conn.execute("INSERT INTO alert_state(key, raised_ts, detail) VALUES (?,?,?)",
                             (key, now, str(r["available"])))
                text = "⚠️ " + _("Critical stock: %(name)s (%(article)s) — %(available)s available, minimum %(min)s") % {
                    "name": r["name"], "article": r["article"] or r["item_id"], "available": r["available"],
                    "min": r["min_quantity"]}
                enqueue(conn, "critical_stock", f"{key}:{now:.0f}", text, now=now)
                raised.append(r["item_id"])
            elif active:
                conn.execute("DELETE FROM alert_state WHERE key=?", (key,))
    return raised

def check_fbo_stock(conn: sqlite3.Connection, *, min_quantity: int = 3, cover_days: float = 7.0,
                    now: float | None = None) -> list[str]:
    """Alert for each card running low at a marketplace's own warehouse (FBO): at or below its item's
    critical level (else `min_quantity`), or lasting fewer than `cover_days` at its recent sales — the
    stock a seller restocks by shipping to that warehouse. Once per episode per card and warehouse."""
    _ = translations()
    now = time.time() if now is None else now
    low = {f"fbo:{ln.account}:{ln.card_id}:{ln.warehouse_id}": ln
           for ln in fbo.critical(conn, min_quantity=min_quantity, cover_days=cover_days, now=now)}
    raised: list[str] = []
    if {r[0] for r in conn.execute("SELECT key FROM alert_state WHERE key LIKE 'fbo:%'")} == set(low):
        return raised  # nothing to raise or clear (read without the write lock): no barrier for the keyed writers
    with transaction(conn):
        active = {r[0] for r in conn.execute("SELECT key FROM alert_state WHERE key LIKE 'fbo:%'")}
        for key in active - set(low):  # restocked (or no longer read): the next drop alerts again
            conn.execute("DELETE FROM alert_state WHERE key=?", (key,))
        for key, ln in low.items():
            if key in active:
                continue
            conn.execute("INSERT INTO alert_state(key, raised_ts, detail) VALUES (?,?,?)", (key, now, str(ln.quantity)))
            said = {"article": ln.article, "quantity": ln.quantity, "warehouse": ln.warehouse, "account": ln.account}
            cover = ln.days_of_cover
            if cover is None:
                tail = _.gettext("no sales in the last %(days)s days") % {"days": fbo.SALES_WINDOW_DAYS}
            else:
                days = max(1, round(cover))
                tail = _.ngettext("~%(num)d day of sales", "~%(num)d days of sales", days) % {"num": days}
            text = "📦 " + _.gettext("%(article)s: %(quantity)s left at %(warehouse)s (%(account)s)") % said + ", " + tail
            enqueue(conn, "fbo_stock", f"{key}:{now:.0f}", text, now=now)
            raised.append(key)
    return raised


ORDER_EVENT_KINDS = {"reserved": "order_new", "short": "order_short", "problem": "order_problem",
                     "cancelled": "order_cancelled", "ship_by": "order_deadline_moved"}


def scan_order_events(conn: sqlite3.Connection, *, now: float | None = None) -> int:
    """Alert on order events logged since the last scan: a new order reserved, a new order that cannot
    be covered (short) or has a problem, a cancellation, an assembly deadline the marketplace moved (said
    louder when it moved earlier). Reads the orders' `order_events`; the very
    first scan only marks where it stands (events from before alerts were on are not announced)."""
    _ = translations().gettext  # the service's language ([ui] language)
    now = time.time() if now is None else now
    pos_row = conn.execute("SELECT position FROM alert_cursor WHERE name='order_events'").fetchone()
    if pos_row is None:  # first scan: start from now, no storm of alerts about old orders
        with transaction(conn):
            conn.execute("INSERT INTO alert_cursor(name, position) VALUES ('order_events',"
                         " (SELECT COALESCE(MAX(id), 0) FROM order_events))")
        return 0
    pos = pos_row[0]
    rows = conn.execute(
        "SELECT e.id, e.kind, e.detail, e.source, o.account, o.number, o.native_id, o.ship_by FROM order_events e"
        " LEFT JOIN orders o ON o.id=e.order_id WHERE e.id>? ORDER BY e.id LIMIT 5000", (pos,)).fetchall()
    n = 0
    if not rows:
        return n  # nothing new: no write lock taken
    with transaction(conn):
        for r in rows:
            pos = r["id"]
            kind = ORDER_EVENT_KINDS.get(r["kind"])
            if not kind or r["account"] is None:
                continue
            number = r["number"] or r["native_id"]
            said = {"number": number, "account": r["account"], "when": _when(r["ship_by"]),
                    "detail": domain_text(r["detail"], _)}
            text = {
                "order_new": "🛒 " + _("New order %(number)s (%(account)s), ship by %(when)s") % said,
                "order_short": "❗ " + _("New order %(number)s (%(account)s) cannot be covered from stock: %(detail)s")
                % said,
                "order_problem": "❗ " + _("Order %(number)s (%(account)s) needs attention: %(detail)s") % said,
                "order_cancelled": ("✖️ " + _("Order %(number)s (%(account)s) cancelled %(detail)s") % said).rstrip(),
                "order_deadline_moved": "",  # below: it needs the old and the new deadline
            }[kind]
            dedup = f"{kind}:{r['account']}:{r['native_id']}"
            if kind == "order_deadline_moved":  # "old → new" (intake.move_ship_by): each move said once
                was, _sep, new = str(r["detail"]).partition(" → ")
                if was in ("", "—"):
                    continue  # a first deadline, given late (none was stored): nothing moved
                earlier = _earlier(was, new)
                said.update(was=_when(was), new=_when(new))
                text = "⏰ " + (_("The marketplace moved order %(number)s (%(account)s) EARLIER: assemble by %(new)s"
                                  " (was %(was)s)") if earlier else
                                _("The marketplace moved the assembly deadline of order %(number)s (%(account)s) to"
                                  " %(new)s (was %(was)s)")) % said
                dedup += f":{new}"
            if kind == "order_short" and r["source"] == "site":  # not found on the shelf, not a new order
                kind, text = "order_site_short", (f"❗ Заказ {number} ({r['account']}): на складе не нашли товар —"
                                                  f" {r['detail']}")
            if enqueue(conn, kind, dedup, text, now=now) is not None:
                n += 1
        conn.execute("INSERT INTO alert_cursor(name, position) VALUES ('order_events', ?)"
                     " ON CONFLICT(name) DO UPDATE SET position=excluded.position", (pos,))
    return n


def check_deadlines(conn: sqlite3.Connection, orders: Iterable[dict[str, Any]], *, now: float | None = None,
                    dedup_window_s: float = 7 * 86400.0) -> int:
    """Alert once per order whose ship-by deadline is near or past. `orders` are dicts with account,
    number (or key) and ship_by (ISO UTC) - e.g. cloud_sync.orders.listing.deadlines_near(conn, within_s)."""
    _ = translations().gettext  # the service's language ([ui] language)
    now = time.time() if now is None else now
    n = 0
    for o in orders:
        ship_by = o.get("ship_by")
        if not ship_by:
            continue
        left = datetime.fromisoformat(ship_by).timestamp() - now
        state = "overdue" if left < 0 else "near"
        mins = int(abs(left) // 60)
        said = {"number": o.get("number") or o.get("key"), "account": o.get("account"), "mins": mins,
                "when": _when(ship_by)}
        if o.get("stage") in WAITING_STAGES:  # nothing will be picked unless someone acts: say why
            text = (f"⏰ Заказ {o.get('number') or o.get('key')} ({o.get('account')}) ждёт и не собирается: "
                    f"{o.get('problem') or 'нет товара'}. Срок сборки "
                    + (f"прошёл {mins} мин назад" if left < 0 else f"через {mins} мин") + f" ({_when(ship_by)})."
                    " Что можно: ждать товара, собрать с другого склада, отменить")
            kind = "order_waiting_deadline"
        else:
            text = "⏰ " + (_("Order %(number)s (%(account)s): the assembly deadline passed %(mins)s min ago (%(when)s)")
                           if left < 0 else
                           _("Order %(number)s (%(account)s): the assembly deadline is in %(mins)s min (%(when)s)")
                           ) % said
            kind = "order_deadline"
        if enqueue(conn, kind, f"deadline:{state}:{o.get('account')}:{o.get('key') or o.get('number')}",
                   text, dedup_window_s=dedup_window_s, now=now) is not None:
            n += 1
    return n


def _earlier(was: str, new: str) -> bool:
    """Whether the deadline `new` (ISO) comes before `was` (ISO, or "—" for none): less time to assemble."""
    try:
        return datetime.fromisoformat(new).timestamp() < datetime.fromisoformat(was).timestamp()
    except ValueError:
        return False


def _when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        datetime.fromisoformat(iso).astimezone(UTC)
        return service_when(iso)  # in the [ui] time zone, as the pages write it
    except ValueError:
        return iso


def tick(conn: sqlite3.Connection, settings: AlertSettings, sender: Any | None, *,
         now: float | None = None) -> DeliveryStats:
    """What the cloud's jobs loop calls: raise stock, order and deadline alerts, then deliver."""
    now = time.time() if now is None else now
    check_critical_stock(conn, now=now)
    check_fbo_stock(conn, min_quantity=settings.fbo_min_quantity, cover_days=settings.fbo_cover_days, now=now)
    scan_order_events(conn, now=now)
    check_deadlines(conn, listing.deadlines_near(conn, settings.deadline_warning_s, now=now), now=now)
    if sender is None or not settings.enabled:
        return DeliveryStats()
    return deliver(conn, sender, settings)
