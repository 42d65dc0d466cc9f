"""Print forms: what goes on the documents printed from the cloud's pages (their HTTP side, the pages
themselves, is cloud_sync/web/print_forms.py; templates: web/templates/print/).

    /print/pick/<order key>              pick task of an order (lines, bins, barcodes, 1C ids)
    /print/ship/<account>[?supply=ID]    ship (handover) task: the packed orders of an account, or of one
                                         marketplace supply, with a signature block
    /print/prices/<document id>          a price document: before/after per card (applied: as sent;
                                         draft: as the preview computes it)
    /print/stock/fbs | fbo | scheme      stock reports: own warehouses (FBS ledger), FBO read back from
                                         the marketplaces, FBS vs FBO per account

The data come from the owners' tables and functions (cloud_sync.orders, cloud_sync.money); this module
only lays them out.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

from cloud_sync.money import price_docs, price_preview, reports
from cloud_sync.onec.orders_out import MARKETPLACE_TITLES
from cloud_sync.orders import records


def pick_task(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
    if row is None:
        return None
    body = records.pick_task_body(conn, row["id"])
    for ln in body["lines"]:
        ln.setdefault("bin", "")
        ln.setdefault("barcode", "")
    body["lines"].sort(key=lambda ln: (ln["bin"] == "", ln["bin"], ln["name"]))
    body["marketplace_title"] = MARKETPLACE_TITLES.get(body["marketplace"], body["marketplace"])
    body["units"] = sum(ln["quantity"] for ln in body["lines"])
    return body


def ship_task(conn: sqlite3.Connection, account: str, supply: str | None = None) -> dict[str, Any]:
    sql = ("SELECT id, key, number, native_id, marketplace, stage, status, ship_by, supply_id, warehouse FROM orders"
           " WHERE account=?")
    args: list[Any] = [account]
    if supply:
        sql += " AND supply_id=?"
        args.append(supply)
    else:
        sql += " AND stage='packed'"
    rows = [dict(r) for r in conn.execute(sql + " ORDER BY ship_by IS NULL, ship_by, id", args)]
    for r in rows:
        r["units"] = conn.execute("SELECT COALESCE(SUM(units), 0) FROM order_lines WHERE order_id=?",
                                  (r["id"],)).fetchone()[0]
    marketplace = rows[0]["marketplace"] if rows else ""
    return {"account": account, "supply": supply or "", "orders": rows,
            "marketplace_title": MARKETPLACE_TITLES.get(marketplace, marketplace),
            "units": sum(r["units"] for r in rows)}


def price_document(conn: sqlite3.Connection, doc_id: str) -> dict[str, Any] | None:
    doc = conn.execute("SELECT * FROM price_documents WHERE id=?", (doc_id,)).fetchone()
    if doc is None:
        return None
    rows: list[dict[str, Any]] = []
    sent = conn.execute("SELECT h.*, i.name AS item_name FROM price_history h LEFT JOIN items i ON i.id=h.item_id"
                        " WHERE h.document_id=? ORDER BY h.id", (doc_id,)).fetchall()
    if sent:
        for h in sent:
            rows.append({"offer_id": h["offer_id"], "item_id": h["item_id"] or "", "name": h["item_name"] or "",
                         "before": h["price_before"] or "", "after": h["price"], "old_price": h["old_price"] or "",
                         "note": "" if h["ok"] else "не принято маркетплейсом"})
    else:
        preview = price_preview.preview(conn, price_docs.load_document(conn, doc_id))
        for r in preview.rows:
            rows.append({"offer_id": r.card.offer_id, "item_id": r.card.item_id or "",
                         "name": r.card.title,
                         "before": r.old.price if r.old else "", "after": r.new.price,
                         "old_price": r.new.old_price or "",
                         "note": "; ".join([n.text for n in r.notes] + list(r.errors))})
    for r in rows:
        try:
            before, after = Decimal(str(r["before"])), Decimal(str(r["after"]))
            r["change"] = f"{(after - before) / before * 100:+.1f}%" if before else ""
        except ArithmeticError:
            r["change"] = ""
    return {"id": doc_id, "account": doc["account"], "comment": doc["comment"], "status": doc["status"],
            "created_at": doc["created_at"], "applied_at": doc["applied_at"] or "", "rows": rows}


STOCK_TITLES = {"fbs": "Остатки на своих складах (FBS)", "fbo": "Остатки на складах маркетплейсов (FBO)",
                "scheme": "Остатки по кабинетам: FBS и FBO"}


def stock_report(conn: sqlite3.Connection, kind: str) -> dict[str, Any] | None:
    if kind == "fbs":
        headers, rows = reports.stock_by_warehouse(conn)
    elif kind == "fbo":
        headers, rows = reports.stock_by_account(conn)
        rows = [r for r in rows if r[2] == "FBO"]
    elif kind == "scheme":
        headers, rows = reports.stock_by_scheme(conn)
    else:
        return None
    return {"kind": kind, "title": STOCK_TITLES[kind], "headers": headers,
            "rows": [["" if v is None else v for v in r] for r in rows]}
