"""The soak's hand on the real broker: it listens to the site link's traffic and publishes bad messages.

`LinkMeddler` connects to the demo's Mosquitto as the cloud's MQTT user (the only one the ACL lets
read and write every site's topics) under a client id of its own, never the cloud's, with a clean
session, and copies what passes on `ms/v1/{site}/up` (site -> cloud) and `ms/v1/{site}/down`
(cloud -> site). From those copies it sends, at QoS 1 and waiting for the broker's PUBACK:

- malformed payloads, each of which the receiving side must keep as exactly one dead letter;
- verbatim replays of messages already sent;
- replays with only `seq` changed: to an old seq, or to the seq the next real message will take;
- reordered replays: a run of recent messages sent again in shuffled order, or moved ahead of the
  stream with a hole before them (the receiver holds them until the hole fills or its gap timeout).

None of them may be applied a second time; the judge counts the dead letters against `malformed`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt

from sitelink.link import PREFIX

# Payloads that no receiver can read as an envelope: each becomes exactly one dead letter.
MALFORMED: tuple[bytes, ...] = (
    b"{not json at all",
    b"\xff\xfe\x00 not utf-8",
    b"[]",
    b"42",
    b'{"hello": "world"}',
    b'{"id": "not-a-ulid", "site": "x", "seq": 0, "type": "scan", "ts": "", "body": {}}',
    b'"just a string"',
)


class LinkMeddler:
    """A client of the demo's broker that copies the link's traffic and publishes faults into it."""

    def __init__(self, *, host: str, port: int, username: str, password: str, tls_ca: str | None,
                 site: str, rng: random.Random) -> None:
        self.site = site
        self.rng = rng
        self.topics = {"up": f"{PREFIX}/{site}/up", "down": f"{PREFIX}/{site}/down"}
        self.seen: dict[str, deque[bytes]] = {"up": deque(maxlen=400), "down": deque(maxlen=400)}
        self.top_seq: dict[str, int] = {"up": 0, "down": 0}
        self.ours: set[bytes] = set()  # what we published ourselves is never copied
        self.malformed = {"cloud": 0, "site": 0}  # per receiving side
        # replays whose seq was changed under a signed envelope: the MAC no longer fits, so each id becomes
        # one dead letter at the receiver (`expected_dead_letters`)
        self.forged: dict[str, set[str]] = {"cloud": set(), "site": set()}
        self.sent = 0  # messages published (each one a fault)
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ms-soak-{rng.randrange(16**8):08x}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, 30, clean_start=True)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 0) for t in self.topics.values()])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        direction = "up" if msg.topic.endswith("/up") else "down"
        with self._lock:
            if msg.payload in self.ours:
                return
            self.seen[direction].append(bytes(msg.payload))
            for env in _envelopes(msg.payload):
                self.top_seq[direction] = max(self.top_seq[direction], int(env.get("seq") or 0))

    # ------------------------------------------------------------------ publishing

    def _publish(self, direction: str, payload: bytes, timeout: float = 10.0) -> bool:
        with self._lock:
            self.ours.add(payload)
        info = self.client.publish(self.topics[direction], payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        if info.is_published():
            self.sent += 1
            return True
        return False

    def _envelopes_seen(self, direction: str) -> list[dict[str, Any]]:
        with self._lock:
            payloads = list(self.seen[direction])
        return [env for p in payloads for env in _envelopes(p)]

    def malformed_message(self, direction: str | None = None) -> str | None:
        direction = direction or self.rng.choice(["up", "down"])
        payload = self.rng.choice(MALFORMED)
        if not self._publish(direction, payload):
            return None
        self.malformed["cloud" if direction == "up" else "site"] += 1
        return f"malformed message to the {'cloud' if direction == 'up' else 'site'}: {payload[:40]!r}"

    def verbatim_replay(self, direction: str | None = None) -> str | None:
        direction = direction or self.rng.choice(["up", "down"])
        with self._lock:
            payloads = list(self.seen[direction])
        if not payloads:
            return None
        payload = self.rng.choice(payloads[-50:])
        if not self._publish(direction, payload):
            return None
        return f"verbatim replay {direction}: {_ids(payload)}"

    def seq_changed_replay(self, direction: str | None = None, ahead: bool = True) -> str | None:
        """`ahead` False: only old seqs (late in the day nothing may be left ahead of the real stream:
        the receiver would wait for seqs nobody sends any more)."""
        direction = direction or self.rng.choice(["up", "down"])
        envs = self._envelopes_seen(direction)
        if len(envs) < 2:
            return None
        env = dict(self.rng.choice(envs[-50:]))
        old = env["seq"]
        if old > 1 and (not ahead or self.rng.random() < 0.5):
            env["seq"] = self.rng.randrange(1, old)  # an old seq: another message already applied there
        elif ahead:
            env["seq"] = self.top_seq[direction] + self.rng.randint(1, 3)  # where the next real ones go
        else:
            return None
        if not self._publish(direction, _dump(env)):
            return None
        self._forged(direction, [env])
        return f"replay {direction} of {env['id']} with seq {old} -> {env['seq']}"

    def reordered_replay(self, direction: str | None = None, ahead: bool = True) -> str | None:
        direction = direction or self.rng.choice(["up", "down"])
        envs = self._envelopes_seen(direction)[-8:]
        if len(envs) < 3:
            return None
        if not ahead or self.rng.random() < 0.5:  # the same messages again, in another order
            self.rng.shuffle(envs)
            sent = [e for e in envs if self._publish(direction, _dump(e))]
            return f"reordered replay {direction}: seq {[e['seq'] for e in sent]}"
        start = self.top_seq[direction] + self.rng.randint(2, 6)  # a hole before them
        moved = [dict(e, seq=start + i) for i, e in enumerate(envs)]
        moved.reverse()
        sent = [e for e in moved if self._publish(direction, _dump(e))]
        self._forged(direction, [e for e, orig in zip(moved, reversed(envs), strict=True) if e["seq"] != orig["seq"]
                                 and e in sent])
        return f"replay {direction} ahead of the stream, reversed, seq {[e['seq'] for e in sent]}"

    def _forged(self, direction: str, envs: list[dict[str, Any]]) -> None:
        side = "cloud" if direction == "up" else "site"
        self.forged[side].update(str(e["id"]) for e in envs if e.get("mac"))

    def expected_dead_letters(self) -> dict[str, int]:
        """Per receiving side: the malformed messages plus the signed envelopes replayed with another seq."""
        return {side: n + len(self.forged[side]) for side, n in self.malformed.items()}


def _envelopes(payload: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return []
    items = data if isinstance(data, list) else [data]
    return [e for e in items if isinstance(e, dict) and isinstance(e.get("seq"), int) and "id" in e]


def _dump(env: dict[str, Any]) -> bytes:
    return json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()


def _ids(payload: bytes) -> str:
    envs = _envelopes(payload)
    return ", ".join(f"{e['id']}#{e['seq']}" for e in envs[:3]) + (" …" if len(envs) > 3 else "")


def wait_connected(meddler: LinkMeddler, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if meddler.client.is_connected():
            return True
        time.sleep(0.1)
    return False
