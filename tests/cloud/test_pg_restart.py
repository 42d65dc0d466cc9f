"""PostgreSQL restarted under a running cloud: every service thread keeps one connection for its whole life
(the jobs, the stock senders, the push worker, the heartbeat), and a connection the server dropped stayed
dropped — each round failed on it until the cloud itself was restarted. Now a dropped connection outside
a transaction is replaced at its next statement (a read or a BEGIN found dropped runs again on the new one);
inside a transaction nothing is ever run on its own: the transaction is gone, ROLLBACK ends it, COMMIT
says so."""

from __future__ import annotations

import pytest

from cloud_sync import db, pg
from cloud_sync.pg_cluster import Cluster


def restart(cluster: Cluster) -> None:
    """A real restart of the server (fast shutdown: every session ended), with its options as started."""
    cluster._run("pg_ctl", "-D", str(cluster.dir / "data"), "-l", str(cluster.dir / "server.log"), "-m", "fast",
                 "-w", "-t", "60", "restart")


@pytest.mark.parametrize("pooling", [True, False])
def test_a_thread_keeps_its_connection_through_a_restart_of_postgresql(cluster: Cluster, pooling: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "pooling", pooling)
    schema = f"restart_{int(pooling)}"
    conn = pg.connect(cluster.url, schema=schema)
    conn.execute("CREATE TABLE IF NOT EXISTS n (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    with db.transaction(conn):
        conn.execute("INSERT INTO n(v) VALUES (1)")
    idle = pg.connect(cluster.url, schema=schema)  # another one idle in the pool meanwhile
    idle.close()
    restart(cluster)
    # the next round: a read first, then a write transaction, as a job does
    assert conn.execute("SELECT COUNT(*) FROM n").fetchone()[0] == 1
    with db.transaction(conn):
        conn.execute("INSERT INTO n(v) VALUES (2)")
    assert [r[0] for r in conn.execute("SELECT v FROM n ORDER BY id")] == [1, 2]
    # a connection drawn afterwards (the pool's idle ones died with the server) works at once too
    other = pg.connect(cluster.url, schema=schema)
    assert other.execute("SELECT COUNT(*) FROM n").fetchone()[0] == 2
    other.close()
    conn.close()


def test_a_transaction_cut_by_a_restart_is_never_finished_on_its_own(cluster: Cluster) -> None:
    conn = pg.connect(cluster.url, schema="restart_tx")
    conn.execute("CREATE TABLE IF NOT EXISTS n (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO n(v) VALUES (1)")
    restart(cluster)
    with pytest.raises(pg.Error):  # the second write of the transaction: not run in autocommit by itself
        conn.execute("INSERT INTO n(v) VALUES (2)")
    with pytest.raises(pg.OperationalError, match="lost inside a transaction"):
        conn.execute("COMMIT")
    conn.execute("ROLLBACK")  # ends it here: the server ended it already
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM n").fetchone()[0] == 0  # nothing of it was kept
    with db.transaction(conn):  # and the connection goes on
        conn.execute("INSERT INTO n(v) VALUES (3)")
    assert [r[0] for r in conn.execute("SELECT v FROM n")] == [3]
    conn.close()
