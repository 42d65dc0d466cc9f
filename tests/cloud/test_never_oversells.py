"""Proof it never oversells (issue 5, point 9): concurrent orders from all four marketplaces hit scarce items.

Hypothesis draws the stock of a few scarce items and a stream of orders (account, item, quantity, and
whether the marketplace later cancels it). Four threads — one per marketplace, each with its own SQLite
connection to the same WAL file, as the polling jobs run — ingest their orders while a fifth makes the
marketplace confirmations and a watcher reads the ledger continuously. Asserted: reserved ≤ on hand
(available never negative) at every reading; at the end every reservation belongs to a live order and
sums to the level; no order was confirmed on a marketplace without its units reserved.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.db import connect
from cloud_sync.orders import intake, mp_actions, records
from cloud_sync.schema import open_db

from .conftest import ACCOUNTS, ShopWindow, card_id, make_config, order, seed

N_ITEMS = 4

scenario = st.tuples(
    st.lists(st.integers(0, 3), min_size=N_ITEMS, max_size=N_ITEMS),  # stock of each scarce item
    st.lists(st.tuples(st.sampled_from(sorted(ACCOUNTS)), st.integers(1, N_ITEMS), st.integers(1, 3), st.booleans()),
             min_size=1, max_size=40),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_concurrent_orders_from_all_marketplaces_never_oversell(case):
    stocks, stream = case
    cfg = make_config()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "cloud.sqlite")
        conn = open_db(path)
        items = seed(conn, N_ITEMS, balances=False)
        from cloud_sync.db import transaction
        from cloud_sync.stock import ledger

        with transaction(conn):
            ledger.set_balances(conn, "main", {i.item_id: s for i, s in zip(items, stocks, strict=True)})
        windows = {name: ShopWindow(name, mp, wh) for name, (mp, wh) in ACCOUNTS.items()}
        per_account: dict[str, list] = {name: [] for name in ACCOUNTS}
        for n, (account, idx, qty, cancel_later) in enumerate(stream):
            per_account[account].append((order(account, f"n{n}", card_id(account, idx), qty), cancel_later))

        violations: list[str] = []
        done = threading.Event()

        def marketplace(account: str) -> None:
            c = connect(path)
            try:
                for o, cancel_later in per_account[account]:
                    intake.ingest(c, cfg, [o])
                    if cancel_later:
                        o.native_status = {"wildberries": "cancel", "ozon": "cancelled",
                                           "yandex_market": "CANCELLED", "megamarket": "CUSTOMER_CANCELED"}[o.marketplace]
                        intake.ingest(c, cfg, [o])
            finally:
                c.close()

        def confirmer() -> None:
            c = connect(path)
            try:
                while not done.is_set():
                    mp_actions.run_actions(c, cfg, windows)
                mp_actions.run_actions(c, cfg, windows)
            finally:
                c.close()

        def watcher() -> None:
            c = connect(path)
            try:
                while not done.is_set():
                    for r in c.execute("SELECT item_id, on_hand, reserved FROM stock_levels"):
                        if r["reserved"] > r["on_hand"]:
                            violations.append(f"{r['item_id']}: reserved {r['reserved']} > on hand {r['on_hand']}")
            finally:
                c.close()

        threads = [threading.Thread(target=marketplace, args=(a,)) for a in ACCOUNTS]
        helpers = [threading.Thread(target=confirmer), threading.Thread(target=watcher)]
        for t in helpers + threads:
            t.start()
        for t in threads:
            t.join(60)
        done.set()
        for t in helpers:
            t.join(60)

        assert violations == []
        for i, s in zip(items, stocks, strict=True):
            lv = ledger.level(conn, i.item_id, "main")
            assert lv.on_hand == s and 0 <= lv.reserved <= s
            live = conn.execute(
                "SELECT COALESCE(SUM(l.units), 0) FROM orders o JOIN order_lines l ON l.order_id=o.id"
                " WHERE l.item_id=? AND o.stage='reserved'", (i.item_id,)).fetchone()[0]
            assert lv.reserved == live
        confirmed = {(name, m[0]) for name, w in windows.items() for m in w.moves if m[1] == "confirm"}
        for account, native_id in confirmed:
            key = records.order_key(account, native_id)
            units = conn.execute("SELECT SUM(l.units) FROM orders o JOIN order_lines l ON l.order_id=o.id"
                                 " WHERE o.key=?", (key,)).fetchone()[0]
            reserved_ever = conn.execute("SELECT COALESCE(SUM(reserved_delta), 0) FROM stock_moves WHERE ref=?"
                                         " AND kind='reserve'", (key,)).fetchone()[0]
            assert reserved_ever == units, f"{key} confirmed without its {units} units reserved"
        shorts = conn.execute("SELECT COUNT(*) FROM orders WHERE stage='short'").fetchone()[0]
        reserved_moves = conn.execute("SELECT COUNT(*) FROM stock_moves WHERE kind='reserve'").fetchone()[0]
        assert shorts + reserved_moves + conn.execute(
            "SELECT COUNT(*) FROM orders WHERE stage='cancelled' AND id NOT IN (SELECT o.id FROM orders o JOIN"
            " stock_moves m ON m.ref=o.key AND m.kind='reserve')").fetchone()[0] == len(stream)
        conn.close()
