"""The stock push planner: coalescing, priorities, oversell protection, the zero guard, retries."""

from __future__ import annotations

import time

from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.orders import intake, listing
from cloud_sync.stock import ledger, why
from cloud_sync.stock import push as stock_push

from .conftest import ACCOUNTS, card_id, make_config, order, seed


def _send_all(conn, cfg, windows, now=None):
    for name, w in windows.items():
        while stock_push.send_account(conn, cfg, name, w, now=now).sent:
            pass


def test_every_card_on_every_account_gets_its_number(conn, cfg, windows):
    items = seed(conn, 5)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    for name, (_, wh) in ACCOUNTS.items():
        for i in items:
            assert windows[name].shown[f"{card_id(name, i.index)}@{wh}"] == i.stock
    assert stock_push.pending(conn) == {}
    assert listing.summary(conn)["stock_pushes"] == 5 * 4


def test_changes_coalesce_latest_wins(conn, cfg, windows):
    items = seed(conn, 3)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    item = items[0].item_id
    for qty in (7, 8, 9, 3):  # four 1C updates before the pusher runs
        with transaction(conn):
            ledger.record_balance(conn, item, "main", qty)
        stock_push.plan(conn, cfg)
    rows = conn.execute("SELECT account, quantity FROM stock_push_queue ORDER BY account").fetchall()
    assert [tuple(r) for r in rows] == [("mm", 3), ("oz", 3), ("wb", 3), ("ym", 3)]
    before = len(windows["wb"].pushes)
    _send_all(conn, cfg, windows)
    assert len(windows["wb"].pushes) == before + 1
    assert windows["wb"].shown[f"{card_id('wb', 1)}@10"] == 3


def test_a_change_undone_before_sending_sends_nothing(conn, cfg, windows):
    items = seed(conn, 2)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    with transaction(conn):
        ledger.record_balance(conn, items[0].item_id, "main", items[0].stock + 5)
    stock_push.plan(conn, cfg)
    with transaction(conn):
        ledger.record_balance(conn, items[0].item_id, "main", items[0].stock)
    stock_push.plan(conn, cfg)
    assert stock_push.pending(conn) == {}


def test_oversell_protection_last_unit_zeroes_every_other_card_first(conn, cfg, windows):
    items = seed(conn, 10)
    scarce = next(i for i in items if i.stock == 2)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    # an increase of another item is waiting when the last units of the scarce one are sold
    with transaction(conn):
        ledger.record_balance(conn, items[0].item_id, "main", items[0].stock + 10)
    # (sold on Yandex.Market, which leaves its own stock to us: WB and Ozon take an order off their card by
    # themselves, so their own card needs no push — tests/cloud/test_marketplace_own_decrement.py)
    intake.ingest(conn, cfg, [order("ym", "y1", card_id("ym", scarce.index), qty=2)])
    # the zeros were queued by the very transaction that reserved the last units
    zeros = conn.execute("SELECT account, quantity, priority FROM stock_push_queue WHERE item_id=?",
                         (scarce.item_id,)).fetchall()
    assert sorted(tuple(z) for z in zeros) == [("mm", 0, 0), ("oz", 0, 0), ("wb", 0, 0), ("ym", 0, 0)]
    stock_push.plan(conn, cfg)
    for name, (_, wh) in ACCOUNTS.items():
        res = stock_push.send_account(conn, cfg, name, windows[name])
        first = windows[name].pushes[-1]
        assert res.sent == 1 and first[0].card_id == card_id(name, scarce.index) and first[0].quantity == 0
        assert windows[name].shown[f"{card_id(name, scarce.index)}@{wh}"] == 0
    _send_all(conn, cfg, windows)
    assert windows["oz"].shown[f"{card_id('oz', 1)}@20"] == items[0].stock + 10


