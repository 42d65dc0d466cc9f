"""The marketplaces' documents of a hand-over (a batch's QR sticker, the acceptance act, the waybill): once
every parcel that went with a hand-over has shipped, the cloud asks the account's marketplace for them and
sends each down to the site that handed the parcels over (`handover_document`), where it prints.

Each hand-over's documents are one row of `handover_documents`, found due when the hand-over is closed
and none of its live parcels waits for its ship; the call is made outside any transaction, retried with
backoff while the marketplace says they are not ready, and the outcome recorded with the documents' down
messages in one transaction (a crash before that asks again: a document sent twice prints once at the
site). A marketplace whose API gives none is recorded as such (`none`, its reason in the seller's words),
never as a failure.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import time
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.records import log_error, log_event, send_to_site
from marketplaces import profile
from marketplaces.base import Marketplace, MarketplaceError, NotSupported

log = logging.getLogger("cloud_sync.orders.handover_documents")

MIGRATIONS = [
    """
    CREATE TABLE handover_documents (
        handover_id TEXT PRIMARY KEY REFERENCES handovers(id),
        state TEXT NOT NULL,             -- pending | done | none (the marketplace gives none) | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',  -- the last failure; for `none`, why, in the seller's words
        kinds TEXT NOT NULL DEFAULT '',  -- the documents sent down, comma-separated
        updated_ts REAL NOT NULL
    );
    CREATE INDEX handover_documents_due ON handover_documents(state, next_try);
    """,
]

MAX_ATTEMPTS = 40  # a document not ready after this many tries is shown to the manager
FAILED_TEXT = ("Не удалось получить документы передачи курьеру от маркетплейса: {error}. Что сделать: скачайте их"
               " в личном кабинете маркетплейса и распечатайте на складе.")


_DUE_HANDOVERS = (
    " FROM handovers h WHERE h.state != 'open'"
    " AND NOT EXISTS (SELECT 1 FROM handover_documents d WHERE d.handover_id = h.id)"
    " AND EXISTS (SELECT 1 FROM handover_orders x JOIN orders o ON o.id = x.order_id"
    "             WHERE x.handover_id = h.id AND o.stage != 'cancelled')"
    " AND NOT EXISTS (SELECT 1 FROM handover_orders x JOIN orders o ON o.id = x.order_id"
    "                 LEFT JOIN order_actions a ON a.order_id = o.id AND a.action = 'ship'"
    "                 WHERE x.handover_id = h.id AND o.stage != 'cancelled' AND COALESCE(a.state, '') != 'done')")


def any_due(conn: sqlite3.Connection) -> bool:
    """Whether `find_due` would record a hand-over (read without the write lock)."""
    return conn.execute("SELECT 1" + _DUE_HANDOVERS + " LIMIT 1").fetchone() is not None


def find_due(conn: sqlite3.Connection, now: float) -> int:
    """Record the hand-overs whose documents may be asked for now: closed at the site (or shipped), with
    at least one live parcel, and none of their live parcels waiting for its ship. Returns how many."""
    cur = conn.execute("INSERT OR IGNORE INTO handover_documents(handover_id, state, next_try, updated_ts)"
                       " SELECT h.id, 'pending', ?, ?" + _DUE_HANDOVERS, (now, now))
    return cur.rowcount


def fetch_due(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *, link: Any = None,
              now: float | None = None, limit: int = 20) -> int:
    """Ask the marketplaces for the documents of the hand-overs due and send them to their sites.
    Returns the hand-overs whose documents went down."""
    now = time.time() if now is None else now
    if any_due(conn):  # none (every tick but a few): no write lock taken, no barrier for the keyed writers
        with transaction(conn):
            find_due(conn, now)
    due = conn.execute(
        "SELECT d.handover_id, d.attempts, h.account, h.site, h.supply_id FROM handover_documents d JOIN handovers h"
        " ON h.id = d.handover_id WHERE d.state = 'pending' AND d.next_try <= ? ORDER BY d.next_try LIMIT ?",
        (now, limit)).fetchall()
    sent = 0
    for d in due:
        adapter = adapters.get(d["account"])
        if adapter is None:
            continue
        orders = conn.execute("SELECT o.id, o.native_id, o.marketplace, o.supply_id FROM handover_orders x JOIN orders o"
                              " ON o.id = x.order_id WHERE x.handover_id = ? AND o.stage != 'cancelled' ORDER BY o.id",
                              (d["handover_id"],)).fetchall()
        marketplace = orders[0]["marketplace"] if orders else ""
        if not _gives_documents(marketplace):
            _record(conn, d, "none", f"{_title(marketplace)}: API не отдаёт документов передачи", now)
            continue
        batch = d["supply_id"] or next((o["supply_id"] for o in orders if o["supply_id"]), "") or ""
        try:
            docs = adapter.handover_documents([o["native_id"] for o in orders], batch_id=batch)
        except NotSupported as exc:
            _record(conn, d, "none", exc.for_seller(), now)
            continue
        except MarketplaceError as exc:
            _failed(conn, cfg, d, str(exc), retryable=exc.retryable, now=now)
            continue
        except Exception as exc:  # noqa: BLE001 - one hand-over must not stop the others
            log.exception("hand-over %s documents", d["handover_id"])
            _failed(conn, cfg, d, str(exc), retryable=True, now=now)
            continue
        with transaction(conn):
            for doc in docs:
                body: dict[str, Any] = {"handover_id": d["handover_id"], "kind": doc.kind, "format": doc.format,
                                        "data_b64": base64.b64encode(doc.data).decode("ascii"), "title": doc.title}
                if doc.width_mm and doc.height_mm:
                    body["width_mm"], body["height_mm"] = doc.width_mm, doc.height_mm
                send_to_site(conn, link, d["site"], "handover_document", body)
            conn.execute("UPDATE handover_documents SET state='done', attempts=attempts+1, error='', kinds=?,"
                         " updated_ts=? WHERE handover_id=?", (",".join(doc.kind for doc in docs), now, d["handover_id"]))
            for o in orders:
                log_event(conn, o["id"], "handover_documents", f"{d['handover_id']}: "
                          + "; ".join(doc.title for doc in docs), now)
        sent += 1
    return sent


def _gives_documents(marketplace: str) -> bool:
    try:
        return profile(marketplace).can.handover_documents
    except ValueError:
        return False


def _title(marketplace: str) -> str:
    try:
        return profile(marketplace).title
    except ValueError:
        return marketplace


def _record(conn: sqlite3.Connection, d: sqlite3.Row, state: str, note: str, now: float) -> None:
    with transaction(conn):
        conn.execute("UPDATE handover_documents SET state=?, attempts=attempts+1, error=?, updated_ts=? WHERE"
                     " handover_id=?", (state, note[:500], now, d["handover_id"]))


def _failed(conn: sqlite3.Connection, cfg: CloudConfig, d: sqlite3.Row, error: str, *, retryable: bool,
            now: float) -> None:
    """Not ready yet (or the marketplace did not answer): asked again with backoff; refused, or still not
    ready after MAX_ATTEMPTS: shown to the manager, in Russian, with what to do."""
    attempts = d["attempts"] + 1
    with transaction(conn):
        if retryable and attempts < MAX_ATTEMPTS:
            delay = min(cfg.jobs.retry_max_s, cfg.jobs.retry_base_s * 2 ** min(attempts - 1, 10))
            conn.execute("UPDATE handover_documents SET attempts=?, next_try=?, error=?, updated_ts=? WHERE"
                         " handover_id=?", (attempts, now + delay / max(cfg.time_scale, 1e-9), error[:500], now,
                                            d["handover_id"]))
            return
        conn.execute("UPDATE handover_documents SET state='failed', attempts=?, error=?, updated_ts=? WHERE"
                     " handover_id=?", (attempts, error[:500], now, d["handover_id"]))
        log_error(conn, "orders", f"{d['handover_id']}: " + FAILED_TEXT.format(error=error), d["account"])
