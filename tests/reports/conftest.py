"""Fixtures for the report tests: a real SQLite tenant database with items, linked cards (through the
catalog's own API), stock levels and FBO stock."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger
from marketplaces.base import Card


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path / "tenant.sqlite")
    with transaction(conn):
        nom.upsert_items(conn, [
            nom.Item(id="i1", name="Футболка", article="MS-1", barcodes=["4607000000011"]),
            nom.Item(id="i2", name="Кружка", article="MS-2", barcodes=["4607000000028"]),
        ])
        catalog.import_cards(conn, "wb1", "wildberries", [
            Card(native_id="101", offer_id="MS-1-S", group_id="100", price=Decimal(1000)),
            Card(native_id="102", offer_id="MS-1-M", group_id="100", price=Decimal(1000)),
            Card(native_id="201", offer_id="MS-2x2", group_id="200", price=Decimal(500)),
            Card(native_id="301", offer_id="ODD-1", group_id="300"),  # never linked
        ])
        catalog.link(conn, "wb1", "101", "i1")
        catalog.link(conn, "wb1", "102", "i1")
        catalog.link(conn, "wb1", "201", "i2", 2)
        catalog.record_warehouses(conn, "wb1", [("W-FBS", "Мой склад", "fbs", "main"),
                                                ("W-FBO", "Коледино", "fbo", None)])
        ledger.record_move(conn, "i1", "main", "balance", on_hand_delta=10)
        ledger.record_move(conn, "i1", "main", "reserve", reserved_delta=3)
        ledger.record_move(conn, "i2", "main", "balance", on_hand_delta=9)
        ledger.record_move(conn, "i2", "spb", "balance", on_hand_delta=4)
        ledger.record_fbo(conn, "wb1", [("101", "W-FBO", 25), ("201", "W-FBO", 7)])
    yield conn
    conn.close()


