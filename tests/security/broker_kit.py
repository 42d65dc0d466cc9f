"""What the broker and link security tests share: a plain MQTT client acting with someone's credentials
(the way an intruder with a stolen password would), and the broker as `marketsync link broker-config`
writes it, run by a real Mosquitto on a free port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from marketsync.broker import MOSQUITTO, free_port
from sitelink import cli
from sitelink.broker_config import deploy_conf


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Door:
    """How to reach a broker: host, port, its CA and each user's password."""

    host: str
    port: int
    ca: str
    passwords: dict[str, str] = field(repr=False)


class Intruder:
    """A paho client with some user's credentials and any client id it likes (persistent session)."""

    def __init__(self, door: Door, user: str, client_id: str, password: str | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.pubacks: list[int] = []
        self.connects: list[str] = []
        self.disconnects = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(user, door.passwords[user] if password is None else password)
        c.tls_set(ca_certs=door.ca)
        c.on_message = lambda cl, u, m: self.messages.append((m.topic, m.payload, m.retain))
        c.on_connect = lambda cl, u, f, rc, p: self.connects.append(str(rc))
        c.on_disconnect = lambda cl, u, f, rc, p: setattr(self, "disconnects", self.disconnects + 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect(door.host, door.port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c
        wait_for(lambda: self.connects, 10, f"{user} to connect")

    def subscribe(self, *topics: str) -> None:
        done: list[object] = []
        self.client.on_subscribe = lambda c, u, mid, rcs, p: done.append(rcs)
        self.client.subscribe([(t, 1) for t in topics])
        wait_for(lambda: done, 5, "suback")

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> list[str]:
        return [t for t, _, _ in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def deployed_broker(tmp: Path, sites: list[str]) -> tuple[Door, subprocess.Popen[bytes], Path]:
    """`marketsync link broker-config` run for `sites`, its files served by a real Mosquitto (the
    deployment's marketsync.conf as written, only its paths pointed at `tmp`). Returns the door, the
    process (the caller terminates it) and the credentials folder."""
    out = tmp / "broker"
    port = free_port()
    argv = ["broker-config", "--out", str(out), "--hostname", "127.0.0.1", "--port", str(port)]
    for s in sites:
        argv += ["--site", s]
    assert cli.main(argv) == 0
    creds = out / "credentials"
    passwords = {p.stem: p.read_text().strip() for p in creds.glob("*.password")}
    conf = tmp / "run.conf"
    conf.write_text(f"user root\nlog_dest file {tmp / 'mosquitto.log'}\nconnection_messages true\n"
                    + deploy_conf(port, str(out)))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: _listening(port) or proc.poll() is not None, 10, "mosquitto to listen")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return Door("127.0.0.1", port, str(out / "ca.crt"), passwords), proc, creds


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
