"""Sites spread over a regional Mosquitto bridged to the central one (the bridge and both ACLs as
`marketsync link bridge-config` writes them): 20 sites on the regional broker, the cloud's processes on
the central one as members of a shared subscription, traffic both ways, and each broker restarted in the
middle of it (the regional one stopped and started, the central one SIGKILLed): nothing lost, nothing
applied twice. The per-site ACL holds on both brokers, and the bridge carries only the sites' trees."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from marketsync.broker import Broker
from sitelink import LinkConfig, SiteLink, sqlite
from sitelink.bridge_config import bridge_conf, central_acl

from .conftest import RawClient, delta_body, pick_body, record, wait_for

REGION = "north"


def applied(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT msg_id, seq, type, key FROM applied").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.fixture
def bridged(tmp_path: Path):
    """(central, regional): the central broker (TLS, ACL with the bridge's user and two cloud members)
    and the regional one (its 20 sites, TLS, ACL) with its bridge to the central one."""
    sites = [f"site-{i}" for i in range(1, 21)]
    password = secrets.token_urlsafe(18)
    central = Broker(workdir=tmp_path / "central", secure=True, sites=sites, cloud_processes=2,
                     passwords={f"bridge-{REGION}": password}, extra_acl=central_acl(REGION, sites))
    central.start()
    regional = Broker(workdir=tmp_path / "regional", secure=True, sites=sites,
                      extra_conf=bridge_conf(REGION, sites, central_host=central.host, central_port=central.port,
                                             password=password, central_ca=str(central.ca_file)))
    regional.start()
    try:
        yield central, regional
    finally:
        regional.close()
        central.close()


def test_twenty_sites_behind_a_bridge_and_both_brokers_restarted(bridged, tmp_path):
    central, regional = bridged
    sites = regional.sites
    up_n, down_n, rounds = 80, 40, 40
    cloud_db = tmp_path / "cloud.db"
    links: list[SiteLink] = []

    def link(**kw) -> SiteLink:
        lk = SiteLink(LinkConfig(resend_after=2.0, gap_timeout=60.0, **kw))
        links.append(lk)
        return lk

    sender = link(role="cloud", db_path=str(cloud_db), part="send", share_group="ms-cloud",
                  **central.link_settings())
    members = [link(role="cloud", db_path=str(cloud_db), part="receive", share_group="ms-cloud",
                    **central.link_settings(f"cloud-{n}")) for n in (1, 2)]
    site_links = {s: link(role="site", site_id=s, db_path=str(tmp_path / f"{s}.db"),
                          **regional.link_settings(s, keys_from=central)) for s in sites}
    for m in members:
        m.on("stock_delta", record)
    for s in site_links.values():
        s.on("pick_task", record)
    try:
        for lk in links:
            lk.start()
        wait_for(lambda: all(lk.connected for lk in links), 20, "every link to connect")
        errors: list[BaseException] = []

        def traffic() -> None:
            try:
                cloud_conn = sqlite.connect(cloud_db)
                site_conns = {s: sqlite.connect(site_links[s].cfg.db_path) for s in sites}
                for r in range(rounds):
                    for s in sites:
                        with sqlite.transaction(site_conns[s]):
                            for i in range(r * up_n // rounds, (r + 1) * up_n // rounds):
                                site_links[s].send(site_conns[s], "stock_delta", delta_body(f"{s}-{i}"))
                        with sqlite.transaction(cloud_conn):
                            sender.send_many(cloud_conn, s, [
                                ("pick_task", pick_body(i))
                                for i in range(r * down_n // rounds, (r + 1) * down_n // rounds)])
                    time.sleep(0.1)
                for c in (cloud_conn, *site_conns.values()):
                    c.close()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        writer = threading.Thread(target=traffic)
        writer.start()
        wait_for(lambda: len(applied(cloud_db)) >= 200, 30, "traffic to flow through the bridge")
        assert writer.is_alive(), "the regional broker restarts mid-traffic"
        regional.restart()  # the regional broker: its sites and the bridge come back
        wait_for(lambda: len(applied(cloud_db)) >= 600, 60, "traffic to flow again")
        assert writer.is_alive(), "the central broker is killed mid-traffic"
        central.kill()  # the central broker killed, as a power cut would, and started again
        time.sleep(0.5)
        central.start()
        writer.join(120)
        assert not errors, errors
        for s, lk in site_links.items():
            assert lk.wait_idle(120), f"{s}: everything it sent acknowledged"
        assert sender.wait_idle(120), "everything the cloud sent acknowledged"
        wait_for(lambda: len(applied(cloud_db)) >= len(sites) * up_n, 30, "every stock delta applied")
    finally:
        for lk in links:
            lk.stop()
    at_cloud = Counter(r[3] for r in applied(cloud_db))
    assert set(at_cloud) == {f"item-{s}-{i}" for s in sites for i in range(up_n)}, "nothing lost on the way up"
    assert max(at_cloud.values()) == 1, "nothing applied twice at the cloud"
    for s in sites:
        at_site = Counter(r[3] for r in applied(tmp_path / f"{s}.db"))
        assert set(at_site) == {f"t{i}" for i in range(down_n)}, f"{s}: nothing lost on the way down"
        assert max(at_site.values()) == 1, f"{s}: nothing applied twice"


def test_the_acl_holds_on_both_brokers_and_the_bridge_carries_only_the_sites_trees(bridged):
    central, regional = bridged
    cloud = RawClient(central, "cloud", **_auth(central, "cloud"))
    cloud.subscribe("ms/v1/#")
    site = RawClient(regional, "site-1", **_auth(regional, "site-1"))
    site.subscribe("ms/v1/#")
    time.sleep(1.0)
    site.publish("ms/v1/site-1/up", b"ok-1")
    site.publish("ms/v1/site-2/up", b"forged")  # another site's topic: refused on the regional broker
    site.publish("ms/v1/other/x", b"stray")  # outside every tree: never bridged
    cloud.publish("ms/v1/site-1/down", b"task-1")
    wait_for(lambda: (("ms/v1/site-1/up", b"ok-1") in cloud.messages
                      and ("ms/v1/site-1/down", b"task-1") in site.messages), 20, "both ways across the bridge")
    time.sleep(0.5)
    assert ("ms/v1/site-2/up", b"forged") not in cloud.messages
    assert not [m for m in cloud.messages if m[0] == "ms/v1/other/x"]
    assert not [m for m in site.messages if m[0].startswith("ms/v1/site-2/")], "a site reads only its own"
    # on the central broker the bridge's user has its sites' rights together, and nothing more
    bridge_user = f"bridge-{REGION}"
    rogue = RawClient(central, bridge_user, **_auth(central, bridge_user))
    rogue.publish("ms/v1/site-1/down", b"forged-down")  # a bridge carries only what goes up
    rogue.publish("ms/v1/elsewhere/up", b"not-its-site")
    time.sleep(0.5)
    assert ("ms/v1/site-1/down", b"forged-down") not in site.messages
    assert ("ms/v1/elsewhere/up", b"not-its-site") not in cloud.messages
    for c in (cloud, site, rogue):
        c.close()


def _auth(b: Broker, user: str) -> dict:
    return {"username": user, "password": b.passwords[user], "tls_ca": b.ca_file}
