"""The order paths as keyed write transactions (`cloud_sync.db.keyed_or_whole`): a marketplace action's
outcome (its order's own rows, and its site's link for a label), a batch of new orders (the new orders'
rows, the levels its lines reserve, its sites' links, its accounts' published rows) and the zero guard (its
account's sender key). On PostgreSQL (`MARKETSYNC_TEST_PG=1`) each runs beside the other keyed writers, and
what reaches beyond its keys gives way to an ordinary transaction (`sitelink.sqlite.NeedsExclusive`) with
nothing of the keyed try kept. Real threads, each with its own connection. On SQLite every one of them is
BEGIN IMMEDIATE and the same calls give the same results (the parts that need PostgreSQL's locks skip).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cloud_sync.db import connect, is_postgres, keyed_or_whole, transaction
from cloud_sync.money import economics, price_list
from cloud_sync.orders import intake, listing, mp_actions
from cloud_sync.orders.records import log_event, order_lock, queue_action
from cloud_sync.schema import open_db
from cloud_sync.stock import fbo, ledger
from cloud_sync.stock import push as stock_push
from marketplaces.base import SaleFees, StockLevel
from sitelink import sqlite as link_sqlite

from .conftest import ACCOUNTS, ShopWindow, card_id, make_config, order, seed


def _pg_only(path: str) -> None:
    if not is_postgres(path):
        pytest.skip("keyed locks are PostgreSQL's (on SQLite every write transaction is the one writer)")


def _in_thread(path: str, fn) -> tuple[threading.Thread, threading.Event, list]:
    """`fn(conn)` in a thread of its own connection; the event is set when it returned (or failed)."""
    done, errors = threading.Event(), []

    def run() -> None:
        c = connect(path)
        try:
            fn(c)
        except Exception as exc:  # noqa: BLE001 - said by the test
            errors.append(exc)
        finally:
            c.close()
            done.set()
    t = threading.Thread(target=run)
    t.start()
    return t, done, errors


def _finished(t: threading.Thread, done: threading.Event, errors: list, why: str = "it did not finish") -> None:
    """The thread of `_in_thread` finished within 30 s, without an error."""
    assert done.wait(30), why
    assert not errors, errors
    t.join(10)


def _oid(conn, account: str, native_id: str) -> int:
    return conn.execute("SELECT id FROM orders WHERE key=?", (f"{account}:{native_id}",)).fetchone()[0]


# ---------------------------------------------------------------- the helper


def test_keyed_or_whole_gives_way_and_keeps_nothing_of_the_keyed_try(db_path):
    conn = open_db(db_path)
    with transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS kw (n INTEGER NOT NULL)")
    tries: list[frozenset | None] = []

    def work() -> int:
        tries.append(link_sqlite.keys_held(conn))
        conn.execute("INSERT INTO kw(n) VALUES (?)", (len(tries),))
        link_sqlite.need(conn, "b")  # beyond the keys given
        return len(tries)

    assert keyed_or_whole(conn, ("a",), work) == len(tries)
    rows = [r[0] for r in conn.execute("SELECT n FROM kw")]
    if is_postgres(db_path):
        assert tries == [frozenset({"a"}), None]  # keyed, then again in an ordinary transaction
        assert rows == [2]  # the keyed try's insert rolled back with it
    else:
        assert tries == [None] and rows == [1]  # SQLite: BEGIN IMMEDIATE at once
    conn.close()


# ---------------------------------------------------------------- action outcomes


def test_two_orders_outcomes_run_beside_each_other_and_beside_a_sender(db_path, cfg, monkeypatch):
    """Two confirms' outcomes (different orders, different accounts) each in a keyed transaction of their
    order: the second commits while the first is still open, and both while an account's stock sender holds
    its key — none of them an ordinary transaction that would stop every keyed writer of the store."""
    _pg_only(db_path)
    conn = open_db(db_path)
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("ym", "y1", card_id("ym", 1)), order("mm", "m1", card_id("mm", 2))])
    ym, mm = _oid(conn, "ym", "y1"), _oid(conn, "mm", "m1")
    windows = {name: ShopWindow(name, *ACCOUNTS[name]) for name in ("ym", "mm")}
    inside, go_on = threading.Event(), threading.Event()
    real = mp_actions._action_done
    seen_keys: dict[int, frozenset | None] = {}

    def held_open(c, cfg_, a, outcome, link, now):
        real(c, cfg_, a, outcome, link, now)
        seen_keys[a["order_id"]] = link_sqlite.keys_held(c)
        if a["order_id"] == ym:  # the ym outcome's transaction stays open, its writes made
            inside.set()
            assert go_on.wait(30)

    monkeypatch.setattr(mp_actions, "_action_done", held_open)
    sender = connect(db_path)
    try:
        with transaction(sender, keys=stock_push.push_keys("oz")):  # a stock sender's round, in flight
            t1, done1, err1 = _in_thread(db_path, lambda c: mp_actions.run_actions(c, cfg, {"ym": windows["ym"]}))
            assert inside.wait(30)
            t2, done2, err2 = _in_thread(db_path, lambda c: mp_actions.run_actions(c, cfg, {"mm": windows["mm"]}))
            assert done2.wait(30), "the mm outcome waited for the ym one"
            assert not err2, err2
            # the mm order is confirmed while the ym outcome's transaction is open (and the sender's too)
            assert conn.execute("SELECT confirmed FROM orders WHERE id=?", (mm,)).fetchone()[0] == 1
            assert conn.execute("SELECT confirmed FROM orders WHERE id=?", (ym,)).fetchone()[0] == 0
            go_on.set()
            assert done1.wait(30)
            assert not err1, err1
        t1.join(10)
        t2.join(10)
    finally:
        go_on.set()
        sender.close()
    assert seen_keys == {ym: frozenset({order_lock(ym)}), mm: frozenset({order_lock(mm)})}
    for oid, name in ((ym, "ym"), (mm, "mm")):
        assert [m[1] for m in windows[name].moves] == ["confirm"]  # called once
        assert conn.execute("SELECT state FROM order_actions WHERE order_id=? AND action='confirm'",
                            (oid,)).fetchone()[0] == "done"
        assert conn.execute("SELECT COUNT(*) FROM order_events WHERE order_id=? AND kind='confirmed'",
                            (oid,)).fetchone()[0] == 1
    conn.close()


def test_a_label_outcome_holds_its_sites_link_and_the_outbox_counts_on(db_path, cfg):
    """A label goes to the site's outbox: the outcome holds the site's link key (its per-site seq), so it
    waits for that site's link round and then takes the next seq; the message goes out once."""
    conn = open_db(db_path)
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("ym", "y1", card_id("ym", 1))])
    oid = _oid(conn, "ym", "y1")
    window = ShopWindow("ym", *ACCOUNTS["ym"])
    mp_actions.run_actions(conn, cfg, {"ym": window})  # the confirm
    with transaction(conn):  # the label (Yandex Market's comes after assembly)
        queue_action(conn, oid, "label", time.time())
    seq_before = conn.execute("SELECT MAX(seq) FROM link_outbox WHERE peer='site-1'").fetchone()[0]
    if is_postgres(db_path):
        assert mp_actions.outcome_keys(conn.execute(mp_actions.ACTION_ROW + " WHERE a.order_id=? AND"
                                                    " a.action='label'", (oid,)).fetchone()) == (
            order_lock(oid), "link:site-1")
        link_round = connect(db_path)
        try:
            with transaction(link_round, keys=["link:site-1"]):
                t, done, errors = _in_thread(db_path, lambda c: mp_actions.run_actions(c, cfg, {"ym": window}))
                assert not done.wait(1.0)  # the site's link round holds its key
            _finished(t, done, errors)
        finally:
            link_round.close()
    else:
        mp_actions.run_actions(conn, cfg, {"ym": window})
    labels = conn.execute("SELECT seq FROM link_outbox WHERE peer='site-1' AND type='label'").fetchall()
    assert [r[0] for r in labels] == [seq_before + 1]
    assert conn.execute("SELECT label_sent FROM orders WHERE id=?", (oid,)).fetchone()[0] == 1
    conn.close()