def test_allocation_rules_and_pack_size(conn, windows):
    cfg = make_config()
    cfg.accounts["oz"].allocation.share = 0.5
    cfg.accounts["oz"].allocation.buffer = 1
    cfg.accounts["ym"].allocation.max_listed = 3
    items = seed(conn, 1)  # item 1 has 25 units
    with transaction(conn):
        catalog.link(conn, "mm", card_id("mm", 1), items[0].item_id, pack=4)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert windows["wb"].shown["wb-1@10"] == 25
    assert windows["oz"].shown["oz-1@20"] == 11  # floor(25 * 0.5) - 1
    assert windows["ym"].shown["ym-1@30"] == 3
    assert windows["mm"].shown["mm-1@40"] == 6  # 25 // 4
    with transaction(conn):
        ledger.record_fbo(conn, "oz", [("oz-1", "fbo-1", 40)])
    text = why.why(conn, cfg, items[0].article, "oz", lang="en").text()
    assert "FBO (the marketplace's own stock, not ours; never pushed): 40 at fbo-1" in text
    assert "floor(25 × 0.5) = 12, − 1 = 11" in text and "marketplace shows 11" in text


def test_zero_guard_holds_a_mass_zeroing_until_confirmed(conn, cfg, windows):
    items = seed(conn, 10)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    with transaction(conn):  # a broken 1C export: half the items come as 0
        ledger.set_balances(conn, "main", {i.item_id: 0 for i in items[:5]})
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert all(windows["wb"].shown[f"{card_id('wb', i.index)}@10"] == i.stock for i in items if i.stock)
    held = stock_push.holds(conn, "wb")
    assert len(held) == 1 and "would zero" in held[0]["reason"] and held[0]["held"] >= 4
    # the alert was queued with it
    assert conn.execute("SELECT COUNT(*) FROM alert_outbox WHERE kind='zero_guard_hold'").fetchone()[0] == 4
    stock_push.confirm_hold(conn, held[0]["id"], by="test")
    _send_all(conn, cfg, windows)
    assert all(windows["wb"].shown[f"{card_id('wb', i.index)}@10"] == 0 for i in items[:5])
    assert stock_push.holds(conn, "wb") == []


def test_small_zeroing_passes_the_guard(conn, cfg, windows):
    items = seed(conn, 10)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    with transaction(conn):
        ledger.record_balance(conn, items[0].item_id, "main", 0)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert windows["wb"].shown["wb-1@10"] == 0 and stock_push.holds(conn) == []


def test_zero_from_missing_or_stale_source_is_held(conn, windows):
    cfg = make_config(stale_after_s=3600)
    items = seed(conn, 10)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    later = time.time() + 7200  # two hours without a word from 1C or the site
    with transaction(conn):
        ledger.record_move(conn, items[0].item_id, "main", "writeoff", on_hand_delta=-items[0].stock, now=later)
        conn.execute("UPDATE stock_sources SET ts=ts-7200")
    stock_push.plan(conn, cfg, now=later)
    _send_all(conn, cfg, windows, now=later)
    assert windows["wb"].shown["wb-1@10"] == items[0].stock
    assert "stale" in stock_push.holds(conn, "wb")[0]["reason"]


def test_a_sale_is_never_held_by_the_guard(conn, windows):
    cfg = make_config(zero_guard_share=0.0, stale_after_s=1)
    items = seed(conn, 10)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    conn.execute("UPDATE stock_sources SET ts=ts-100")
    scarce = next(i for i in items if i.stock == 2)
    intake.ingest(conn, cfg, [order("oz", "o1", card_id("oz", scarce.index), qty=2)])
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert windows["wb"].shown[f"wb-{scarce.index}@10"] == 0
    assert stock_push.holds(conn) == []


def test_a_sale_releases_the_zero_the_guard_held_for_its_card(conn, windows):
    # a second cabinet that lists half of what is free, less two: its first plan zeroes 4 of 10 cards
    # (held by the guard), and later a sale on another marketplace takes an item's last units
    cfg = make_config()
    cfg.accounts["wb"].allocation.share = 0.5
    cfg.accounts["wb"].allocation.buffer = 2
    items = seed(conn, 10)
    with transaction(conn):  # what the cabinet showed before marketsync: its own numbers
        conn.executemany("INSERT INTO stock_published(account, card_id, warehouse_id, quantity, ts)"
                         " VALUES ('wb', ?, '10', 5, 0)", [(card_id("wb", i.index),) for i in items])
    for i in items:
        windows["wb"].shown[f"{card_id('wb', i.index)}@10"] = 5
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    hold = stock_push.holds(conn, "wb")
    assert len(hold) == 1 and "would zero" in hold[0]["reason"]
    scarce = next(i for i in items if i.stock == 2)  # wb would show 0 of its 2; held, it shows 5
    assert windows["wb"].shown[f"wb-{scarce.index}@10"] == 5
    intake.ingest(conn, cfg, [order("oz", "o1", card_id("oz", scarce.index), qty=2)])
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert windows["wb"].shown[f"wb-{scarce.index}@10"] == 0  # gone: no longer for sale there
    assert stock_push.holds(conn, "wb")[0]["held"] == hold[0]["held"] - 1  # the rest stays held


