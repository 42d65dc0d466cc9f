"""Keyed write transactions (`sitelink.sqlite.transaction(conn, keys=...)`, `cloud_sync.pg.Connection.begin_keyed`).

On PostgreSQL a keyed transaction takes the store's writer lock shared and its keys' locks exclusive: keyed
transactions of different keys run at once, two of one key one after the other, and an ordinary
transaction (BEGIN IMMEDIATE) excludes them all. A site's delta that only adds units is applied at COMMIT
in one atomic statement per level. Real PostgreSQL (`MARKETSYNC_TEST_PG=1`), real threads, each with its
own connection. On SQLite a keyed transaction is BEGIN IMMEDIATE and the same calls give the same result.
"""

from __future__ import annotations

import threading
import time

import pytest

from cloud_sync import pg
from cloud_sync.db import connect, is_postgres, transaction
from cloud_sync.orders import intake, mp_actions
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger
from cloud_sync.stock import push as stock_push
from sitelink import sqlite as link_sqlite

from .conftest import ShopWindow, card_id, order, seed


@pytest.fixture
def store(db_path):
    conn = open_db(db_path)
    items = seed(conn, 2, balances=False)
    with transaction(conn):
        ledger.set_balances(conn, "main", {items[0].item_id: 5, items[1].item_id: 5})
    yield db_path, [i.item_id for i in items]
    conn.close()


def _pg_only(path: str) -> None:
    if not is_postgres(path):
        pytest.skip("keyed locks are PostgreSQL's (on SQLite every write transaction is the one writer)")


def _counter(path: str) -> None:
    conn = connect(path)
    with transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS keyed_counter (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        conn.execute("INSERT INTO keyed_counter(k, n) VALUES ('a', 0), ('b', 0) ON CONFLICT(k) DO NOTHING")
    conn.close()


def _read_modify_write(path: str, key: str, times: int, errors: list) -> None:
    """The domain's pattern: read, decide (a pause), write what was decided."""
    conn = connect(path)
    try:
        for _ in range(times):
            with transaction(conn, keys=[f"counter:{key}"]):
                n = conn.execute("SELECT n FROM keyed_counter WHERE k=?", (key,)).fetchone()[0]
                time.sleep(0.002)
                conn.execute("UPDATE keyed_counter SET n=? WHERE k=?", (n + 1, key))
    except Exception as exc:  # noqa: BLE001 - said by the test
        errors.append(exc)
    finally:
        conn.close()


def _run(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def test_one_key_one_writer_at_a_time(store):
    """Four threads read-modify-write one row under one key: no update lost."""
    path, _ = store
    _counter(path)
    errors: list = []
    _run([threading.Thread(target=_read_modify_write, args=(path, "a", 25, errors)) for _ in range(4)])
    assert not errors
    conn = connect(path)
    assert conn.execute("SELECT n FROM keyed_counter WHERE k='a'").fetchone()[0] == 100
    conn.close()


def test_without_the_key_lock_updates_are_lost(store, monkeypatch):
    """The same run with the keys' own locks left out (the store's lock shared only): updates are lost, so
    the test above proves the key lock and not luck."""
    path, _ = store
    _pg_only(path)
    _counter(path)

    def shared_only(self, keys):
        self.execute("BEGIN")
        self._raw.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self.lock_key,))
        self.lock_keys = frozenset(keys)

    monkeypatch.setattr(pg.Connection, "begin_keyed", shared_only)
    errors: list = []
    _run([threading.Thread(target=_read_modify_write, args=(path, "a", 25, errors)) for _ in range(4)])
    assert not errors
    conn = connect(path)
    assert conn.execute("SELECT n FROM keyed_counter WHERE k='a'").fetchone()[0] < 100
    conn.close()


def test_keys_apart_run_at_once_and_an_ordinary_writer_excludes_them(store):
    path, _ = store
    _pg_only(path)
    holder = connect(path)
    other = connect(path)
    # a keyed transaction of key a is open: one of key b does not wait for it
    with transaction(holder, keys=["a"]):
        t0 = time.monotonic()
        with transaction(other, keys=["b"]):
            pass
        assert time.monotonic() - t0 < 2.0
    # an ordinary transaction is open: a keyed one waits until it commits
    done = threading.Event()

    def keyed() -> None:
        with transaction(other, keys=["b"]):
            done.set()

    with transaction(holder):
        t = threading.Thread(target=keyed)
        t.start()
        assert not done.wait(1.0)
    assert done.wait(10.0)
    t.join()
    # and a keyed transaction open: an ordinary one waits for it
    with transaction(holder, keys=["a"]):
        t = threading.Thread(target=lambda: (transaction(other).__enter__(), done.clear(), other.rollback()))
        done.set()
        t.start()
        time.sleep(1.0)
        assert done.is_set()  # still waiting for the shared lock to go
    t.join(10)
    assert not done.is_set()
    holder.close()
    other.close()


def test_a_write_the_keys_do_not_cover_gives_way(store):
    path, items = store
    conn = connect(path)
    if is_postgres(path):
        with pytest.raises(link_sqlite.NeedsExclusive), transaction(conn, keys=[ledger.source_key("main", "site:s1")]):
            ledger.site_delta(conn, "s1", "main", items[0], -1, "adjust")  # takes units: the level itself
        with pytest.raises(link_sqlite.NeedsExclusive), transaction(conn, keys=["x"]), transaction(conn):
            pass  # an ordinary write joined to a keyed one
        assert ledger.level(conn, items[0], "main").on_hand == 5  # rolled back whole
    with transaction(conn, keys=[ledger.source_key("main", "site:s1")]):  # SQLite: BEGIN IMMEDIATE, as ever
        ledger.site_delta(conn, "s1", "main", items[0], 2, "receipt", ref="r1")
        conn.execute("SAVEPOINT one")
        ledger.site_delta(conn, "s1", "main", items[0], 3, "receipt", ref="r2")
        conn.execute("ROLLBACK TO one")  # the message's savepoint rolled back: its deferred move goes too
        conn.execute("RELEASE one")
    assert ledger.level(conn, items[0], "main").on_hand == 7
    assert [(m.ref, m.on_hand_delta, m.on_hand_after) for m in ledger.moves(conn, items[0], "main", limit=1)] == [
        ("r1", 2, 7)]
    conn.close()


