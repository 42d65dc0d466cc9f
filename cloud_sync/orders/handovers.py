"""Hand-overs to the marketplaces' couriers: the packed parcels of an account grouped per site (and per
Wildberries supply) and sent to the site to scan; shipping waits for the last parcel of a group.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.records import send_to_site


def all_handed_over(conn: sqlite3.Connection, oid: int) -> bool:
    """Shipping moves every parcel of a WB supply (or of a hand-over) at once: only when the last one of
    them has been handed over."""
    o = conn.execute("SELECT account, supply_id FROM orders WHERE id=?", (oid,)).fetchone()
    groups = [r[0] for r in conn.execute("SELECT handover_id FROM handover_orders WHERE order_id=?", (oid,))]
    for h in groups:
        if conn.execute("SELECT 1 FROM handover_orders x JOIN orders o ON o.id=x.order_id WHERE x.handover_id=?"
                        " AND o.stage NOT IN ('handed_over', 'cancelled')", (h,)).fetchone():
            return False
    waiting = o["supply_id"] and conn.execute(
        "SELECT 1 FROM orders WHERE account=? AND supply_id=? AND stage NOT IN ('handed_over', 'cancelled')",
        (o["account"], o["supply_id"])).fetchone()
    return not waiting


def start_handover(conn: sqlite3.Connection, cfg: CloudConfig, account: str, *, link: Any = None,
                   now: float | None = None) -> list[dict[str, Any]]:
    """Hand the account's packed parcels to the marketplace's courier: one hand-over per site (and per WB
    supply), sent to the site as a `handover` message listing the orders to scan."""
    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT id, key, site, supply_id, marketplace FROM orders WHERE account=? AND stage='packed' AND site IS"
        " NOT NULL AND id NOT IN (SELECT order_id FROM handover_orders x JOIN handovers h ON h.id=x.handover_id"
        " WHERE h.state='open') ORDER BY id", (account,)).fetchall()
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