def test_an_outcome_that_reaches_beyond_its_order_gives_way_to_an_ordinary_transaction(db_path, cfg):
    """A WB confirm whose parcel was handed over meanwhile: its batch may leave now, which touches the batch's
    other orders — beyond its order's key. The keyed try gives way (`need`), the outcome is recorded in an
    ordinary transaction (which waits for a keyed writer in flight), once: one confirm event, the ship
    queued once."""
    conn = open_db(db_path)
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("wb", "w1", card_id("wb", 1))])
    oid = _oid(conn, "wb", "w1")
    with transaction(conn):
        conn.execute("UPDATE orders SET stage='handed_over' WHERE id=?", (oid,))
    window = ShopWindow("wb", *ACCOUNTS["wb"])
    if is_postgres(db_path):
        other = connect(db_path)
        try:
            with transaction(other, keys=stock_push.push_keys("oz")):  # a keyed writer in flight
                t, done, errors = _in_thread(db_path, lambda c: mp_actions.run_actions(c, cfg, {"wb": window}))
                deadline = time.monotonic() + 10
                while not window.moves and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert [m[1] for m in window.moves] == ["confirm"]
                assert not done.wait(1.0)  # gave way: an ordinary transaction waits for the keyed one
            _finished(t, done, errors)
        finally:
            other.close()
    else:
        mp_actions.run_actions(conn, cfg, {"wb": window})
    assert [m[1] for m in window.moves] == ["confirm"]
    o = conn.execute("SELECT confirmed, supply_id FROM orders WHERE id=?", (oid,)).fetchone()
    assert (o[0], o[1]) == (1, "WB-GI-1")
    actions = {r[0]: r[1] for r in conn.execute("SELECT action, state FROM order_actions WHERE order_id=?", (oid,))}
    assert actions["confirm"] == "done" and actions["ship"] == "pending"
    assert conn.execute("SELECT COUNT(*) FROM order_events WHERE order_id=? AND kind='confirmed'",
                        (oid,)).fetchone()[0] == 1
    assert conn.execute("SELECT state FROM supplies WHERE supply_id='WB-GI-1'").fetchone()[0] == "closing"
    conn.close()


