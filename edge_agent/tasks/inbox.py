"""Applies what the cloud sends down (pick_task, cancel_task, task_deadline, label, catalog, handover, handover_document,
return_expected) to the site's store.

Each function runs inside the site link's transaction that records the inbox entry, so a message is
applied exactly once. A body that is valid by the contract but cannot be applied raises `Unusable`
(the link dead-letters it with the reason).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from edge_agent import store
from edge_agent.tasks import bins
from edge_agent.tasks.common import Send
from edge_agent.tasks.marking import gtin_of_barcode


class Unusable(ValueError):
    """A down message that cannot be applied at this site; the reason is dead-lettered."""


def utc_deadline(value: Any) -> str | None:
    """A deadline as UTC `YYYY-MM-DDTHH:MM:SSZ`, so deadlines given with different offsets sort right;
    a value without an offset, or not a date, is kept as it came."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_catalog(conn: sqlite3.Connection, body: dict[str, Any], send: Send | None = None,
                  warehouse: str = "") -> int:
    """The items the site handles; a bin 1C states anew takes the place of the site's own (the cloud is
    told through `send`)."""
    n = 0
    for item in body["items"]:
        if not isinstance(item, dict) or not isinstance(item.get("item_id"), str):
            raise Unusable("catalog: every item needs a string item_id")
        codes = _codes(item)
        item_bin = item.get("bin") if isinstance(item.get("bin"), str) else None
        bins.onec_bin_came(conn, item["item_id"], item_bin, send, warehouse)
        conn.execute(
            "INSERT INTO catalog (item_id, name, barcode, bin, marking_required, gtin) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(item_id) DO UPDATE SET name=excluded.name, barcode=excluded.barcode, "
            "bin=COALESCE(excluded.bin, catalog.bin), marking_required=excluded.marking_required, gtin=excluded.gtin",
            (item["item_id"], str(item.get("name", "")), codes[0] if codes else None, item_bin or None,
             int(bool(item.get("marking_required") or item.get("marked"))),
             next((g for g in map(gtin_of_barcode, codes) if g), None)),
        )
        _index_codes(conn, item["item_id"], codes)
        n += 1
    return n


def apply_pick_task(conn: sqlite3.Connection, body: dict[str, Any]) -> bool:
    """Store a new pick task; False when this task is already known (the cloud re-sent it)."""
    if store.row(conn, "SELECT 1 FROM tasks WHERE task_id = ?", body["task_id"]):
        return False
    lines = body["lines"]
    if not lines:
        raise Unusable("pick_task: no lines")
    t = store.now()
    conn.execute(
        "INSERT INTO tasks (task_id, order_id, marketplace, account, number, native_id, warehouse, deadline, "
        "state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?, 'new', ?, ?)",
        (body["task_id"], body["order_id"], body["marketplace"], body.get("account"), body.get("number"),
         body.get("native_id"), body.get("warehouse"), utc_deadline(body.get("deadline")), t, t),
    )
    for no, line in enumerate(lines, 1):
        if not isinstance(line, dict) or not isinstance(line.get("item_id"), str):
            raise Unusable(f"pick_task: line {no} needs a string item_id")
        qty = line.get("quantity", 1)
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise Unusable(f"pick_task: line {no} quantity must be a positive integer")
        codes = _codes(line)
        cat = store.row(conn, "SELECT * FROM catalog WHERE item_id = ?", line["item_id"])
        marking = line.get("marking_required")
        if marking is None:
            marking = bool(cat and cat["marking_required"])
        site_bin = store.row(conn, "SELECT bin FROM item_bins WHERE item_id = ?", line["item_id"])
        name = str(line.get("name") or (cat["name"] if cat else ""))
        title = line.get("title") if isinstance(line.get("title"), str) and line.get("title") != name else ""
        conn.execute(
            "INSERT INTO task_lines (task_id, line_no, item_id, barcode, barcodes, name, title, quantity, bin, "
            "marking_required) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (body["task_id"], no, line["item_id"], codes[0] if codes else (cat["barcode"] if cat else None),
             store.dumps(codes), name, title, qty,
             # the bin set at this site first (it is where the packer put the goods), then 1C's
             (site_bin["bin"] if site_bin else None) or line.get("bin") or (cat["bin"] if cat else None),
             int(bool(marking))),
        )
        _index_codes(conn, line["item_id"], codes)
    if isinstance(body.get("label"), dict):
        label = dict(body["label"])
        label.setdefault("order_id", body["order_id"])
        apply_label(conn, label)
    return True


