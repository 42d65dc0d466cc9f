"""Many sellers (schemas) of one PostgreSQL database in one cloud process (cloud_sync/pg.py, issue 20 point 4):
one pool serves them all, each checkout works in its own seller's schema and nothing of one seller's checkout
reaches the next one's on the same server connection. On a throwaway cluster of the module's own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from cloud_sync import pg
from cloud_sync.pg_cluster import Cluster

SELLERS = 40


def _pid(conn: pg.Connection) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def _settle(url: str) -> None:
    """Wait until every connection given back is ready to lend again (reset, back in its pool). The code
    before had no pool per database (`pool_of`): nothing to wait for there."""
    pool_of = getattr(pg, "pool_of", None)
    pool = pool_of(url) if pool_of is not None else None
    if pool is None:
        return
    deadline = time.monotonic() + 10
    while True:
        stats = pool.get_stats()
        if stats.get("pool_available", 0) >= stats.get("pool_size", 0):
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.005)


def _backends(url: str) -> set[int]:
    """The server's client connections other than the one asking."""
    with psycopg.connect(url, autocommit=True) as raw:
        rows = raw.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                           " AND pid <> pg_backend_pid() AND datname = current_database()").fetchall()
    return {int(r[0]) for r in rows}


@pytest.fixture
def fresh(cluster: Cluster) -> Iterator[str]:
    """The cluster's URL, with no pool of it in this process before or after the test."""
    pg.close_pools()
    yield cluster.url
    pg.close_pools()


def _make_sellers(url: str, names: list[str]) -> None:
    for name in names:
        conn = pg.connect(url, schema=name)
        conn.execute_native("DROP TABLE IF EXISTS notes")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, seller TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO notes(seller) VALUES (?)", (name,))
        conn.close()


def test_forty_sellers_in_turn_share_one_pool_and_open_no_connection_after_warm_up(fresh: str) -> None:
    """Pools per (url, schema), at most 16 in a process: every checkout of a 17th seller opened a new server
    connection (a fork and an authentication on the server), and each seller's pool kept its own idle ones."""
    url = fresh
    names = [f"t_many_{i:02d}" for i in range(SELLERS)]
    _make_sellers(url, names)
    pg.close_pools()
    before = _backends(url)

    def one_round() -> set[int]:
        pids = set()
        for name in names:
            conn = pg.connect(url, schema=name)
            assert conn.execute("SELECT seller FROM notes").fetchall() == [(name,)]
            pids.add(_pid(conn))
            conn.close()
            _settle(url)
        return pids

    warm = one_round()  # warm-up: the pool opens what it needs
    held_warm = _backends(url) - before
    later: set[int] = set()
    for _ in range(3):
        later |= one_round()
    held = _backends(url) - before
    assert later <= warm, f"{len(later - warm)} server connections opened after warm-up"  # ~120 before
    assert held == held_warm and len(held) <= pg.POOL_MAX, (len(held_warm), len(held))


def test_one_sellers_rows_never_reach_another_through_the_same_connection(fresh: str, monkeypatch) -> None:
    """One server connection serves seller A, then B, then A...: every statement runs in its checkout's
    schema, also once psycopg prepared it on the server (after a few runs of the same text), and also
    when the two schemas' tables differ (a seller migrated before another: a prepared `SELECT *` of
    another schema's table was refused, `cached plan must not change result type`)."""
    url = fresh
    monkeypatch.setattr(pg, "POOL_MAX", 1)  # one connection: every checkout gets the same one
    a, b = "t_iso_a", "t_iso_b"
    _make_sellers(url, [a, b])
    conn = pg.connect(url, schema=a)
    conn.execute("ALTER TABLE notes ADD COLUMN extra TEXT")  # A's table migrated further than B's
    conn.close()
    _settle(url)
    pids = set()
    for i in range(12):  # psycopg prepares a statement at its 6th run on a connection
        for seller, other in ((a, b), (b, a)):
            conn = pg.connect(url, schema=seller)
            assert conn.pooled
            pids.add(_pid(conn))
            conn.execute("INSERT INTO notes(seller) VALUES (?)", (seller,))
            conn.execute("UPDATE notes SET n = n + 1 WHERE id = 1")
            rows = conn.execute("SELECT seller, n FROM notes WHERE id = ?", (1,)).fetchall()
            assert rows == [(seller, i + 1)]
            assert {r[0] for r in conn.execute("SELECT seller FROM notes")} == {seller}
            assert conn.execute("SELECT COUNT(*) FROM notes WHERE seller = ?", (other,)).fetchone()[0] == 0
            whole = conn.execute("SELECT * FROM notes WHERE id = 1").fetchone()
            assert whole.keys() == (["id", "seller", "n", "extra"] if seller == a else ["id", "seller", "n"])
            assert [r["name"] for r in conn.execute("PRAGMA table_info(notes)")] == whole.keys()  # not prefixed
            if i == 11:
                prepared = {r[0] for r in conn.execute("SELECT statement FROM pg_prepared_statements")}
                assert any("SELECT seller, n FROM notes" in s and seller in s for s in prepared), prepared
            conn.close()
            _settle(url)
    assert len(pids) == 1  # the same server connection all along
    for seller in (a, b):
        conn = pg.connect(url, schema=seller)
        assert conn.execute("SELECT COUNT(*), MIN(seller), MAX(seller), MAX(n) FROM notes").fetchone() == (13, seller,
                                                                                                           seller, 12)
        conn.close()
        _settle(url)


