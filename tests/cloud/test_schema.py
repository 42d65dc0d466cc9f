"""The schema's parts keep the keys their migrations were recorded under before the cloud was cut into
rooms: a database made by an earlier version opens without running any of its scripts again."""

from __future__ import annotations

from cloud_sync import pg, schema

# what cloud_sync/db.py SCHEMA_MODULES listed when every part was a flat module (b36c087): never change
HISTORIC_KEYS = [
    "cloud_sync.nomenclature", "cloud_sync.catalog", "cloud_sync.stock", "cloud_sync.orders", "cloud_sync.pricing",
    "cloud_sync.price_rules", "cloud_sync.reports", "cloud_sync.alerts", "cloud_sync.webhooks",
    "cloud_sync.onec.store", "cloud_sync.users", "cloud_sync.secrets", "sitelink.store",
]


def test_schema_parts_keep_their_historic_keys_in_order():
    keys = [key for key, _ in schema.PARTS]
    assert keys[:len(HISTORIC_KEYS)] == HISTORIC_KEYS  # parts added since come after them
    assert len(set(keys)) == len(keys)
    assert all(module.MIGRATIONS for _, module in schema.PARTS)


def test_an_open_database_runs_nothing_again(tmp_path):
    conn = schema.open_db(tmp_path / "cloud.sqlite")
    # (on PostgreSQL also the engine's own part, cloud_sync.pg's functions)
    recorded = {tuple(r) for r in conn.execute("SELECT module, idx FROM schema_migrations WHERE module != ?",
                                                (pg.COMPAT_KEY,))}
    assert recorded == {(key, i) for key, module in schema.PARTS for i in range(len(module.MIGRATIONS))}
    assert schema.migrate(conn) == []
    conn.close()
