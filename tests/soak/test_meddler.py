"""The soak's hand on the broker against a real link over a real (TLS, per-site ACL) Mosquitto: each
malformed payload it sends becomes exactly one dead letter (what the judge counts on), and its
replays — verbatim, seq-changed, reordered with a hole — reach the receiver as real traffic."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from marketsync.broker import Broker
from marketsync.soak_link import MALFORMED, LinkMeddler, wait_connected
from sitelink import LinkConfig, SiteLink, sqlite, store


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def applied(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT item FROM applied ORDER BY rowid")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def record(conn: sqlite3.Connection, env) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS applied (item TEXT)")
    conn.execute("INSERT INTO applied VALUES (?)", (env.body["item_id"],))


def send(link: SiteLink, db: Path, items: range) -> None:
    conn = sqlite.connect(str(db))
    try:
        for i in items:
            conn.execute("BEGIN IMMEDIATE")
            link.send(conn, "stock_delta", {"warehouse": "main", "item_id": f"i{i}", "delta": -1, "reason": "pick"})
            conn.execute("COMMIT")
    finally:
        conn.close()


def test_malformed_messages_become_one_dead_letter_each_and_replays_apply_nothing_twice(tmp_path: Path) -> None:
    """The meddler has its own broker identity (an observer): it copies and publishes on every link topic
    without taking over the cloud's session; a replay whose seq it changed no longer fits its envelope's
    MAC and is one more dead letter, as the judge expects (`expected_dead_letters`)."""
    secure_broker = Broker(workdir=tmp_path / "broker", secure=True, sites=["site-1"], observers=["soak"])
    secure_broker.start()
    cloud_db, site_db = tmp_path / "cloud.db", tmp_path / "site.db"
    cloud = SiteLink(LinkConfig(role="cloud", db_path=str(cloud_db), gap_timeout=3.0, resend_after=2.0,
                                **secure_broker.link_settings()))
    cloud.on("stock_delta", record)
    site = SiteLink(LinkConfig(role="site", site_id="site-1", db_path=str(site_db), resend_after=2.0,
                               **secure_broker.link_settings("site-1")))
    creds = secure_broker.link_settings("soak")
    meddler = LinkMeddler(host=creds["host"], port=creds["port"], username=creds["username"],
                          password=creds["password"], tls_ca=creds["tls_ca"], site="site-1", rng=random.Random(3))
    try:
        cloud.start()
        site.start()
        assert wait_connected(meddler)
        wait_for(lambda: cloud.connected and site.connected, what="both links")
        send(site, site_db, range(6))
        wait_for(lambda: len(applied(cloud_db)) == 6 and len(meddler.seen["up"]) >= 1, what="six applied, copied")
        wait_for(lambda: meddler.top_seq["up"] == 6, what="the meddler to copy all six")
        for _ in MALFORMED:
            assert meddler.malformed_message("up")
        assert meddler.malformed == {"cloud": len(MALFORMED), "site": 0}
        assert meddler.verbatim_replay("up") and meddler.seq_changed_replay("up")
        assert meddler.reordered_replay("up") and meddler.reordered_replay("up")
        send(site, site_db, range(6, 10))  # real traffic after the replays: none of it may be lost
        wait_for(lambda: len(applied(cloud_db)) >= 10 and site.wait_idle(0.1), 60, "the last four applied")
        time.sleep(4)  # a hole before the moved replays: give the gap timeout its turn
        items = applied(cloud_db)
        assert sorted(items) == sorted(f"i{i}" for i in range(10)), items  # each once, none lost
        conn = sqlite3.connect(cloud_db)
        dead = conn.execute("SELECT COUNT(*) FROM link_dead_letters").fetchone()[0]
        conn.close()
        assert dead == meddler.expected_dead_letters()["cloud"] > len(MALFORMED)
        assert meddler.sent >= len(MALFORMED) + 2 + 6
        assert store.status(sqlite.connect(str(site_db)))["outbox_total"] == 0
    finally:
        meddler.close()
        site.stop()
        cloud.stop()
        secure_broker.stop()
