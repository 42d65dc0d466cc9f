"""Hand-overs to the marketplaces' couriers: the packed parcels of an account grouped per site (and per
shipment batch) and sent to the site to scan; and the ship each parcel handed over needs, by the
marketplace's model (its profile's `ships`): a marketplace shipping per order gets a ship per parcel; one
shipping per batch gets one ship per batch once every live parcel of it was handed over, or when the
courier leaves with some of them (the rest move to the next batch) — the batch is closed at that moment (a
later order goes into the next batch), and an order handed over before its confirm said its batch waits
for that confirm.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.records import queue_action, send_to_site
from marketplaces import profile
from sitelink.sqlite import need


def ship_model(marketplace: str) -> str:
    """"per_order" or "per_batch", as the marketplace's profile says (an unknown one ships per order)."""
    try:
        return profile(marketplace).ships
    except ValueError:
        return "per_order"


def queue_shipping(conn: sqlite3.Connection, oid: int, now: float) -> None:
    """Queue what the order's marketplace needs to ship it once it is handed over (call it when the order
    was handed over, confirmed or cancelled): per order, its own ship; per batch, the batch's one ship
    when its last live parcel has left."""
    o = conn.execute("SELECT account, marketplace, supply_id, stage, confirmed FROM orders WHERE id=?",
                     (oid,)).fetchone()
    if o is None:
        return
    per_batch = ship_model(o["marketplace"]) == "per_batch"
    if o["stage"] == "cancelled":
        if per_batch and o["supply_id"]:  # the parcels left in its batch may all be handed over now
            _batch_ready(conn, o["account"], o["supply_id"], now)
        return
    if o["stage"] != "handed_over":
        return
    if not per_batch:
        queue_action(conn, oid, "ship", now)
        return
    if not o["confirmed"]:
        return  # its batch is known once it is confirmed: the confirm comes back here
    state = conn.execute("SELECT state FROM supplies WHERE account=? AND supply_id=?",
                         (o["account"], o["supply_id"] or "")).fetchone()
    if not o["supply_id"] or (state is not None and state[0] == "shipped"):
        # no batch recorded, or it left without this parcel: the ship finds the order's batch on the marketplace
        queue_action(conn, oid, "ship", now)
        return
    _batch_ready(conn, o["account"], o["supply_id"], now)


def _batch_ready(conn: sqlite3.Connection, account: str, batch: str, now: float, *,
                 courier_left: bool = False) -> None:
    """Queue the batch's one ship (on its last parcel handed over) and close the batch, once every live
    order recorded in it has been handed over and none holds its ship yet. `courier_left`: a hand-over
    closed with parcels of the batch in the courier's bag while others of it stayed at the site (not
    packed, no label): the batch leaves with what left — the ship first moves the rest to the next batch,
    so they go with a later courier."""
    need(conn)  # the batch's other orders
    members = conn.execute(
        "SELECT o.id, o.stage, a.state AS ship FROM orders o LEFT JOIN order_actions a ON a.order_id=o.id AND"
        " a.action='ship' WHERE o.account=? AND o.supply_id=? AND o.stage!='cancelled' ORDER BY o.id",
        (account, batch)).fetchall()
    gone = [m for m in members if m["stage"] == "handed_over"]
    if not gone or (len(gone) < len(members) and not courier_left):
        return
    if any(m["ship"] == "pending" for m in members) or all(m["ship"] == "done" for m in gone):
        return  # queued already, or gone
    conn.execute("INSERT OR IGNORE INTO supplies(account, mp_warehouse, supply_id, state, created_ts) SELECT"
                 " account, mp_warehouse, supply_id, 'open', ? FROM orders WHERE id=?", (now, members[-1]["id"]))
    conn.execute("UPDATE supplies SET state='closing' WHERE account=? AND supply_id=? AND state='open'",
                 (account, batch))
    holder = next(m["id"] for m in reversed(gone) if m["ship"] != "done")
    queue_action(conn, holder, "ship", now)


def courier_left(conn: sqlite3.Connection, handover_id: str, now: float) -> None:
    """A hand-over closed at the site: every batch with parcels in the courier's bag ships now, even when
    some of its parcels stayed behind (they move to the next batch at the ship)."""
    for r in conn.execute(
            "SELECT DISTINCT o.account, o.marketplace, o.supply_id FROM handover_orders h JOIN orders o ON"
            " o.id=h.order_id WHERE h.handover_id=? AND o.stage='handed_over' AND o.supply_id IS NOT NULL"
            " AND o.supply_id != '' AND o.confirmed", (handover_id,)).fetchall():
        if ship_model(r["marketplace"]) == "per_batch":
            _batch_ready(conn, r["account"], r["supply_id"], now, courier_left=True)


def start_handover(conn: sqlite3.Connection, cfg: CloudConfig, account: str, *, link: Any = None,
                   now: float | None = None, site: str | None = None) -> list[dict[str, Any]]:
    """Hand the account's packed parcels to the marketplace's courier: one hand-over per site (and per
    shipment batch), sent to the site as a `handover` message listing the orders to scan. `site`: only
    that site's parcels (its senior packer asked)."""
    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT id, key, site, supply_id, marketplace FROM orders WHERE account=? AND stage='packed' AND site IS"
        " NOT NULL AND (? IS NULL OR site=?) AND id NOT IN (SELECT order_id FROM handover_orders x JOIN handovers h"
        " ON h.id=x.handover_id WHERE h.state='open') ORDER BY id", (account, site, site)).fetchall()
    groups: dict[tuple[str, str], list[sqlite3.Row]] = {}
    for r in rows:
        groups.setdefault((r["site"], r["supply_id"] or ""), []).append(r)
    out = []
    with transaction(conn):
        for (site, supply), members in groups.items():
            hid = f"ho-{account}-{uuid.uuid4().hex[:8]}"
            conn.execute("INSERT INTO handovers(id, account, site, supply_id, state, created_ts) VALUES (?,?,?,?,?,?)",
                         (hid, account, site, supply or None, "open", now))
            conn.executemany("INSERT INTO handover_orders(handover_id, order_id) VALUES (?,?)",
                             [(hid, m["id"]) for m in members])
            body: dict[str, Any] = {"handover_id": hid, "marketplace": members[0]["marketplace"],
                                    "order_ids": [m["key"] for m in members], "account": account}
            if supply:
                body["supply_id"] = supply
            send_to_site(conn, link, site, "handover", body)
            out.append({"handover_id": hid, "site": site, "supply_id": supply or None,
                        "orders": [m["key"] for m in members]})
    return out
