"""Benchmark: ingest 100,000 orders into the cloud (issue 5, point 10).

Each order goes the whole way a polled order goes: deduplication, card → item mapping, the stock check
and reservation in the append-only ledger, the pick task written to the site link's outbox, the
confirmation queued, the item marked for the stock push planner — on a real SQLite file (WAL), in
batches as a marketplace poll returns them (default 1,000 orders per transaction).

Baseline measured in the same run: the same number of bare INSERTs of the order rows alone into a
fresh file (what the disk and SQLite can do with no logic at all).

The machine is often shared: the ingest's CPU seconds (this process, user + system) and the load average
are printed too, and each figure is also given per CPU-second.

Last line: `orders_per_s=X` (targets, issue 19: ≥ 10,000 and ≥ 0.12 of the bare INSERTs of the same run).

`--db postgresql` runs the same again on PostgreSQL (a throwaway cluster of its own, cloud_sync.pg_cluster;
the bare INSERTs too) after the SQLite run, and ends `orders_per_s=<PostgreSQL> sqlite_orders_per_s=<SQLite>`.
The CPU figures there are this process's only (the server's CPU is not counted).

There it also measures the connection pool (cloud_sync.pg) beside its own baseline in the same run: a web
request (`GET /api/orders?limit=20` with an API token, the Flask app in this process: one connection opened
and closed per request) and a bare connection round (connect, one SELECT, close), each `--rounds` times
with the pool off and on, in alternating blocks so that the box's load weighs on both alike.

    .venv/bin/python bench/orders_ingest.py [--orders 100000] [--batch 1000] [--items 2000] [--db postgresql]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_sync import pg  # noqa: E402
from cloud_sync.access import users  # noqa: E402
from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature
from cloud_sync.config import parse_config  # noqa: E402
from cloud_sync.db import TEST_URL_ENV, connect, target, transaction
from cloud_sync.orders import intake
from cloud_sync.pg_cluster import Cluster  # noqa: E402
from cloud_sync.schema import open_db  # noqa: E402
from cloud_sync.stock import ledger  # noqa: E402
from cloud_sync.web.app import create_app  # noqa: E402
from marketplaces.base import Card, Order, OrderLine  # noqa: E402
from marketplaces.sandbox.seed import demo_items  # noqa: E402

ACCOUNTS = {"wb": "wildberries", "oz": "ozon", "ym": "yandex_market", "mm": "megamarket"}


def make_orders(n: int, n_items: int) -> list[Order]:
    now = datetime.now(UTC)
    out = []
    names = list(ACCOUNTS)
    for k in range(n):
        account = names[k % 4]
        idx = (k * 7919) % n_items + 1
        out.append(Order(native_id=str(1_000_000 + k), marketplace=ACCOUNTS[account], account=account,  # type: ignore[arg-type]
                         native_status="new", created_at=now,
                         lines=[OrderLine(card_id=f"{account}-{idx}", offer_id=f"MS-{idx:05d}", quantity=1 + k % 2,
                                          price=Decimal("990"))],
                         warehouse_id="1", ship_by=now + timedelta(hours=24 + k % 48), number=f"N{k}"))
    return out


def baseline(path: Path, batches: list[list[Order]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the bare INSERTs."""
    conn = connect(path)
    conn.execute("CREATE TABLE o (id INTEGER PRIMARY KEY, key TEXT UNIQUE, account TEXT, native_id TEXT, status TEXT,"
                 " created_at TEXT, ship_by TEXT, card TEXT, qty INTEGER, price TEXT)")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for batch in batches:
        with transaction(conn):
            conn.executemany("INSERT INTO o(key, account, native_id, status, created_at, ship_by, card, qty, price)"
                             " VALUES (?,?,?,?,?,?,?,?,?)",
                             [(f"{o.account}:{o.native_id}", o.account, o.native_id, o.native_status,
                               o.created_at.isoformat(), o.ship_by.isoformat() if o.ship_by else None,
                               o.lines[0].card_id, o.lines[0].quantity, str(o.lines[0].price)) for o in batch])
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    return dt, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--rounds", type=int, default=600, help="requests and connection rounds per pool setting")
    args = ap.parse_args()
    sqlite_rate = run(args)
    if args.db == "sqlite":
        print(f"orders_per_s={sqlite_rate:.0f}")
        return 0
    with Cluster() as cluster:
        # the development facility of cloud_sync.db: each file path below is a fresh schema of this cluster
        os.environ[TEST_URL_ENV] = cluster.url
        try:
            print("== postgresql (throwaway cluster, fsync off)")
            pg_rate = run(args)
            print("== postgresql: the connection pool beside no pool, same run")
            pool_figures(args.rounds)
        finally:
            os.environ.pop(TEST_URL_ENV, None)
    print(f"postgresql {pg_rate:,.0f} orders/s beside sqlite {sqlite_rate:,.0f} orders/s"
          f" = {pg_rate / sqlite_rate:.2f} of SQLite")
    print(f"orders_per_s={pg_rate:.0f} sqlite_orders_per_s={sqlite_rate:.0f}")
    return 0


