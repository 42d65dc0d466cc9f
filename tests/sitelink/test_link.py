"""The link over a real Mosquitto: delivery both ways, broker restarts, duplicates, order, gaps, bad
messages, handler failures. Each test checks that nothing is lost and nothing is applied twice."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from sitelink import LinkConfig, Reject, envelope, sqlite, store
from sitelink import link as link_mod
from sitelink.link import SiteLink

from .conftest import applied_rows, applied_table, delta_body, pick_body, record, wait_for


def send_many(
    link: SiteLink, db: str, msg_type: str, bodies, site: str | None = None, per_txn: int = 100
) -> None:
    conn = sqlite.connect(db)
    try:
        for i in range(0, len(bodies), per_txn):
            conn.execute("BEGIN IMMEDIATE")
            for body in bodies[i : i + per_txn]:
                link.send(conn, msg_type, body, site=site)
            conn.execute("COMMIT")
    finally:
        conn.close()


def assert_exactly_once(rows, n: int) -> None:
    keys = Counter(r[3] for r in rows)
    assert len(keys) == n, f"{n - len(keys)} lost"
    assert max(keys.values()) == 1, f"applied twice: {[k for k, c in keys.items() if c > 1][:5]}"


def test_delivery_both_ways_in_order(make_link, tmp_path):
    cloud = make_link("cloud", handlers={"stock_delta": record})
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(300)], site="site-1")
    send_many(site, site.cfg.db_path, "stock_delta", [delta_body(i) for i in range(200)])
    assert cloud.wait_idle(20) and site.wait_idle(20)
    down = applied_rows(tmp_path / "site-1.db")
    up = applied_rows(tmp_path / "cloud.db")
    assert_exactly_once(down, 300)
    assert_exactly_once(up, 200)
    assert [r[1] for r in down] == list(range(1, 301)), "applied in seq order"
    st = cloud.status()
    assert st["inbound"]["site-1"]["applied"] == 200 and st["outbox_total"] == 0
    assert st["peers_online"] == ["site-1"] and st["connected"]
    site.stop()
    wait_for(lambda: cloud.status()["peers"]["site-1"]["state"] == "offline", 10, "offline state")


def test_rolled_back_change_sends_nothing(make_link, tmp_path):
    cloud = make_link("cloud")
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    conn = sqlite.connect(cloud.cfg.db_path)
    conn.execute("BEGIN IMMEDIATE")
    cloud.send(conn, "pick_task", pick_body("gone"), site="site-1")
    conn.execute("ROLLBACK")
    cloud.send(conn, "pick_task", pick_body("kept"), site="site-1")
    assert cloud.wait_idle(10)
    assert [r[3] for r in applied_rows(tmp_path / "site-1.db")] == ["tkept"]


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_broker_restarted_mid_stream(make_link, broker, tmp_path, how):
    """Restarted gracefully (its sessions saved) or killed (what it held in memory is lost)."""
    cloud = make_link("cloud", window=200, handlers={"stock_delta": record})
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(2000)], site="site-1")
    send_many(site, site.cfg.db_path, "stock_delta", [delta_body(i) for i in range(500)])
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) >= 100, 20, "the stream to start")
    if how == "restart":
        broker.restart()
    else:
        broker.kill()
        time.sleep(0.5)
        broker.start()
    assert cloud.wait_idle(30) and site.wait_idle(30)
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 2000)
    assert_exactly_once(applied_rows(tmp_path / "cloud.db"), 500)
    assert site.status()["gaps"] == [] and cloud.status()["dead_letters"] == 0


def test_site_away_then_back(make_link, tmp_path):
    """The site is offline while the cloud queues; its persistent session and the outbox catch up."""
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    site.stop()
    cloud = make_link("cloud", window=100)
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(500)], site="site-1")
    wait_for(lambda: cloud.status()["in_flight"].get("site-1", 0) > 0, 10, "publishing")
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    assert cloud.wait_idle(30)
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 500)


def test_same_message_twice_is_applied_once_and_acked_twice(make_link, broker, raw, tmp_path):
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    watcher = raw(broker, "watcher")
    watcher.subscribe("ms/v1/site-1/ack/up")
    env = envelope.make("site-1", 1, "pick_task", pick_body(1))
    sender = raw(broker, "fake-cloud")
    sender.publish("ms/v1/site-1/down", env.to_json())
    sender.publish("ms/v1/site-1/down", env.to_json())
    wait_for(lambda: len(watcher.acks()) >= 2, 10, "two acks")
    assert watcher.acks() == [[1, env.id], [1, env.id]]
    assert len(applied_rows(tmp_path / "site-1.db")) == 1
    # and again later, after more messages went by
    env2 = envelope.make("site-1", 2, "pick_task", pick_body(2))
    sender.publish("ms/v1/site-1/down", env2.to_json())
    sender.publish("ms/v1/site-1/down", env.to_json())
    wait_for(lambda: len(watcher.acks()) >= 4, 10, "four acks")
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 2)


def test_an_applied_message_sent_again_under_a_new_seq_is_not_applied_again(make_link, broker, raw, tmp_path):
    """The id decides, whatever seq a copy carries: a replay with only its seq changed (a sender that lost
    its counter, or a forged resend) is acknowledged and moves the stream on, but changes nothing."""
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    watcher = raw(broker, "watcher")
    watcher.subscribe("ms/v1/site-1/ack/up")
    sender = raw(broker, "fake-cloud")
    first = envelope.make("site-1", 1, "pick_task", pick_body(1))
    sender.publish("ms/v1/site-1/down", first.to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 1, 10, "the first applied")
    replay = envelope.Envelope(id=first.id, site="site-1", seq=2, type=first.type, ts=first.ts, body=first.body)
    sender.publish("ms/v1/site-1/down", replay.to_json())
    wait_for(lambda: [2, first.id] in watcher.acks(), 10, "the replay acknowledged")
    nxt = envelope.make("site-1", 3, "pick_task", pick_body(3))  # the stream goes on past the replay's seq
    sender.publish("ms/v1/site-1/down", nxt.to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 2, 10, "seq 3 applied")
    time.sleep(0.3)
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 2)
    assert site.status()["inbound"]["site-1"]["next_seq"] == 4


def test_a_gap_is_cleared_once_its_missing_message_is_applied(make_link, broker, raw, tmp_path):
    site = make_link("site", site_id="site-1", gap_timeout=0.5, handlers={"pick_task": record})
    envs = [envelope.make("site-1", seq, "pick_task", pick_body(seq)) for seq in range(1, 6)]
    sender = raw(broker, "fake-cloud")
    for i in (3, 4):  # seq 4 and 5 first, then 1: 2 and 3 are missing
        sender.publish("ms/v1/site-1/down", envs[i].to_json())
    time.sleep(0.2)
    sender.publish("ms/v1/site-1/down", envs[0].to_json())
    # 1 is applied; 4 and 5 still wait, and after gap_timeout they are applied even if nothing else comes
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 3, 10, "the gap given up on")
    assert [(g["from_seq"], g["to_seq"]) for g in site.status()["gaps"]] == [(2, 3)]
    sender.publish("ms/v1/site-1/down", envs[2].to_json())  # seq 3 arrives late
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 4, 10, "seq 3 applied late")
    assert [(g["from_seq"], g["to_seq"]) for g in site.status()["gaps"]] == [(2, 2)]
    sender.publish("ms/v1/site-1/down", envs[1].to_json())  # and seq 2
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 5, 10, "seq 2 applied late")
    assert site.status()["gaps"] == []
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 5)


def test_out_of_order_is_applied_in_seq_order_and_gaps_are_recorded(make_link, broker, raw, tmp_path):
    site = make_link("site", site_id="site-1", gap_timeout=0.5, handlers={"pick_task": record})
    envs = [envelope.make("site-1", seq, "pick_task", pick_body(seq)) for seq in range(1, 8)]
    sender = raw(broker, "fake-cloud")
    for i in (2, 0, 1):  # seq 3, 1, 2
        sender.publish("ms/v1/site-1/down", envs[i].to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 3, 10, "three applied")
    assert [r[1] for r in applied_rows(tmp_path / "site-1.db")] == [1, 2, 3]
    # seq 4 never comes: 5 and 6 wait, then the gap is recorded and they apply
    sender.publish("ms/v1/site-1/down", envs[5].to_json())
    sender.publish("ms/v1/site-1/down", envs[4].to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 5, 10, "gap given up")
    assert [r[1] for r in applied_rows(tmp_path / "site-1.db")] == [1, 2, 3, 5, 6]
    assert [(g["from_seq"], g["to_seq"]) for g in site.status()["gaps"]] == [(4, 4)]
    # the late one is still applied, once
    sender.publish("ms/v1/site-1/down", envs[3].to_json())
    sender.publish("ms/v1/site-1/down", envs[3].to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 6, 10, "late message")
    sender.publish("ms/v1/site-1/down", envs[6].to_json())
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 7, 10, "seq 7")
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 7)
    st = site.status()
    assert st["inbox_applied"] == 7 and st["inbound"]["site-1"]["next_seq"] == 8


def test_bad_messages_go_to_dead_letters_and_never_block(make_link, broker, raw, tmp_path):
    cloud = make_link("cloud", handlers={"stock_delta": record})
    watcher = raw(broker, "watcher")
    watcher.subscribe("ms/v1/site-1/ack/down")
    site = raw(broker, "fake-site")

    def env(seq, msg_type="stock_delta", body=None, **over) -> str:
        d = envelope.Envelope(
            envelope.new_id(), "site-1", seq, msg_type, envelope.now_ts(), body or delta_body(seq)
        )
        return json.dumps({**d.to_dict(), **over})

    bad = [  # (payload, reason, dead letters it makes)
        (b"not json at all", "not JSON", 1),
        (b"[]", "empty batch", 1),
        (b"42", "JSON object, got int", 1),
        (b"[7, 8]", "JSON object, got int", 2),
        (json.dumps({"id": envelope.new_id()}).encode(), "envelope lacks", 1),
        (env(1, "teleport"), "unknown message type", 1),
        (env(2, body={"warehouse": "main"}), "lacks required field 'item_id'", 1),
        (env(3, "pick_task", pick_body(3)), "cannot arrive at the cloud", 1),
        (env(4, "scan", {"code": "123"}), "no handler", 1),
        (env(5, site="site-2"), "differs from the topic", 1),
    ]
    for payload, _, _ in bad:
        site.publish("ms/v1/site-1/up", payload)
    site.publish("ms/v1/site-1/up", env(5))  # a good one after them all
    site.publish(
        "ms/v1/site-1/up", f"[{env(6, body={'item_id': 'x'})}, {env(7)}]"
    )  # a batch: one bad, one good
    wait_for(lambda: len(applied_rows(tmp_path / "cloud.db")) == 2, 10, "the good messages")
    st = cloud.status()
    dead = store.list_dead_letters(sqlite.connect(cloud.cfg.db_path), limit=100)
    reasons = [d["reason"] for d in dead]
    assert st["dead_letters"] == sum(n for _, _, n in bad) + 1 == len(reasons)
    for _, want, _ in bad:
        expected = sum(n for _, w, n in bad if w == want)
        assert sum(want in got for got in reasons) == expected, (want, reasons)
    assert "not json at all" in [d["payload"] for d in dead]
    assert sum("body lacks required field 'warehouse'" in r for r in reasons) == 1  # the batch's bad one
    # the ones with a readable id and seq are acknowledged (the sender stops resending them)
    wait_for(lambda: len(watcher.acks()) == 7, 10, "acks")
    assert sorted(a[0] for a in watcher.acks()) == [1, 2, 3, 4, 5, 6, 7]
    assert [r[1] for r in applied_rows(tmp_path / "cloud.db")] == [5, 7]


def test_a_batch_of_odd_envelopes_is_judged_one_by_one(make_link, broker, raw, tmp_path):
    """The receiver takes the usual envelope of a batch in one tight loop; every odd one beside it is
    judged as on its own: a type that is no string, an unknown field, a bool where an int belongs, a copy
    of an envelope in the same batch (applied once, acknowledged twice), a message for another site."""
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    watcher = raw(broker, "watcher")
    watcher.subscribe("ms/v1/site-1/ack/up")
    sender = raw(broker, "fake-cloud")

    def env(seq, **over) -> dict:
        return {**envelope.make("site-1", seq, "pick_task", pick_body(seq)).to_dict(), **over}

    first, last = env(1), env(5)
    batch = [first, env(2, type=["pick_task"]), env(3, extra=1), first,
             env(4, body={**pick_body(4), "lines": True}), env(5, site="site-2"), last]
    sender.publish("ms/v1/site-1/down", json.dumps(batch))
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 2, 10, "the good ones")
    wait_for(lambda: len(watcher.acks()) == 6, 10, "acks")
    assert sorted(a[0] for a in watcher.acks()) == [1, 1, 2, 3, 4, 5]
    assert [r[1] for r in applied_rows(tmp_path / "site-1.db")] == [1, 5]
    reasons = [d["reason"] for d in store.list_dead_letters(sqlite.connect(str(tmp_path / "site-1.db")))]
    assert len(reasons) == 4, reasons
    for want in ("type must be a string", "unknown fields extra", "'lines' must be list", "differs from the topic"):
        assert sum(want in r for r in reasons) == 1, (want, reasons)


def test_sends_in_an_open_transaction_do_not_make_the_worker_look_at_the_outbox_each(make_link, tmp_path):
    """A send inside the caller's transaction wakes the worker once: until the transaction ends the
    worker only watches it (and the database's data_version), instead of reading the outbox after every
    message; once it commits, the messages go out at once (and nothing of a rolled back one)."""
    cloud = make_link("cloud", poll_interval=0.5)  # its whole round at least every 0.5 s, whatever the load
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    wait_for(lambda: cloud.connected and site.connected, 10, "connected")
    pumps = []
    real_pump = cloud._pump
    cloud._pump = lambda: pumps.append(1) or real_pump()
    conn = sqlite.connect(cloud.cfg.db_path)
    for txn, end in ((range(0, 200), "COMMIT"), (range(200, 300), "ROLLBACK"), (range(300, 500), "COMMIT")):
        conn.execute("BEGIN IMMEDIATE")
        before, began = len(pumps), time.monotonic()
        for i in txn:
            cloud.send(conn, "pick_task", pick_body(i), site="site-1")
            time.sleep(0.001)  # the worker gets every chance to run between sends
        # the loop's whole round (with a look at the outbox) only every poll_interval meanwhile (it was
        # one per send)
        rounds = (time.monotonic() - began) / cloud.cfg.poll_interval
        assert len(pumps) - before <= min(rounds * 1.5 + 3, len(txn) / 4), (len(pumps) - before, rounds)
        conn.execute(end)
    sent_at = time.monotonic()
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 400, 10, "the committed ones")
    assert time.monotonic() - sent_at < 5
    assert cloud.wait_idle(10)
    assert sorted(int(r[3][1:]) for r in applied_rows(tmp_path / "site-1.db")) == [
        *range(0, 200), *range(300, 500)]
    conn.close()


def test_reject_and_failing_handlers(make_link, tmp_path):
    cloud = make_link("cloud")
    failures = Counter()

    def handler(conn, env):
        key = env.body["task_id"]
        record(conn, env)  # written, then rolled back when the handler fails
        if key == "treject":
            raise Reject("no such item at this site")
        if key == "tflaky" and failures[key] < 2:
            failures[key] += 1
            raise RuntimeError("printer busy")
        if key == "tbroken":
            failures[key] += 1
            raise RuntimeError("always broken")

    site = make_link("site", site_id="site-1", max_attempts=3, handlers={"pick_task": handler})
    names = ["a", "reject", "flaky", "b", "broken", "c"]
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(n) for n in names], site="site-1")
    assert cloud.wait_idle(20)
    rows = applied_rows(tmp_path / "site-1.db")
    assert [r[3] for r in rows] == ["ta", "tflaky", "tb", "tc"]
    assert failures == {"tflaky": 2, "tbroken": 3}
    reasons = sorted(d["reason"] for d in site.status()["recent_dead_letters"])
    assert reasons[0].startswith("handler failed 3 times: RuntimeError: always broken")
    assert reasons[1] == "rejected: no such item at this site"


def test_unacknowledged_messages_are_sent_again_but_not_to_an_offline_peer(make_link, broker, raw):
    """A fake site (plain MQTT client) that ignores the first delivery: the cloud sends it again after
    `resend_after`; while the site's state says offline the cloud waits, and resends when it is back."""
    fake = raw(broker, "fake-site")
    fake.subscribe("ms/v1/site-1/down")
    fake.client.publish("ms/v1/site-1/state", '{"state": "online"}', qos=1, retain=True).wait_for_publish(5)
    cloud = make_link("cloud", resend_after=0.4)
    wait_for(lambda: cloud.status()["peers_online"] == ["site-1"], 5, "site online")
    conn = sqlite.connect(cloud.cfg.db_path)
    env = cloud.send(conn, "pick_task", pick_body(1), site="site-1")
    wait_for(lambda: len(fake.messages) >= 2, 10, "the message sent again")
    assert {json.loads(p)["id"] for _, p in fake.messages} == {env.id}
    fake.publish("ms/v1/site-1/ack/up", json.dumps({"acks": [[env.seq, env.id]]}))
    assert cloud.wait_idle(5)
    # offline: no resends on the timer
    fake.client.publish("ms/v1/site-1/state", '{"state": "offline"}', qos=1, retain=True).wait_for_publish(5)
    wait_for(lambda: cloud.status()["peers_online"] == [], 5, "site offline")
    fake.messages.clear()
    env2 = cloud.send(conn, "pick_task", pick_body(2), site="site-1")
    wait_for(lambda: len(fake.messages) >= 1, 5, "the first publish")
    time.sleep(1.5)  # several resend_after periods
    assert len(fake.messages) == 1
    fake.client.publish("ms/v1/site-1/state", '{"state": "online"}', qos=1, retain=True).wait_for_publish(5)
    wait_for(lambda: len(fake.messages) >= 2, 5, "sent again when back online")
    fake.publish("ms/v1/site-1/ack/up", json.dumps({"acks": [[env2.seq, env2.id]]}))
    assert cloud.wait_idle(5)


def test_cloud_restarted_mid_stream(make_link, tmp_path):
    """The cloud's link stops in the middle (its outbox half sent) and a new one takes over the file."""
    site = make_link("site", site_id="site-1", handlers={"pick_task": record})
    cloud = make_link("cloud", window=100, handlers={"stock_delta": record})
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(1000)], site="site-1")
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) >= 200, 20, "the stream to start")
    cloud.stop()
    assert len(applied_rows(tmp_path / "site-1.db")) < 1000
    cloud2 = make_link("cloud", window=100, handlers={"stock_delta": record})
    send_many(
        cloud2, cloud2.cfg.db_path, "pick_task", [pick_body(i) for i in range(1000, 1100)], site="site-1"
    )
    assert cloud2.wait_idle(30)
    rows = applied_rows(tmp_path / "site-1.db")
    assert_exactly_once(rows, 1100)
    assert [r[1] for r in rows] == list(range(1, 1101))
    assert site.status()["gaps"] == []


