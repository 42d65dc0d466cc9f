"""Integer ids handed to a statement as a JSON array (`IN (SELECT … FROM json_each(?))`) on PostgreSQL: the
layer's json_each gives text values, SQLite's give integers, so an integer id is compared with a cast.
Found by bench/scale.py: with an order waiting for stock, every stock delta and orders poll failed with
`operator does not exist: bigint = text`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from cloud_sync import pg
from cloud_sync.orders import waiting
from cloud_sync.pg_cluster import Cluster, available
from cloud_sync.schema import open_db


@pytest.fixture(scope="module")
def store() -> Iterator[pg.Connection]:
    if not available():
        pytest.fail("PostgreSQL server binaries not installed: make install provides it")
    with Cluster() as cluster:
        pg.connect(cluster.url, schema="cloud").close()
        conn = open_db(cluster.url.replace("/postgres?", "/postgres?options=-csearch_path%3Dcloud&"))
        yield conn
        conn.close()


def test_waiting_orders_found_by_their_candidate_ids(store: pg.Connection) -> None:
    now = time.time()
    oid = store.execute("INSERT INTO orders(key, account, marketplace, native_id, stage, status, created_at,"
                        " warehouse, ingested_ts, updated_ts) VALUES ('wb:1', 'wb', 'wildberries', '1', 'short',"
                        " 'new', '2026-12-07T00:00:00', 'main', ?, ?)", (now, now)).lastrowid
    store.execute("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, item_id, quantity, units, price)"
                  " VALUES (?, 1, 'c1', 'o1', 'i1', 1, 1, '100')", (oid,))
    store.execute("INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts) VALUES"
                  " ('i1', 'main', 2, 0, ?)", (now,))  # stock came: the order may be served now
    waiters = waiting.Waiters(store)
    assert waiters.candidates("i1", "main") == {oid}
    rows = waiting._waiting_rows(store, {("i1", "main")}, waiters=waiters)
    assert [r["id"] for r in rows] == [oid]
    lines = store.execute("SELECT l.order_id FROM order_lines l WHERE l.order_id IN"
                          " (SELECT CAST(value AS INTEGER) FROM json_each(?))", (json.dumps([oid]),)).fetchall()
    assert [r[0] for r in lines] == [oid]
