"""A seller's jobs read and write that seller's store only: seller alfa's service (its jobs, stock pusher,
leases) runs against its WB sandbox — new orders polled, cards read — while seller beta's
store, holding an order of beta's own, and the main seller's store stay exactly as they were. Each
seller's leases are in its own store."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cloud_sync import tenants
from cloud_sync.config import CloudConfig, load_config
from cloud_sync.db import connect
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync
from cloud_sync.service.cloud import CloudService

from .conftest import _toml, store_snapshot, wait_for

pytestmark = pytest.mark.slow


def _seller(main: CloudConfig, tenant: str, info: dict) -> CloudConfig:
    made = tenants.add(main, tenant, name=f"{tenant} ООО")
    conf = made.tenant.folder / "cloud.toml"
    conf.write_text(conf.read_text("utf-8") + (
        f"\n[jobs]\norders_poll_s = 0.5\n\n[accounts.wb-{tenant}]\nmarketplace = \"wildberries\"\n"
        f"base_url = {_toml(info['url'])}\ncredentials = {_toml(info['credentials'])}\n"
        f'default_warehouse = "site-1"\ntime_scale = 20.0\n'), "utf-8")
    return tenants.load(main, tenant)


def _count(path: str, sql: str) -> int:
    conn = connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_a_sellers_jobs_touch_its_own_store_only(tmp_path: Path, sandbox_process, broker) -> None:
    alfa_mp, beta_mp = sandbox_process("wildberries", 21), sandbox_process("wildberries", 22)
    main_file = tmp_path / "cloud.toml"
    main_file.write_text(f'[cloud]\ndb_path = "main.sqlite"\nport = 0\n[tenants]\ndir = "sellers"\n'
                         f'[link]\nport = {broker.port}\n', "utf-8")
    main = load_config(main_file)
    open_db(main.db_path).close()
    alfa, beta = _seller(main, "alfa", alfa_mp), _seller(main, "beta", beta_mp)
    # beta's own data: its order, polled once by beta's own `sync orders`
    httpx.post(f"{beta_mp['url']}/_sandbox/orders", json={"count": 1}, timeout=10).raise_for_status()
    conn = open_db(beta.db_path)
    try:
        adapters, _ = accounts.open_with_settings(conn, beta)
        sync.sync_cards(conn, beta, adapters)
        sync.sync_orders(conn, beta, adapters)
    finally:
        conn.close()
    assert _count(beta.db_path, "SELECT COUNT(*) FROM orders WHERE account='wb-beta'") == 1
    beta_before, main_before = store_snapshot(beta.db_path), store_snapshot(main.db_path)

    httpx.post(f"{alfa_mp['url']}/_sandbox/orders", json={"count": 2}, timeout=10).raise_for_status()
    service = CloudService(alfa)
    service.build()
    service.run()  # its jobs, stock pusher and leases, as the host runs them (no web server needed here)
    try:
        wait_for("alfa's orders polled by its job", lambda: _count(
            alfa.db_path, "SELECT COUNT(*) FROM orders WHERE account='wb-alfa'") == 2, 60)
        wait_for("alfa's cards read at its start", lambda: _count(
            alfa.db_path, "SELECT COUNT(*) FROM cards WHERE account='wb-alfa'"), 30)
        time.sleep(1.0)
        leased = _count(alfa.db_path, "SELECT COUNT(*) FROM job_leases WHERE owner IS NOT NULL")
    finally:
        service.stop()
    assert leased > 0  # alfa's leases are in alfa's store...
    assert _count(beta.db_path, "SELECT COUNT(*) FROM job_leases") == 0  # ...and none in beta's
    assert store_snapshot(beta.db_path) == beta_before
    assert store_snapshot(main.db_path) == main_before
    assert _count(alfa.db_path, "SELECT COUNT(*) FROM orders WHERE account='wb-beta'") == 0