def test_a_long_backlog_leaves_a_gap_only_to_a_writer_that_waits(make_link, tmp_path, monkeypatch):
    """A backlog applied back to back pauses (`batch_pause`) only when a writer of this process waits for
    the database, and resumes as soon as that writer had its turn: no pause on a timer when nobody
    waits (it was a sixth of a long drain). The pause here is far longer than the test may take."""
    monkeypatch.setattr(link_mod, "FOREIGN_WRITER_GAP_ROUNDS", 10**6)  # no gap for unseen writers here
    # rounds of 20 messages, each far shorter than batch_seconds: the backlog runs back to back for longer
    # than 2 x batch_seconds (where the link paused on a timer before)
    site = make_link("site", site_id="site-1", batch=20, batch_seconds=0.2, batch_pause=60.0,
                     handlers={"pick_task": record})
    cloud = make_link("cloud")
    app = sqlite.connect(site.cfg.db_path, timeout=30.0)
    applied_table(app)
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(6000)], site="site-1")
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) >= 100, 20, "the backlog to start")
    with sqlite.transaction(app):  # the application writes while the backlog is applied
        app.execute("CREATE TABLE IF NOT EXISTS app_writes (n INTEGER)")
        app.execute("INSERT INTO app_writes VALUES (1)")
    assert cloud.wait_idle(30), "the backlog waited out a pause nobody needed"
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 6000)
    app.close()


