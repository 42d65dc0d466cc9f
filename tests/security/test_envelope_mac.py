"""Envelopes prove their sender (issue 21, point 2): a MAC per site and direction, checked before
anything is applied; key rotation without losing queued messages; no secret in any log. Real Mosquitto
(the demo's secure broker), real SQLite files."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from marketsync.broker import Broker
from sitelink import LinkConfig, SiteLink, envelope, keys, sqlite, store
from sitelink.cli import main as link_cli

from .broker_kit import Door, Intruder, wait_for


def pick(i: int) -> dict:
    return {"task_id": f"t{i}", "order_id": f"o{i}", "marketplace": "x", "lines": []}


def delta(i: int) -> dict:
    return {"warehouse": "main", "item_id": f"item-{i}", "delta": -1, "reason": "pick"}


@pytest.fixture
def broker(tmp_path):
    with Broker(workdir=tmp_path / "b", secure=True, sites=["site-1", "site-2"]) as b:
        yield b


def door(b: Broker) -> Door:
    return Door(b.host, b.port, b.ca_file or "", dict(b.passwords))


def applied(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT key FROM got ORDER BY rowid")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def record(conn: sqlite3.Connection, env) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS got (key TEXT)")
    conn.execute("INSERT INTO got VALUES (?)", (env.body.get("task_id") or env.body.get("item_id"),))


def make_link(b: Broker, tmp: Path, role: str, site: str | None = None, **kw) -> SiteLink:
    link = SiteLink(LinkConfig(role=role, site_id=site, db_path=str(tmp / f"{site or 'cloud'}.db"),
                               resend_after=1.0, gap_timeout=2.0, **b.link_settings(site), **kw))
    link.on("pick_task" if role == "site" else "stock_delta", record)
    return link


def dead(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return store.list_dead_letters(conn)
    finally:
        conn.close()


def test_a_forged_envelope_is_dead_lettered_and_never_applied(broker, tmp_path):
    """Well-formed pick tasks on site-1's down topic that the cloud did not sign (with the cloud's
    broker password, the only one that may publish there): no MAC, a MAC made with a guessed key under
    the real kid, a real MAC over another body, site-1's own up key. None is applied or acknowledged,
    each is a dead letter with its reason, and the cloud's real message of the same seq applies after."""
    site = make_link(broker, tmp_path, "site", "site-1")
    site_keys = keys.read_keys(broker.keys_file("site-1"))
    down = next(k for k in site_keys if k.direction == "down")
    up = next(k for k in site_keys if k.direction == "up")
    try:
        site.start()
        wait_for(lambda: site.connected, 15, "the site link")
        attacker = Intruder(door(broker), "cloud", "forger")
        attacker.subscribe("ms/v1/site-1/ack/up")
        forged = []
        plain = envelope.make("site-1", 1, "pick_task", pick(666))
        forged.append(plain.to_json())  # no MAC at all
        guessed = keys.Key("site-1", "down", down.kid, b"0" * 32, down.active_from)
        forged.append(envelope.sign(envelope.make("site-1", 1, "pick_task", pick(667)).to_json(), guessed))
        good = json.loads(envelope.sign(envelope.make("site-1", 1, "pick_task", pick(1)).to_json(), down))
        good["body"]["task_id"] = "t668"  # a real MAC, another body
        forged.append(json.dumps(good))
        forged.append(envelope.sign(envelope.make("site-1", 1, "pick_task", pick(669)).to_json(), up))
        for payload in forged:
            attacker.publish("ms/v1/site-1/down", payload)
        wait_for(lambda: len(dead(tmp_path / "site-1.db")) >= 4, 15, "four dead letters")
        reasons = sorted(d["reason"] for d in dead(tmp_path / "site-1.db"))
        assert all(r.startswith("MAC check failed") for r in reasons), reasons
        assert sum("carries no kid/mac" in r for r in reasons) == 1
        assert sum("does not match" in r for r in reasons) == 2
        assert sum("no down key" in r for r in reasons) == 1  # an up key's kid is no down key
        attacker.close()
        time.sleep(0.3)
        assert applied(tmp_path / "site-1.db") == [] and attacker.messages == [], "applied or acknowledged"
        # the real cloud: its seq 1 is not taken by the forgeries
        cloud = make_link(broker, tmp_path, "cloud")
        try:
            cloud.start()
            cloud.send(sqlite.connect(tmp_path / "cloud.db"), "pick_task", pick(1), site="site-1")
            assert cloud.wait_idle(20)
            assert applied(tmp_path / "site-1.db") == ["t1"]
        finally:
            cloud.stop()
    finally:
        site.stop()


