"""A stolen site password against the broker (issue 21, points 1 and 7): a real Mosquitto configured as
the demo's broker (`marketsync.broker`) and as a real deployment (`marketsync link broker-config`, the
same files as systemd/mosquitto/), attacked with site-1's own credentials over TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketsync.broker import Broker
from sitelink import LinkConfig, SiteLink, sqlite

from .broker_kit import Door, Intruder, deployed_broker, wait_for

SITES = ["site-1", "site-2"]


class Setup:
    def __init__(self, door: Door, keys: dict[str, str], log: Path):
        self.door, self.keys, self.log = door, keys, log

    def link(self, tmp: Path, role: str, site: str | None = None, **kw) -> SiteLink:
        user = site or "cloud"
        return SiteLink(LinkConfig(role=role, site_id=site, db_path=str(tmp / f"{user}.db"), host=self.door.host,
                                   port=self.door.port, username=user, password=self.door.passwords[user],
                                   tls_ca=self.door.ca, keys_file=self.keys[user], **kw))


@pytest.fixture(params=["demo broker", "broker-config"])
def setup(request, tmp_path) -> Iterator[Setup]:
    if request.param == "demo broker":
        with Broker(workdir=tmp_path / "b", secure=True, sites=SITES) as b:
            door = Door(b.host, b.port, b.ca_file or "", dict(b.passwords))
            yield Setup(door, {u: b.keys_file(u) for u in ["cloud", *SITES]}, b.log_path)
        return
    door, proc, creds = deployed_broker(tmp_path, SITES)
    try:
        yield Setup(door, {u: str(creds / f"{u}.keys") for u in ["cloud", *SITES]}, tmp_path / "mosquitto.log")
    finally:
        proc.terminate()
        proc.wait(10)


def delta(i: int) -> dict:
    return {"warehouse": "main", "item_id": f"item-{i}", "delta": -1, "reason": "pick"}


def test_a_site_password_cannot_knock_the_cloud_off(setup, tmp_path):
    """site-1's password with the cloud's client id (and with the bare name "cloud"), clean session off,
    eight times in a row: the cloud's connection is never closed and it keeps receiving."""
    got: list[str] = []
    cloud = setup.link(tmp_path, "cloud")
    cloud.on("stock_delta", lambda conn, env: got.append(env.body["item_id"]))
    site2 = setup.link(tmp_path, "site", "site-2")
    drops: list[float] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            if not cloud.connected:
                drops.append(time.monotonic())
            time.sleep(0.005)

    try:
        cloud.start()
        site2.start()
        wait_for(lambda: cloud.connected and site2.connected, 15, "the links")
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for n in range(8):
            intruder = Intruder(setup.door, "site-1", "ms-cloud" if n % 2 == 0 else "cloud")
            time.sleep(0.2)
            intruder.close()
        conn = sqlite.connect(tmp_path / "site-2.db")
        site2.send(conn, "stock_delta", delta(1))
        wait_for(lambda: got == ["item-1"], 15, "the cloud to receive after the attempts")
        watching.set()
        watcher.join(2)
        assert drops == [], f"the cloud lost its connection {len(drops)} time(s)"
        log = setup.log.read_text(errors="replace")
        assert "Client ms-cloud already connected" not in log and "Client cloud already connected" not in log
        assert cloud.status()["dead_letters"] == 0
    finally:
        watching.set()
        site2.stop()
        cloud.stop()


FORBIDDEN_FOR_SITE_1 = [
    "ms/v1/site-1/down", "ms/v1/site-1/ack/down", "ms/v1/cloud/state",  # what only the cloud says
    "ms/v1/site-2/up", "ms/v1/site-2/ack/up", "ms/v1/site-2/state",  # speaking as another site
    "ms/v1/site-2/down", "ms/v1/site-2/ack/down", "ms/v1/other/thing",
]
FORBIDDEN_FOR_CLOUD = ["ms/v1/site-1/up", "ms/v1/site-1/ack/up", "ms/v1/site-1/state"]