def test_a_writer_that_got_its_turn_before_the_gap_leaves_no_gap(make_link, tmp_path, monkeypatch):
    """The round sees a writer of this process waiting and sets a pause; the writer gets the lock at once
    (between the round's commit and the gap): the link takes up the backlog again at once instead of
    waiting out the pause on a timer, as for a writer of another process (a CI run's timeout of the test
    above: 60 s of pause nobody needed). The interleaving is forced by counting the writer as waiting for
    the round's look only."""
    monkeypatch.setattr(link_mod, "FOREIGN_WRITER_GAP_ROUNDS", 10**6)  # no gap for unseen writers here
    real = link_mod.sqlite.writers_waiting
    seen: list[int] = []

    def waiting_once(conn):
        # the first look after the backlog started says one waits; every later look finds it served
        if len(applied_rows(tmp_path / "site-1.db")) >= 100 and not seen:
            seen.append(1)
            return 1
        return real(conn)

    site = make_link("site", site_id="site-1", batch=20, batch_seconds=0.2, batch_pause=60.0,
                     handlers={"pick_task": record})
    cloud = make_link("cloud")
    monkeypatch.setattr(link_mod.sqlite, "writers_waiting", waiting_once)
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(3000)], site="site-1")
    assert cloud.wait_idle(20), "the backlog waited out a pause nobody needed"
    assert seen and site.status()["gaps"] == []
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 3000)