def test_the_cloud_refuses_unsigned_up_messages_from_a_site_password(broker, tmp_path):
    """site-1's broker password without its key: a stock delta published on site-1's own up topic is
    not applied by the cloud; a dead letter says why (the same once, however often it is resent)."""
    cloud = make_link(broker, tmp_path, "cloud")
    try:
        cloud.start()
        wait_for(lambda: cloud.connected, 15, "the cloud link")
        thief = Intruder(door(broker), "site-1", "thief")
        env = envelope.make("site-1", 1, "stock_delta", delta(1)).to_json()
        for _ in range(3):
            thief.publish("ms/v1/site-1/up", env)
        thief.close()
        wait_for(lambda: dead(tmp_path / "cloud.db"), 15, "a dead letter")
        time.sleep(0.5)
        rows = dead(tmp_path / "cloud.db")
        assert len(rows) == 1 and rows[0]["reason"] == "MAC check failed: the envelope carries no kid/mac"
        assert rows[0]["peer"] == "site-1" and rows[0]["type"] == "stock_delta"
        assert applied(tmp_path / "cloud.db") == []
    finally:
        cloud.stop()


def test_rotation_while_messages_wait_applies_every_one_once(broker, tmp_path, caplog, capsys):
    """site-1's messages wait in its outbox and in the broker's queue for the cloud (signed with the old
    key) while the keys are rotated with the CLI; then more are written. The cloud comes back: every
    message applies exactly once, no dead letter. After the grace period the old key is refused."""
    caplog.set_level(logging.DEBUG)
    cloud = make_link(broker, tmp_path, "cloud")
    cloud.start()
    wait_for(lambda: cloud.connected, 15, "the cloud link")
    cloud.stop()  # its session (and subscriptions) stay at the broker: the site's messages queue there
    site = make_link(broker, tmp_path, "site", "site-1")
    sconn = sqlite.connect(tmp_path / "site-1.db")
    try:
        site.start()
        wait_for(lambda: site.connected, 15, "the site link")
        old_kid = site.keys.signing_key("site-1", "up").kid
        for i in range(1, 31):
            site.send(sconn, "stock_delta", delta(i))
        time.sleep(1.0)  # published (with the old key) into the cloud's queue; still in the outbox
        assert site.status()["outbox_total"] == 30
        assert link_cli(["rotate-key", "--credentials", str(broker.keys_dir), "--site", "site-1",
                         "--activate-in-hours", "0", "--grace-days", "1"]) == 0
        printed = capsys.readouterr().out
        new_kid = keys.Keyring.load(broker.keys_file("site-1")).signing_key("site-1", "up").kid
        assert new_kid != old_kid and new_kid in printed
        wait_for(lambda: site.keys.signing_key("site-1", "up").kid == new_kid, 15, "the site to read new keys")
        for i in range(31, 61):
            site.send(sconn, "stock_delta", delta(i))
        cloud = make_link(broker, tmp_path, "cloud")
        cloud.start()
        assert site.wait_idle(30)
        wait_for(lambda: len(applied(tmp_path / "cloud.db")) >= 60, 15, "all applied")
        time.sleep(1.0)
        got = applied(tmp_path / "cloud.db")
        assert sorted(got) == sorted(f"item-{i}" for i in range(1, 61)) and len(got) == 60
        assert dead(tmp_path / "cloud.db") == []
        # the grace period is over: the old key is refused
        cloud_keys = keys.read_keys(broker.keys_file("cloud"))
        old = next(k for k in cloud_keys if k.kid == old_kid)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        keys.write_keys(broker.keys_file("cloud"),
                        [k if k.kid != old_kid else keys.Key(k.site, k.direction, k.kid, k.secret,
                                                             k.active_from, past) for k in cloud_keys],
                        title="test")
        wait_for(lambda: not cloud.keys.find("site-1", "up", old_kid).valid_at(dt.datetime.now(dt.UTC)), 15, "the cloud to read them")
        site.stop()
        thief = Intruder(door(broker), "site-1", "replay")
        late = envelope.make("site-1", 61, "stock_delta", delta(61)).to_json()
        thief.publish("ms/v1/site-1/up", envelope.sign(late, old))
        thief.close()
        wait_for(lambda: dead(tmp_path / "cloud.db"), 15, "the old key refused")
        assert "expired" in dead(tmp_path / "cloud.db")[0]["reason"]
        cloud.stop()
    finally:
        site.stop()
        cloud.stop()
    # no secret in any log line, error or output of the run
    secrets_ = [broker.passwords[u] for u in broker.passwords]
    for k in keys.read_keys(broker.keys_file("cloud")) + [old]:
        secrets_ += [base64.urlsafe_b64encode(k.secret).decode().rstrip("="), k.secret.hex()]
    seen = caplog.text + printed + json.dumps(dead(tmp_path / "cloud.db")) + repr(site.cfg) + repr(site.keys.keys)
    assert not [s for s in secrets_ if s in seen]