def test_keyed_transactions_order_events_commit_in_the_order_of_their_ids(db_path, cfg):
    """The history is read by id (the alerts' cursor, the live feed): an event of a keyed transaction that
    began first but commits last must not get an id below one already read. Its events are written at its
    COMMIT, under one key, one transaction after another: a reader's cursor misses none."""
    _pg_only(db_path)
    conn = open_db(db_path)
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("ym", "y1", card_id("ym", 1)), order("mm", "m1", card_id("mm", 2))])
    first, second = _oid(conn, "ym", "y1"), _oid(conn, "mm", "m1")
    cursor = conn.execute("SELECT MAX(id) FROM order_events").fetchone()[0]
    c1, c2 = connect(db_path), connect(db_path)
    try:
        with transaction(c1, keys=[order_lock(first)]):
            log_event(c1, first, "problem", "first, begun first")
            with transaction(c2, keys=[order_lock(second)]):  # beside it: not held back
                log_event(c2, second, "problem", "second, committed first")
            seen = listing.events_after(conn, cursor)
            assert [e["order"] for e in seen] == ["mm:m1"]
            cursor = seen[-1]["id"]
        later = listing.events_after(conn, cursor)
        assert [e["order"] for e in later] == ["ym:y1"]  # after the cursor: not missed
    finally:
        c1.close()
        c2.close()
    conn.close()


# ---------------------------------------------------------------- intake