def test_slow_handlers_commit_in_short_transactions(make_link, tmp_path):
    """A slow handler does not hold the database's write lock for long: the link commits every
    `batch_seconds`, and the application can write in between."""
    commits_seen = []

    def slow(conn, env):
        time.sleep(0.005)
        record(conn, env)

    site = make_link("site", site_id="site-1", batch_seconds=0.05, handlers={"pick_task": slow})
    cloud = make_link("cloud")
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(120)], site="site-1")
    app = sqlite.connect(site.cfg.db_path, timeout=1.0)
    while len(applied_rows(tmp_path / "site-1.db")) < 120:
        with sqlite.transaction(app):  # the application's own writes get through meanwhile
            app.execute("CREATE TABLE IF NOT EXISTS app_writes (n INTEGER)")
            app.execute("INSERT INTO app_writes VALUES (1)")
        commits_seen.append(len(applied_rows(tmp_path / "site-1.db")))
        time.sleep(0.01)
    assert cloud.wait_idle(10)
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 120)
    assert len(set(commits_seen)) >= 5, f"applied in several short commits: {sorted(set(commits_seen))}"


def test_publishes_group_rows_as_the_row_by_row_grouping_does():
    """`_chunks` slices runs of rows that fit whole; the publishes are the ones a row-by-row grouping
    makes: at most `most` envelopes, about `most_bytes` at most, a row too big for any on its own."""

    def by_rows(rows, most, most_bytes):
        out, chunk, size = [], [], 0
        for row in rows:
            if chunk and (len(chunk) >= most or size + len(row[2]) > most_bytes):
                out.append(chunk)
                chunk, size = [], 0
            chunk.append(row)
            size += len(row[2]) + 1
        return out + ([chunk] if chunk else [])

    rnd = random.Random(7)
    for _ in range(300):
        n = rnd.randint(0, 400)
        sizes = rnd.choice([lambda: 200, lambda: rnd.randint(1, 3000), lambda: rnd.choice([10, 30_000])])
        rows = [(k, f"id{k}", "x" * sizes()) for k in range(n)]
        most, most_bytes = rnd.choice([1, 2, 7, 100]), rnd.choice([500, 25_000, 256_000])
        assert link_mod._chunks(rows, most, most_bytes) == by_rows(rows, most, most_bytes)