def test_retryable_item_errors_are_retried_others_fail_and_are_reported(conn, cfg, windows):
    seed(conn, 2)
    windows["wb"].fail_items = {"wb-1@10": True, "wb-2@10": False}
    stock_push.plan(conn, cfg)
    now = time.time()
    res = stock_push.send_account(conn, cfg, "wb", windows["wb"], now=now)
    assert (res.ok, res.retry, res.failed) == (0, 1, 1)
    assert stock_push.pending(conn, "wb") == {"pending": 1, "failed": 1}
    windows["wb"].fail_items = {}
    assert stock_push.send_account(conn, cfg, "wb", windows["wb"], now=now).sent == 0  # backing off
    assert stock_push.send_account(conn, cfg, "wb", windows["wb"], now=now + 10).ok == 1
    assert listing.summary(conn)["errors"] == 1


def test_marketplace_minimum_interval_between_updates(conn, windows):
    cfg = make_config()
    cfg.accounts["oz"].min_stock_interval_s = 30
    items = seed(conn, 1)
    stock_push.plan(conn, cfg)
    t0 = time.time()
    stock_push.send_account(conn, cfg, "oz", windows["oz"], now=t0)
    with transaction(conn):
        ledger.record_balance(conn, items[0].item_id, "main", 3)
    stock_push.plan(conn, cfg, now=t0 + 1)
    assert stock_push.send_account(conn, cfg, "oz", windows["oz"], now=t0 + 2).sent == 0
    assert stock_push.send_account(conn, cfg, "oz", windows["oz"], now=t0 + 31).ok == 1


def test_zero_for_an_item_no_source_ever_reported_is_held(conn, cfg, windows):
    items = seed(conn, 10, balances=False)
    with transaction(conn):  # 1C reports every item but the first
        ledger.set_balances(conn, "main", {i.item_id: 5 for i in items[1:]})
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert "wb-1@10" not in windows["wb"].shown and windows["wb"].shown["wb-2@10"] == 5
    (hold,) = stock_push.holds(conn, "wb")
    assert "missing or stale" in hold["reason"] and hold["held"] == 1


def test_marketplace_warehouses_sharing_an_own_warehouse_split_the_number(conn, windows):
    cfg = make_config()
    cfg.accounts["wb"].warehouses = {"10": "main", "11": "main", "12": "main"}
    items = seed(conn, 2)  # item 1: 25 units, item 2: 4
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    shown = windows["wb"].shown
    assert [shown[f"wb-1@{w}"] for w in (10, 11, 12)] == [9, 8, 8]
    assert [shown[f"wb-2@{w}"] for w in (10, 11, 12)] == [2, 1, 1]
    assert "split between the 3 marketplace warehouses" in why.why(conn, cfg, items[0].item_id, "wb", lang="en").text()


def test_a_push_raced_by_a_newer_change_is_recomputed_not_lost(conn, cfg, windows):
    items = seed(conn, 10)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    scarce = next(i for i in items if i.stock == 2)
    intake.ingest(conn, cfg, [order("oz", "o1", card_id("oz", scarce.index), qty=2)])  # zeros queued

    class Racing:
        """While WB takes the zero, the buyer cancels and the planner drops the now-pointless zero."""

        name, account = "wildberries", "wb"

        def push_stocks(self, levels):
            o = conn.execute("SELECT id FROM orders WHERE key='oz:o1'").fetchone()[0]
            with transaction(conn):
                intake.cancel(conn, cfg, o, reason="buyer", tell_marketplace=False)
            stock_push.plan(conn, cfg)
            return windows["wb"].push_stocks(levels)

    stock_push.send_account(conn, cfg, "wb", Racing())
    assert windows["wb"].shown[f"wb-{scarce.index}@10"] == 0  # the zero did land
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    assert windows["wb"].shown[f"wb-{scarce.index}@10"] == 2  # and was put right