def test_new_orders_are_taken_beside_a_site_round_adding_units_to_the_same_item(db_path, cfg):
    """A batch of new orders is keyed on the levels it reserves (among others): a site's link round that adds
    units to the same item (keyed on its source, the level raised at its COMMIT) does not stop it, nor it the
    round. Both levels' writes land: on hand and reserved add up to the ledger's moves, and the reservation's
    move carries the figures the level held when it was written."""
    _pg_only(db_path)
    conn = open_db(db_path)
    items = seed(conn, 3, balances=False)
    item = items[0].item_id
    with transaction(conn):
        ledger.set_balances(conn, "main", {item: 5})
    batch = [order("ym", "y1", card_id("ym", items[0].index), qty=2)]
    keys = intake.intake_keys(conn, cfg, [intake._Timed(o) for o in batch])
    assert keys == tuple(sorted((intake.INTAKE_KEY, ledger.stock_key(item, "main"), "link:site-1")))
    link_round = connect(db_path)
    try:
        with transaction(link_round, keys=[ledger.source_key("main", "site:s9"), "link:s9"]):
            ledger.site_delta(link_round, "s9", "main", item, 3, "receipt", ref="r1")
            t, done, errors = _in_thread(db_path, lambda c: intake.ingest(c, cfg, batch))
            assert done.wait(30), "the batch waited for the site's round"
            assert not errors, errors
        t.join(10)
    finally:
        link_round.close()
    oid = _oid(conn, "ym", "y1")
    assert conn.execute("SELECT stage FROM orders WHERE id=?", (oid,)).fetchone()[0] == "reserved"
    lv = ledger.level(conn, item, "main")
    assert (lv.on_hand, lv.reserved) == (8, 2)
    moves = conn.execute("SELECT kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after FROM stock_moves"
                         " WHERE item_id=? ORDER BY id", (item,)).fetchall()
    assert sum(m[1] for m in moves) == 8 and sum(m[2] for m in moves) == 2
    assert [tuple(m) for m in moves if m[0] == "reserve"] == [("reserve", 0, 2, 5, 2)]  # before the round's 3
    assert conn.execute("SELECT SUM(quantity) FROM stock_reservations WHERE ref='ym:y1'").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM link_outbox WHERE peer='site-1' AND type='pick_task'").fetchone()[0] == 1
    conn.close()


def test_a_batch_with_an_order_short_of_stock_is_an_ordinary_transaction(db_path, cfg):
    """An order that cannot be covered waits for stock, and waiting orders are served by ordinary
    transactions: a batch seen beforehand to be short of an item is one at once (it waits for a keyed writer
    in flight); its covered order reserved, the short one waiting with its reason, one row and one event each."""
    conn = open_db(db_path)
    items = seed(conn, 3, balances=False)
    with transaction(conn):
        ledger.set_balances(conn, "main", {items[0].item_id: 5, items[1].item_id: 1})
    batch = [order("ym", "y1", card_id("ym", items[0].index), qty=2),
             order("ym", "y2", card_id("ym", items[1].index), qty=3, ship_in_h=48)]
    assert intake.intake_keys(conn, cfg, [intake._Timed(o) for o in batch]) is None
    if is_postgres(db_path):
        other = connect(db_path)
        try:
            with transaction(other, keys=["push:zz"]):  # any keyed writer in flight
                t, done, errors = _in_thread(db_path, lambda c: intake.ingest(c, cfg, batch))
                assert not done.wait(1.0)  # an ordinary transaction waits for the keyed one
            _finished(t, done, errors)
        finally:
            other.close()
    else:
        intake.ingest(conn, cfg, batch)
    stages = {r[0]: r[1] for r in conn.execute("SELECT key, stage FROM orders")}
    assert stages == {"ym:y1": "reserved", "ym:y2": "short"}
    assert conn.execute("SELECT COUNT(*) FROM order_events WHERE kind='received'").fetchone()[0] == 2
    assert [tuple(r) for r in conn.execute("SELECT ref, item_id, quantity FROM stock_reservations")] == [
        ("ym:y1", items[0].item_id, 2)]
    assert ledger.level(conn, items[1].item_id, "main").reserved == 0
    conn.close()