def test_a_round_with_acknowledgements_to_write_stays_keyed(tmp_path):
    """Acknowledgements delete their peer's outbox rows and a state writes its peer's row: a round holds
    those peers' `link:<peer>` keys and stays keyed (on PostgreSQL an ordinary round stops every writer of
    the store; the cloud's rounds all carried some site's acknowledgements of pick tasks)."""
    link = SiteLink(LinkConfig(role="cloud", db_path=str(tmp_path / "cloud.db")))
    link.on("stock_delta", lambda conn, env: None)
    link.keys_for("stock_delta", lambda env: (f"source:main:site:{env.site}",))
    link._pending_acks = {"site-1": [(1, "01J")], "site-2": [(4, "01K")]}
    link._pending_state = {"site-3": "online"}
    keys, peers = link._round_keys()
    assert keys == {"link:site-1", "link:site-2", "link:site-3"} and peers is None
    link._pending_acks = {f"site-{i}": [(1, "01J")] for i in range(link_mod.MAX_ROUND_KEYS + 1)}
    assert link._round_keys() is None  # more peers than a round's keys: an ordinary round


def test_a_sending_links_round_of_acknowledgements_is_keyed_too(tmp_path):
    """The cloud's sending part of a share group has no handlers (its receiving part applies the sites'
    messages): its rounds write the sites' acknowledgements and states alone and are keyed on those sites'
    links, not ordinary rounds (on PostgreSQL ~60 barriers a process a run for every writer of the store)."""
    link = SiteLink(LinkConfig(role="cloud", db_path=str(tmp_path / "cloud.db")))
    link._pending_acks = {"site-1": [(1, "01J")]}
    link._pending_state = {"site-2": "online"}
    keys, peers = link._round_keys()
    assert keys == {"link:site-1", "link:site-2"} and peers is None
    link._pending_acks, link._pending_state = {}, {}
    assert link._round_keys() is None  # nothing to write


