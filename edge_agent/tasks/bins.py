"""Bins (ячейки): where each item lies on the site's shelves, so pick lists walk the shelves in order.

An item's bin comes from 1C through the cloud's `catalog` message (`catalog.bin`), or is set at the site:
at a receipt or a count the packer scans a bin label, then the items that go in it, and «Провести» keeps
those bins here (`item_bins`). The site's own bin wins until 1C states a new bin of its own for the item
(the newer word). Setting a bin moves the lines of tasks not yet picked along with it. Either way the
cloud is told over the link (`item_bin`), in the same transaction, so the manager sees where items lie.
"""

from __future__ import annotations

import re
import sqlite3

from edge_agent import store
from edge_agent.tasks.common import Send, item_of_code

MAX_BIN_CHARS = 32


def bin_of(conn: sqlite3.Connection, item_id: str) -> str | None:
    """The item's bin: set at the site, else from 1C; None when nobody said."""
    r = store.row(conn, "SELECT COALESCE((SELECT bin FROM item_bins WHERE item_id = ?), "
                  "(SELECT bin FROM catalog WHERE item_id = ?)) AS bin", item_id, item_id)
    return r["bin"] if r and r["bin"] else None


def known_bin(conn: sqlite3.Connection, code: str) -> str | None:
    """The bin as the site writes it when `code` is one it knows (case aside)."""
    r = store.row(conn, "SELECT bin FROM item_bins WHERE bin = ? COLLATE NOCASE UNION ALL "
                  "SELECT bin FROM catalog WHERE bin = ? COLLATE NOCASE LIMIT 1", code, code)
    return r["bin"] if r else None


def as_bin(conn: sqlite3.Connection, code: str, pattern: str) -> str | None:
    """The bin a scan names, or None when it is not a bin label: a bin the site knows, or a code of the
    site's bin pattern that is no item's barcode."""
    code = code.strip()
    if not code or len(code) > MAX_BIN_CHARS:
        return None
    known = known_bin(conn, code)
    if known:
        return known
    if item_of_code(conn, code) is None and re.fullmatch(pattern, code):
        return code.upper()
    return None


def set_bin(conn: sqlite3.Connection, send: Send, warehouse: str, item_id: str, bin_code: str, by: str | None,
            ref: str | None) -> None:
    """Keep the item in `bin_code` at this site (the cloud told); lines of tasks still to pick follow."""
    conn.execute("INSERT INTO item_bins (item_id, bin, set_at, set_by, ref) VALUES (?,?,?,?,?) "
                 "ON CONFLICT(item_id) DO UPDATE SET bin=excluded.bin, set_at=excluded.set_at, "
                 "set_by=excluded.set_by, ref=excluded.ref", (item_id, bin_code, store.now(), by, ref))
    conn.execute("UPDATE task_lines SET bin = ? WHERE item_id = ? AND picked + short < quantity AND task_id IN "
                 "(SELECT task_id FROM tasks WHERE state IN ('new', 'picking'))", (bin_code, item_id))
    body = {"item_id": item_id, "bin": bin_code, "warehouse": warehouse, "ref": ref or "", "set_by": by or ""}
    send(conn, "item_bin", {k: v for k, v in body.items() if v or k == "bin"})


def onec_bin_came(conn: sqlite3.Connection, item_id: str, bin_code: str | None, send: Send | None = None,
                  warehouse: str = "") -> None:
    """1C (through the cloud) states the item's bin: a bin other than the one it stated before is the newer
    word, and the site's own one gives way (the cloud told, when `send` is given)."""
    if not bin_code:
        return
    before = store.row(conn, "SELECT bin FROM catalog WHERE item_id = ?", item_id)
    if before is not None and before["bin"] != bin_code:
        gone = conn.execute("DELETE FROM item_bins WHERE item_id = ?", (item_id,)).rowcount
        if gone and send is not None:
            send(conn, "item_bin", {"item_id": item_id, "bin": "", **({"warehouse": warehouse} if warehouse else {})})