def test_a_keyed_batch_that_finds_an_order_short_gives_way_and_keeps_nothing_of_the_keyed_try(db_path, cfg,
                                                                                             monkeypatch):
    """The stock seen before the batch's transaction went meanwhile (another writer took it): the keyed batch
    finds its second order short, gives way — nothing of its try kept, its first order's reservation
    included — and the ordinary transaction takes the batch in once."""
    _pg_only(db_path)
    conn = open_db(db_path)
    items = seed(conn, 3, balances=False)
    with transaction(conn):
        ledger.set_balances(conn, "main", {items[0].item_id: 5, items[1].item_id: 4})
    batch = [order("ym", "y1", card_id("ym", items[0].index), qty=2),
             order("ym", "y2", card_id("ym", items[1].index), qty=3, ship_in_h=48)]
    real_keys, real_whole = intake.intake_keys, intake.keyed_or_whole
    tries: list[frozenset | None] = []

    def keys_then_stock_goes(c, cfg_, timed):
        keys = real_keys(c, cfg_, timed)
        assert keys is not None  # enough stock seen: keyed
        other = connect(db_path)
        try:  # meanwhile a keyed writer of that level takes 3 of its 4 units
            with transaction(other, keys=[ledger.stock_key(items[1].item_id, "main")]):
                ledger.record_move(other, items[1].item_id, "main", "writeoff", on_hand_delta=-3)
        finally:
            other.close()
        return keys

    def counted(c, keys, work):
        def tried():
            tries.append(link_sqlite.keys_held(c))
            return work()
        return real_whole(c, keys, tried)

    monkeypatch.setattr(intake, "intake_keys", keys_then_stock_goes)
    monkeypatch.setattr(intake, "keyed_or_whole", counted)
    res = intake.ingest(conn, cfg, batch)
    assert [t is not None for t in tries] == [True, False]  # keyed, then again as an ordinary transaction
    assert (res.new, res.reserved, res.short) == (2, 1, 1)
    stages = {r[0]: r[1] for r in conn.execute("SELECT key, stage FROM orders")}
    assert stages == {"ym:y1": "reserved", "ym:y2": "short"}
    assert conn.execute("SELECT COUNT(*) FROM order_events WHERE kind='received'").fetchone()[0] == 2
    assert [tuple(r) for r in conn.execute("SELECT ref, item_id, quantity FROM stock_reservations")] == [
        ("ym:y1", items[0].item_id, 2)]
    assert conn.execute("SELECT COUNT(*) FROM stock_moves WHERE kind='reserve'").fetchone()[0] == 1
    assert ledger.level(conn, items[0].item_id, "main").reserved == 2
    assert conn.execute("SELECT COUNT(*) FROM link_outbox WHERE type='pick_task'").fetchone()[0] == 1
    conn.close()


def test_batches_of_four_accounts_beside_site_rounds_never_oversell_nor_take_an_order_twice(db_path, monkeypatch):
    """Four threads take new orders (each its own account, each order polled twice) of two scarce items while
    two 'sites' add units to them in keyed rounds: batches run keyed or give way (an order short, an item sold
    out), yet every order is in once, reserved whole or not at all, the levels' reserved equal to what the
    reservations hold and to the ledger's moves, never above on hand, and each reserved order's confirm queued
    once."""
    cfg = make_config()
    conn = open_db(db_path)
    items = seed(conn, 2, balances=False)
    ids = [i.item_id for i in items]
    with transaction(conn):
        ledger.set_balances(conn, "main", {ids[0]: 6, ids[1]: 4})
    errors: list = []
    tries: list[bool] = []  # each try of a batch: keyed or not
    real = intake.keyed_or_whole

    def counted(c, keys, work):
        def tried():
            tries.append(link_sqlite.keys_held(c) is not None)
            return work()
        return real(c, keys, tried)

    monkeypatch.setattr(intake, "keyed_or_whole", counted)

    def take(account: str) -> None:
        c = connect(db_path)
        try:
            for n in range(12):
                batch = [order(account, f"{account}-{n}-{k}", card_id(account, items[(n + k) % 2].index),
                               qty=1 + (n + k) % 2, ship_in_h=24 + n) for k in range(2)]
                intake.ingest(c, cfg, batch)
                intake.ingest(c, cfg, batch)  # polled again: known, nothing taken twice
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    def site(n: int) -> None:
        c = connect(db_path)
        try:
            for i in range(10):
                with transaction(c, keys=[ledger.source_key("main", f"site:s{n}"), f"link:s{n}"]):
                    for item in ids:
                        ledger.site_delta(c, f"s{n}", "main", item, 1, "receipt", ref=f"s{n}-{i}")
                time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    threads = ([threading.Thread(target=take, args=(a,)) for a in ACCOUNTS]
               + [threading.Thread(target=site, args=(n,)) for n in range(2)])
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    if is_postgres(db_path):  # both ways were taken: batches keyed, and batches that gave way (short, sold out)
        assert tries.count(True) >= 4 and tries.count(False) >= 4, tries
    rows = conn.execute("SELECT key, stage, id FROM orders").fetchall()
    assert len(rows) == len({r[0] for r in rows}) == 4 * 12 * 2
    for item in ids:
        lv = ledger.level(conn, item, "main")
        moves = conn.execute("SELECT on_hand_delta, reserved_delta FROM stock_moves WHERE item_id=?", (item,)).fetchall()
        held = conn.execute("SELECT COALESCE(SUM(quantity), 0) FROM stock_reservations WHERE item_id=?",
                            (item,)).fetchone()[0]
        assert lv.on_hand == sum(m[0] for m in moves) == (6 if item == ids[0] else 4) + 20
        assert lv.reserved == sum(m[1] for m in moves) == held
        assert 0 <= lv.reserved <= lv.on_hand
    for key, stage, oid in rows:
        units = conn.execute("SELECT SUM(units) FROM order_lines WHERE order_id=?", (oid,)).fetchone()[0]
        held = conn.execute("SELECT COALESCE(SUM(quantity), 0) FROM stock_reservations WHERE ref=?", (key,)).fetchone()[0]
        confirms = conn.execute("SELECT COUNT(*) FROM order_actions WHERE order_id=? AND action='confirm'",
                                (oid,)).fetchone()[0]
        if stage == "reserved":
            assert (held, confirms) == (units, 1), key
        else:
            assert (stage, held, confirms) == ("short", 0, 0), key
        assert conn.execute("SELECT COUNT(*) FROM order_events WHERE order_id=? AND kind='received'",
                            (oid,)).fetchone()[0] == 1
    conn.close()