def test_a_round_that_waited_for_the_write_lock_still_applies_its_messages(make_link, tmp_path, monkeypatch):
    """`batch_seconds` bounds how long a round holds the write lock, counted from when it has it: a round
    that waited longer than that for a busy database applied nothing at all (its time was spent before its
    first message), so behind a steady stream of other writers a backlog hardly moved (on PostgreSQL with
    3 cloud processes: ~60 messages held across round after round, a few applied each). Here every write
    transaction of the test's process finds the lock taken for 80 ms first (longer than batch_seconds)."""
    real = sqlite.transaction

    @contextmanager
    def behind_another_writer(conn, **kw):
        time.sleep(0.08)
        with real(conn, **kw) as c:
            yield c

    monkeypatch.setattr(sqlite, "transaction", behind_another_writer)
    make_link("site", site_id="site-1", batch_seconds=0.05, handlers={"pick_task": record})
    cloud = make_link("cloud")
    send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(300)], site="site-1")
    wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) >= 300, 20, "the backlog applied")
    assert cloud.wait_idle(30)
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 300)


def test_acknowledgements_waiting_for_the_write_lock_do_not_stop_the_publishing(make_link, tmp_path, monkeypatch):
    """While another writer holds the sender's database (an application enqueuing transaction after
    transaction), the acknowledgements that come back cannot be written yet: their messages leave the window
    all the same and the link goes on publishing the outbox; their rows are deleted once the lock is free.
    (The worker slept in SQLite's busy wait for the lock instead, publishing nothing meanwhile.)"""
    monkeypatch.setattr(link_mod, "ACKS_WAIT_MOST_S", 60.0, raising=False)  # never waits here
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    cloud = make_link("cloud", window=20, publish_batch=5)
    other = sqlite.connect(cloud.cfg.db_path)
    other.execute("BEGIN IMMEDIATE")  # the writer that holds the lock...
    for i in range(200):  # ...has sent 200 messages
        cloud.send(other, "pick_task", pick_body(i), site="site-1")
    other.execute("COMMIT")
    other.execute("BEGIN IMMEDIATE")  # ...and holds the lock again at once
    try:
        wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 200, 15,
                 "the outbox published while the write lock is taken")
        assert other.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 200, "nothing deleted yet"
    finally:
        other.execute("COMMIT")
        other.close()
    assert cloud.wait_idle(10), "the acknowledged rows deleted once the lock is free"
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 200)


