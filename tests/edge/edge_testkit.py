"""Helpers of the edge agent's tests: demo catalog items, pick task bodies, marking codes, the real
outbox write and a reader of the outbox."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store
from edge_agent.tasks import inbox
from edge_agent.tasks.marking import GS
from sitelink import store as link_store

SITE = "site-1"
WAREHOUSE = "main"


def ean13(n12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(n12))
    return n12 + str((10 - total % 10) % 10)


SHIRT = {"item_id": "item-shirt", "name": "Футболка", "barcode": ean13("460700000001"), "bin": "A-02",
         "marking_required": True}
MUG = {"item_id": "item-mug", "name": "Кружка", "barcode": ean13("460700000002"), "bin": "B-01"}
SOCKS = {"item_id": "item-socks", "name": "Носки", "barcode": ean13("460700000003"), "bin": "A-01"}
BAG = {"item_id": "item-bag", "name": "Рюкзак", "barcode": ean13("460700000004"), "bin": "C-09"}


def marking(item: dict[str, Any], serial: str, sep: str = GS) -> str:
    return f"01{item['barcode'].zfill(14)}21{serial}{sep}91EE10{sep}92{'A' * 40}abcd"


def send(conn: sqlite3.Connection, msg_type: str, body: dict[str, Any]) -> Any:
    """The site's real outbox write (what SiteLink.send does for a site)."""
    return link_store.enqueue(conn, "site", SITE, msg_type, body)


def outbox(conn: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute("SELECT type, payload FROM link_outbox ORDER BY seq").fetchall()
    return [(r[0], json.loads(r[1])["body"]) for r in rows]


def pick_task(task_id: str, lines: list[tuple[dict[str, Any], int]], deadline: str = "2026-11-27T10:00:00Z",
              **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "order_id": f"o-{task_id}", "marketplace": "wildberries", "number": f"N{task_id}",
            "deadline": deadline,
            "lines": [{"item_id": it["item_id"], "barcode": it["barcode"], "name": it["name"], "quantity": q,
                       "bin": it.get("bin"), "marking_required": bool(it.get("marking_required"))} for it, q in lines],
            **extra}


def make_conn(path: Any) -> sqlite3.Connection:
    c = store.connect(path)
    link_store.ensure_schema(c)
    with store.transaction(c):
        inbox.apply_catalog(c, {"items": [SHIRT, MUG, SOCKS, BAG]})
    return c