# ---------------------------------------------------------------- the zero guard


def _zeros_queued(conn, cfg, items, windows) -> None:
    stock_push.plan(conn, cfg)
    for name, w in windows.items():
        while stock_push.send_account(conn, cfg, name, w).sent:
            pass
    with transaction(conn):  # a broken 1C export: most items come as 0
        ledger.set_balances(conn, "main", {i.item_id: 0 for i in items})
    stock_push.plan(conn, cfg)


def test_the_zero_guard_holds_beside_other_keyed_writers_and_a_new_hold_gives_way(db_path, cfg, windows):
    """The guard is keyed on its account's sender key: with a hold open already it adds to it while another
    account's sender and a site round are in flight; a new hold (its alert: the alert outbox) gives way to an
    ordinary transaction and is made once, with one alert per chat."""
    conn = open_db(db_path)
    items = seed(conn, 10)
    _zeros_queued(conn, cfg, items[:6], windows)
    pg_store = is_postgres(db_path)
    other = connect(db_path)
    try:
        if pg_store:
            with transaction(other, keys=stock_push.push_keys("oz")):
                t, done, errors = _in_thread(db_path, lambda c: stock_push.guard(c, cfg, "wb"))
                assert not done.wait(1.0)  # a new hold: an ordinary transaction, waiting for the keyed one
            _finished(t, done, errors)
        else:
            stock_push.guard(conn, cfg, "wb")
        held = stock_push.holds(conn, "wb")
        assert len(held) == 1 and held[0]["held"] == 6
        alerts = conn.execute("SELECT COUNT(*) FROM alert_outbox WHERE kind='zero_guard_hold'").fetchone()[0]
        assert alerts == 1
        # more zeros come: added to the open hold, keyed — beside the oz sender and a site's round
        with transaction(conn):
            ledger.set_balances(conn, "main", {i.item_id: 0 for i in items[6:8]})
        stock_push.plan(conn, cfg)
        if pg_store:
            round_ = connect(db_path)
            try:
                with transaction(other, keys=stock_push.push_keys("oz")), \
                        transaction(round_, keys=[ledger.source_key("main", "site:s1"), "link:s1"]):
                    t, done, errors = _in_thread(db_path, lambda c: stock_push.guard(c, cfg, "wb"))
                    assert done.wait(30), "the guard waited for other keyed writers"
                    assert not errors, errors
                t.join(10)
            finally:
                round_.close()
        else:
            stock_push.guard(conn, cfg, "wb")
        held = stock_push.holds(conn, "wb")
        assert len(held) == 1 and held[0]["held"] == 8 and held[0]["cards"] == 8
        assert conn.execute("SELECT COUNT(*) FROM alert_outbox WHERE kind='zero_guard_hold'").fetchone()[0] == alerts
    finally:
        other.close()
        conn.close()


# ---------------------------------------------------------------- FBO readings