def test_a_sites_state_arriving_while_the_write_lock_is_taken_does_not_stop_the_publishing(make_link, tmp_path,
                                                                                          monkeypatch):
    """A round with no message to apply, only a site's state (another site coming online) and acks, waits for a
    free write lock like acks alone: the link goes on publishing the outbox meanwhile. (Such a round took the
    lock with SQLite's busy wait: the worker slept while the application held the lock, publishing nothing —
    seen as a CI rehearsal's timeout of the test above.)"""
    monkeypatch.setattr(link_mod, "ACKS_WAIT_MOST_S", 60.0, raising=False)  # never waits here
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    cloud = make_link("cloud", window=20, publish_batch=5)
    other = sqlite.connect(cloud.cfg.db_path)
    other.execute("BEGIN IMMEDIATE")
    for i in range(200):
        cloud.send(other, "pick_task", pick_body(i), site="site-1")
    other.execute("COMMIT")
    other.execute("BEGIN IMMEDIATE")  # the application holds the lock again...
    try:
        make_link("site", site_id="site-2")  # ...when another site comes online: its state reaches the cloud
        wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 200, 15,
                 "the outbox published while the write lock is taken")
    finally:
        other.execute("COMMIT")
        other.close()
    assert cloud.wait_idle(10), "the acknowledged rows deleted once the lock is free"
    assert_exactly_once(applied_rows(tmp_path / "site-1.db"), 200)