def apply_deadline(conn: sqlite3.Connection, body: dict[str, Any]) -> bool:
    """The marketplace moved the order's assembly deadline (`task_deadline`): the task takes it, so the
    packers' page, the pick lists and the labels printed ahead sort by it, and the page says it moved (the
    first deadline kept as `deadline_was`). False for a task this site does not hold open (not come yet: it
    will carry the new deadline; cancelled or handed over: nothing to sort) or that has this deadline."""
    deadline = utc_deadline(body["deadline"])
    if deadline is None:
        raise Unusable("task_deadline: the deadline is empty")
    # the first deadline stays beside the new one (`deadline_was`): the packers' list says it moved
    done = conn.execute("UPDATE tasks SET deadline_was=COALESCE(deadline_was, deadline), deadline=?, updated_at=? "
                        "WHERE task_id=? AND state NOT IN ('cancelled','handed_over') AND deadline IS NOT ?",
                        (deadline, store.now(), body["task_id"], deadline))
    return done.rowcount > 0


def apply_label(conn: sqlite3.Connection, body: dict[str, Any]) -> None:
    for name in ("format", "data_b64"):
        if not isinstance(body.get(name), str):
            raise Unusable(f"label: {name} missing")
    conn.execute(
        "INSERT OR REPLACE INTO labels (order_id, format, data_b64, width_mm, height_mm, barcode_text, received_at) "
        "VALUES (?,?,?,?,?,?,?)",
        (body["order_id"], body["format"].lower(), body["data_b64"], body.get("width_mm"), body.get("height_mm"),
         body.get("barcode_text"), store.now()),
    )


def apply_cancel(conn: sqlite3.Connection, send: Send, body: dict[str, Any], warehouse: str) -> str | None:
    """Cancel a task. Goods already packed go back on the shelf (a `return` stock delta)."""
    t = store.row(conn, "SELECT * FROM tasks WHERE task_id = ?", body["task_id"])
    if t is None or t["state"] in ("cancelled", "handed_over"):
        return None
    if t["state"] == "packed":
        for ln in store.rows(conn, "SELECT item_id, SUM(packed) AS n FROM task_lines WHERE task_id = ? "
                             "GROUP BY item_id", t["task_id"]):
            if ln["n"]:
                send(conn, "stock_delta", {"warehouse": t["warehouse"] or warehouse, "item_id": ln["item_id"], "delta": int(ln["n"]),
                                           "reason": "return", "ref": t["order_id"],
                                           "note": "order cancelled after packing: back on the shelf"})
                conn.execute("INSERT INTO stock_moves (ts, item_id, delta, reason, ref) VALUES (?,?,?,?,?)",
                             (store.now(), ln["item_id"], int(ln["n"]), "return", t["order_id"]))
    else:
        # Marking codes scanned into an unfinished parcel were never used: free them.
        conn.execute("DELETE FROM marking_codes WHERE task_id = ?", (t["task_id"],))
    # its label is not printed now, nor asked about (done with no done_at: closed, never printed)
    conn.execute("UPDATE print_jobs SET state='done', error='order cancelled' WHERE order_id = ? "
                 "AND state IN ('pending','unknown')", (t["order_id"],))
    conn.execute("UPDATE tasks SET state='cancelled', updated_at=? WHERE task_id=?", (store.now(), t["task_id"]))
    # A station packing this order keeps it open, so its page tells the packer to unpack the parcel; the
    # next scan there moves on to an open order.
    return t["task_id"]


def apply_handover(conn: sqlite3.Connection, body: dict[str, Any]) -> None:
    if not all(isinstance(o, str) for o in body["order_ids"]):
        raise Unusable("handover: order_ids must be strings")
    existing = store.row(conn, "SELECT state FROM handovers WHERE handover_id = ?", body["handover_id"])
    if existing and existing["state"] != "open":
        return
    conn.execute(
        "INSERT OR REPLACE INTO handovers (handover_id, marketplace, account, supply_id, qr_b64, order_ids, state, "
        "created_at) VALUES (?,?,?,?,?,?, 'open', ?)",
        (body["handover_id"], body["marketplace"], body.get("account"), body.get("supply_id"), body.get("qr_b64"),
         store.dumps(body["order_ids"]), store.now()),
    )


