"""Sellers' site links on one broker (real Mosquitto, TLS, the ACL blocks `tenant add` wrote): a site of
seller alfa can neither publish into seller beta's tree (or the main seller's) nor read it — the broker
refuses the publish and delivers nothing of beta's, and beta's cloud never sees the message — while beta's
own site reaches beta's cloud, and only beta's: each seller's cloud link subscribes in its own tree only."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud_sync.db import connect
from sitelink import LinkConfig, SiteLink, envelope, sqlite
from sitelink.link import topic_root

from .conftest import World, wait_for

pytestmark = pytest.mark.slow


class Raw:
    """A plain MQTT v5 client as one broker user: what it receives and the broker's answer to each publish."""

    def __init__(self, world: World, user: str, password: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.acked: dict[int, object] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.tls_set(ca_certs=world.broker.ca_file)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_publish = lambda c, u, mid, rc, p: self.acked.__setitem__(mid, rc)
        self.rc: object = None
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "rc", rc)
        self.client.connect(world.broker.host, world.broker.port)
        self.client.loop_start()
        wait_for("the raw client connected", lambda: self.rc is not None, 10)
        assert not self.rc.is_failure, self.rc  # type: ignore[attr-defined]

    def subscribe(self, *topics: str) -> None:
        done: list[object] = []
        self.client.on_subscribe = lambda c, u, mid, rcs, p: done.append(rcs)
        self.client.subscribe([(t, 1) for t in topics])
        wait_for("suback", lambda: done, 5)

    def publish(self, topic: str, payload: str) -> object:
        """The broker's PUBACK reason code for a QoS 1 publish."""
        mid = self.client.publish(topic, payload, qos=1).mid
        return wait_for(f"the broker's answer to {topic}", lambda: self.acked.get(mid), 5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _password(world: World, tenant: str, user: str) -> str:
    return (world.sellers[tenant].folder / "broker" / "credentials" / f"{user}.password").read_text().strip()


def _received(world: World, tenant: str) -> tuple[int, int]:
    """(inbox rows, dead letters) of a seller's store: everything its cloud link ever took from a site."""
    conn = connect(world.db(tenant))
    try:
        return (conn.execute("SELECT COUNT(*) FROM link_inbox").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM link_dead_letters").fetchone()[0])
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_a_site_cannot_publish_into_or_read_another_sellers_tree(world: World, tmp_path: Path) -> None:
    for tenant in ("alfa", "beta", ""):
        wait_for(f"{tenant or 'main'}'s cloud link up", lambda t=tenant: (
            world.host.services[t] if t else world.host.main).link.connected, 20)
    before = {t: _received(world, t) for t in ("alfa", "beta", "")}
    intruder = Raw(world, "alfa.site-1", _password(world, "alfa", "alfa.site-1"))
    try:
        # reading: beta's tree (its cloud's retained presence sits there), the main seller's, everything
        intruder.subscribe("ms/t/beta/v1/#", "ms/v1/#", "ms/t/alfa/v1/cloud/state")
        forged = envelope.make("site-1", 1, "scan", {"code": "forged-by-alfa"}).to_json()
        refused = {topic: intruder.publish(topic, forged) for topic in (
            "ms/t/beta/v1/site-1/up", "ms/t/beta/v1/cloud/state", "ms/v1/site-1/up", "ms/t/beta/v1/site-1/down")}
        own = intruder.publish("ms/t/alfa/v1/site-1/state", '{"state": "online"}')
        wait_for("alfa's own cloud presence (the control)", lambda: any(
            t == "ms/t/alfa/v1/cloud/state" for t, _ in intruder.messages), 10)
        time.sleep(1.5)
        assert not own.is_failure  # type: ignore[attr-defined]
        assert all(rc.is_failure and "authori" in str(rc).lower() for rc in refused.values()), refused  # type: ignore[attr-defined]
        assert {t for t, _ in intruder.messages} == {"ms/t/alfa/v1/cloud/state"}, intruder.messages
    finally:
        intruder.close()
    assert {t: _received(world, t) for t in ("alfa", "beta", "")} == before  # nobody's cloud took it

    # beta's own site, as `tenant add` set it up, reaches beta's cloud, and only beta's
    creds = world.sellers["beta"].folder / "broker" / "credentials"
    site = SiteLink(LinkConfig(role="site", site_id="site-1", db_path=str(tmp_path / "site.db"),
                               host=world.broker.host, port=world.broker.port, username="beta.site-1",
                               password=_password(world, "beta", "beta.site-1"), tls_ca=world.broker.ca_file,
                               keys_file=str(creds / "site-1.keys"), prefix=topic_root("beta")))
    site.start()
    try:
        conn = sqlite.connect(tmp_path / "site.db")
        with sqlite.transaction(conn):
            site.send(conn, "scan", {"code": "beta-own-scan"})
        conn.close()
        wait_for("beta's cloud applied its site's message", lambda: _received(world, "beta")[0] > before["beta"][0], 20)
        assert site.wait_idle(10)  # acknowledged by beta's cloud
    finally:
        site.stop()
    after = {t: _received(world, t) for t in ("alfa", "beta", "")}
    assert after["alfa"] == before["alfa"] and after[""] == before[""]
    assert after["beta"] == (before["beta"][0] + 1, before["beta"][1])  # applied, no dead letter


def test_each_cloud_link_subscribes_in_its_own_tree_only(world: World, tmp_path: Path) -> None:
    for tenant in ("alfa", "beta"):
        link = world.host.services[tenant].link
        root = f"ms/t/{tenant}/v1/"
        assert link.cfg.prefix + "/" == root
        assert link._cloud_topics() and all(t.startswith(root) for t in link._cloud_topics())
        assert link._state_topic() == root + "cloud/state"
    assert all(t.startswith("ms/v1/") for t in world.host.main.link._cloud_topics())
    # with several cloud processes ([link] share_group): the shared subscription is in the tree too
    member = SiteLink(LinkConfig(role="cloud", db_path=str(tmp_path / "c.db"), share_group="ms-cloud", part="receive",
                                 prefix=topic_root("alfa")))
    assert member._cloud_topics() == ["$share/ms-cloud/ms/t/alfa/v1/+/up"]
    # and the clients are told apart: two sellers' clouds and sites are never one broker session
    ids = {SiteLink(LinkConfig(role=r, site_id=s, db_path=str(tmp_path / "x.db"), prefix=topic_root(t) if t else
                               "ms/v1"))._make_client()._client_id for r, s, t in (
        ("cloud", None, "alfa"), ("cloud", None, "beta"), ("cloud", None, ""), ("site", "site-1", "alfa"),
        ("site", "site-1", "beta"), ("site", "site-1", ""))}
    assert len(ids) == 6