def test_site_deltas_in_keyed_transactions_beside_reservations_lose_nothing_and_never_oversell(store):
    """Four 'sites' add units to the same two items in keyed transactions (each its own source key) while
    two threads reserve and release those items in ordinary ones: every move counted once, the level is the
    sum of the ledger's moves, each level's on-hand-after chain has no gap or repeat, reserved never above
    on hand."""
    path, items = store
    errors: list = []
    refs: list[str] = []

    def site(n: int) -> None:
        c = connect(path)
        try:
            for i in range(20):
                with transaction(c, keys=[ledger.source_key("main", f"site:s{n}")]):
                    for item in items:
                        ledger.site_delta(c, f"s{n}", "main", item, 1, "receipt", ref=f"s{n}-{i}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    def orders(n: int) -> None:
        c = connect(path)
        try:
            for i in range(20):
                ref = f"o{n}-{i}"
                with transaction(c):
                    for item in items:
                        try:
                            ledger.reserve(c, ref, item, "main", 2)
                        except ledger.InsufficientStock:
                            pass
                    lv = [ledger.level(c, item, "main") for item in items]
                    if any(x.reserved > x.on_hand for x in lv):
                        errors.append(f"oversold: {lv}")
                if i % 2:
                    with transaction(c):
                        ledger.release(c, ref)
                else:
                    refs.append(ref)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    _run([threading.Thread(target=site, args=(n,)) for n in range(4)]
         + [threading.Thread(target=orders, args=(n,)) for n in range(2)])
    assert not errors
    conn = connect(path)
    for item in items:
        lv = ledger.level(conn, item, "main")
        moves = conn.execute("SELECT kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after, source"
                             " FROM stock_moves WHERE item_id=? AND warehouse='main' ORDER BY id", (item,)).fetchall()
        site_moves = [m for m in moves if m[5].startswith("site:")]
        assert len(site_moves) == 80  # 4 sites x 20, none lost, none twice
        assert lv.on_hand == sum(m[1] for m in moves) == 5 + 80
        assert lv.reserved == sum(m[2] for m in moves)
        assert 0 <= lv.reserved <= lv.on_hand
        # on hand only grows here: the after-values of all moves that changed it are 6..85, each once
        assert sorted(m[3] for m in site_moves) == list(range(6, 86))
    conn.close()


def test_a_marketplace_call_is_claimed_while_keyed_writers_run(db_path, cfg):
    """An action's claim and intent write its own row alone: a keyed transaction with no key of its own,
    so it does not wait for (nor stop) the keyed writers in flight — each account's stock sender, the site
    link's rounds — as an ordinary one does (with 3 processes ~1,000 such barriers per process a run). Its
    outcome is a keyed transaction of its order (`mp_actions.outcome_keys`): recorded meanwhile too."""
    _pg_only(db_path)
    conn = open_db(db_path)
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("wb", "1001", card_id("wb", 1))])
    window = ShopWindow("wb", "wildberries", "10")
    other = connect(db_path)
    done = threading.Event()

    def act() -> None:
        c = connect(db_path)
        try:
            mp_actions.run_actions(c, cfg, {"wb": window})
        finally:
            c.close()
            done.set()
    try:
        with transaction(other, keys=["push:oz"]):  # a stock sender's round, in flight
            t = threading.Thread(target=act)
            t.start()
            deadline = time.monotonic() + 10
            while not window.moves and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [m[1] for m in window.moves] == ["confirm"]  # claimed and called meanwhile
            assert done.wait(30)  # and its outcome recorded: it does not wait for the round to end
        t.join(30)
        row = conn.execute("SELECT state, claimed_by FROM order_actions WHERE action='confirm'").fetchone()
        assert (row["state"], row["claimed_by"]) == ("done", None)
    finally:
        other.close()
        conn.close()


def test_the_planner_runs_beside_the_site_link_and_a_change_meanwhile_is_planned_again(store, cfg):
    """The planner's round is keyed (every account's push key): a site link's keyed round in flight does not
    hold it back. The delta that round commits after the planner read the level leaves its item dirty
    (a newer mark), so the next round plans the new number: nothing is lost by running side by side."""
    path, items = store
    _pg_only(path)
    conn = connect(path)
    stock_push.plan(conn, cfg)
    with transaction(conn):
        ledger.mark_dirty(conn, [items[0]])
    done = threading.Event()

    def plan() -> None:
        c = connect(path)
        try:
            stock_push.plan(c, cfg)
        finally:
            c.close()
            done.set()
    link_round = connect(path)
    try:
        with transaction(link_round, keys=[ledger.source_key("main", "site:s1"), "link:s1"]):
            ledger.site_delta(link_round, "s1", "main", items[0], 3, "receipt", ref="r1")
            t = threading.Thread(target=plan)
            t.start()
            assert done.wait(10)  # planned while the round holds its keys
        t.join(10)
        stock_push.plan(conn, cfg)  # the delta's commit marked the item again: planned with its units
        queued = {r[0] for r in conn.execute("SELECT quantity FROM stock_push_queue WHERE item_id=?", (items[0],))}
        assert queued == {8}, queued
    finally:
        link_round.close()
        conn.close()