def test_a_connection_given_back_in_a_transaction_or_elsewhere_leaks_nothing(fresh: str, monkeypatch) -> None:
    """What a checkout leaves on its connection stays with it: a transaction left open (rolled back), a
    search_path its user changed (by SET, committed or not), even when the next checkout is the same
    seller's (nothing to set, as far as the connection was known)."""
    url = fresh
    monkeypatch.setattr(pg, "POOL_MAX", 1)
    a, b = "t_leak_a", "t_leak_b"
    _make_sellers(url, [a, b])
    _settle(url)

    def checkout(seller: str) -> pg.Connection:
        _settle(url)
        conn = pg.connect(url, schema=seller)
        assert conn.pooled
        return conn

    conn = checkout(a)
    pid = _pid(conn)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO notes(seller) VALUES ('a, never committed')")
    conn.execute_native(f'SET search_path TO "{b}"')  # in the transaction: gone with its rollback
    conn.close()
    conn = checkout(b)
    assert _pid(conn) == pid and not conn.in_transaction
    assert conn.execute("SELECT current_schema()").fetchone()[0] == b
    assert [r[0] for r in conn.execute("SELECT seller FROM notes")] == [b]
    conn.close()
    for seller, changed_to in ((a, b), (b, a), (b, "public")):
        conn = checkout(seller)  # the same seller again: the connection points there already
        conn.execute_native(f'SET search_path TO "{changed_to}"')  # its user's own SET, in autocommit
        conn.close()
        conn = checkout(seller)
        assert _pid(conn) == pid
        assert conn.execute("SELECT current_schema()").fetchone()[0] == seller
        assert {r[0] for r in conn.execute("SELECT seller FROM notes")} == {seller}
        conn.close()
    conn = checkout(a)
    conn.execute("BEGIN")
    conn.execute_native(f'SET search_path TO "{b}"')
    conn.execute("COMMIT")  # committed: the session's search_path is B's now
    conn.close()
    conn = checkout(a)
    assert conn.execute("SELECT current_schema()").fetchone()[0] == a
    conn.close()
    assert pg.connect(url, schema=a).execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 1


def test_sellers_store_urls_share_the_pool_of_their_database(fresh: str) -> None:
    """A seller's store URL names its schema in libpq's options (`cloud_sync.tenants.schema_url`): a pool of
    its own per URL before, one per database now; each checkout still in its URL's schema, its password-less
    label as given, and a URL without a schema in the database's own search_path."""
    from cloud_sync.tenants import schema_url

    url = fresh
    names = ["t_url_a", "t_url_b", "t_url_c"]
    _make_sellers(url, names)
    for _ in range(2):
        for name in names:
            conn = pg.connect(schema_url(url, name))
            assert conn.schema == name and conn.pooled
            assert conn.execute("SELECT seller FROM notes").fetchall() == [(name,)]
            conn.close()
            _settle(url)
    conn = pg.connect(url)
    assert conn.schema == "public" and conn.execute("SELECT current_schema()").fetchone()[0] == "public"
    conn.close()
    assert len(pg._pools) == 1
