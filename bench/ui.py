"""bench/ui.py — server time of the manager's Orders (also searched and sorted), «Требует внимания», Products,
Prices and Stocks pages over 100,000 orders (four accounts, one per marketplace; one in 50 waiting for
stock), 20,000 items × 2 warehouses and 20,000 marketplace cards with their prices, on a real SQLite file.

Each page is requested through the app (logged in as a manager, the real auth hook, templates and
queries), first page and deeper pages, with and without filters (searches in Latin and in Cyrillic); the
time is measured around the WSGI call (server time, no network). Baseline, same run: /api/health (the
auth hook and Flask alone). The dashboard's first load: read in the request (a bare app, the baseline)
beside the running service's, whose default period was read at its start (`dashboard.warm`).
Last line: p95_ms=X (the worst of the pages); target <= 50 (issue 17); dashboard_first_ms,
dashboard_first_baseline_ms.

    .venv/bin/python bench/ui.py [--orders 100000] [--items 20000] [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_sync.access import users  # noqa: E402
from cloud_sync.config import parse_config  # noqa: E402
from cloud_sync.db import transaction  # noqa: E402
from cloud_sync.schema import open_db  # noqa: E402
from cloud_sync.web.app import create_app  # noqa: E402
from cloud_sync.web.pages import dashboard  # noqa: E402

STATUSES = ["new", "in_work", "reserved", "picking", "packed", "handed_over", "delivered", "cancelled"]
ACCOUNTS = {"wb1": "wildberries", "oz1": "ozon", "ym1": "yandex_market", "mm1": "megamarket"}


def build(db: str, n_orders: int, n_items: int) -> None:
    conn = open_db(db)
    rnd = random.Random(7)
    with transaction(conn):
        conn.executemany("INSERT INTO items(id, article, name) VALUES (?,?,?)",
                         [(f"I{i:06d}", f"ART-{i:06d}", f"Товар номер {i}") for i in range(n_items)])
        conn.executemany("INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts) VALUES (?,?,?,?,?)",
                         [(f"I{i:06d}", wh, rnd.randint(0, 50), 0, 0.0) for i in range(n_items) for wh in ("main", "spb")])
        accounts = list(ACCOUNTS)
        rows, lines = [], []
        for i in range(1, n_orders + 1):
            acc = accounts[i % 4]
            day = 1 + i % 28
            short = i % 50 == 0  # waiting for stock: «Требует внимания» lists them
            rows.append((i, f"{acc}:{i}", acc, ACCOUNTS[acc], str(i), str(i), "x", "", "short" if short else "new",
                         "in_work" if short else rnd.choice(STATUSES),
                         f"2026-11-{day:02d}T10:00:00+00:00", f"2026-11-{day:02d}T{rnd.randint(10, 23)}:00:00+00:00",
                         "main", 0.0, 0.0, f"not enough stock of I{i % n_items:06d} at main" if short else ""))
            lines.append((i, 1, f"c{i % n_items}", f"ART-{i % n_items:06d}", f"I{i % n_items:06d}", 1, 1, "990"))
        conn.executemany("INSERT INTO orders(id, key, account, marketplace, native_id, number, native_status,"
                         " native_substatus, stage, status, created_at, ship_by, warehouse, ingested_ts, updated_ts, problem)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, item_id, quantity, units, price)"
                         " VALUES (?,?,?,?,?,?,?,?)", lines)
        cards, links, prices = [], [], []
        for i in range(n_items):  # every item on one account's cards: 20,000 cards in all
            acc = accounts[i % 4]
            cards.append((acc, f"c{i}", ACCOUNTS[acc], f"ART-{i:06d}", f"Карточка {i}", f'["460{i:010d}"]',
                          f"Категория {i % 40}", 0.0))
            links.append((acc, f"c{i}", f"I{i:06d}", "article", 0.0))
            prices.append((acc, f"c{i}", f"ART-{i:06d}", str(500 + i % 3000), "marketplace", "2026-11-01T00:00:00"))
        conn.executemany("INSERT INTO cards(account, native_id, marketplace, offer_id, title, barcodes, category,"
                         " seen_ts) VALUES (?,?,?,?,?,?,?,?)", cards)
        conn.executemany("INSERT INTO card_links(account, card_id, item_id, source, linked_ts) VALUES (?,?,?,?,?)",
                         links)
        conn.executemany("INSERT INTO price_list(account, card_id, offer_id, price, source, updated_at)"
                         " VALUES (?,?,?,?,?,?)", prices)
    conn.execute("ANALYZE")
    conn.close()


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 20 else max(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench-ui-")
    db = str(Path(tmp.name) / "cloud.sqlite")
    t0 = time.perf_counter()
    build(db, args.orders, args.items)
    print(f"built {args.orders} orders and {args.items} items x 2 warehouses in {time.perf_counter() - t0:.1f}s")
    cfg = parse_config({"cloud": {"db_path": db}, "accounts": {
        a: {"marketplace": mp, "base_url": "http://127.0.0.1:9"} for a, mp in ACCOUNTS.items()}})
    conn = open_db(db)
    users.add_user(conn, "bench", "bench password 1", "manager")
    conn.close()
    app = create_app(cfg)
    client = app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"name": "bench", "password": "bench password 1", "csrf_token": token}
                       ).status_code == 302
    t = time.perf_counter()
    assert client.get("/dashboard").status_code == 200
    first_baseline = (time.perf_counter() - t) * 1000  # summed in the request, as a bare app does
    dashboard._CACHE.clear()
    dashboard.warm(db)  # what the running service does as it starts
    while dashboard._READING:
        time.sleep(0.01)
    t = time.perf_counter()
    assert client.get("/dashboard").status_code == 200
    first = (time.perf_counter() - t) * 1000
    print(f"dashboard first load: {first:.1f} ms (read at the start); baseline {first_baseline:.1f} ms"
          " (read in the request)")
    rnd = random.Random(1)
    urls = {
        "baseline /api/health": lambda: "/api/health",
        "orders": lambda: rnd.choice(["/orders", f"/orders?page={rnd.randint(1, 200)}",
                                      f"/orders?account={rnd.choice(list(ACCOUNTS))}",
                                      f"/orders?status={rnd.choice(STATUSES)}&page={rnd.randint(1, 20)}"]),
        "orders search/sort": lambda: rnd.choice([f"/orders?q={rnd.randint(1, args.orders)}",
                                                  f"/orders?q=ART-{rnd.randint(0, args.items - 1):06d}",
                                                  "/orders?sort=-created", f"/orders?sort=number&page={rnd.randint(1, 50)}"]),
        "attention": lambda: "/attention",
        "products": lambda: rnd.choice(["/products", f"/products?page={rnd.randint(1, 100)}",
                                        f"/products?account={rnd.choice(list(ACCOUNTS))}",
                                        f"/products?q=ART-{rnd.randint(0, args.items - 1):06d}",
                                        "/products?sort=-offer_id"]),
        "prices": lambda: rnd.choice([f"/prices?account={rnd.choice(list(ACCOUNTS))}",
                                      f"/prices?account={rnd.choice(list(ACCOUNTS))}&page={rnd.randint(1, 40)}",
                                      f"/prices?account=wb1&q=ART-{rnd.randint(0, args.items - 1):06d}",
                                      f"/prices?account=wb1&q=Карточка {rnd.randint(0, args.items - 1)}",
                                      f"/prices?account=oz1&q=товар НОМЕР {rnd.randint(0, args.items - 1)}",
                                      "/prices?account=oz1&sort=-price"]),
        "stocks": lambda: rnd.choice(["/stocks", f"/stocks?page={rnd.randint(1, 800)}", "/stocks?warehouse=spb",
                                      f"/stocks?q=ART-{rnd.randint(0, args.items - 1):06d}"]),
    }
    results = {}
    for name, make in urls.items():
        for _ in range(5):
            client.get(make())  # warm-up
        times = []
        for _ in range(args.requests):
            url = make()
            t = time.perf_counter()
            r = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (url, r.status_code)
        results[name] = times
        print(f"{name:24} median={statistics.median(times):7.1f} ms  p95={p95(times):7.1f} ms  max={max(times):7.1f} ms")
    worst = max(p95(results[name]) for name in results if not name.startswith("baseline"))
    print(f"p95_ms={worst:.1f} dashboard_first_ms={first:.1f} dashboard_first_baseline_ms={first_baseline:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
