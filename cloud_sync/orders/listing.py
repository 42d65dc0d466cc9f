"""Reading orders: the one list of all accounts sorted by deadline, one order with its lines, actions and
history, the events in plain words, deadlines near, and the demo's summary.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from cloud_sync.orders import after_handover
from cloud_sync.orders.records import OPEN_STAGES, PAST_THE_SELLER

# the columns the manager may sort the list by (`sort`), as SQL over the orders table
SORTS = {"deadline": "ship_by IS NULL, ship_by", "created": "created_at", "number": "number", "account": "account",
         "status": "CASE status WHEN 'new' THEN 0 WHEN 'in_work' THEN 1 WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3"
                   " WHEN 'packed' THEN 4 WHEN 'handed_over' THEN 5 WHEN 'delivered' THEN 6 ELSE 7 END"}


def list_orders(conn: sqlite3.Connection, *, account: str | None = None, status: str | None = None,
                late: bool = False, limit: int = 200, offset: int = 0, q: str = "", sort: str = "",
                descending: bool = False) -> list[dict[str, Any]]:
    """Orders of all accounts sorted by deadline (none last), then by status; `late`: only those past
    their assembly deadline and still on the seller's side; `q`: the marketplace's order (or shipment)
    number or id, or an article (card offer id) on one of its lines."""
    sql, args = "SELECT * FROM orders WHERE 1=1", []
    if q:  # each through its own index (access/users.py migrations)
        sql += (" AND id IN (SELECT id FROM orders WHERE number=? UNION SELECT id FROM orders WHERE native_id=?"
                " UNION SELECT order_id FROM order_lines WHERE offer_id=?)")
        args += [q, q, q]
    if account:
        sql += " AND account=?"
        args.append(account)
    if status:
        sql += " AND status=?"
        args.append(status)
    if late:  # julianday reads the stored offsets, whatever zone a marketplace gave
        sql += (" AND ship_by IS NOT NULL AND julianday(ship_by) < julianday('now') AND status NOT IN"
                f" ({','.join('?' * len(PAST_THE_SELLER))})")
        args.extend(PAST_THE_SELLER)
    order_by = (" ORDER BY ship_by IS NULL, ship_by, CASE status WHEN 'new' THEN 0 WHEN 'in_work' THEN 1"
                " WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3 WHEN 'packed' THEN 4 WHEN 'handed_over' THEN 5"
                " WHEN 'delivered' THEN 6 ELSE 7 END, id LIMIT ? OFFSET ?")
    if sort in SORTS and (sort != "deadline" or descending):  # another order than the indexed default
        way = " DESC" if descending else ""
        order_by = f" ORDER BY {SORTS[sort]}{way}, id{way} LIMIT ? OFFSET ?"
    out = []
    for r in conn.execute(sql + order_by, [*args, limit, offset]).fetchall():
        d = dict(r)
        d.pop("native", None)
        d["lines"] = [dict(x) for x in conn.execute(
            "SELECT line_no, card_id, offer_id, item_id, quantity, units, price, title FROM order_lines"
            " WHERE order_id=? ORDER BY line_no", (r["id"],))]
        out.append(d)
    return out


def get_order(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
    if r is None:
        return None
    d = dict(conn.execute("SELECT * FROM orders WHERE id=?", (r[0],)).fetchone())
    d["lines"] = [dict(x) for x in conn.execute("SELECT * FROM order_lines WHERE order_id=? ORDER BY line_no", (r[0],))]
    d["actions"] = [dict(x) for x in conn.execute("SELECT * FROM order_actions WHERE order_id=?", (r[0],))]
    # the true timeline: when each thing happened (a site's event at the site's time), who caused it
    d["events"] = [dict(x) for x in conn.execute("SELECT ts, kind, detail, source, actor FROM order_events"
                                                 " WHERE order_id=? ORDER BY ts, id", (r[0],))]
    return d

QUIET_EVENTS = {"task_sent", "received"}  # said by "reserved" / "short" / "problem" already

EVENT_TEXT = {
    "reserved": "order {number} ({account}) reserved at warehouse {warehouse}; pick task sent to {site}",
    "short": "order {number} ({account}) is short: {detail}",  # no stock for it, or units the site did not find
    "problem": "order {number} ({account}) needs attention: {detail}",
    "confirmed": "order {number} confirmed on {marketplace}",
    "label_sent": "{marketplace} label of order {number} sent down to {site} ({detail})",
    "picked": "order {number} picked at {site}",
    "packed": "order {number} packed at {site}",
    "printed": "label of order {number} printed at {site} ({detail})",
    "assembled": "order {number} marked assembled on {marketplace}",
    "reduced": "order {number} reduced on {marketplace} to what its parcel holds ({detail})",
    "shipped": "order {number} handed over to {marketplace}",
    "handed_over": "order {number} handed over at {site}",
    "handover_missing": "order {number} stayed at {site} when its hand-over closed ({detail}): offered to the next courier",
    "cancelled": "order {number} ({account}) cancelled: {detail}",
    "delivered": "order {number} ({account}) delivered to the buyer ({detail})",
    "return_expected": "order {number} ({account}) is coming back to {warehouse}: {detail}",
    "returned": "order {number} ({account}) came back: {detail}",
    "cancel_refused": "order {number} ({account}) not cancelled: {detail}",
    "cancel_sent": "order {number} cancelled on {marketplace}",
    "served": "order {number} ({account}) waited and is served now: {detail}",
    "retry": "order {number} ({account}) checked again: {detail}",
    "moved": "order {number} ({account}): {detail}",
    "status": "order {number}: {marketplace} says {detail}",
    "ship_by": "order {number} ({account}): {marketplace} moved the assembly deadline ({detail})",
    "stock_pushed": "stock pushed: {detail}",
    "prices_from_1c": "prices from 1C: {detail}",
}


def events_after(conn: sqlite3.Connection, after: int, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT e.id, e.ts, e.kind, e.detail, o.account, o.marketplace, o.number, o.warehouse, o.site, o.key"
        " FROM order_events e LEFT JOIN orders o ON o.id=e.order_id WHERE e.id>? ORDER BY e.id LIMIT ?",
        (after, limit)).fetchall()
    out = []
    for r in rows:
        if r["kind"] in QUIET_EVENTS:
            continue
        template = EVENT_TEXT.get(r["kind"], "order {number}: " + r["kind"].replace("_", " ") + " {detail}")
        fields = {k: (r[k] if r[k] is not None else "") for k in ("account", "marketplace", "number", "warehouse",
                                                                  "site", "detail")}
        out.append({"id": r["id"], "ts": r["ts"], "kind": r["kind"], "order": r["key"],
                    "text": template.format(**fields).strip()})
    return out


def deadlines_near(conn: sqlite3.Connection, within_s: float, now: float | None = None) -> list[dict[str, Any]]:
    """Open orders whose ship-by deadline falls within `within_s` seconds (or has passed)."""
    now = time.time() if now is None else now
    limit = datetime.fromtimestamp(now + within_s, UTC).isoformat()
    return [dict(r) for r in conn.execute(
        # `(ship_by IS NULL)=0`: the first column of orders_page_filtered (the order list's index), read in deadline order
        "SELECT id, key, account, number, ship_by, status, stage, problem FROM orders WHERE (ship_by IS NULL)=0"
        " AND ship_by<=?"
        f" AND stage IN ({','.join('?' * len(OPEN_STAGES))}) ORDER BY ship_by", (limit, *OPEN_STAGES))]


def summary(conn: sqlite3.Connection) -> dict[str, int]:
    """The demo's one-line summary."""
    one = lambda sql: int(conn.execute(sql).fetchone()[0] or 0)  # noqa: E731
    pushes = one("SELECT COALESCE(SUM(sent), 0) FROM stock_push_stats")
    return {
        "orders_seen": one("SELECT COUNT(*) FROM orders"),
        "orders_packed": one("SELECT COUNT(*) FROM orders WHERE packed_ts IS NOT NULL"),
        "labels_printed": one("SELECT COALESCE(SUM(labels_printed), 0) FROM orders"),
        "stock_pushes": pushes,
        "errors": one("SELECT COUNT(*) FROM cloud_errors"),
        # waited for stock or a link, then served
        "recovered": one("SELECT COUNT(DISTINCT order_id) FROM order_events WHERE kind='served'"),
        # packed short, and the marketplace told what the parcel holds before it shipped
        "reduced": one("SELECT COUNT(DISTINCT order_id) FROM order_events WHERE kind='reduced'"),
        **after_handover.summary(conn),
        # past the assembly deadline, still waiting, and nobody was told (no deadline alert queued)
        "stuck": one("SELECT COUNT(*) FROM orders o WHERE o.stage IN ('short', 'problem') AND o.ship_by IS NOT NULL"
                     " AND o.ship_by < strftime('%Y-%m-%dT%H:%M:%S', 'now') AND NOT EXISTS (SELECT 1 FROM alert_outbox"
                     " a WHERE a.kind IN ('order_waiting_deadline', 'order_deadline') AND a.dedup_key LIKE"
                     " '%:' || o.account || ':' || o.key)"),
    }
