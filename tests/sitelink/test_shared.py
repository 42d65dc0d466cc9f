"""Several cloud processes on one store receive the sites' traffic through an MQTT v5 shared subscription
(`$share/<group>/ms/v1/+/up`): each message is applied once, in each site's seq order, acknowledged to its
site as before, and a member SIGKILLed mid-stream loses nothing (its sites send again what it left
unacknowledged) and makes nothing apply twice (the inbox's ids)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sitelink import LinkConfig, SiteLink, envelope
from sitelink.envelope import Envelope
from sitelink.store import LinkError

from .conftest import applied_rows, delta_body, record, wait_for
from .test_link import send_many

SCRIPT = Path(__file__).with_name("cloud_member_process.py")


def rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT msg_id, seq, key, site, member FROM applied ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def start_member(db: Path, port: int, name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(db), str(port), name], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def check_once_in_order(applied: list[tuple], sites: list[str], n: int) -> None:
    keys = Counter((r[3], r[2]) for r in applied)
    assert len(keys) == len(sites) * n, "every message applied"
    assert max(keys.values()) == 1, f"applied twice: {[k for k, c in keys.items() if c > 1][:5]}"
    for site in sites:  # the store's order of application is each site's seq order
        seqs = [r[1] for r in applied if r[3] == site]
        assert seqs == sorted(seqs), f"{site} applied out of order"


def test_members_of_a_share_group_each_apply_a_part_once_in_order(make_link, broker, tmp_path):
    sites = [f"site-{i}" for i in range(1, 6)]
    n = 400
    db = tmp_path / "cloud.db"
    sender = make_link("cloud", db="cloud.db", part="send", share_group="ms-cloud")
    members = [start_member(db, broker.port, f"m{i}") for i in range(3)]
    try:
        links = [make_link("site", site_id=s, publish_batch=20) for s in sites]
        for link, site in zip(links, sites, strict=True):
            send_many(link, link.cfg.db_path, "stock_delta", [delta_body(f"{site}-{i}") for i in range(n)],
                      per_txn=25)
        for link in links:  # every message acknowledged to its site (by whichever member applied it)
            assert link.wait_idle(60)
        wait_for(lambda: len(rows(db)) >= len(sites) * n, 30, "every message applied")
    finally:
        for p in members:
            p.terminate()
            p.wait(10)
    applied = rows(db)
    check_once_in_order(applied, sites, n)
    by_member = Counter(r[4] for r in applied)
    assert len(by_member) == 3 and min(by_member.values()) > 0, f"the work is shared: {by_member}"
    assert sender.connected and sender.status()["dead_letters"] == 0


def test_a_member_killed_mid_stream_loses_nothing_and_applies_nothing_twice(make_link, broker, tmp_path):
    sites = [f"site-{i}" for i in range(1, 5)]
    n = 1500
    db = tmp_path / "cloud.db"
    make_link("cloud", db="cloud.db", part="send", share_group="ms-cloud")
    members = [start_member(db, broker.port, f"m{i}") for i in range(3)]
    try:
        links = [make_link("site", site_id=s, publish_batch=20) for s in sites]
        for link, site in zip(links, sites, strict=True):
            send_many(link, link.cfg.db_path, "stock_delta", [delta_body(f"{site}-{i}") for i in range(n)])
        wait_for(lambda: len(rows(db)) >= n, 60, "the stream to run")
        members[0].send_signal(signal.SIGKILL)
        members[0].wait(10)
        assert len(rows(db)) < len(sites) * n, "killed mid-stream"
        wait_for(lambda: len(rows(db)) >= 2 * n, 60, "the stream to go on")
        members[1].send_signal(signal.SIGKILL)  # a second one, and a fresh process in its place
        members[1].wait(10)
        members.append(start_member(db, broker.port, "m3"))
        for link in links:
            assert link.wait_idle(90)
        wait_for(lambda: len(rows(db)) >= len(sites) * n, 30, "every message applied")
    finally:
        for p in members:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
    check_once_in_order(rows(db), sites, n)


def test_a_batch_delivered_again_to_another_member_is_acknowledged_not_applied_twice(make_link, broker, raw):
    """What a killed member had applied but not yet acknowledged comes again from its site, and the broker
    hands the copy to another member (whose own next seq is behind): the store's inbox decides."""
    members = [make_link("cloud", db="cloud.db", part="receive", share_group="g", handlers={"stock_delta": record})
               for _ in range(2)]
    site = raw(broker, "fake-site-1")
    site.subscribe("ms/v1/site-1/ack/down")
    ids = envelope.new_ids(10)
    batch = "[" + ",".join(Envelope(id=ids[i], site="site-1", seq=i + 1, type="stock_delta", ts=envelope.now_ts(),
                                    body=delta_body(i)).to_json() for i in range(10)) + "]"
    for _ in range(4):  # round robin: each member gets the batch twice
        site.publish("ms/v1/site-1/up", batch)
    wait_for(lambda: len(site.acks()) >= 40, 20, "every copy acknowledged")
    rows = applied_rows(Path(members[0].cfg.db_path))
    assert sorted(r[0] for r in rows) == sorted(ids), "each message applied once, by whichever member"
    assert Counter(i for _, i in site.acks()) == {i: 4 for i in ids}


def test_share_group_and_part_are_the_clouds():
    with pytest.raises(LinkError, match="part"):
        SiteLink(LinkConfig(role="cloud", db_path=":memory:", part="half"))
    with pytest.raises(LinkError, match="site link"):
        SiteLink(LinkConfig(role="site", db_path=":memory:", site_id="s1", share_group="g"))
    with pytest.raises(LinkError, match="share group"):
        SiteLink(LinkConfig(role="cloud", db_path=":memory:", share_group="a/b"))
