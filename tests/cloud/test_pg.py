"""The PostgreSQL engine behind the sqlite3 surface (cloud_sync/pg.py) on a throwaway cluster of its own, and
`[db] url` in cloud.toml (its password never shown)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from cloud_sync import db, pg
from cloud_sync.config import parse_config
from cloud_sync.pg_cluster import Cluster
from cloud_sync.schema import open_db
from sitelink.config_file import ConfigError


@pytest.fixture
def conn(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[pg.Connection]:
    c = pg.connect(cluster.url, schema=f"t_{request.node.name.lower()[:40]}")
    db.migrate(c, [])  # PostgreSQL's own part: fold(), SQLite's date functions, json_each, sqlite_master
    c.execute_native("DROP TABLE IF EXISTS t")
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL DEFAULT 0,"
              " ts REAL) WITHOUT ROWID")
    yield c
    c.close()


def test_sqlite_statements_run_as_written(conn: pg.Connection) -> None:
    cur = conn.execute("INSERT INTO t(name, n, ts) VALUES (?, ?, ?)", ("a", 1, 1.5))
    assert cur.lastrowid == 1 and cur.rowcount == 1
    conn.execute("INSERT OR IGNORE INTO t(name) VALUES (?)", ("a",))  # a duplicate: nothing, no error
    conn.execute("INSERT INTO t(name, n) VALUES (:name, :n)", {"name": "b%", "n": 0})
    conn.execute("INSERT INTO t(name, n) VALUES ('c', 5) ON CONFLICT(name) DO UPDATE SET n = n + excluded.n")
    conn.execute("INSERT INTO t(name, n) VALUES ('c', 5) ON CONFLICT(name) DO UPDATE SET n = n + excluded.n")
    row = conn.execute("SELECT id, name, n FROM t WHERE name = ?", ("c",)).fetchone()
    assert row["n"] == 10 and row[1] == "c" and row.keys() == ["id", "name", "n"] and dict(row)["name"] == "c"
    # SQLite's ways: LIKE ignores case, a bare integer is a condition, a comparison is 0/1, total() of nothing
    assert [r[0] for r in conn.execute("SELECT name FROM t WHERE name LIKE 'A' OR name LIKE 'B%%'")] == ["a", "b%"]
    assert conn.execute("SELECT COUNT(*) FROM t WHERE n").fetchone()[0] == 2
    assert conn.execute("SELECT SUM(n > 0), total(n), ifnull(max(ts), 0) FROM t").fetchone() == (2, 11.0, 1.5)
    assert conn.execute("SELECT COUNT(*) FROM t WHERE ? IS NULL OR name = ?", (None, None)).fetchone()[0] == 3
    assert conn.execute("SELECT fold('ПРИВЕТ Мир')").fetchone()[0] == "привет мир"
    assert conn.execute("SELECT value FROM json_each(?)", ('["x", "y"]',)).fetchall() == [("x",), ("y",)]
    assert conn.execute("PRAGMA table_info(t)").fetchall()[1]["name"] == "name"
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='t'").fetchone() == (1,)
    assert len(conn.execute("SELECT datetime('now')").fetchone()[0]) == 19


def test_trace_and_total_changes_as_sqlite3_gives_them(conn: pg.Connection) -> None:
    """Callers count statements through set_trace_callback and changed rows through total_changes (the
    intake's and the 1C re-import's tests do): both were no-ops on PostgreSQL."""
    ran: list[str] = []
    before = conn.total_changes
    conn.set_trace_callback(ran.append)
    conn.execute("INSERT INTO t(name) VALUES (?)", ("x",))
    conn.executemany("INSERT INTO t(name) VALUES (?)", [("y",), ("z",)])
    conn.execute("UPDATE t SET n = 1 WHERE name IN ('x', 'y')")
    conn.execute("SELECT COUNT(*) FROM t").fetchone()
    conn.set_trace_callback(None)
    conn.execute("DELETE FROM t WHERE name = 'z'")
    assert ran == ["INSERT INTO t(name) VALUES (?)"] + ["INSERT INTO t(name) VALUES (?)"] * 2 + [
        "UPDATE t SET n = 1 WHERE name IN ('x', 'y')", "SELECT COUNT(*) FROM t"]
    assert conn.total_changes - before == 1 + 2 + 2 + 1


def test_errors_are_sqlite3_classes_and_a_failed_write_leaves_the_transaction_going(conn: pg.Connection) -> None:
    with db.transaction(conn):
        conn.execute("INSERT INTO t(name) VALUES ('x')")
        with pytest.raises(sqlite3.IntegrityError) as caught:
            conn.execute("INSERT INTO t(name) VALUES ('x')")
        assert caught.value.__cause__ is not None  # psycopg's error, chained
        conn.execute("INSERT INTO t(name) VALUES ('y')")  # SQLite goes on after a failed statement: so here
    assert [r[0] for r in conn.execute("SELECT name FROM t ORDER BY name")] == ["x", "y"]
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT nope FROM t")
    with pytest.raises(ValueError), db.transaction(conn):
        conn.execute("INSERT INTO t(name) VALUES ('z')")
        raise ValueError("rolled back")
    assert conn.execute("SELECT COUNT(*) FROM t WHERE name='z'").fetchone()[0] == 0


def test_immediate_transactions_of_one_database_run_one_after_another(cluster: Cluster) -> None:
    """BEGIN IMMEDIATE's promise: a read-then-write of one writer is never interleaved with another's."""
    setup = pg.connect(cluster.url, schema="t_serial")
    setup.execute_native("DROP TABLE IF EXISTS c; CREATE TABLE c (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
    setup.execute("INSERT INTO c VALUES ('n', 0)")

    def bump() -> None:
        c = pg.connect(cluster.url, schema="t_serial")
        for _ in range(20):
            with db.transaction(c):
                v = c.execute("SELECT v FROM c WHERE k='n'").fetchone()[0]
                time.sleep(0.001)
                c.execute("UPDATE c SET v=? WHERE k='n'", (v + 1,))
        c.close()

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert setup.execute("SELECT v FROM c WHERE k='n'").fetchone()[0] == 60  # no lost update
    # a bookkeeping write is skipped, not waited for, while another writer holds the database
    other = pg.connect(cluster.url, schema="t_serial")
    with db.transaction(other):
        assert db.write_if_free(setup, "UPDATE c SET v=0 WHERE k='n'") is False
    assert db.write_if_free(setup, "UPDATE c SET v=0 WHERE k='n'") is True
    other.close()
    setup.close()


def test_the_cloud_schema_migrates_once_on_postgresql(cluster: Cluster) -> None:
    url = cluster.url.replace("/postgres?", "/postgres?options=-csearch_path%3Dcloud&")
    pg.connect(cluster.url, schema="cloud").close()
    conn = open_db(url)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations WHERE module='cloud_sync.pg'").fetchone()[0] \
        == len(pg.COMPAT)
    conn.execute("INSERT INTO items(id, name, article) VALUES ('i1', 'Чайник ЭЛЕКТРИЧЕСКИЙ', 'A-1')")
    assert conn.execute("SELECT search FROM items WHERE id='i1'").fetchone()[0] == "i1\x1fa-1\x1fчайник электрический"
    with pytest.raises(sqlite3.IntegrityError):  # stock_moves stays append-only (its PostgreSQL trigger)
        conn.execute("INSERT INTO stock_moves(ts, item_id, warehouse, kind, on_hand_after, reserved_after, source)"
                     " VALUES (1, 'i1', 'main', 'adjust', 0, 0, 'manual')")
        conn.execute("DELETE FROM stock_moves")
    conn.close()
    again = open_db(url)  # up to date: nothing applied twice
    assert again.execute("SELECT COUNT(*) FROM schema_migrations WHERE module='cloud_sync.pg'").fetchone()[0] \
        == len(pg.COMPAT)
    again.close()


def test_db_url_in_cloud_toml_and_its_password_never_shown(tmp_path) -> None:
    base = {"db": {"url": "postgresql://ms@db.example:5432/marketsync", "password_env": "MS_DB_PW"}}
    cfg = parse_config(base, base_dir=tmp_path, env={"MS_DB_PW": "s3cr:et"})
    assert cfg.db_path.reveal() == "postgresql://ms:s3cr%3Aet@db.example:5432/marketsync"
    assert f"{cfg.db_path}" == str(cfg.db_path) == "postgresql://ms:***@db.example:5432/marketsync"
    assert db.is_postgres(cfg.db_path) and "s3cr" not in repr(cfg)
    assert cfg.secrets.key_file.endswith("secret.key")
    with pytest.raises(ConfigError, match="must be a postgresql:// URL"):
        parse_config({"db": {"url": "mysql://x/y"}}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match="MS_DB_PW") as caught:
        parse_config(base, base_dir=tmp_path, env={})
    assert "s3cr" not in str(caught.value)
    assert pg.redact("postgresql://ms:s3cr@h/db") == "postgresql://ms:***@h/db"


def test_a_connection_error_never_shows_the_password() -> None:
    with pytest.raises(sqlite3.OperationalError) as caught:
        pg.connect("postgresql://ms:topsecret@127.0.0.1:1/db", timeout=2)
    assert "topsecret" not in str(caught.value) and "***" in str(caught.value)


def _pid(conn: pg.Connection) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def _idle_in_pool(url: str, schema: str, n: int = 1) -> None:
    """Wait until the pool of `url` (every schema of its database) holds `n` idle connections (a returned one
    is reset before it is lent again)."""
    pool = pg.pool_of(url)
    assert pool is not None
    deadline = time.monotonic() + 10
    while pool.get_stats().get("pool_available", 0) < n:
        assert time.monotonic() < deadline, pool.get_stats()
        time.sleep(0.01)


def test_connections_of_one_schema_come_from_a_pool_and_go_back_reset(cluster: Cluster) -> None:
    """A web request opens and closes a connection each: drawn from the pool of its (url, schema), given back
    on close with nothing of its user left: the transaction, its savepoint and the writer lock, a session
    lock, a temporary table, the trace callback."""
    schema = "t_pool_reset"
    pg.close_pools()  # one pool serves every schema: this test's connection its only one
    first = pg.connect(cluster.url, schema=schema)
    first.execute_native("DROP TABLE IF EXISTS p; CREATE TABLE p (k TEXT PRIMARY KEY)")
    assert first.pooled
    pid = _pid(first)
    traced: list[str] = []
    first.set_trace_callback(traced.append)
    first.execute("BEGIN IMMEDIATE")  # the writer lock (an advisory transaction lock)
    first.execute("INSERT INTO p VALUES ('left open')")
    first.execute("SAVEPOINT half")
    first.execute("CREATE TEMP TABLE scratch (x BIGINT)")
    first.execute("SELECT pg_advisory_lock(4242)")  # a session-level lock
    first.close()
    first.close()  # twice is nothing, as sqlite3's
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    assert len(traced) == 5  # nothing traced after close

    _idle_in_pool(cluster.url, schema)
    again = pg.connect(cluster.url, schema=schema)
    assert _pid(again) == pid  # the same server connection, not a new one
    assert not again.in_transaction
    assert again.execute("SELECT COUNT(*) FROM p").fetchone()[0] == 0  # rolled back
    assert again.execute("SELECT to_regclass('pg_temp.scratch')").fetchone()[0] is None
    other = pg.connect(cluster.url, schema=schema)
    assert _pid(other) != pid
    other.execute("BEGIN")
    assert other.try_lock_immediate()  # the writer lock was released with the rollback
    assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone()[0] is True  # and the session one
    other.execute("SELECT pg_advisory_unlock(4242)")
    other.execute("ROLLBACK")
    again.close()
    other.close()


def test_a_bounded_lock_wait_fails_as_locked_and_leaves_no_transaction(cluster: Cluster) -> None:
    """`set_lock_wait` bounds how long a writer waits for another's lock (a push's answer must not wait for a
    long import: cloud_sync.web.push): past it BEGIN IMMEDIATE, and a keyed transaction, fail as SQLite's
    "database is locked" and leave the connection outside any transaction, usable at once; the bound is
    given back with None, and a pooled connection given back with it set is reset."""
    from sitelink.sqlite import transaction

    schema = "t_lock_wait"
    pg.close_pools()
    holder = pg.connect(cluster.url, schema=schema)
    waiter = pg.connect(cluster.url, schema=schema)
    holder.execute("BEGIN IMMEDIATE")  # a long write
    waiter.set_lock_wait(200)
    for begin in (lambda: waiter.execute("BEGIN IMMEDIATE"), lambda: transaction(waiter, keys=["k"]).__enter__()):
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            begin()
        assert time.monotonic() - started < 2.0
        assert not waiter.in_transaction
    assert waiter.execute("SELECT current_setting('lock_timeout')").fetchone()[0] == "200ms"
    waiter.set_lock_wait(None)
    assert waiter.execute("SELECT current_setting('lock_timeout')").fetchone()[0] == "0"
    holder.execute("ROLLBACK")
    with transaction(waiter):  # the lock gone: the same connection writes at once
        waiter.execute("SELECT 1")
    holder.close()
    waiter.set_lock_wait(500)
    waiter.close()  # given back with its bound set
    _idle_in_pool(cluster.url, schema, 2)
    lent = [pg.connect(cluster.url, schema=schema) for _ in range(2)]
    assert [c.execute("SELECT current_setting('lock_timeout')").fetchone()[0] for c in lent] == ["0", "0"]
    for c in lent:
        c.close()


def test_a_connection_dropped_without_close_goes_back_and_pooling_off_opens_each(cluster: Cluster,
                                                                                 monkeypatch) -> None:
    schema = "t_pool_drop"
    pg.close_pools()  # one pool serves every schema: this test's connection its only one
    conn = pg.connect(cluster.url, schema=schema)
    pid = _pid(conn)
    conn.execute("BEGIN")
    del conn  # collected: its connection rolled back and given back
    _idle_in_pool(cluster.url, schema)
    reused = pg.connect(cluster.url, schema=schema)
    assert _pid(reused) == pid and not reused.in_transaction
    reused.close()
    monkeypatch.setattr(pg, "pooling", False)
    pids = set()
    for _ in range(3):
        c = pg.connect(cluster.url, schema=schema)
        assert not c.pooled
        pids.add(_pid(c))
        c.close()
    assert len(pids) == 3


def test_an_exhausted_pool_lends_a_connection_of_its_own(cluster: Cluster, monkeypatch) -> None:
    """Every connection of the pool lent (the service's job threads hold one each for their life): the next
    caller gets one of its own at once, closed on close (it waited POOL_WAIT_S for each web request)."""
    monkeypatch.setattr(pg, "POOL_MAX", 2)
    monkeypatch.setattr(pg, "POOL_WAIT_S", 20.0)
    pg.close_pools()  # the database's pool made anew, of POOL_MAX = 2
    held = [pg.connect(cluster.url, schema="t_pool_full") for _ in range(2)]
    started = time.monotonic()
    held.append(pg.connect(cluster.url, schema="t_pool_full"))
    assert time.monotonic() - started < 5  # not a wait for one of the two to come back
    assert [c.pooled for c in held] == [True, True, False]
    assert len({_pid(c) for c in held}) == 3
    for c in held:
        c.close()
    pg.close_pools()


def test_a_nul_character_in_a_parameter_is_no_error(conn: pg.Connection) -> None:
    """PostgreSQL's text cannot hold NUL, SQLite's can: `?account=%00` was a DataError (a 500 on every page
    and API route that looks the parameter up, tests/security). A lookup finds nothing; a write keeps the rest."""
    conn.execute("INSERT INTO t(name) VALUES ('a')")
    assert conn.execute("SELECT COUNT(*) FROM t WHERE name = ?", ("\x00",)).fetchone()[0] == 0
    conn.execute("INSERT INTO t(name) VALUES (?)", ("b\x00c",))
    assert conn.execute("SELECT name FROM t WHERE name LIKE 'b%'").fetchone()[0] == "b\ufffdc"


def test_sqlite_master_shows_an_index_made_by_create_index_with_its_sql(conn: pg.Connection) -> None:
    """As SQLite's: an explicit index has its `sql`, a key's own index (SQLite's autoindex) has none; the
    orders table's index test reads it so (it was NULL for every index on PostgreSQL)."""
    conn.execute("CREATE INDEX t_n ON t(n) WHERE n > 0")
    rows = {r["name"]: r["sql"] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                                      " AND tbl_name = 't'")}
    assert "t_n" in rows and "WHERE (n > 0)" in rows["t_n"]
    assert [name for name, sql in rows.items() if sql is None] and all(
        name == "t_n" for name, sql in rows.items() if sql is not None)