def test_each_side_publishes_only_its_own_direction(setup):
    """Every forbidden publish of site-1 (retained too) reaches no subscriber that may read that topic,
    now or later; the cloud cannot speak for a site either. The allowed ones are the control."""
    door = setup.door
    cloud = Intruder(door, "cloud", "c")
    site1 = Intruder(door, "site-1", "s1")
    site2 = Intruder(door, "site-2", "s2")
    try:
        cloud.subscribe("ms/v1/+/up", "ms/v1/+/ack/up", "ms/v1/+/state")
        site1.subscribe("ms/v1/site-1/down", "ms/v1/site-1/ack/down", "ms/v1/cloud/state")
        site2.subscribe("ms/v1/site-2/down", "ms/v1/site-2/ack/down", "ms/v1/cloud/state")
        for topic in FORBIDDEN_FOR_SITE_1:
            site1.publish(topic, "forged by site-1", retain=True)
        for topic in FORBIDDEN_FOR_CLOUD:
            cloud.publish(topic, "forged by the cloud", retain=True)
        # the control: what each may say arrives
        site1.publish("ms/v1/site-1/up", "site-1 up")
        site1.publish("ms/v1/site-1/ack/up", "site-1 ack")
        site1.publish("ms/v1/site-1/state", "site-1 state")
        cloud.publish("ms/v1/site-1/down", "cloud down")
        cloud.publish("ms/v1/site-1/ack/down", "cloud ack")
        cloud.publish("ms/v1/cloud/state", "cloud state")
        wait_for(lambda: len(cloud.messages) >= 3 and len(site1.messages) >= 3 and len(site2.messages) >= 1,
                 10, "the allowed messages")
        time.sleep(0.5)
        late = Intruder(door, "site-2", "s2-late")  # a later subscriber sees no forged retained message
        late.subscribe("ms/v1/site-2/down", "ms/v1/site-2/ack/down", "ms/v1/cloud/state")
        time.sleep(0.5)
        everything = cloud.messages + site1.messages + site2.messages + late.messages
        late.close()
        assert not [t for t, p, _ in everything if p.startswith(b"forged")], "a forbidden publish was delivered"
        assert sorted(cloud.topics()) == [  # its own presence comes back to it (it reads every state)
            "ms/v1/cloud/state", "ms/v1/site-1/ack/up", "ms/v1/site-1/state", "ms/v1/site-1/up"]
        assert sorted(site1.topics()) == ["ms/v1/cloud/state", "ms/v1/site-1/ack/down", "ms/v1/site-1/down"]
    finally:
        for c in (cloud, site1, site2):
            c.close()


def test_forbidden_subscriptions_get_nothing(setup):
    """site-1 subscribes to what goes up, to other sites and to everything: nothing reaches it but its
    own down stream; the cloud subscribing to the down streams gets nothing either."""
    door = setup.door
    site1 = Intruder(door, "site-1", "s1")
    cloud = Intruder(door, "cloud", "c")
    site2 = Intruder(door, "site-2", "s2")
    try:
        site1.subscribe("ms/v1/#", "ms/v1/site-1/up", "ms/v1/site-1/state", "ms/v1/site-2/#", "#", "$SYS/#")
        cloud.subscribe("ms/v1/+/down", "ms/v1/+/ack/down")
        site2.publish("ms/v1/site-2/up", "site-2 up")
        site2.publish("ms/v1/site-2/state", "site-2 state", retain=True)
        site2.publish("ms/v1/site-2/ack/up", "site-2 ack")
        cloud.publish("ms/v1/site-2/down", "for site-2")
        cloud.publish("ms/v1/site-1/down", "for site-1")
        wait_for(lambda: site1.messages, 10, "site-1's own message")
        time.sleep(0.5)
        assert {p for _, p, _ in site1.messages} == {b"for site-1"}
        assert cloud.messages == [], "the cloud read the down streams"
    finally:
        for c in (cloud, site1, site2):
            c.close()


def test_the_links_work_with_the_bound_ids_and_keep_their_sessions(setup, tmp_path):
    """Each side is one persistent session under its user name: a message published while the site is
    away is queued by the broker and arrives when it is back, signed and checked."""
    got: list[str] = []
    cloud = setup.link(tmp_path, "cloud")
    site = setup.link(tmp_path, "site", "site-1")
    site.on("pick_task", lambda conn, env: got.append(env.body["task_id"]))
    try:
        site.start()
        cloud.start()
        wait_for(lambda: cloud.connected and site.connected, 15, "the links")
        site.stop()
        conn = sqlite.connect(tmp_path / "cloud.db")
        cloud.send(conn, "pick_task", {"task_id": "t1", "order_id": "o1", "marketplace": "x", "lines": []},
                   site="site-1")
        time.sleep(0.5)  # published into the site's session while it is away
        site = setup.link(tmp_path, "site", "site-1")
        site.on("pick_task", lambda conn, env: got.append(env.body["task_id"]))
        site.start()
        assert cloud.wait_idle(20)
        assert got == ["t1"]
        assert site.status()["signed"] and site.status()["dead_letters"] == 0
    finally:
        site.stop()
        cloud.stop()
