"""The one SQLite helper of the three stores (sitelink.sqlite): each store's connection settings, the
write transaction, the script splitter, the migration runner and its bookkeeping on databases that the
earlier per-store copies wrote."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from edge_agent import store as edge_store
from sitelink import sqlite
from sitelink import store as link_store


def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int, int]:
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    fks = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    return journal, sync, fks, busy


@pytest.mark.sqlite_only("reads the SQLite settings (journal, synchronous, busy timeout) of the cloud's own file")
def test_each_store_keeps_its_own_settings(tmp_path):
    import cloud_sync.db as db
    cloud = db.connect(tmp_path / "cloud.db", timeout=5)
    assert pragmas(cloud) == ("wal", 1, 1, 30000)  # NORMAL; the cloud waits 30 s whatever its timeout
    link = sqlite.connect(tmp_path / "link.db", timeout=2.5)
    assert pragmas(link) == ("wal", 1, 1, 2500)  # the link waits its timeout
    site = edge_store.open_conn(tmp_path / "new" / "site.db")  # the folder is made
    assert pragmas(site) == ("wal", 2, 1, 30000)  # FULL: a power cut loses no committed change
    for conn in (cloud, link, site):
        assert conn.isolation_level is None and conn.row_factory is sqlite3.Row
        conn.close()
    with pytest.raises(ValueError):
        sqlite.connect(tmp_path / "x.db", synchronous="NORMAL; DROP TABLE x")


def test_a_connection_is_used_from_another_thread(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(conn.execute("SELECT 1").fetchone()[0]))
    t.start()
    t.join()
    assert got == [1]


def test_transaction_commits_rolls_back_and_joins_the_outer_one(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    conn.execute("CREATE TABLE t (n INTEGER)")
    with sqlite.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with sqlite.transaction(conn):  # joins: nothing is committed until the outer one ends
            conn.execute("INSERT INTO t VALUES (2)")
        assert conn.in_transaction
    assert not conn.in_transaction
    with pytest.raises(RuntimeError), sqlite.transaction(conn):
        conn.execute("INSERT INTO t VALUES (3)")
        with sqlite.transaction(conn):
            conn.execute("INSERT INTO t VALUES (4)")
        raise RuntimeError("undo")
    assert [r[0] for r in conn.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
    conn.execute("BEGIN")  # a transaction the caller opened itself is joined too
    with sqlite.transaction(conn):
        conn.execute("INSERT INTO t VALUES (5)")
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2


def test_transaction_takes_the_write_lock_at_once(tmp_path):
    a = sqlite.connect(tmp_path / "a.db")
    b = sqlite.connect(tmp_path / "a.db", timeout=0.05)
    with sqlite.transaction(a), pytest.raises(sqlite3.OperationalError, match="locked"), sqlite.transaction(b):
        pass
    with sqlite.transaction(b, immediate=False):  # a deferred one takes it at its first write
        assert b.in_transaction


def test_the_edge_transaction_counts_its_commits(tmp_path):
    conn = edge_store.connect(tmp_path / "site.db")
    before = edge_store.commits()
    with edge_store.transaction(conn), edge_store.transaction(conn):
        conn.execute("INSERT INTO site_meta (key, value) VALUES ('a', '1')")
    with pytest.raises(ValueError), edge_store.transaction(conn):
        conn.execute("INSERT INTO site_meta (key, value) VALUES ('b', '2')")
        raise ValueError("no")
    assert edge_store.commits() == before + 1
    assert [r[0] for r in conn.execute("SELECT key FROM site_meta")] == ["a"]


def test_statements_split_where_sqlite_says_a_statement_ends():
    script = """
    CREATE TABLE a (x TEXT DEFAULT ';');  -- a comment; with a semicolon
    CREATE TRIGGER tr AFTER INSERT ON a BEGIN
        UPDATE a SET x = 'y;z';
    END;
    INSERT INTO a VALUES ('tail without a semicolon')
    """
    got = sqlite.statements(script)
    assert len(got) == 3
    assert got[1].startswith("CREATE TRIGGER") and got[1].endswith("END;")
    assert got[2] == "INSERT INTO a VALUES ('tail without a semicolon')"
    assert sqlite.statements("  \n ") == []


def test_the_site_schema_is_the_same_whichever_way_it_is_split(tmp_path):
    by_splitter = sqlite.connect(tmp_path / "a.db")
    for statement in sqlite.statements(edge_store.SCHEMA):
        by_splitter.execute(statement)
    by_script = sqlite3.connect(tmp_path / "b.db")
    for statement in edge_store.SCHEMA.split(";"):  # how the site split it before
        if statement.strip():
            by_script.execute(statement)
    query = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    assert [tuple(r) for r in by_splitter.execute(query)] == by_script.execute(query).fetchall()


def test_migrations_are_applied_once_in_order_and_recorded(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    scripts = ["CREATE TABLE t (n INTEGER);\nINSERT INTO t VALUES (1);", "INSERT INTO t VALUES (2);"]
    assert sqlite.apply_migrations(conn, "my.module", scripts) == ["my.module#0", "my.module#1"]
    assert sqlite.apply_migrations(conn, "my.module", scripts) == []
    scripts.append("INSERT INTO t VALUES (3);")
    assert sqlite.apply_migrations(conn, "my.module", scripts) == ["my.module#2"]
    assert [r[0] for r in conn.execute("SELECT n FROM t ORDER BY n")] == [1, 2, 3]
    rows = conn.execute("SELECT module, idx, applied_at FROM schema_migrations ORDER BY idx").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("my.module", 0), ("my.module", 1), ("my.module", 2)]
    assert all(r[2] for r in rows)


def test_a_failing_migration_leaves_nothing_behind(tmp_path):
    conn = sqlite.connect(tmp_path / "a.db")
    with pytest.raises(sqlite3.OperationalError):
        sqlite.apply_migrations(conn, "m", ["CREATE TABLE t (n INTEGER);\nINSERT INTO nowhere VALUES (1);"])
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 0


# The bookkeeping exactly as the earlier copies wrote it (cloud_sync/db.py migrate, sitelink/store.py
# ensure_schema): a database they made must not see a script run again.
OLD_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " module TEXT NOT NULL, idx INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')),"
    " PRIMARY KEY (module, idx))"
)


def test_an_existing_site_database_runs_nothing_again(tmp_path):
    """An edge box's file from before: the site's tables, the link's tables and the link's one row in
    schema_migrations ("sitelink.store", 0). Opened now, nothing is re-run and no other key appears."""
    path = tmp_path / "site.sqlite"
    old = sqlite3.connect(path)
    old.executescript(edge_store.SCHEMA)
    old.execute(OLD_TABLE)
    for statement in sqlite.statements(link_store.MIGRATIONS[0]):
        old.execute(statement)
    old.execute("INSERT INTO schema_migrations(module, idx, applied_at) VALUES ('sitelink.store', 0, 'then')")
    old.execute("INSERT INTO link_out_seq(peer, last_seq) VALUES ('site-1', 41)")
    old.commit()
    old.close()
    conn = edge_store.connect(path)
    link_store.ensure_schema(conn)
    assert [tuple(r) for r in conn.execute("SELECT module, idx, applied_at FROM schema_migrations")] == [
        ("sitelink.store", 0, "then")
    ]
    assert conn.execute("SELECT last_seq FROM link_out_seq").fetchone()[0] == 41
    assert sqlite.apply_migrations(conn, link_store.MODULE, link_store.MIGRATIONS) == []


def test_an_existing_cloud_database_runs_nothing_again(tmp_path):
    import cloud_sync.schema as db
    conn = db.open_db(tmp_path / "cloud.db")
    keys = [tuple(r) for r in conn.execute("SELECT module, idx FROM schema_migrations ORDER BY module, idx")]
    assert ("sitelink.store", 0) in keys and len(keys) > 10
    assert db.migrate(conn) == []
    link_store.ensure_schema(conn)
    assert [tuple(r) for r in conn.execute("SELECT module, idx FROM schema_migrations ORDER BY module, idx")] == keys


def test_write_if_free_skips_while_another_writer_holds_the_database(tmp_path):
    a = sqlite.connect(tmp_path / "a.db")
    b = sqlite.connect(tmp_path / "a.db")
    a.execute("CREATE TABLE seen (n INTEGER)")
    with sqlite.transaction(a):
        assert sqlite.write_if_free(b, "INSERT INTO seen VALUES (1)", wait_ms=20) is False
    assert b.execute("PRAGMA busy_timeout").fetchone()[0] == 30000  # its own wait is given back
    assert sqlite.write_if_free(b, "INSERT INTO seen VALUES (?)", (2,)) is True
    assert [r[0] for r in a.execute("SELECT n FROM seen")] == [2]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite.write_if_free(b, "INSERT INTO nowhere VALUES (1)")


def test_writers_waiting_counts_the_threads_waiting_for_the_same_file(tmp_path):
    """A thread waiting in `transaction` for the write lock is counted for its database file (the site
    link leaves such a writer a gap at once), and no longer once it has the lock."""
    holder = sqlite.connect(tmp_path / "a.db")
    other_file = sqlite.connect(tmp_path / "b.db")
    waiter = sqlite.connect(tmp_path / "a.db")
    got_lock = threading.Event()

    def write() -> None:
        with sqlite.transaction(waiter):
            got_lock.set()

    with sqlite.transaction(holder):
        assert sqlite.writers_waiting(holder) == 0
        thread = threading.Thread(target=write)
        thread.start()
        for _ in range(500):
            if sqlite.writers_waiting(holder):
                break
            got_lock.wait(0.01)
        assert sqlite.writers_waiting(holder) == 1 and not got_lock.is_set()
        assert sqlite.writers_waiting(other_file) == 0  # another file's writers are not counted
    thread.join(10)
    assert got_lock.is_set() and sqlite.writers_waiting(holder) == 0
    for conn in (holder, other_file, waiter):
        conn.close()
