"""Three `marketsync cloud serve` processes with `[link] share_group` on one store and a secure broker
(TLS, a user per process, the ACL broker-config writes): each process's member of the MQTT shared
subscription applies a part of the sites' stock changes, one process is SIGKILLed mid-stream, and every
change is in the ledger exactly once (judged from outside: the store read on its own connection, the sites'
outboxes empty: every message acknowledged)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

from cloud_sync.config import parse_config
from cloud_sync.db import connect
from cloud_sync.schema import open_db
from marketsync.broker import Broker
from marketsync.demo_catalog import demo_items, seed_demo
from marketsync.procs import Service, marketsync_argv
from sitelink import LinkConfig, SiteLink, sqlite

from ..sitelink.conftest import wait_for

SITES = ["site-1", "site-2", "site-3"]
N = 600  # stock changes per site


def moves(db: Path) -> list[tuple[str, str]]:
    conn = connect(db)  # the cloud's store on either engine (the PostgreSQL leg: a schema named after db)
    try:
        return conn.execute("SELECT ref, source FROM stock_moves WHERE source LIKE 'site:%'").fetchall()
    finally:
        conn.close()


def test_three_processes_share_the_sites_traffic_and_a_kill_loses_or_doubles_nothing(tmp_path: Path):
    broker = Broker(workdir=tmp_path / "broker", secure=True, sites=SITES, cloud_processes=3).start()
    db = tmp_path / "cloud.sqlite"
    user, password = broker.credentials("cloud")
    toml = tmp_path / "cloud.toml"
    toml.write_text(
        f'[cloud]\ndb_path = "{db}"\nport = 0\nsync_on_start = false\n'
        f'[link]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{user}"\npassword = "{password}"\n'
        f'tls_ca = "{broker.ca_file}"\nkeys_file = "{broker.keys_file("cloud")}"\nshare_group = "ms-cloud"\n'
        'member_username = "cloud-{instance}"\n'
        + "".join(f'[sites.{s}]\nwarehouses = ["main"]\n' for s in SITES[:1])
    )
    cfg = parse_config({"cloud": {"db_path": str(db)}}, env={})
    conn = open_db(str(db))
    seed_demo(conn, cfg, 5)
    conn.close()
    items = [i.item_id for i in demo_items(5, 7)]
    clouds = [Service(f"cloud-{n}", marketsync_argv("cloud", "serve", "--config", str(toml), "--instance", str(n)),
                      tmp_path / "logs" / f"cloud-{n}.log") for n in (1, 2, 3)]
    sites: list[SiteLink] = []
    try:
        for c in clouds:
            c.start(timeout=90)
        wait_for(lambda: all(f"as cloud-{n} " in broker.log_path.read_text() for n in (1, 2, 3)), 30,
                 "each process's member on the broker under its own user")
        for s in SITES:
            link = SiteLink(LinkConfig(role="site", site_id=s, db_path=str(tmp_path / f"{s}.db"), resend_after=2.0,
                                       publish_batch=10, **broker.link_settings(s)))
            link.start()
            sites.append(link)

        def send(link: SiteLink) -> None:
            conn = sqlite.connect(link.cfg.db_path)
            for i in range(N):
                with sqlite.transaction(conn):
                    link.send(conn, "stock_delta", {"warehouse": "main", "item_id": items[i % len(items)],
                                                    "delta": 1, "reason": "adjust", "ref": f"{link.cfg.site_id}-{i}"})
            conn.close()

        writers = [threading.Thread(target=send, args=(link,)) for link in sites]
        for w in writers:
            w.start()
        wait_for(lambda: len(moves(db)) >= N // 2, 20, "the sites' changes to arrive")
        victim = clouds.pop(0)
        assert victim.proc is not None
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        assert len(moves(db)) < len(SITES) * N, "killed mid-stream"
        for w in writers:
            w.join(60)
        for link in sites:
            assert link.wait_idle(90), f"{link.cfg.site_id}: every change acknowledged"
        wait_for(lambda: len(moves(db)) >= len(SITES) * N, 30, "every change in the ledger")
    finally:
        for link in sites:
            link.stop()
        for c in clouds:
            c.stop()
        broker.close()
    refs = Counter(ref for ref, _ in moves(db))
    assert set(refs) == {f"{s}-{i}" for s in SITES for i in range(N)}, "nothing lost"
    assert max(refs.values()) == 1, "nothing applied twice"
