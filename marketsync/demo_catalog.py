"""The demo's 1C catalog loaded straight into a cloud database: the demo sandboxes' items as the 1C
nomenclature and their stock as 1C balances — what the demo's 1C would send, for tests and benches that
start a cloud without a CommerceML exchange. The service itself never seeds anything.
"""

from __future__ import annotations

import sqlite3

from cloud_sync.catalog import nomenclature
from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.stock import ledger
from marketplaces.sandbox.seed import demo_items


def seed_demo(conn: sqlite3.Connection, cfg: CloudConfig, n: int, seed: int = 7) -> int:
    """Load the demo catalog as the 1C nomenclature and its stock as 1C balances (only where the ledger is
    empty)."""
    items = demo_items(n, seed)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id=i.item_id, name=i.name, article=i.article,
                                                           barcodes=[i.barcode], marked=i.marked) for i in items])
        if conn.execute("SELECT 1 FROM stock_levels LIMIT 1").fetchone() is None:
            ledger.set_balances(conn, cfg.default_warehouse, {i.item_id: i.stock for i in items}, source="1c")
    return len(items)
