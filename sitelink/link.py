"""`SiteLink`: the durable cloud<->site link over MQTT v5, one implementation for both roles.

Sending: `send(conn, type, body)` writes the envelope to `link_outbox` inside the caller's transaction.
The link's worker thread reads the outbox in order and publishes at QoS 1 with a window of messages in
flight per peer (a backlog goes out as batches: one MQTT payload holding a JSON array of envelopes); the
receiver's acknowledgement deletes them: a list of (seq, id) on `ms/v1/{site}/ack/up` when the site
acknowledges, `ms/v1/{site}/ack/down` when the cloud does (`up`/`down` is always the way a message
travels, so the broker's ACL lets a site publish only `up`, `ack/up` and `state`). Unacknowledged
messages are published again after a reconnect, when the peer comes back online, or when no
acknowledgement has come for `resend_after` seconds.

Receiving: each message is parsed, put in per-sender `seq` order (out-of-order ones are held until the
gap fills, or `gap_timeout` passes: then the gap is recorded in `link_gaps` and the link moves on),
applied by the handler registered with `on(type, handler)` inside one transaction that also records the
id in `link_inbox`, then acknowledged. A redelivered id is acknowledged and not applied again. A message
that cannot be applied (not JSON, bad envelope, unknown type, wrong direction, invalid body, `Reject`
raised, or a handler failing `max_attempts` times) is written to `link_dead_letters` and acknowledged.

Proof of the sender: with keys (`keys_file`, see `sitelink.keys`) every envelope is signed when it is
published (`envelope.sign`, the key of that site and direction) and every received one is checked before
anything else (`envelope.verify`); a batch also carries one MAC over its whole payload (MQTT v5 user
properties `kid`/`mac`, `envelope.batch_mac`): when it holds, the batch's envelopes need no check each,
when it is missing or wrong each envelope is checked on its own. One that fails is written to
`link_dead_letters` with the reason and is neither applied, nor acknowledged, nor given a place in the
sequence: a forgery changes nothing, and a real message signed with a key this side does not have yet is
published again by its sender and applied once the key file is updated (it is read again when it changes). Acknowledgements are signed and
checked alike (a forged one would make the sender drop what never arrived): one that fails deletes
nothing and is recorded as a dead letter. Without keys the link sends unsigned and checks nothing (it
says so in the log at start): for tests and a broker on the loopback only.

Several cloud processes (`share_group`, `part`): each runs a link with `part="receive"` subscribed to the
MQTT v5 shared subscription `$share/<share_group>/ms/v1/+/up`: the broker hands each publish to one member
of the group, which applies it and acknowledges it to the site as above (the batch MAC rides along as the
publish's user properties). The per-site order holds across members because the next seq expected of each
site is the store's (`link_in_seq`), not the process's: a member re-reads it inside every applying
transaction (one writer at a time), so a batch that overtook one still being applied by another member
waits in memory until that one is committed, and whatever the others applied meanwhile counts as a
duplicate by its id (acknowledged, not applied). A member's session is not kept (no session expiry): a
member that dies takes no queue with it (Mosquitto would keep feeding a sleeping member its share);
what it held unacknowledged is sent again by its site after `resend_after`. One process (a lease) runs
the link's other part, `part="send"`: it publishes the outbox, takes the sites' acknowledgements and
states, and says the cloud is online.

Session: `clean_start=False` with a session expiry, so the broker keeps subscriptions and queued
messages while a side is away. A site publishes a retained `online`/`offline` on `ms/v1/{site}/state`,
the cloud on `ms/v1/cloud/state`, each with `offline` as its last will; nothing is sent again on a
timer to a peer known to be offline: it gets the whole outbox when it says `online`.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sitelink import envelope, sqlite, store
from sitelink.envelope import BadEnvelope, Envelope
from sitelink.keys import KeyFileError, Keyring
from sitelink.messages import DIRECTION, FIELDS, BadMessage
from sitelink.store import LinkError

log = logging.getLogger("sitelink")

PREFIX = "ms/v1"  # the topic root of an installation's one seller (the main one)
CLOUD = "cloud"  # the cloud's presence is ms/v1/cloud/state (so no site may be called "cloud")
CLOUD_STATE_TOPIC = f"{PREFIX}/{CLOUD}/state"
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,30}")  # a seller's id (cloud_sync.tenants), as topics take it


def topic_root(tenant: str = "") -> str:
    """The topic root of a seller's site link: `ms/v1` for the installation's main seller (""), else
    `ms/t/<tenant>/v1` (each seller of an installation its own tree; the broker's ACL keeps them apart)."""
    if not tenant:
        return PREFIX
    if not TENANT_ID.fullmatch(tenant) or tenant == CLOUD:
        raise LinkError(f"bad seller id for the link's topics: {tenant!r}")
    return f"ms/t/{tenant}/v1"
Handler = Callable[[sqlite3.Connection, Envelope], None]
PARTS = ("all", "receive", "send")
# A backlog applied back to back leaves a gap of `batch_pause` at once when a writer of this process waits
# for the database, and else after this many `batch_seconds` (for writers of other processes, unseen):
# about 4% of a long drain instead of a sixth.
FOREIGN_WRITER_GAP_ROUNDS = 8
# the first try to reach the broker again after a lost connection (a restart of the broker is back in
# tens of ms): then 20, 40, 80... ms up to `reconnect_max_s`. Not 0: paho doubles it, 0 stays 0
RECONNECT_FIRST_S = 0.01
# how often the worker looks whether a transaction that sent messages has ended (then it publishes them)
SEND_WATCH_S = 0.002
# acknowledgements alone (rows to delete) wait at most this long for a moment the write lock is free before
# their round waits for it in SQLite's busy wait (`SiteLink._receive`)
ACKS_WAIT_MOST_S = 1.0
# the inbox's old entries (past `inbox_keep_days`) are pruned this often, the first time at start; a prune
# that finds the write lock taken is tried again this much later (it never waits for the lock)
PRUNE_EVERY_S = 3600.0
PRUNE_RETRY_S = 60.0
# a keyed round takes one lock per key (PostgreSQL's lock table holds max_locks_per_transaction x connections
# in all): a round wider than this is an ordinary one
MAX_ROUND_KEYS = 256


class Reject(Exception):  # noqa: N818 - the seller's word: the message is rejected
    """Raised by a handler: this message can never be applied. It is dead-lettered (with this reason)
    and acknowledged; the link goes on with the next one."""


@dataclass
class LinkConfig:
    """How a link connects and behaves. Build it from a `[link]` TOML table with `from_dict`."""

    role: str  # "cloud" | "site"
    db_path: str
    host: str = "127.0.0.1"
    port: int = 1883
    site_id: str | None = None  # required for role "site"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None  # CA file: connect with TLS and check the broker's certificate
    # default: "ms-cloud" / "ms-site-{site_id}" (stable: persistent session); a broker configured by
    # `marketsync link broker-config` replaces it by the user name (use_username_as_clientid)
    client_id: str | None = None
    keys_file: str | None = None  # the envelope keys (sitelink.keys); None: unsigned, unchecked
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600  # seconds the broker keeps our session while we are away
    window: int = 5000  # messages in flight (published, not yet acknowledged) per peer
    batch: int = 1000  # messages applied per transaction at most
    batch_seconds: float = 0.25  # ...and for about this long: the application's writers wait meanwhile
    batch_pause: float = 0.1  # in a long backlog, when a writer of this process waits (every 8 x
    # batch_seconds for unseen ones): let the application write
    gap_timeout: float = 60.0  # seconds to hold out-of-order messages before recording a gap
    resend_after: float = 10.0  # seconds without acknowledgement before the window is sent again
    max_attempts: int = 5  # handler failures before a message is dead-lettered
    publish_batch: int = 100  # envelopes packed into one MQTT publish when a backlog drains (1: never)
    publish_batch_bytes: int = 256_000  # ...and about this many bytes at most
    poll_interval: float = 0.05  # seconds between looks at the outbox when idle
    # longest wait between two tries to reach a broker that is down: a cheap TCP connect, and what a
    # backlog waits at worst after the broker is back. The first try after a lost connection goes at
    # once (10 ms), then paho doubles the wait up to this
    reconnect_max_s: float = 0.25
    # several cloud processes: the sites' messages come through the MQTT v5 shared subscription
    # `$share/<share_group>/ms/v1/+/up` (each publish to one member); "": this link alone receives them
    share_group: str = ""
    # "all": receive, publish the outbox and say online (one cloud process; a site); "receive": only apply
    # what comes up (a member of the share group: no outbox, no presence, no kept session); "send": only
    # publish the outbox, take its acknowledgements and the sites' states, and say online
    part: str = "all"
    inbox_keep_days: float = 30.0  # received ids are remembered this long for duplicate detection
    # the topic root every topic and subscription is built on (`topic_root`): `ms/v1`, or a seller's
    # `ms/t/<id>/v1` on an installation of several sellers
    prefix: str = PREFIX
    connect: Callable[[str], sqlite3.Connection] | None = field(default=None, repr=False)
    keys: Keyring | None = field(default=None, repr=False)  # given directly instead of keys_file

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> LinkConfig:
        """From a TOML table; unknown keys are refused by name."""
        names = {f.name for f in fields(cls)} - {"connect", "keys"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LinkError(f"unknown link setting(s): {', '.join(unknown)}")
        return cls(**{**data, **overrides})


class _Careful(Exception):  # noqa: N818 - a signal inside the worker, never seen outside
    """A handler failed in a round applied without a savepoint per message: roll it back, redo it."""


@dataclass(slots=True)
class _Item:
    """A received message waiting for its turn (or its dead letter)."""

    peer: str
    id: str
    seq: int
    topic: str
    payload: Any  # raw bytes, or the decoded batch element
    env: Envelope | None
    reason: str | None = None  # set: dead-letter it when its turn comes
    type: str | None = None
    copies: int = 0  # further deliveries of this very message while it waited: each is acked too


class SiteLink:
    def __init__(self, cfg: LinkConfig):
        if cfg.role not in ("cloud", "site"):
            raise LinkError(f"role must be 'cloud' or 'site', got {cfg.role!r}")
        if cfg.role == "site" and not cfg.site_id:
            raise LinkError("a site link needs site_id")
        if cfg.site_id and ("/" in cfg.site_id or "+" in cfg.site_id or "#" in cfg.site_id):
            raise LinkError(f"site id {cfg.site_id!r} may not contain / + #")
        if cfg.site_id == CLOUD:
            raise LinkError(f"{CLOUD!r} is the cloud's name on the link, not a site id")
        if cfg.part not in PARTS:
            raise LinkError(f"part must be one of {', '.join(PARTS)}, got {cfg.part!r}")
        if cfg.role == "site" and (cfg.part != "all" or cfg.share_group):
            raise LinkError("a site link is whole: share_group and part are the cloud's")
        if cfg.share_group and any(c in cfg.share_group for c in "/+#$ "):
            raise LinkError(f"share group {cfg.share_group!r} may not contain / + # $ or spaces")
        if cfg.prefix != PREFIX and (not cfg.prefix.startswith("ms/t/") or topic_root(cfg.prefix.split("/")[2])
                                     != cfg.prefix):
            raise LinkError(f"topic root {cfg.prefix!r} is neither {PREFIX} nor a seller's ms/t/<id>/v1")
        self.cfg = cfg
        self.role = cfg.role
        self.prefix = cfg.prefix
        self._depth = cfg.prefix.count("/") + 1  # the topic's parts before the peer
        self.inbound = "up" if cfg.role == "cloud" else "down"  # the stream we receive
        self.outbound = "down" if cfg.role == "cloud" else "up"  # the stream we send
        self._handlers: dict[str, Handler] = {}
        self._keys_of: dict[str, Callable[[Envelope], Iterable[str] | None]] = {}
        self.keyed_rounds = 0  # rounds applied in a keyed transaction, and those done again in an ordinary one
        self.keyed_gave_way = 0
        self._queue: queue.SimpleQueue[tuple[str, bytes, Any]] = queue.SimpleQueue()
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._connected = False
        self._sub_mid = -1
        self._conn_gen = 0  # bumped on every (re)connect: the worker then publishes the outbox again
        self._lock = threading.Lock()
        # worker-thread state
        self._db: sqlite3.Connection | None = None
        self._gen_seen = 0
        self._cursor: dict[str, int] = {}
        self._inflight: dict[str, dict[int, str]] = {}
        self._progress_at: dict[str, float] = {}
        self._resend_delay: dict[str, float] = {}
        self._expected: dict[str, int] = {}
        self._held: dict[str, dict[int, _Item]] = {}
        self._waiting_since: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}
        self._attempts: dict[str, int] = {}
        self._old: list[_Item] = []
        self._raw_dead: list[dict[str, Any]] = []
        self._pending_acks: dict[str, list[tuple[int, str]]] = {}
        self._peer_heard: dict[str, float] = {}
        self._peer_state: dict[str, str] = {}
        self._pending_state: dict[str, str] = {}
        self._pause = 0.0  # seconds to leave the database to the application before the next round
        self._pause_seen = False  # that pause is for writers of this process seen waiting (not on a timer)
        self._busy_since: float | None = None  # when back-to-back transactions began
        self._more_to_apply = False
        self._failed_fast: dict[str, Exception] = {}  # a handler's failure in a round without savepoints
        self._pruned_at = -PRUNE_EVERY_S  # the first prune at start, whatever the monotonic clock reads
        self._others_looked_at = 0.0  # shared: when the store's next seqs were last looked at while idle
        # connections whose open transaction sent messages (id -> connection): the worker looks at them
        # every SEND_WATCH_S and at the outbox once one ended, instead of at the outbox on every send
        self._open_sends: dict[int, sqlite3.Connection] = {}
        self._version_seen = -1  # the database's data_version at the last whole round
        self._acks_waiting_since: float | None = None  # acknowledgements left for a free write lock since
        self._busy_ms: int | None = None  # the link connection's busy timeout (set back after a try at once)
        self.errors: list[str] = []  # the last worker errors (for status)
        self.keys = cfg.keys
        if self.keys is None and cfg.keys_file:
            try:
                self.keys = Keyring.load(cfg.keys_file)
            except KeyFileError as exc:
                raise LinkError(str(exc)) from None
        if self.keys is None:
            log.warning("sitelink %s: no envelope keys (keys_file): messages go unsigned and arrive "
                        "unchecked", cfg.role)
        self._keys_checked_at = 0.0
        self._unsigned_peers: set[str] = set()  # peers we have no signing key for (said once)

    # ------------------------------------------------------------ public API

    def on(self, msg_type: str, handler: Handler) -> None:
        """Register the handler applying received messages of `msg_type` (one per type), before start():
        a message of a type with no handler is dead-lettered.

        `handler(conn, env)` runs on the link's own connection inside the transaction that records the
        message in the inbox (a savepoint per message); it must not commit or roll back. It may call
        `send(conn, ...)` (the answer commits with the change). Raise `Reject(reason)` for a message
        that can never apply. A handler may run more than once for one message (after its own failure,
        or when the transaction fails to commit), so anything it does outside the database should be
        idempotent or done after the commit."""
        if self._thread is not None:
            raise LinkError("register handlers before start(): queued messages arrive at once")
        if msg_type not in FIELDS:
            raise LinkError(f"unknown message type {msg_type!r}")
        if DIRECTION[msg_type] != self.inbound:
            raise LinkError(f"{msg_type!r} goes {DIRECTION[msg_type]}: the {self.role} never receives it")
        self._handlers[msg_type] = handler

    def keys_for(self, msg_type: str, keys: Callable[[Envelope], Iterable[str] | None]) -> None:
        """`keys(env)`: the keys (`sitelink.sqlite.transaction`) the handler's writes for a message of `msg_type`
        stay within (None: it may need more). A round whose every message has keys is applied in a keyed
        transaction of those keys and each sender's (`link:<peer>`); a handler that finds it needs more
        raises `NeedsExclusive` (`sqlite.need`) and the round is done again in an ordinary transaction.
        Without keys (and always on SQLite) a round is an ordinary write transaction."""
        self._keys_of[msg_type] = keys

    def _peer(self, site: str | None) -> str:
        """The site a message of this side goes to or comes from: a site sends as itself only; the cloud
        names the site."""
        if self.role == "site":
            if site is not None and site != self.cfg.site_id:
                raise LinkError(f"site {self.cfg.site_id!r} cannot send as site {site!r}")
            return self.cfg.site_id
        if not site:
            raise LinkError("the cloud must say which site a message goes to (site=...)")
        return site

    def send(
        self, conn: sqlite3.Connection, msg_type: str, body: dict[str, Any], site: str | None = None
    ) -> Envelope:
        """Enqueue a message in the caller's transaction (see `store.enqueue`). The cloud names the site."""
        env = store.enqueue(conn, self.role, self._peer(site), msg_type, body)
        self._watch(conn)
        return env

    def send_many(
        self, conn: sqlite3.Connection, site: str | None, messages: list[tuple[str, dict[str, Any]]]
    ) -> list[Envelope]:
        """Enqueue messages (type, body) in the caller's transaction, in order (see `store.enqueue_many`)."""
        envs = store.enqueue_many(conn, self.role, self._peer(site), messages)
        self._watch(conn)
        return envs

    def _watch(self, conn: sqlite3.Connection) -> None:
        """After a send on `conn`: its transaction is watched (published once it ends), or the worker woken."""
        try:
            open_txn = conn.in_transaction
        except sqlite3.Error:
            open_txn = False
        if open_txn:  # the caller's transaction: nothing to publish before it ends (the worker watches it)
            if id(conn) in self._open_sends:
                return  # watched already: no wake (a look at the outbox) per message
            self._open_sends[id(conn)] = conn
        self._wake.set()

    def start(self) -> None:
        """Open the database, connect (in the background: a broker that is down is retried), start work."""
        if self._thread is not None:
            return
        self._db = self._open_db()
        store.ensure_schema(self._db)
        self._expected = store.in_seq(self._db)
        self._stopping.clear()
        self._client = self._make_client()
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"sitelink-{self.role}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline, disconnect cleanly, stop the worker. Unsent messages stay in the outbox."""
        client = self._client
        if client is not None:
            if self._connected and self.cfg.part != "receive":
                try:
                    info = client.publish(self._state_topic(), _state_payload("offline"), qos=1, retain=True)
                    info.wait_for_publish(timeout=min(timeout, 2.0))
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
            self._client = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._connected = False

    def __enter__(self) -> SiteLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        """Outbox depth per peer, applied count, dead letters, last seen per peer, connected, peers online."""
        conn = self._open_db()
        try:
            st = store.status(conn)
        finally:
            conn.close()
        inflight = {p: len(v) for p, v in list(self._inflight.items()) if v}
        held = {p: len(v) for p, v in list(self._held.items()) if v}
        st.update(
            role=self.role,
            site=self.cfg.site_id,
            connected=self._connected,
            in_flight=inflight,
            held_out_of_order=held,
            peers_online=sorted(p for p, s in st["peers"].items() if s.get("state") == "online"),
            errors=self.errors[-5:],
            signed=self.keys is not None,  # envelopes signed and checked (sitelink.keys)
        )
        return st

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty (every message acknowledged); True if it got there in time."""
        deadline = time.monotonic() + timeout
        conn = self._open_db()
        try:
            while True:
                if conn.execute("SELECT 1 FROM link_outbox LIMIT 1").fetchone() is None:
                    return True  # empty (a look at one row: no count of a long outbox every 20 ms)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
        finally:
            conn.close()

    # ------------------------------------------------------------ MQTT

    def _open_db(self) -> sqlite3.Connection:
        if self.cfg.connect is not None:
            return self.cfg.connect(self.cfg.db_path)
        return sqlite.connect(self.cfg.db_path)

    def _state_topic(self) -> str:
        """Our own presence topic (retained online/offline, offline also as the last will)."""
        return f"{self.prefix}/{CLOUD if self.role == 'cloud' else self.cfg.site_id}/state"

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        member = cfg.part == "receive"
        # a seller of several has ids of its own: two sellers' `site-1` are two clients of the broker
        tag = "" if self.prefix == PREFIX else "-" + self.prefix.split("/")[2]
        default_id = f"ms-cloud{tag}" if self.role == "cloud" else f"ms-site{tag}-{cfg.site_id}"
        if member:  # one of several: an id of its own (a broker binding ids to users gives its user's)
            default_id = f"ms-cloud{tag}-in-{secrets.token_hex(4)}"
        client_id = cfg.client_id or default_id
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls_ca:
            client.tls_set(ca_certs=cfg.tls_ca)
        client.max_inflight_messages_set(0)  # our own window limits what is in flight
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=min(RECONNECT_FIRST_S, cfg.reconnect_max_s),
                                   max_delay=cfg.reconnect_max_s)
        if not member:  # a member of the share group is not the cloud's presence: the sending part is
            client.will_set(self._state_topic(), _state_payload("offline"), qos=1, retain=True)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        # a member keeps no session: the broker would go on handing a dead member its share of the
        # messages (Mosquitto 2 queues them for it); its sites send again what it left unacknowledged
        props.SessionExpiryInterval = 0 if member else cfg.session_expiry
        client.connect_async(cfg.host, cfg.port, cfg.keepalive, clean_start=member, properties=props)
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._note_error(f"broker refused the connection: {reason_code}")
            return
        if self.role == "cloud":
            topics = self._cloud_topics()
            if self.cfg.part != "receive" and (self.cfg.share_group or self.cfg.part == "send"):
                # a session kept from a run as the only consumer still holds the plain subscription
                client.unsubscribe(f"{self.prefix}/+/up")
        else:
            site, root = self.cfg.site_id, self.prefix
            topics = [f"{root}/{site}/down", f"{root}/{site}/ack/down", f"{root}/{CLOUD}/state"]
        _, self._sub_mid = client.subscribe([(t, 1) for t in topics])
        if self.cfg.part != "receive":
            client.publish(self._state_topic(), _state_payload("online"), qos=1, retain=True)

    def _cloud_topics(self) -> list[str]:
        """What the cloud's link subscribes to: the sites' messages (through the share group when there
        is one) for a receiving part, their acknowledgements and states for a sending part."""
        up = f"{self.prefix}/+/up"
        if self.cfg.share_group:
            up = f"$share/{self.cfg.share_group}/{up}"
        topics = [up] if self.cfg.part in ("all", "receive") else []
        if self.cfg.part in ("all", "send"):
            topics += [f"{self.prefix}/+/ack/up", f"{self.prefix}/+/state"]
        return topics

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self._note_error(f"the broker refused our subscriptions: {', '.join(refused)}")
        with self._lock:  # connected = subscribed: from now on nothing sent to us is missed
            self._connected = True
            self._conn_gen += 1
        log.info("sitelink %s connected to %s:%s", self.role, self.cfg.host, self.cfg.port)
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected = False
        if not self._stopping.is_set():
            log.info("sitelink %s disconnected: %s", self.role, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((msg.topic, msg.payload, msg.properties))
        self._wake.set()

    def _note_error(self, text: str) -> None:
        log.warning("sitelink %s: %s", self.role, text)
        self.errors.append(f"{store._iso(time.time())} {text}")
        del self.errors[:-20]

    # ------------------------------------------------------------ the worker

    def _run(self) -> None:
        more = False
        full_at = 0.0  # when the loop last did a whole round (received, published, timers)
        while not self._stopping.is_set():
            if not more and self._queue.empty():
                self._wake.wait(self._idle_timeout())
            self._wake.clear()
            if (self._open_sends and not more and self._queue.empty() and self._gen_seen == self._conn_gen
                    and time.monotonic() - full_at < self.cfg.poll_interval and self._sends_still_open()):
                continue  # woken by sends whose transactions are still open: nothing new to publish yet
            full_at = time.monotonic()
            if self._open_sends:
                self._version_seen = self._data_version()
            try:
                batch = self._drain_queue()
                if (batch or self._old or self._raw_dead or self._pending_acks or self._pending_state
                        or self._has_due_work()):
                    self._receive(batch)
                more = self._pump() or self._more_to_apply
                self._timers()
                if self._pause:
                    # SQLite's busy handler retries on a timer: a writer waiting for us needs a real gap
                    pause, self._pause = self._pause, 0.0
                    self._leave_gap(pause, self._pause_seen)
            except sqlite3.OperationalError as exc:  # locked for too long, disk full...: try again
                self._note_error(f"database: {exc}")
                time.sleep(0.2)
            except Exception as exc:  # noqa: BLE001 - the worker must never die
                log.exception("sitelink worker")
                self._note_error(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)

    def _leave_gap(self, pause: float, seen: bool) -> None:
        """Leave the database to the application for `pause` seconds, or less when the writers of this
        process that waited for it (`seen`) have all got their turn — none at all when they got it between
        the round and this gap. A gap for a writer of another process, which cannot be seen, lasts the
        whole pause."""
        conn = self._db
        if conn is None or not sqlite.writers_waiting(conn):
            if not seen:
                self._stopping.wait(pause)
            return
        end = time.monotonic() + pause
        while sqlite.writers_waiting(conn) and time.monotonic() < end and not self._stopping.is_set():
            time.sleep(0.001)

    def _sends_still_open(self) -> bool:
        """Whether every transaction that sent a message is still open and nothing was committed to the
        database since the last whole round (`PRAGMA data_version`: a commit of another connection),
        so there is nothing new to publish; the transactions that ended are forgotten."""
        ended = False
        for key, conn in list(self._open_sends.items()):
            try:
                still = conn.in_transaction
            except (sqlite3.Error, ValueError):  # closed, or a connection of one thread only
                still = False
            if not still:
                self._open_sends.pop(key, None)
                ended = True
        return not ended and self._data_version() == self._version_seen

    def _data_version(self) -> int:
        assert self._db is not None
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def _idle_timeout(self) -> float:
        timeout = self.cfg.poll_interval
        if self._open_sends or self._acks_waiting_since is not None:  # a transaction that sent: published
            timeout = SEND_WATCH_S  # within 2 ms of its end; acks left for a free write lock: looked at as often
        now = time.monotonic()
        for t in self._retry_at.values():
            timeout = min(timeout, max(0.0, t - now))
        return timeout

    def _drain_queue(self) -> list[tuple[str, bytes, Any]]:
        out: list[tuple[str, bytes, Any]] = []
        limit = self.cfg.batch * 4
        while len(out) < limit:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def _has_due_work(self) -> bool:
        now = time.monotonic()
        if self.cfg.share_group and self._others_moved(now):
            return True
        for peer, held in self._held.items():
            if not held:
                continue
            if self._expected.get(peer, 1) in held and self._retry_at.get(peer, 0) <= now:
                return True
            since = self._waiting_since.get(peer)
            if since is not None and now - since >= self.cfg.gap_timeout:
                return True
        return False

    # -- receiving

    def _others_moved(self, now: float) -> bool:
        """Shared: whether another member applied what a held message waits for (a cheap read of the
        store's next seqs, at most every `poll_interval`)."""
        waiting = [p for p, held in self._held.items() if held and self._expected.get(p, 1) not in held]
        if not waiting or now - self._others_looked_at < self.cfg.poll_interval:
            return False
        self._others_looked_at = now
        assert self._db is not None
        seqs = store.next_seqs(self._db, waiting)  # autocommit: no snapshot is kept open
        return any(seqs.get(p, 1) > self._expected.get(p, 1) for p in waiting)

    def _follow_others(self, conn: sqlite3.Connection, now: float) -> None:
        """Shared, inside the applying transaction: the next seq of each site we hold messages of is
        the store's (another member may have applied some since); held messages now behind it are
        checked as late copies (a duplicate by its id is acknowledged, not applied)."""
        peers = [p for p, held in self._held.items() if held]
        if not peers:
            return
        for peer, nxt in store.next_seqs(conn, peers).items():
            if nxt <= self._expected.get(peer, 1):
                continue
            self._expected[peer] = nxt
            held = self._held[peer]
            for seq in sorted(s for s in held if s < nxt):
                self._old.append(held.pop(seq))
            self._waiting_since.pop(peer, None)
            if held:
                self._waiting_since[peer] = now

    def _receive(self, batch: list[tuple[str, bytes, Any]]) -> None:
        now = time.monotonic()
        for topic, payload, properties in batch:
            if not topic.startswith(self.prefix + "/"):
                continue  # another tree (never subscribed to: a broker's mistake changes nothing here)
            parts = topic.split("/")
            if len(parts) < self._depth + 2:
                continue
            peer, rest = parts[self._depth], parts[self._depth + 1:]
            if peer == CLOUD:
                if rest == ["state"] and self.role == "site":
                    self._accept_state(CLOUD, payload)
                continue
            if self.role == "site" and peer != self.cfg.site_id:
                continue
            if rest == [self.inbound]:
                self._peer_heard[peer] = time.time()
                self._accept(topic, peer, payload, now, properties)
            elif rest == ["ack", self.inbound]:  # acks travel the other way: ours come back on our inbound
                self._peer_heard[peer] = time.time()
                self._accept_ack(peer, payload)
            elif rest == ["state"] and self.role == "cloud":
                self._accept_state(peer, payload)
        if self._old or self._raw_dead or any(self._held.values()) or not (self._pending_acks or self._pending_state):
            self._acks_waiting_since = None
            self._apply_all()
            return
        # a round with only acknowledgements and peers' states to write (the acks' messages left the window
        # already; a state is a peer's online/offline mark): taken when
        # the write lock is free at once, else left for a later look while the pump goes on (a writer of this
        # process that holds the lock back to back, an enqueue of many transactions, would otherwise keep the
        # worker asleep in SQLite's busy wait, publishing nothing); after ACKS_WAIT_MOST_S it waits as before
        since = self._acks_waiting_since
        if since is None:
            since = self._acks_waiting_since = now
        if now - since < ACKS_WAIT_MOST_S and self._apply_if_free():
            self._acks_waiting_since = None
        elif now - since >= ACKS_WAIT_MOST_S:
            self._acks_waiting_since = None
            self._apply_all()

    def _apply_if_free(self) -> bool:
        """`_apply_all` if the write lock is free right now (SQLite: no busy wait), True when it was; False:
        nothing was written and the round's work stays pending. Another store (PostgreSQL) applies at once."""
        return self._if_free(self._apply_all)

    def _if_free(self, write: Callable[[], Any]) -> bool:
        """Run `write` (one transaction, or one statement in autocommit) if the write lock is free right now
        (SQLite: no busy wait), True when it ran; False: nothing was written (a transaction rolls back whole,
        `sqlite.transaction`). Another store (PostgreSQL), or a transaction already open, runs it at once."""
        conn = self._db
        assert conn is not None
        if not isinstance(conn, sqlite3.Connection) or conn.in_transaction:
            write()
            return True
        if self._busy_ms is None:
            self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout=0")
        try:
            write()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        return True

    def _accept_state(self, peer: str, payload: bytes) -> None:
        try:
            state = json.loads(payload)["state"]
        except (ValueError, KeyError, TypeError):
            return
        before = self._peer_state.get(peer)
        self._peer_state[peer] = state
        self._pending_state[peer] = state
        if state == "online" and before == "offline":
            stream = self.cfg.site_id if peer == CLOUD else peer
            self._cursor.pop(stream, None)  # it was away: what it missed is published again
            with self._lock:
                self._inflight.pop(stream, None)

    def _accept_ack(self, peer: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            acks = [(int(s), str(i)) for s, i in data["acks"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._note_error(f"unreadable acknowledgement from {peer}: {exc}")
            return
        if self.keys is not None:
            kid = data.get("kid")
            if isinstance(kid, str) and self.keys.find(peer, self.inbound, kid) is None:
                self._reload_keys()
            failed = envelope.verify_acks(data, self.keys, peer, self.inbound)
            if failed:  # nothing is deleted from the outbox: what it names is sent again
                self._raw_dead.append({"topic": f"{self.prefix}/{peer}/ack/{self.inbound}", "reason": failed,
                                       "payload": payload, "peer": peer})
                return
        self._pending_acks.setdefault(peer, []).extend(acks)
        # acknowledged: out of the window now (their rows are deleted by the next round, which may wait for
        # the write lock: `_receive`), so the pump goes on publishing meanwhile
        with self._lock:
            inflight = self._inflight.get(peer)
            if inflight:
                for seq, _ in acks:
                    inflight.pop(seq, None)
            self._progress_at[peer] = time.monotonic()
            self._resend_delay[peer] = self.cfg.resend_after

    def _accept(self, topic: str, peer: str, payload: bytes, now: float, properties: Any = None) -> None:
        try:
            elements = envelope.parse_batch(payload)
        except BadEnvelope as exc:
            self._raw_dead.append({"topic": topic, "reason": exc.reason, "payload": payload, "peer": peer})
            return
        single = len(elements) == 1
        proven = False  # the whole batch proven by its own MAC: no envelope needs checking on its own
        if self.keys is not None and not single:
            proof = envelope.batch_proof(properties)
            if proof is not None and self.keys.find(peer, self.inbound, proof[0]) is None:
                self._reload_keys()
            proven = envelope.verify_batch(payload, proof, self.keys, peer, self.inbound)
        if self.keys is not None and not proven:
            for data in elements:
                self._accept_one(topic, peer, data, payload if single else data, proven)
            return
        # no envelope needs a MAC check of its own: the usual element is taken in one tight loop (the
        # checks of `envelope.from_dict` and `_accept_one`, inlined); anything else goes the long way
        handlers = self._handlers
        expected = self._expected.get(peer, 1)
        held = self._held.setdefault(peer, {})
        shape, signed_shape, is_ulid = envelope._SHAPE, envelope._SIGNED_SHAPE, envelope._ULID.fullmatch
        make, item_of, check_body = envelope._envelope, _Item, envelope.check_body
        for data in elements:
            if type(data) is dict and (data.keys() == shape or data.keys() == signed_shape):
                msg_id, seq, msg_type, ts = data["id"], data["seq"], data["type"], data["ts"]
                if (type(seq) is int and seq >= expected and data["site"] == peer and type(msg_type) is str
                        and msg_type in handlers and type(ts) is str and type(msg_id) is str
                        and is_ulid(msg_id) is not None):
                    body = data["body"]
                    try:
                        check_body(msg_type, body)
                    except BadMessage:
                        pass  # the long way says why, with the message's id and seq
                    else:
                        item = item_of(peer, msg_id, seq, topic, payload if single else data,
                                       make(msg_id, peer, seq, msg_type, ts, body), None, msg_type)
                        waiting = held.setdefault(seq, item)
                        if waiting is not item and waiting.id == msg_id:
                            waiting.copies += 1  # a redelivery while the first copy waits: acked with it
                        continue
            self._accept_one(topic, peer, data, payload if single else data, proven)

    def _accept_one(self, topic: str, peer: str, data: Any, payload: Any, proven: bool = False) -> None:
        """`payload`: the raw bytes of a single message, or the decoded element of a batch (serialized
        only if it is dead-lettered). `proven`: the batch's MAC holds, which covers this element."""
        if self.keys is not None and not proven and isinstance(data, dict):
            failed = self._check_mac(data, peer)
            if failed:  # not from its sender: recorded, never applied, acknowledged or sequenced
                msg_id, msg_type, seq = data.get("id"), data.get("type"), data.get("seq")
                self._raw_dead.append({
                    "topic": topic, "reason": failed, "payload": payload, "peer": peer, "once": True,
                    "id": msg_id if isinstance(msg_id, str) else None,
                    "type": msg_type if isinstance(msg_type, str) else None,
                    "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                })
                return
        try:
            env = envelope.from_dict(data)
        except BadEnvelope as exc:
            if exc.id and exc.seq and exc.site == peer:
                item = _Item(peer, exc.id, exc.seq, topic, payload, None, reason=exc.reason)
            else:
                self._raw_dead.append(
                    {"topic": topic, "reason": exc.reason, "payload": payload, "peer": peer}
                )
                return
        else:
            item = _Item(peer, env.id, env.seq, topic, payload, env, type=env.type)
            if env.site != peer:
                self._raw_dead.append(
                    {
                        "topic": topic,
                        "payload": payload,
                        "peer": peer,
                        "id": env.id,
                        "reason": f"envelope site {env.site!r} differs from the topic's site {peer!r}",
                    }
                )
                return
            if DIRECTION[env.type] != self.inbound:
                item.reason = f"{env.type!r} goes {DIRECTION[env.type]}, it cannot arrive at the {self.role}"
            elif env.type not in self._handlers:
                item.reason = f"no handler for {env.type!r} on the {self.role}"
        if item.seq < self._expected.get(peer, 1):
            self._old.append(item)
            return
        held = self._held.setdefault(peer, {})
        waiting = held.setdefault(item.seq, item)
        if waiting is not item and waiting.id == item.id:
            waiting.copies += 1  # a redelivery while the first copy waits its turn: ack it with the first

    def _check_mac(self, data: dict[str, Any], peer: str) -> str | None:
        """Why `data` (from `peer`'s inbound stream) is not proven; a key we lack may just have been
        added to the key file: read it again once before saying no."""
        assert self.keys is not None
        kid = data.get("kid")
        if isinstance(kid, str) and self.keys.find(peer, self.inbound, kid) is None:
            self._reload_keys()
        return envelope.verify(data, self.keys, peer, self.inbound)

    def _reload_keys(self) -> bool:
        self._keys_checked_at = time.monotonic()
        if self.keys is None:
            return False
        try:
            changed = self.keys.reload_if_changed()
        except KeyFileError as exc:
            self._note_error(f"{exc}; the keys read before stay in use")
            return False
        if changed:
            log.info("sitelink %s: envelope keys read again from %s", self.role, self.keys.path)
            self._unsigned_peers.clear()
        return changed

    def _apply_all(self) -> None:
        """One transaction: outbox deletions for acks, dead letters, messages applied in seq order.

        A round first applies its messages without a savepoint each (two statements fewer per
        message); when a handler fails or rejects, that round is rolled back whole and done again with
        a savepoint per message, so the failure undoes only its own message. The round's bookkeeping
        (inbox rows, acks, the next seq expected) is kept in memory only after the commit, so the second
        try starts from the same state (handlers may run twice, as `on` says); the handler that failed is
        not called again in the second try: its failure stands (it counts as one attempt)."""
        keyed = self._round_keys()
        if keyed is not None:
            try:
                self._apply_both(*keyed)
                self.keyed_rounds += 1
                return
            except sqlite.NeedsExclusive:
                self.keyed_gave_way += 1  # rolled back whole: done again below as an ordinary transaction
        self._apply_both(None, None)

    def _apply_both(self, keys: frozenset[str] | None, peers: frozenset[str] | None) -> None:
        self._failed_fast = {}
        try:
            try:
                self._apply_round(careful=False, keys=keys, peers=peers)
            except _Careful:
                self._apply_round(careful=True, keys=keys, peers=peers)  # the failed handler is not called again
        finally:
            self._failed_fast = {}

    def _round_keys(self) -> tuple[frozenset[str], frozenset[str] | None] | None:
        """The keys of a keyed round (see `keys_for`) and the senders it applies (None: all), or None: an
        ordinary round. Every message of a sender the round takes (held or late) must have keys; a round
        takes senders (late copies' first) while their keys stay within `MAX_ROUND_KEYS`, the others wait for
        the next round. Acknowledgements and states to write touch their peer's rows alone (its outbox rows,
        its `link_peers` row): the round holds those peers' `link:<peer>` keys whatever senders it takes (more
        of them than `MAX_ROUND_KEYS`: an ordinary round)."""
        if not self._keys_of and (self._old or any(self._held.values())):
            return None  # messages whose handlers said no keys
        # (a link with no handlers at all, the cloud's sending part of a share group: its rounds write
        # acknowledgements and states alone, keyed as any round's)
        must = {f"link:{peer}" for peer in (*self._pending_acks, *self._pending_state)}
        if len(must) > MAX_ROUND_KEYS:
            return None
        per_peer: dict[str, set[str]] = {}
        for item in [*self._old, *(i for held in self._held.values() for i in held.values())]:
            keys = per_peer.setdefault(item.peer, {f"link:{item.peer}"})
            if item.env is None or item.reason is not None:
                continue  # a dead letter: an insert of its own
            fn = self._keys_of.get(item.env.type)
            if fn is None:
                return None
            try:
                more = fn(item.env)
            except Exception:  # noqa: BLE001 - a body the handler will refuse: its round is an ordinary one
                return None
            if more is None:
                return None
            keys.update(more)
        for peer in self._peer_heard:
            per_peer.setdefault(peer, {f"link:{peer}"})
        taken: set[str] = set(must)
        peers: set[str] = set()
        for peer, keys in per_peer.items():
            if len(taken | keys) > MAX_ROUND_KEYS:
                continue
            taken |= keys
            peers.add(peer)
        if not peers and not must:
            return None
        return frozenset(taken), (None if len(peers) == len(per_peer) else frozenset(peers))

    def _apply_round(self, careful: bool, keys: frozenset[str] | None = None,
                     peers: frozenset[str] | None = None) -> None:
        """One round in one transaction; `keys`: a keyed one (`_round_keys`) of these `peers` only (None: all)."""
        conn = self._db
        assert conn is not None
        now_wall = time.time()
        now = time.monotonic()
        acks_out: dict[str, list[tuple[int, str]]] = {}
        consumed: dict[str, list[int]] = {}
        new_expected: dict[str, int] = {}
        applied_count: dict[str, int] = {}
        inbox_rows: list[tuple[str, str, int, str, str, float]] = []
        gaps: list[tuple[str, int, int]] = []
        late_applied: dict[str, int] = {}  # applied after their gap was given up on
        pending_acks = self._pending_acks
        old = self._old
        raw_dead = self._raw_dead
        pending_state = self._pending_state
        budget = self.cfg.batch
        self._more_to_apply = False
        with sqlite.transaction(conn, keys=keys):
            # the round's time (`batch_seconds`) counts from here, when the write lock is ours: a round that
            # waited for the lock longer than that applied nothing at all (each sender's loop found its time
            # spent before its first message), and a loaded PostgreSQL store made every round such a round
            locked_at = time.monotonic()
            if self.cfg.share_group:
                self._follow_others(conn, now)  # appends to self._old (the list `old` is)
            for peer, acks in pending_acks.items():
                store.delete_acked(conn, peer, acks)
            for d in raw_dead:
                store.dead_letter(conn, **d)
            for peer, state in pending_state.items():
                store.set_peer_state(conn, peer, state)
            seen_now: set[str] = set()  # ids applied (or dead-lettered) in this transaction
            # which of the ids that may be applied now are in the inbox already: one query per round
            looked_up = self._candidates(budget)
            inbox = store.in_inbox(conn, looked_up)
            looked = set(looked_up)

            fast, handlers = not careful, self._handlers

            def known(item: _Item) -> bool:
                """The id decides, whatever seq this copy carries: applied before, or just now."""
                if item.id in seen_now:
                    return True
                return item.id in inbox if item.id in looked else store.is_in_inbox(conn, item.id)

            later: list[_Item] = []  # late copies of senders this round does not take
            skipped = False  # a sender this round does not take has a message to apply next
            for item in old:
                if peers is not None and item.peer not in peers:
                    later.append(item)
                    continue
                if not known(item):
                    seen_now.add(item.id)
                    outcome = self._apply_one(conn, item, late=True, careful=careful)
                    if outcome == "retry":
                        seen_now.discard(item.id)
                        continue  # tried again when it is redelivered
                    if outcome == "applied":
                        late_applied[item.peer] = late_applied.get(item.peer, 0) + 1
                    inbox_rows.append((item.id, item.peer, item.seq, item.type or "", outcome, now_wall))
                    store.fill_gap(conn, item.peer, item.seq)
                # a held message another member applied first may carry its copies (each is acked too)
                acks_out.setdefault(item.peer, []).extend([(item.seq, item.id)] * (1 + item.copies))
            for peer, held in self._held.items():
                if peers is not None and peer not in peers:
                    skipped = skipped or self._expected.get(peer, 1) in held
                    continue
                if not held or budget <= 0:
                    continue
                exp = self._expected.get(peer, 1)
                start = exp
                taken: list[int] = []
                acks = acks_out.setdefault(peer, [])
                retry_at = self._retry_at
                batch_seconds = self.cfg.batch_seconds
                applied = 0
                while budget > 0:
                    if time.monotonic() - locked_at > batch_seconds:
                        # long enough holding the write lock: commit, go on next round; a gap follows
                        # only for a writer that waits (below), as after a round's full budget: a round
                        # made long by a loaded machine, not by its work, paused a drain for nobody
                        budget = 0
                        break
                    item = held.get(exp)
                    if item is None:
                        rest = [s for s in held if s > exp and s not in taken]
                        if not rest:
                            break
                        since = self._waiting_since.setdefault(peer, now)
                        if now - since < self.cfg.gap_timeout:
                            break
                        nxt = min(rest)
                        gaps.append((peer, exp, nxt - 1))
                        exp = nxt
                        continue
                    if retry_at and retry_at.get(peer, 0) > now:
                        break
                    item_id = item.id
                    if item_id in seen_now or (item_id in inbox if item_id in looked
                                               else store.is_in_inbox(conn, item_id)):
                        pass  # a copy of an applied message sent again under another seq: `known`, inlined
                    elif fast and item.reason is None and (handler := handlers.get(item.type)) is not None:
                        # `_apply_one(careful=False)`, inlined: the usual message of a round
                        try:
                            handler(conn, item.env)
                        except Exception as exc:  # noqa: BLE001 - Reject too: done again with savepoints
                            self._failed_fast[item_id] = exc
                            raise _Careful from None
                        if retry_at:
                            retry_at.pop(peer, None)
                        seen_now.add(item_id)
                        inbox_rows.append((item_id, peer, exp, item.type, "applied", now_wall))
                        applied += 1
                    else:
                        outcome = self._apply_one(conn, item, careful=careful)
                        if outcome == "retry":
                            break
                        seen_now.add(item_id)
                        inbox_rows.append((item_id, peer, exp, item.type or "", outcome, now_wall))
                        if outcome == "applied":
                            applied += 1
                    if item.copies:
                        acks.extend([(exp, item_id)] * (1 + item.copies))
                    else:
                        acks.append((exp, item_id))
                    taken.append(exp)
                    budget -= 1
                    exp += 1
                if applied:
                    applied_count[peer] = applied
                if exp != start:
                    new_expected[peer] = exp
                    consumed[peer] = taken
            if inbox_rows:
                store.record_inbox(conn, inbox_rows)
            for peer, a, b in gaps:
                conn.execute(
                    "INSERT INTO link_gaps(peer, from_seq, to_seq, detected_at) VALUES (?,?,?,?)",
                    (peer, a, b, now_wall),
                )
            for peer, exp in new_expected.items():
                conn.execute(
                    "INSERT INTO link_in_seq(peer, next_seq, applied, last_seen) VALUES (?,?,?,?)"
                    " ON CONFLICT(peer) DO UPDATE SET next_seq=excluded.next_seq,"
                    " applied=applied+excluded.applied, last_seen=excluded.last_seen",
                    (peer, exp, applied_count.get(peer, 0), now_wall),
                )
            for peer, count in late_applied.items():
                conn.execute("UPDATE link_in_seq SET applied = applied + ? WHERE peer = ?", (count, peer))
            heard_later = {p: t for p, t in self._peer_heard.items() if peers is not None and p not in peers}
            for peer, heard in self._peer_heard.items():
                if peer in heard_later:
                    continue
                conn.execute(
                    "INSERT INTO link_peers(peer, last_seen) VALUES (?, ?)"
                    " ON CONFLICT(peer) DO UPDATE SET last_seen=excluded.last_seen",
                    (peer, heard),
                )
        # committed: now the in-memory state may follow
        self._peer_heard = heard_later
        self._pending_state = {}
        self._raw_dead = []
        self._old = later
        self._pending_acks = {}
        with self._lock:
            for peer, acks in pending_acks.items():
                inflight = self._inflight.get(peer)
                if inflight:
                    for seq, _ in acks:
                        inflight.pop(seq, None)
                self._progress_at[peer] = now
                self._resend_delay[peer] = self.cfg.resend_after
            for peer, taken in consumed.items():
                held = self._held[peer]
                for seq in taken:
                    held.pop(seq, None)
                for seq in [s for s in held if s < new_expected[peer]]:
                    held.pop(seq)  # skipped by a gap or duplicates of applied ones
                self._expected[peer] = new_expected[peer]
                self._waiting_since.pop(peer, None)
                if held:  # later messages still wait for a missing one: that wait starts now (and its
                    self._waiting_since[peer] = now  # timer wakes the loop even if nothing else arrives)
        # a transaction's worth applied, or senders left for the next round: go on without waiting
        self._more_to_apply = budget <= 0 or skipped or bool(later)
        if not self._more_to_apply:
            self._busy_since = None
        elif sqlite.writers_waiting(conn):
            self._pause = self.cfg.batch_pause  # a long backlog and a writer of this process waits: its turn
            self._pause_seen = True  # ...which ends as soon as no writer of this process waits any more
            self._busy_since = None
        elif self._busy_since is None:
            self._busy_since = now
        elif time.monotonic() - self._busy_since > FOREIGN_WRITER_GAP_ROUNDS * self.cfg.batch_seconds:
            # a writer of another process (a command line import) cannot be seen waiting: a gap now and then
            self._pause = self.cfg.batch_pause
            self._pause_seen = False
            self._busy_since = None
        if self._attempts:  # failures counted for messages now acknowledged: forgotten
            for item_id in [i for _, lst in acks_out.items() for _, i in lst]:
                self._attempts.pop(item_id, None)
        for peer, lst in acks_out.items():
            self._publish_acks(peer, lst)
        for peer, a, b in gaps:
            self._note_error(f"gap in messages from {peer}: seq {a}..{b} never arrived")

    def _candidates(self, budget: int) -> list[str]:
        """The ids this round will probably meet: every late copy, and per peer the held run from the
        next expected seq on (as far as the budget goes); any other id is looked up on its own."""
        ids = [item.id for item in self._old]
        for peer, held in self._held.items():
            if not held:
                continue
            exp = self._expected.get(peer, 1)
            if exp in held:
                n = 0
                while n < budget and (item := held.get(exp + n)) is not None:
                    ids.append(item.id)
                    n += 1
            else:
                ids.extend(item.id for item in held.values())  # a gap: what lies past it, whatever comes
        return ids

    def _apply_one(self, conn: sqlite3.Connection, item: _Item, late: bool = False, careful: bool = True) -> str:
        """Apply one message: 'applied', 'dead' (dead letter written) or 'retry'. `careful`: inside a
        savepoint of its own; else a failing handler raises `_Careful` (the round is done again)."""
        if item.reason is not None or item.env is None:
            self._dead(conn, item, item.reason or "bad message")
            return "dead"
        env = item.env
        handler = self._handlers.get(env.type)
        if handler is None:
            self._dead(conn, item, f"no handler for {env.type!r} on the {self.role}")
            return "dead"
        if not careful:
            try:
                handler(conn, env)
            except sqlite.NeedsExclusive:
                raise
            except Exception as exc:  # noqa: BLE001 - Reject too: done again with a savepoint per message
                self._failed_fast[item.id] = exc
                raise _Careful from None
            if self._retry_at:
                self._retry_at.pop(item.peer, None)
            return "applied"
        failed = self._failed_fast.pop(item.id, None)
        conn.execute("SAVEPOINT link_msg")
        try:
            if failed is not None:
                raise failed
            handler(conn, env)
        except sqlite.NeedsExclusive:
            raise
        except Reject as exc:
            conn.execute("ROLLBACK TO link_msg")
            conn.execute("RELEASE link_msg")
            self._dead(conn, item, f"rejected: {exc}")
            return "dead"
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the message's, not the link's
            conn.execute("ROLLBACK TO link_msg")
            conn.execute("RELEASE link_msg")
            attempts = self._attempts.get(item.id, 0) + 1
            self._attempts[item.id] = attempts
            text = f"{type(exc).__name__}: {exc}"
            if attempts >= self.cfg.max_attempts:
                self._dead(conn, item, f"handler failed {attempts} times: {text}")
                return "dead"
            self._note_error(f"{env.type} {env.id} from {item.peer} failed (attempt {attempts}): {text}")
            if not late:
                self._retry_at[item.peer] = time.monotonic() + min(30.0, 0.2 * 2 ** (attempts - 1))
            return "retry"
        conn.execute("RELEASE link_msg")
        self._retry_at.pop(item.peer, None)
        return "applied"

    def _dead(self, conn: sqlite3.Connection, item: _Item, reason: str) -> None:
        store.dead_letter(
            conn,
            topic=item.topic,
            reason=reason,
            payload=item.payload,
            id=item.id,
            peer=item.peer,
            seq=item.seq,
            type=item.type,
        )
        log.warning(
            "sitelink %s: dead letter %s seq %s from %s: %s", self.role, item.id, item.seq, item.peer, reason
        )

    def _publish_acks(self, peer: str, acks: list[tuple[int, str]]) -> None:
        client = self._client
        if client is None:
            return
        topic = f"{self.prefix}/{peer}/ack/{self.outbound}"  # an ack travels the way we send
        key = self.keys.signing_key(peer, self.outbound) if self.keys is not None else None
        for i in range(0, len(acks), 1000):
            client.publish(topic, envelope.sign_acks(acks[i : i + 1000], key), qos=1)

    # -- sending

    def _pump(self) -> bool:
        """Publish what the window allows; True when there is probably more to publish right away."""
        client = self._client
        if client is None or not self._connected or self.cfg.part == "receive":
            return False
        conn = self._db
        assert conn is not None
        with self._lock:
            if self._gen_seen != self._conn_gen:
                self._gen_seen = self._conn_gen
                self._cursor.clear()
                self._inflight.clear()
        more = False
        now = time.monotonic()
        for peer, last_seq in store.outbox_peers(conn):
            if last_seq <= self._cursor.get(peer, 0) or (self.role == "site" and peer != self.cfg.site_id):
                continue  # nothing new was written for this peer since we last looked
            inflight = self._inflight.setdefault(peer, {})
            room = self.cfg.window - len(inflight)
            if room <= 0:
                continue
            key = None
            if self.keys is not None:
                key = self.keys.signing_key(peer, self.outbound)
                if key is None:
                    if peer not in self._unsigned_peers:
                        self._unsigned_peers.add(peer)
                        self._note_error(f"no {self.outbound} key for site {peer!r} in the key file: its "
                                         "messages wait in the outbox")
                    continue
                self._unsigned_peers.discard(peer)
            rows = store.outbox_after(conn, peer, self._cursor.get(peer, 0), min(room, 1000))
            if not rows:
                continue
            if key is not None:
                rows = [(seq, msg_id, envelope.sign(payload, key)) for seq, msg_id, payload in rows]
            if not inflight:
                self._progress_at[peer] = now
            topic = f"{self.prefix}/{peer}/{self.outbound}"
            for chunk in _chunks(rows, self.cfg.publish_batch, self.cfg.publish_batch_bytes):
                if len(chunk) == 1:
                    client.publish(topic, chunk[0][2], qos=1)
                elif key is None:
                    client.publish(topic, "[" + ",".join(r[2] for r in chunk) + "]", qos=1)
                else:  # one MAC over the batch as well, so the receiver checks it once (envelope.batch_mac)
                    data = ("[" + ",".join(r[2] for r in chunk) + "]").encode("utf-8")
                    props = Properties(PacketTypes.PUBLISH)
                    props.UserProperty = [("kid", key.kid), ("mac", envelope.batch_mac(key, data))]
                    client.publish(topic, data, qos=1, properties=props)
            inflight.update([(seq, msg_id) for seq, msg_id, _ in rows])
            self._cursor[peer] = rows[-1][0]
            if len(rows) == min(room, 1000) and len(inflight) < self.cfg.window:
                more = True
        return more

    def _timers(self) -> None:
        now = time.monotonic()
        with self._lock:
            for peer, inflight in self._inflight.items():
                if not inflight:
                    continue
                delay = self._resend_delay.setdefault(peer, self.cfg.resend_after)
                if self._peer_state.get(CLOUD if self.role == "site" else peer) == "offline":
                    self._progress_at[peer] = now  # nothing to gain: it gets all when it is back
                    continue
                if now - self._progress_at.get(peer, now) > delay:
                    log.info(
                        "sitelink %s: no acknowledgement from %s for %.0fs, sending again",
                        self.role,
                        peer,
                        delay,
                    )
                    self._cursor.pop(peer, None)
                    inflight.clear()
                    self._progress_at[peer] = now
                    self._resend_delay[peer] = min(600.0, delay * 2)
        if self.keys is not None and now - self._keys_checked_at > 5.0:
            self._reload_keys()
        if now - self._pruned_at > PRUNE_EVERY_S:
            cutoff = time.time() - self.cfg.inbox_keep_days * 86400
            assert self._db is not None
            db = self._db
            if self._if_free(lambda: db.execute("DELETE FROM link_inbox WHERE received_at < ?", (cutoff,))):
                self._pruned_at = now
            else:  # the application holds the write lock: never wait for it here (nothing would be published)
                self._pruned_at = now - PRUNE_EVERY_S + PRUNE_RETRY_S


def _chunks(rows: list[tuple[int, str, str]], most: int, most_bytes: int) -> list[list[tuple[int, str, str]]]:
    """Group outbox rows into publishes: up to `most` envelopes and about `most_bytes` each. A run of
    `most` rows whose payloads fit (the usual case: envelopes of a few hundred bytes) is one slice,
    measured in one pass of `len`; the rest is grouped row by row."""
    out: list[list[tuple[int, str, str]]] = []
    i, n = 0, len(rows)
    while n - i >= most and sum(map(len, [r[2] for r in rows[i : i + most]])) + most <= most_bytes:
        out.append(rows[i : i + most])
        i += most
    if i:
        rows = rows[i:]
    chunk: list[tuple[int, str, str]] = []
    size = 0
    for row in rows:
        if chunk and (len(chunk) >= most or size + len(row[2]) > most_bytes):
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(row)
        size += len(row[2]) + 1
    if chunk:
        out.append(chunk)
    return out


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """The link's socket sends each packet at once (TCP_NODELAY): a publish or an acknowledgement is not held
    back by Nagle's algorithm until the broker's delayed ACK of the packet before (up to 40 ms on Linux, on
    every turn of a small window and on the last batch of a burst)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError, ValueError):  # not a TCP socket (a test's stand-in): as it is
        pass


def _state_payload(state: str) -> str:
    return json.dumps({"state": state, "ts": envelope.now_ts()})