def test_the_links_socket_sends_at_once(make_link):
    """The link's socket has Nagle's algorithm off (TCP_NODELAY): a small publish or acknowledgement is not
    held back until the broker's delayed ACK of the packet before (up to 40 ms per turn of the window)."""
    import socket

    for link in (make_link("cloud"), make_link("site", site_id="site-1")):
        sock = link._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_inbox_prune_never_waits_for_the_write_lock(make_link, tmp_path, monkeypatch):
    """The inbox's old entries are pruned at start and hourly; a prune due while the application holds the
    write lock is tried again later instead of waiting for the lock in SQLite's busy wait (the worker slept,
    publishing nothing: the CI timeouts of the state test above came on boxes up for more than an hour,
    where the monotonic clock made the very first round's prune due)."""
    monkeypatch.setattr(link_mod, "PRUNE_RETRY_S", 0.3, raising=False)
    make_link("site", site_id="site-1", handlers={"pick_task": record})
    cloud = make_link("cloud", window=20, publish_batch=5)
    other = sqlite.connect(cloud.cfg.db_path)
    with sqlite.transaction(other):  # an entry older than the days the inbox keeps, for the prune to find
        other.execute("INSERT INTO link_inbox(id, peer, seq, type, received_at) VALUES ('old', 'site-1', 1, 'x', 0)")

    def old_left() -> int:
        return other.execute("SELECT COUNT(*) FROM link_inbox WHERE id='old'").fetchone()[0]

    other.execute("BEGIN IMMEDIATE")
    try:
        for i in range(200):
            cloud.send(other, "pick_task", pick_body(i), site="site-1")
        other.execute("COMMIT")
        other.execute("BEGIN IMMEDIATE")  # the application holds the lock again...
        cloud._pruned_at = -getattr(link_mod, "PRUNE_EVERY_S", 3600.0)  # ...when the hourly prune comes due
        wait_for(lambda: len(applied_rows(tmp_path / "site-1.db")) == 200, 15,
                 "the outbox published while the write lock is taken")
        assert old_left() == 1  # not pruned meanwhile: left for a later look
    finally:
        other.execute("ROLLBACK")
    wait_for(lambda: old_left() == 0, 10, "the prune, once the lock is free")
    other.close()