def test_a_planner_round_reads_and_writes_its_items_in_a_few_statements(conn, cfg, windows):
    """The planner holds the store's writer lock for its round: with 40 accounts a round of 25 items was
    ~4,000 statements one by one (the item's level read once per card), which stopped every other writer
    for seconds (bench/scale.py's lock counts). Its statements no longer grow with items × cards; the
    numbers it queues are the same (the tests above)."""
    items = seed(conn, 25)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    with transaction(conn):
        for i in items:
            ledger.record_balance(conn, i.item_id, "main", i.stock + 3)
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        res = stock_push.plan(conn, cfg)
    finally:
        conn.set_trace_callback(None)
    assert (res.items, res.queued) == (25, 25 * len(ACCOUNTS))
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]  # (SQLite traces a write per row)
    assert len(reads) <= 12, reads  # 25 items x 4 accounts: 325 before
    _send_all(conn, cfg, windows)
    for name, (_, wh) in ACCOUNTS.items():
        for i in items:
            assert windows[name].shown[f"{card_id(name, i.index)}@{wh}"] == i.stock + 3


def test_an_order_taking_the_last_units_leaves_the_planner_nothing_to_do(conn, cfg, windows):
    """The zeros of an item sold out are planned in the order's own transaction; the item is not marked
    for the planner as well, whose round would recompute the same numbers and hold the write lock while
    the senders push those zeros. The order's other items still are."""
    items = seed(conn, 10)
    scarce = next(i for i in items if i.stock == 2)
    other = next(i for i in items if i.stock > 3)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    intake.ingest(conn, cfg, [order("ym", "y1", card_id("ym", scarce.index), qty=2),
                              order("ym", "y2", card_id("ym", other.index), qty=1)])
    dirty = {r[0] for r in conn.execute("SELECT item_id FROM stock_dirty")}
    assert dirty == {other.item_id}
    zeros = conn.execute("SELECT account, quantity, priority FROM stock_push_queue WHERE item_id=?",
                         (scarce.item_id,)).fetchall()
    assert sorted(tuple(z) for z in zeros) == [("mm", 0, 0), ("oz", 0, 0), ("wb", 0, 0), ("ym", 0, 0)]
    assert stock_push.plan(conn, cfg).items == 1  # the other item alone
    _send_all(conn, cfg, windows)
    for name, (_, wh) in ACCOUNTS.items():
        assert windows[name].shown[f"{card_id(name, scarce.index)}@{wh}"] == 0
        assert windows[name].shown[f"{card_id(name, other.index)}@{wh}"] == other.stock - 1


def test_a_number_changed_and_changed_back_during_its_push_is_not_written_again(conn, cfg, windows):
    """While WB takes a card's new number, the stock moves on and comes back to that very number (a sale and
    its cancellation, a site's count): the queue holds that number again, newer than the push in flight.
    Once the push lands the card shows it: the sender writes nothing more (scale.py's sandboxes counted such
    a write of the number the card already showed as a repeat)."""
    items = seed(conn, 3)
    stock_push.plan(conn, cfg)
    _send_all(conn, cfg, windows)
    item = items[0].item_id
    first = items[0].stock
    with transaction(conn):
        ledger.record_balance(conn, item, "main", first + 4)
    stock_push.plan(conn, cfg)

    class Racing:
        """WB's call in flight: the number goes down and back up, the planner queues each."""

        name, account = "wildberries", "wb"

        def push_stocks(self, levels):
            for qty in (first + 1, first + 4):
                with transaction(conn):
                    ledger.record_balance(conn, item, "main", qty)
                stock_push.plan(conn, cfg)
            return windows["wb"].push_stocks(levels)

    before = len(windows["wb"].pushes)
    stock_push.send_account(conn, cfg, "wb", Racing())
    key = f"{card_id('wb', items[0].index)}@10"
    assert windows["wb"].shown[key] == first + 4 and len(windows["wb"].pushes) == before + 1
    _send_all(conn, cfg, windows, now=time.time() + 3600)
    assert len(windows["wb"].pushes) == before + 1, windows["wb"].pushes[before:]  # not written again
    assert stock_push.pending(conn).get("wb", 0) == 0