def apply_handover_document(conn: sqlite3.Connection, body: dict[str, Any]) -> int:
    """A marketplace's hand-over document (supply QR, acceptance act, waybill), kept for the page; one of
    label size also goes to the label printer's queue (a sheet — an A4 act — is opened on the page and
    printed on an office printer). The same document sent again is kept and printed once. Returns its id."""
    fmt = body["format"].lower()
    if fmt not in DOCUMENT_FORMATS:
        raise Unusable(f"handover_document: unknown format {body['format']!r}")
    seen = store.row(conn, "SELECT id FROM documents WHERE handover_id = ? AND kind = ?", body["handover_id"], body["kind"])
    if seen is not None:
        return int(seen["id"])
    width, height = body.get("width_mm") or 0, body.get("height_mm") or 0
    cur = conn.execute(
        "INSERT INTO documents (handover_id, kind, title, format, data_b64, width_mm, height_mm, received_at) "
        "VALUES (?,?,?,?,?,?,?,?)", (body["handover_id"], body["kind"], str(body.get("title") or body["kind"]), fmt,
                                      body["data_b64"], width or None, height or None, store.now()))
    doc_id = int(cur.lastrowid or 0)
    if width and height and max(width, height) <= LABEL_SIZED_MM:
        job = conn.execute("INSERT INTO print_jobs (order_id, kind, payload, created_at) VALUES (?, 'document', ?, ?)",
                           (body["handover_id"], store.dumps({"document_id": doc_id, "kind": body["kind"]}), store.now()))
        conn.execute("UPDATE documents SET job_id = ? WHERE id = ?", (job.lastrowid, doc_id))
    return doc_id


DOCUMENT_FORMATS = ("pdf", "png", "svg", "zpl")
LABEL_SIZED_MM = 150.0  # a document no longer than this on either side fits label stock (up to 75x120 mm)


def apply_return_expected(conn: sqlite3.Connection, body: dict[str, Any]) -> None:
    """A returned parcel is coming back here: what it should hold. One already taken in stays as it is."""
    lines = []
    for ln in body["lines"]:
        if not isinstance(ln, dict) or not isinstance(ln.get("item_id"), str):
            raise Unusable("return_expected: every line needs a string item_id")
        q = ln.get("quantity")
        if isinstance(q, bool) or not isinstance(q, int) or q <= 0:
            raise Unusable(f"return_expected: quantity of {ln['item_id']} must be a whole number above 0")
        lines.append({"item_id": ln["item_id"], "quantity": q, "barcode": str(ln.get("barcode") or ""),
                      "name": str(ln.get("name") or "")})
        codes = _codes(ln)
        if codes and not store.row(conn, "SELECT 1 FROM catalog WHERE item_id = ?", ln["item_id"]):
            conn.execute("INSERT OR IGNORE INTO catalog (item_id, name, barcode) VALUES (?,?,?)",
                         (ln["item_id"], str(ln.get("name") or ""), codes[0]))
        _index_codes(conn, ln["item_id"], codes)
    existing = store.row(conn, "SELECT state FROM returns WHERE return_id = ?", body["return_id"])
    if existing is not None and existing["state"] != "expected":
        return
    codes = [str(c) for c in body.get("parcel_codes") or [] if isinstance(c, str | int) and str(c).strip()]
    conn.execute(
        "INSERT OR REPLACE INTO returns (return_id, order_id, number, marketplace, lines, state, announced, parcel_codes, "
        "kind, reason, created_at) VALUES (?,?,?,?,?, 'expected', 1, ?,?,?,?)",
        (body["return_id"], body["order_id"], body.get("number"), body.get("marketplace"), store.dumps(lines),
         store.dumps(codes), body.get("kind"), body.get("reason"), store.now()))


def _codes(item: dict[str, Any]) -> list[str]:
    codes: list[str] = []
    for c in [item.get("barcode"), *(item.get("barcodes") or [])]:
        if isinstance(c, str) and c.strip() and c.strip() not in codes:
            codes.append(c.strip())
    return codes


def _index_codes(conn: sqlite3.Connection, item_id: str, codes: list[str]) -> None:
    for c in codes:
        conn.execute("INSERT OR REPLACE INTO item_barcodes (code, item_id) VALUES (?, ?)", (c, item_id))
        g = gtin_of_barcode(c)
        if g and g != c:
            conn.execute("INSERT OR IGNORE INTO item_barcodes (code, item_id) VALUES (?, ?)", (g, item_id))