def test_an_fbo_reading_is_keyed_on_its_account(db_path):
    """An account's FBO reading writes its account's FBO rows alone (`fbo.fbo_key`): it goes on beside the
    other keyed writers and another account's reading, waits for a reading of its own account, and written
    inside a keyed transaction of other keys it gives way (`need`)."""
    conn = open_db(db_path)
    seed(conn, 2)

    def reading(account: str, qty: int):
        return [StockLevel(f"{account}-1", f"{account}-1", "fbo-1", qty, kind="fbo", warehouse_name="Коледино")]

    if is_postgres(db_path):
        with pytest.raises(link_sqlite.NeedsExclusive), transaction(conn, keys=stock_push.push_keys("oz")):
            fbo.record(conn, "oz", reading("oz", 1))
        holder, same = connect(db_path), connect(db_path)
        try:
            with transaction(holder, keys=[*stock_push.push_keys("oz"), ledger.source_key("main", "site:s1"),
                                           "link:s1"]), transaction(same, keys=[fbo.fbo_key("wb")]):
                t, done, errors = _in_thread(db_path, lambda c: fbo.record_reading(c, "oz", reading("oz", 7)))
                _finished(t, done, errors, "an FBO reading waited for other keyed writers")
                t, done, errors = _in_thread(db_path, lambda c: fbo.record_reading(c, "wb", reading("wb", 9)))
                assert not done.wait(1.0)  # the same account's key is held
            _finished(t, done, errors)
        finally:
            holder.close()
            same.close()
    else:
        fbo.record_reading(conn, "oz", reading("oz", 7))
        fbo.record_reading(conn, "wb", reading("wb", 9))
    rows = {(r[0], r[1]): r[2] for r in conn.execute("SELECT account, card_id, quantity FROM fbo_stock")}
    assert rows == {("oz", "oz-1"): 7, ("wb", "wb-1"): 9}
    names = {r[0]: r[1] for r in conn.execute("SELECT account, name FROM fbo_warehouses")}
    assert names == {"oz": "Коледино", "wb": "Коледино"}
    conn.close()


# ---------------------------------------------------------------- prices and fees read back


def test_prices_and_fees_read_back_are_keyed_on_their_account(db_path):
    """An account's prices read back (`price_list.prices_key`) and its fees (`economics.fees_key`) are keyed
    transactions of that account's rows: they go on beside other keyed writers and another account's
    reading, wait for their own account's key, and a price written in a keyed transaction of other keys
    gives way (`need`)."""
    conn = open_db(db_path)
    seed(conn, 2)
    now = datetime.now(UTC)

    def read_back(c, account: str, amount: str) -> None:
        price_list.record_read_prices(c, account, {f"{account}-1": (f"{account}-1", price_list.Price(Decimal(amount)))},
                                      now=now)
        economics.record(c, account, [SaleFees(f"{account}-1", commission_percent=Decimal("12"))],
                         {f"{account}-1": Decimal(amount)})

    if is_postgres(db_path):
        with pytest.raises(link_sqlite.NeedsExclusive), transaction(conn, keys=stock_push.push_keys("oz")):
            price_list.upsert_price(conn, "oz", "oz-1", "oz-1", price_list.Price(Decimal("1")), "marketplace", now)
        holder = connect(db_path)
        try:
            with transaction(holder, keys=[*stock_push.push_keys("oz"), price_list.prices_key("wb"),
                                           ledger.source_key("main", "site:s1"), "link:s1"]):
                t, done, errors = _in_thread(db_path, lambda c: read_back(c, "oz", "100"))
                _finished(t, done, errors, "a reading waited for other keyed writers")
                t, done, errors = _in_thread(db_path, lambda c: read_back(c, "wb", "200"))
                assert not done.wait(1.0)  # the same account's prices key is held
            _finished(t, done, errors)
        finally:
            holder.close()
    else:
        read_back(conn, "oz", "100")
        read_back(conn, "wb", "200")
    assert {a: p.price for a in ("oz", "wb") for p in price_list.current_prices(conn, a).values()} == {
        "oz": Decimal("100"), "wb": Decimal("200")}
    fees = {r[0]: r[1] for r in conn.execute("SELECT account, commission_percent FROM sale_fees")}
    assert fees == {"oz": "12", "wb": "12"}
    conn.close()