def run(args: argparse.Namespace) -> float:
    """One whole measurement on the engine `connect` gives for a file path; prints it; the orders/s."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({"accounts": {a: {"marketplace": mp, "base_url": "http://127.0.0.1:9",
                                             "warehouses": {"1": "main"}} for a, mp in ACCOUNTS.items()},
                            "sites": {"site-1": {"warehouses": ["main"]}}}, env={})
        conn = open_db(Path(tmp) / "cloud.sqlite")
        items = demo_items(args.items)
        with transaction(conn):
            nomenclature.upsert_items(conn, [nomenclature.Item(id=i.item_id, name=i.name, article=i.article,
                                                               barcodes=[i.barcode]) for i in items])
            for a, mp in ACCOUNTS.items():
                catalog.import_cards(conn, a, mp, [Card(f"{a}-{i.index}", i.article, barcodes=[i.barcode])
                                                   for i in items])
            catalog.auto_link(conn, suggestions=False)
            # enough for most orders; every 10th demo item is scarce, so some orders come out short
            ledger.set_balances(conn, "main", {i.item_id: (i.stock * 40 if i.index % 10 else 2) for i in items})
        all_orders = make_orders(args.orders, args.items)
        batches = [all_orders[k:k + args.batch] for k in range(0, len(all_orders), args.batch)]
        base_s, base_cpu = baseline(Path(tmp) / "baseline.sqlite", batches)
        print(f"baseline: {args.orders} bare order INSERTs in {base_s:.2f} s = {args.orders / base_s:,.0f}/s")

        t0 = time.perf_counter()
        cpu0 = time.process_time()
        total = intake.IngestResult()
        for batch in batches:
            r = intake.ingest(conn, cfg, batch)
            total.new += r.new
            total.reserved += r.reserved
            total.short += r.short
            total.problems += r.problems
        dt = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        repoll = all_orders[:10_000]
        again = time.perf_counter()
        known = intake.ingest(conn, cfg, repoll).known  # a repeated poll: all already known
        again = time.perf_counter() - again
        outbox = conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0]
        moves = conn.execute("SELECT COUNT(*) FROM stock_moves WHERE kind='reserve'").fetchone()[0]
        print(f"ingested {total.new} orders in {dt:.2f} s: {total.reserved} reserved, {total.short} short,"
              f" {total.problems} problems; {moves} reservation moves, {outbox} pick tasks in the outbox")
        print(f"re-poll of {len(repoll):,} known orders: {len(repoll) / again:,.0f} orders/s ({known} recognised)")
        print(f"CPU: {cpu:.2f} s for the ingest = {args.orders / cpu:,.0f} orders per CPU-second;"
              f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"ratio to bare inserts: {(args.orders / dt) / (args.orders / base_s):.3f} wall,"
              f" {base_cpu / cpu:.3f} per CPU-second")
        conn.close()
    return args.orders / dt


def pool_figures(rounds: int) -> None:
    """Requests and bare connection rounds with the pool off and on (see the module doc); prints both."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.sqlite"
        conn = open_db(path)
        users.add_user(conn, "bench", "bench password 1", "owner")
        token = users.new_token(conn, "bench")
        conn.close()
        app = create_app(parse_config({"cloud": {"db_path": str(path)}}, env={}))
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        url, schema = target(path)

        def request() -> None:
            r = client.get("/api/orders?limit=20", headers=headers)
            assert r.status_code == 200, r.status_code

        def bare() -> None:
            c = pg.connect(url, schema=schema)
            c.execute("SELECT 1").fetchone()
            c.close()

        for name, fn in (("request GET /api/orders", request), ("connect + SELECT 1 + close", bare)):
            times: dict[bool, list[float]] = {False: [], True: []}
            block = max(1, rounds // 6)
            load = os.getloadavg()[0]
            for k in range(12):  # off, on, off, on ...: 6 blocks each
                pooled = bool(k % 2)
                pg.pooling = pooled
                for _ in range(block):
                    t0 = time.perf_counter()
                    fn()
                    times[pooled].append(time.perf_counter() - t0)
            pg.pooling = True
            load = (load + os.getloadavg()[0]) / 2

            def ms(xs: list[float], q: float) -> float:
                return sorted(xs)[int(q * (len(xs) - 1))] * 1000

            off, on = times[False], times[True]
            print(f"{name}: no pool p50 {ms(off, 0.5):.2f} ms p90 {ms(off, 0.9):.2f} ms,"
                  f" pool p50 {ms(on, 0.5):.2f} ms p90 {ms(on, 0.9):.2f} ms ({len(on)} each;"
                  f" {ms(off, 0.5) / ms(on, 0.5):.1f}x at the median); load average {load:.1f}")
        pg.close_pools()


if __name__ == "__main__":
    raise SystemExit(main())