def test_mac_covers_every_field_and_the_direction():
    k = keys.new_key("site-1", "up")
    signed = json.loads(envelope.sign(envelope.make("site-1", 5, "stock_delta", delta(5)).to_json(), k))
    ring = keys.Keyring([k])
    assert envelope.verify(signed, ring, "site-1", "up") is None
    for field, value in (("seq", 6), ("site", "site-2"), ("type", "stock_count"), ("ts", "x"), ("id", "y"),
                         ("body", {**delta(5), "delta": -100})):
        assert envelope.verify({**signed, field: value}, ring, "site-1", "up") is not None, field
    assert envelope.verify(signed, ring, "site-1", "down") is not None  # not replayable the other way
    reordered = json.loads(json.dumps({"body": dict(reversed(list(signed["body"].items()))),
                                       **{k2: v for k2, v in signed.items() if k2 != "body"}}))
    assert envelope.verify(reordered, ring, "site-1", "up") is None  # key order does not matter


def test_an_outbox_row_written_before_signing_existed_is_signed_alike():
    """Rows an older version left in an outbox (fields in writing order, UTF-8) verify once signed."""
    k = keys.new_key("site-1", "down")
    env = envelope.make("site-1", 3, "pick_task", {**pick(3), "lines": [{"name": "Футболка", "quantity": 1}]})
    old_row = json.dumps(env.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert not old_row.startswith('{"body":')
    for row in (old_row, env.to_json()):
        signed = json.loads(envelope.sign(row, k))
        assert envelope.verify(signed, keys.Keyring([k]), "site-1", "down") is None
        assert envelope.from_dict(signed) == env


def test_a_forged_acknowledgement_deletes_nothing(broker, tmp_path):
    """site-1's password without its key acknowledges the cloud's pick task before the site got it:
    the task stays in the cloud's outbox (a dead letter says why) and reaches the real site later."""
    cloud = make_link(broker, tmp_path, "cloud")
    try:
        cloud.start()
        wait_for(lambda: cloud.connected, 15, "the cloud link")
        env = cloud.send(sqlite.connect(tmp_path / "cloud.db"), "pick_task", pick(1), site="site-1")
        thief = Intruder(door(broker), "site-1", "thief")
        thief.publish("ms/v1/site-1/ack/up", json.dumps({"acks": [[env.seq, env.id]]}))
        thief.publish("ms/v1/site-1/ack/up", json.dumps({"acks": [[env.seq, env.id]], "kid": "x", "mac": "y"}))
        thief.close()
        wait_for(lambda: len(dead(tmp_path / "cloud.db")) >= 2, 15, "two dead letters")
        assert all("acknowledgement" in d["reason"] for d in dead(tmp_path / "cloud.db"))
        assert cloud.status()["outbox_total"] == 1, "a forged ack deleted the pick task"
        site = make_link(broker, tmp_path, "site", "site-1")
        try:
            site.start()
            assert cloud.wait_idle(20)  # the real site's signed ack
            assert applied(tmp_path / "site-1.db") == ["t1"]
        finally:
            site.stop()
    finally:
        cloud.stop()


def _batch(envs: list[str]) -> bytes:
    return ("[" + ",".join(envs) + "]").encode()


def _proof(key: keys.Key, data: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("kid", key.kid), ("mac", envelope.batch_mac(key, data))]
    return props


def test_a_batch_mac_proves_its_envelopes_and_a_forged_one_proves_nothing(broker, tmp_path):
    """Batches on site-1's down topic: unsigned envelopes under a batch MAC made with a guessed key are
    dead letters (each checked on its own, none has a MAC); the same envelopes under the cloud's real
    batch MAC apply; signed envelopes in a batch without any batch MAC apply on their own MACs."""
    site = make_link(broker, tmp_path, "site", "site-1")
    down = next(k for k in keys.read_keys(broker.keys_file("site-1")) if k.direction == "down")
    guessed = keys.Key("site-1", "down", down.kid, b"1" * 32, down.active_from)
    try:
        site.start()
        wait_for(lambda: site.connected, 15, "the site link")
        cloud = Intruder(door(broker), "cloud", "batcher")
        plain = _batch([envelope.make("site-1", s, "pick_task", pick(s)).to_json() for s in (1, 2)])
        cloud.client.publish("ms/v1/site-1/down", plain, qos=1, properties=_proof(guessed, plain)).wait_for_publish(5)
        wait_for(lambda: len(dead(tmp_path / "site-1.db")) >= 2, 15, "two dead letters")
        assert {d["reason"] for d in dead(tmp_path / "site-1.db")} == {
            "MAC check failed: the envelope carries no kid/mac"}
        assert applied(tmp_path / "site-1.db") == []
        cloud.client.publish("ms/v1/site-1/down", plain, qos=1, properties=_proof(down, plain)).wait_for_publish(5)
        signed = _batch([envelope.sign(envelope.make("site-1", s, "pick_task", pick(s)).to_json(), down)
                         for s in (3, 4)])
        cloud.publish("ms/v1/site-1/down", signed.decode())
        wait_for(lambda: len(applied(tmp_path / "site-1.db")) >= 4, 15, "four applied")
        assert applied(tmp_path / "site-1.db") == ["t1", "t2", "t3", "t4"]
        assert len(dead(tmp_path / "site-1.db")) == 2
        cloud.close()
    finally:
        site.stop()


def test_a_batch_mac_covers_every_byte_the_key_and_the_direction():
    down, up = keys.new_key("site-1", "down"), keys.new_key("site-1", "up")
    ring = keys.Keyring([down, up])
    data = _batch([envelope.make("site-1", 1, "pick_task", pick(1)).to_json()] * 2)
    proof = (down.kid, envelope.batch_mac(down, data))
    assert envelope.verify_batch(data, proof, ring, "site-1", "down")
    assert not envelope.verify_batch(data.replace(b"t1", b"t2", 1), proof, ring, "site-1", "down")
    assert not envelope.verify_batch(data, (up.kid, envelope.batch_mac(up, data)), ring, "site-1", "down")
    assert not envelope.verify_batch(data, proof, ring, "site-2", "down")
    assert not envelope.verify_batch(data, None, ring, "site-1", "down")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    expired = keys.Keyring([keys.Key("site-1", "down", down.kid, down.secret, down.active_from, past)])
    assert not envelope.verify_batch(data, proof, expired, "site-1", "down")


def test_acknowledgements_written_as_text_are_the_json_encoders_bytes_and_verify():
    """`sign_acks` writes the usual acks (ULIDs, int seqs) as text directly: byte for byte what the JSON
    encoder writes, MAC included; odd ids (quotes, non-ASCII, empty) still go through the encoder; a MAC
    over one list does not hold for another."""
    k = keys.new_key("site-1", "up")
    ring = keys.Keyring([k])

    def reference(acks, key):
        data = {"acks": [[s, i] for s, i in acks]}
        if key is not None:
            text = json.dumps({"acks": data["acks"]}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            digest = hmac.new(key.secret, b"ms/v1 ack/up\n" + text.encode("ascii"), hashlib.sha256).digest()
            data["kid"] = key.kid
            data["mac"] = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        return json.dumps(data, separators=(",", ":"))

    ulids = envelope.new_ids(50)
    cases = [[(i + 1, u) for i, u in enumerate(ulids)], [(7, ulids[0])] * 3, [(10**12, ulids[1])],
             [(1, 'a"b'), (2, ulids[2])], [(1, "Ф")], [(1, "")], [(1, "x\\y")]]
    for acks in cases:
        for key in (None, k):
            text = envelope.sign_acks(acks, key)
            assert text == reference(acks, key), acks
            data = json.loads(text)
            assert [tuple(a) for a in data["acks"]] == acks
            if key is not None:
                assert envelope.verify_acks(data, ring, "site-1", "up") is None
                forged = {**data, "acks": data["acks"][:-1] + [[999, ulids[3]]]}
                assert envelope.verify_acks(forged, ring, "site-1", "up") is not None
