"""Fixtures of the site-link tests: links wired to the per-test broker, stopped at the end."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from marketsync.broker import Broker
from sitelink import LinkConfig, SiteLink


def pick_body(i: int | str) -> dict:
    return {"task_id": f"t{i}", "order_id": f"o{i}", "marketplace": "wildberries", "lines": []}


def delta_body(i: int | str) -> dict:
    return {"warehouse": "main", "item_id": f"item-{i}", "delta": -1, "reason": "pick"}


def applied_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS applied (msg_id TEXT, seq INTEGER, type TEXT, key TEXT)")


def record(conn: sqlite3.Connection, env) -> None:
    """A handler that writes each applied message into the application table `applied`."""
    applied_table(conn)
    key = env.body.get("task_id") or env.body.get("item_id")
    conn.execute("INSERT INTO applied VALUES (?, ?, ?, ?)", (env.id, env.seq, env.type, key))


def applied_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT msg_id, seq, type, key FROM applied ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def make_link(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., SiteLink]]:
    links: list[SiteLink] = []

    def make(
        role: str, *, site_id: str | None = None, db: str | None = None, handlers: dict | None = None, **kw
    ) -> SiteLink:
        name = db or (f"{role}.db" if role == "cloud" else f"{site_id}.db")
        settings = {
            "gap_timeout": 5.0,
            "resend_after": 2.0,
            **broker.link_settings(site_id if role == "site" else None),
        }
        settings.update(kw)
        link = SiteLink(LinkConfig(role=role, db_path=str(tmp_path / name), site_id=site_id, **settings))
        links.append(link)
        for msg_type, handler in (handlers or {}).items():
            link.on(msg_type, handler)
        link.start()
        wait_for(lambda: link.connected, 10, f"{role} link to connect")
        return link

    yield make
    for link in links:
        link.stop()


class RawClient:
    """A plain paho client for publishing hand-made payloads and watching topics."""

    def __init__(self, broker: Broker, client_id: str, connect_timeout: float = 10, **auth):
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if auth.get("username"):
            self.client.username_pw_set(auth["username"], auth.get("password"))
        if auth.get("tls_ca"):
            self.client.tls_set(ca_certs=auth["tls_ca"])
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.connect_rc = None

        def on_connect(c, u, flags, rc, props):
            self.connect_rc = rc

        self.client.on_connect = on_connect
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        try:
            wait_for(lambda: self.connect_rc is not None, connect_timeout, "raw client to connect")
        except AssertionError:
            self.close()
            raise

    def subscribe(self, topic: str) -> None:
        done = []
        self.client.on_subscribe = lambda c, u, mid, rcs, p: done.append(rcs)
        self.client.subscribe(topic, qos=1)
        wait_for(lambda: done, 5, "suback")
        self.suback = done[0]

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def acks(self) -> list[list]:
        return [pair for t, p in self.messages if "/ack/" in t for pair in json.loads(p)["acks"]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawClient]]:
    clients: list[RawClient] = []

    def make(b: Broker, client_id: str = "raw", **auth) -> RawClient:
        c = RawClient(b, client_id, **auth)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
