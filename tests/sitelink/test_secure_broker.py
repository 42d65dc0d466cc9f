"""The broker as deployed: TLS, a password per site, and an ACL keeping each site to its own topics.
Real Mosquitto with the project's own generated config (marketsync.broker with sitelink.broker_config, as in systemd/mosquitto/)."""

from __future__ import annotations

import time

import pytest

from marketsync.broker import Broker
from sitelink import LinkConfig, SiteLink, envelope, sqlite
from sitelink.broker_config import mosquitto_hash

from .conftest import RawClient, applied_rows, delta_body, pick_body, record, wait_for


def auth(broker: Broker, user: str) -> dict:
    name, password = broker.credentials(user)
    return {"username": name, "password": password, "tls_ca": broker.ca_file}


def test_links_work_over_tls_with_passwords(secure_broker, tmp_path):
    b = secure_broker
    cloud = SiteLink(LinkConfig(role="cloud", db_path=str(tmp_path / "c.db"), **b.link_settings()))
    site = SiteLink(
        LinkConfig(role="site", site_id="site-1", db_path=str(tmp_path / "s.db"), **b.link_settings("site-1"))
    )
    cloud.on("stock_delta", record)
    site.on("pick_task", record)
    try:
        cloud.start()
        site.start()
        wait_for(lambda: cloud.connected and site.connected, 10, "TLS links")
        conn = sqlite.connect(tmp_path / "c.db")
        cloud.send(conn, "pick_task", pick_body(1), site="site-1")
        sconn = sqlite.connect(tmp_path / "s.db")
        site.send(sconn, "stock_delta", delta_body(1))
        assert cloud.wait_idle(10) and site.wait_idle(10)
        assert len(applied_rows(tmp_path / "s.db")) == 1 and len(applied_rows(tmp_path / "c.db")) == 1
        assert cloud.status()["peers_online"] == ["site-1"]
        wait_for(lambda: site.status()["peers_online"] == ["cloud"], 5, "the site to see the cloud online")
    finally:
        site.stop()
        cloud.stop()


def test_a_site_cannot_read_or_publish_another_sites_topics(secure_broker):
    b = secure_broker
    cloud = RawClient(b, "cloud-watch", **auth(b, "cloud"))
    site1 = RawClient(b, "site-1-raw", **auth(b, "site-1"))
    site2 = RawClient(b, "site-2-raw", **auth(b, "site-2"))
    try:
        assert not cloud.connect_rc.is_failure and not site1.connect_rc.is_failure
        cloud.subscribe("ms/v1/#")
        site1.subscribe("ms/v1/site-2/#")  # reading another site's topics
        site1_own = site1.suback
        site1.subscribe("ms/v1/site-1/down")
        assert not site1.suback[0].is_failure
        site2.subscribe("ms/v1/site-2/#")
        env = envelope.make("site-2", 1, "stock_delta", delta_body(1)).to_json()
        site1.publish("ms/v1/site-2/up", env)  # writing as another site
        site1.publish("ms/v1/site-1/up", env)  # its own topic: allowed
        site2.publish("ms/v1/site-2/state", '{"state": "online"}')
        site1.publish("ms/v1/cloud/state", '{"state": "offline"}')  # posing as the cloud
        cloud.publish("ms/v1/site-1/down", "for site-1")
        cloud.publish("ms/v1/site-2/down", "for site-2")
        wait_for(lambda: len(site2.messages) >= 1 and len(site1.messages) >= 1, 10, "deliveries")
        time.sleep(0.3)
        got_by_cloud = [t for t, _ in cloud.messages]
        assert "ms/v1/site-1/up" in got_by_cloud, "the control: a site's own topic works"
        assert "ms/v1/site-2/up" not in got_by_cloud, "site-1 published as site-2"
        assert "ms/v1/cloud/state" not in got_by_cloud, "site-1 spoke for the cloud"
        assert [t for t, _ in site1.messages] == ["ms/v1/site-1/down"], "site-1 read site-2's topics"
        assert site1_own[0].is_failure or all("site-2" not in t for t, _ in site1.messages)
        assert "ms/v1/site-2/state" in got_by_cloud
        assert {t for t, _ in site2.messages} == {"ms/v1/site-2/down"}, "a site reads only what comes down"
    finally:
        for c in (cloud, site1, site2):
            c.close()


@pytest.mark.parametrize(
    "how",
    ["anonymous", "wrong password", "unknown user", "no TLS"],
)
def test_unknown_clients_cannot_connect(secure_broker, how):
    b = secure_broker
    kwargs = {"tls_ca": b.ca_file}
    if how == "wrong password":
        kwargs.update(username="site-1", password="guess")
    elif how == "unknown user":
        kwargs.update(username="site-9", password="whatever")
    elif how == "no TLS":
        kwargs = auth(b, "site-1")
        kwargs.pop("tls_ca")
    if how == "no TLS":
        with pytest.raises((AssertionError, OSError)):  # no CONNACK ever comes over plain TCP
            RawClient(b, f"intruder-{how}", connect_timeout=2, **kwargs).close()
        return
    c = RawClient(b, f"intruder-{how}", **kwargs)
    try:
        assert c.connect_rc.is_failure, f"{how} connected: {c.connect_rc}"
    finally:
        c.close()


def test_our_own_password_hashes_work_without_mosquitto_passwd(tmp_path):
    assert mosquitto_hash("pw", salt=b"0" * 12).startswith("$7$101$MDAwMDAwMDAwMDAw$")
    with Broker(workdir=tmp_path / "b", secure=True, sites=["site-1"], use_passwd_tool=False) as b:
        assert "$7$101$" in (b.workdir / "passwd").read_text()
        ok = RawClient(b, "ok", **auth(b, "site-1"))
        bad = RawClient(b, "bad", username="site-1", password="nope", tls_ca=b.ca_file)
        try:
            assert not ok.connect_rc.is_failure and bad.connect_rc.is_failure
        finally:
            ok.close()
            bad.close()
