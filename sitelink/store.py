"""The site link's tables, kept in the SAME SQLite file as the application's data.

`link_outbox`    messages written by `enqueue` in the caller's own transaction, deleted when acknowledged
`link_out_seq`   the sender's counter per site stream (the envelope's `seq`)
`link_inbox`     ids of received messages, recorded in the transaction that applied them (or dead-lettered)
`link_in_seq`    per sender stream: the next seq expected, messages applied, last seen
`link_gaps`      seq ranges given up on after waiting (made visible by `status`)
`link_dead_letters`  messages that could not be applied: reason and the raw payload
`link_peers`     the other side's retained online/offline state and when it was last heard from

The tables join the cloud's schema through `cloud_sync.db.SCHEMA_MODULES` (this module's `MIGRATIONS`);
an edge box calls `ensure_schema`, which keeps the same `schema_migrations` bookkeeping. Connections and
transactions come from `sitelink.sqlite`, the one SQLite helper of the project.
A "peer" here is always a site id: the stream of messages to or from that site.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from sitelink import envelope as envelope_mod
from sitelink.envelope import Envelope
from sitelink.messages import DIRECTION, EncodedBody
from sitelink.sqlite import apply_migrations, need, transaction

MODULE = "sitelink.store"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS link_outbox (
        peer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (peer, seq)
    );
    CREATE TABLE IF NOT EXISTS link_out_seq (
        peer TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS link_inbox (
        id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'applied',
        received_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS link_in_seq (
        peer TEXT PRIMARY KEY,
        next_seq INTEGER NOT NULL,
        applied INTEGER NOT NULL DEFAULT 0,
        last_seen REAL
    );
    CREATE TABLE IF NOT EXISTS link_gaps (
        n INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        from_seq INTEGER NOT NULL,
        to_seq INTEGER NOT NULL,
        detected_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS link_dead_letters (
        n INTEGER PRIMARY KEY,
        id TEXT,
        peer TEXT,
        seq INTEGER,
        type TEXT,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS link_peers (
        peer TEXT PRIMARY KEY,
        state TEXT,
        state_at REAL,
        last_seen REAL
    );
    """,
]


class LinkError(ValueError):
    """A send that breaks the link's rules (wrong direction, missing site...)."""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the link tables if needed, recorded in `schema_migrations` under this module's name, as
    `cloud_sync.db.migrate` does (both use `sitelink.sqlite.apply_migrations`), so either may run first
    and neither applies a script twice."""
    apply_migrations(conn, MODULE, MIGRATIONS)


# ---------------------------------------------------------------- sending


def link_key(peer: str) -> str:
    """The key (`sitelink.sqlite.transaction`'s `keys`) of one peer's link rows: its outbox, its counter, its
    inbox and state rows."""
    return f"link:{peer}"


def enqueue(conn: sqlite3.Connection, role: str, site: str, msg_type: str, body: dict[str, Any]) -> Envelope:
    """Write one message to the outbox inside the caller's transaction (or a transaction of its own when
    none is open). The link process publishes it; nothing is sent if the caller rolls back.

    The usual send (one message, in the caller's open transaction) takes the short way: the checks of
    `enqueue_many`, the site's counter stepped and the row inserted as two statements, without the lists
    and the transaction's context of a batch (once per message a batch of orders' pick tasks enqueues)."""
    if (type(site) is str and site and DIRECTION.get(msg_type) == ("down" if role == "cloud" else "up")
            and conn.in_transaction):
        check_body(msg_type, body)
        need(conn, link_key(site))  # what `transaction(keys=...)` checks when it joins the caller's
        # the counter's step: a plain UPDATE and a look at it cost less than the upsert with RETURNING (no row
        # yet, the site's first message: the upsert); on the caller's connection, as it is (its row factory)
        conn.execute(_BUMP_SEQ, (site,))
        row = conn.execute(_LAST_SEQ, (site,)).fetchone()
        (last,) = row if row is not None else conn.execute(_STEP_SEQ, (site, 1)).fetchone()
        msg_id, ts = new_id(), now_ts()
        # `Envelope.to_json`, written here: the id (a ULID), the time and the type (a name of the contract) are
        # ASCII letters, digits and punctuation JSON writes as they are; the site and the body are encoded
        text = (f'{{"body":{body.text if type(body) is EncodedBody else encode_value(body)},"id":"{msg_id}",'
                f'"seq":{int(last)},"site":{encode_text(site)},"ts":"{ts}","type":"{msg_type}"}}')
        conn.execute(_INSERT_OUTBOX, (site, last, msg_id, msg_type, text, time.time()))
        return make_envelope(msg_id, site, last, msg_type, ts, body)
    return enqueue_many(conn, role, site, [(msg_type, body)])[0]


_STEP_SEQ = ("INSERT INTO link_out_seq(peer, last_seq) VALUES (?, ?)"
             " ON CONFLICT(peer) DO UPDATE SET last_seq = last_seq + excluded.last_seq RETURNING last_seq")
_BUMP_SEQ = "UPDATE link_out_seq SET last_seq = last_seq + 1 WHERE peer = ?"
_LAST_SEQ = "SELECT last_seq FROM link_out_seq WHERE peer = ?"
_INSERT_OUTBOX = "INSERT INTO link_outbox(peer, seq, id, type, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)"
check_body, new_id, now_ts = envelope_mod.check_body, envelope_mod.new_id, envelope_mod.now_ts
make_envelope = envelope_mod._envelope  # fields made here or checked: no per-field frozen setattr
encode_value, encode_text = envelope_mod._encode_value, envelope_mod._encode_ascii


def enqueue_many(
    conn: sqlite3.Connection, role: str, site: str, messages: list[tuple[str, dict[str, Any]]]
) -> list[Envelope]:
    """Write messages (type, body) to one site's outbox, in this order, inside the caller's transaction
    (or one of their own): every message is checked as `enqueue` checks one, before anything is written;
    then one step of the site's counter for all of them and one statement for their rows (a batch of
    orders' pick tasks, instead of a counter update and an insert per message)."""
    if not site or not isinstance(site, str):
        raise LinkError("a message needs the site id it goes to or comes from")
    expected = "down" if role == "cloud" else "up"
    for msg_type, body in messages:
        direction = DIRECTION.get(msg_type)
        if direction is None:
            raise LinkError(f"unknown message type {msg_type!r}")
        if direction != expected:
            raise LinkError(f"{msg_type!r} goes {direction}; the {role} sends only {expected} messages")
        check_body(msg_type, body)
    if not messages:
        return []
    n = len(messages)
    # the site's counter and outbox rows: its link's key (`link_key`), as its link's own rounds hold it
    with transaction(conn, keys=(link_key(site),)):
        (last,) = conn.execute(_STEP_SEQ, (site, n)).fetchone()
        ts, created = now_ts(), time.time()
        make = make_envelope
        envs = [
            make(msg_id, site, seq, msg_type, ts, body)
            for msg_id, seq, (msg_type, body) in zip(
                envelope_mod.new_ids(n), range(last - n + 1, last + 1), messages, strict=True
            )
        ]
        conn.executemany(_INSERT_OUTBOX, [(site, env.seq, env.id, env.type, env.to_json(), created) for env in envs])
    return envs


def outbox_after(
    conn: sqlite3.Connection, peer: str, after_seq: int, limit: int
) -> list[tuple[int, str, str]]:
    """Up to `limit` (seq, id, payload) of `peer`'s outbox with seq > after_seq, in order (plain tuples
    straight from SQLite: no `sqlite3.Row` made and taken apart per row)."""
    return _tuples(conn).execute(
        "SELECT seq, id, payload FROM link_outbox WHERE peer=? AND seq>? ORDER BY seq LIMIT ?",
        (peer, after_seq, limit),
    ).fetchall()


def _tuples(conn: sqlite3.Connection) -> sqlite3.Cursor:
    """A cursor of `conn` whose rows are plain tuples, whatever the connection's row factory."""
    cur = conn.cursor()
    cur.row_factory = None
    return cur


def outbox_peers(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(peer, the last seq written for it): one small table, read on every look at the outbox."""
    return [(row[0], row[1]) for row in conn.execute("SELECT peer, last_seq FROM link_out_seq")]


def delete_acked(conn: sqlite3.Connection, peer: str, acks: list[tuple[int, str]]) -> None:
    """Delete acknowledged (seq, id) pairs of `peer` from the outbox (one statement per batch). A drain's
    acknowledgements come as runs of consecutive seqs: such a run is deleted as one range of the key,
    a row only when its id is one acknowledged (ids are unique), instead of one lookup per pair."""
    if len(acks) >= 16:
        lo, hi = min(s for s, _ in acks), max(s for s, _ in acks)
        if hi - lo < 2 * len(acks):
            conn.execute(
                "DELETE FROM link_outbox WHERE peer=? AND seq BETWEEN ? AND ? AND id IN"
                " (SELECT value FROM json_each(?))",
                (peer, lo, hi, json.dumps([i for _, i in acks])),
            )
            return
    conn.executemany(
        "DELETE FROM link_outbox WHERE peer=? AND seq=? AND id=?", [(peer, s, i) for s, i in acks]
    )


# ---------------------------------------------------------------- receiving


def dead_letter(
    conn: sqlite3.Connection,
    *,
    topic: str,
    reason: str,
    payload: bytes | str | Any,
    id: str | None = None,
    peer: str | None = None,
    seq: int | None = None,
    type: str | None = None,
    once: bool = False,
) -> None:
    """Record a message that cannot be applied. `once`: not again when this id was already recorded
    for the same reason (a sender publishing it again after a resend timer)."""
    if once and id is not None and conn.execute(
        "SELECT 1 FROM link_dead_letters WHERE id=? AND reason=?", (id, reason[:2000])
    ).fetchone():
        return
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    elif not isinstance(payload, bytes | bytearray):  # a decoded element of a batch
        payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    conn.execute(
        "INSERT INTO link_dead_letters(id, peer, seq, type, topic, reason, payload, at) VALUES (?,?,?,?,?,?,?,?)",
        (id, peer, seq, type, topic, reason[:2000], payload, time.time()),
    )


_INBOX_INSERT = "INSERT OR IGNORE INTO link_inbox(id, peer, seq, type, outcome, received_at) VALUES "
_INBOX_ROWS = 100  # rows per statement: 600 parameters, under the 999 of SQLite before 3.32
_INBOX_MANY = _INBOX_INSERT + ",".join(["(?,?,?,?,?,?)"] * _INBOX_ROWS)


def record_inbox(conn: sqlite3.Connection, rows: list[tuple[str, str, int, str, str, float]]) -> None:
    """Record received ids (id, peer, seq, type, outcome, received_at) in the inbox: a statement per 100
    rows (one row of VALUES each) instead of one per row; an id already there stays as it is."""
    whole = len(rows) - len(rows) % _INBOX_ROWS
    if whole:
        conn.executemany(_INBOX_MANY, [[v for row in rows[i : i + _INBOX_ROWS] for v in row]
                                       for i in range(0, whole, _INBOX_ROWS)])
    if whole < len(rows):
        conn.executemany(_INBOX_INSERT + "(?,?,?,?,?,?)", rows[whole:])


def in_seq(conn: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: row[1] for row in conn.execute("SELECT peer, next_seq FROM link_in_seq")}


def next_seqs(conn: sqlite3.Connection, peers: list[str]) -> dict[str, int]:
    """The next seq expected of each of `peers` that has one (one query per 500). Several members of a
    share group read it inside their applying transaction: on SQLite BEGIN IMMEDIATE makes them take
    turns; an engine with concurrent writers needs these rows locked (`FOR UPDATE`)."""
    out: dict[str, int] = {}
    for i in range(0, len(peers), 500):
        chunk = peers[i : i + 500]
        out.update((row[0], row[1]) for row in conn.execute(
            f"SELECT peer, next_seq FROM link_in_seq WHERE peer IN ({','.join('?' * len(chunk))})", chunk))
    return out


def fill_gap(conn: sqlite3.Connection, peer: str, seq: int) -> None:
    """A message of a recorded gap arrived after all: the gap shrinks by it (and is gone once every
    message of it came), so `status` shows only what is still missing."""
    rows = conn.execute("SELECT n, from_seq, to_seq, detected_at FROM link_gaps WHERE peer=? AND from_seq<=?"
                        " AND to_seq>=?", (peer, seq, seq)).fetchall()
    for n, a, b, detected in rows:
        conn.execute("DELETE FROM link_gaps WHERE n=?", (n,))
        for lo, hi in ((a, seq - 1), (seq + 1, b)):
            if lo <= hi:
                conn.execute("INSERT INTO link_gaps(peer, from_seq, to_seq, detected_at) VALUES (?,?,?,?)",
                             (peer, lo, hi, detected))


def is_in_inbox(conn: sqlite3.Connection, msg_id: str) -> bool:
    return conn.execute("SELECT 1 FROM link_inbox WHERE id=?", (msg_id,)).fetchone() is not None


def in_inbox(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    """Which of `ids` the inbox holds (applied or dead-lettered before): one query per 500 ids."""
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        found.update(row[0] for row in _tuples(conn).execute(
            f"SELECT id FROM link_inbox WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return found


def set_peer_state(conn: sqlite3.Connection, peer: str, state: str) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO link_peers(peer, state, state_at, last_seen) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(peer) DO UPDATE SET state=excluded.state, state_at=excluded.state_at,"
        " last_seen=excluded.last_seen",
        (peer, state, now, now),
    )


# ---------------------------------------------------------------- looking


def status(conn: sqlite3.Connection, *, dead_letters: int = 10) -> dict[str, Any]:
    """What the link's tables say: queue depths, applied counts, last seen, gaps, dead letters."""
    outbox = {
        row[0]: {"depth": row[1], "oldest_at": _iso(row[2])}
        for row in conn.execute("SELECT peer, COUNT(*), MIN(created_at) FROM link_outbox GROUP BY peer")
    }
    inbound = {
        row[0]: {"next_seq": row[1], "applied": row[2], "last_message_at": _iso(row[3])}
        for row in conn.execute("SELECT peer, next_seq, applied, last_seen FROM link_in_seq")
    }
    peers = {
        row[0]: {"state": row[1], "state_at": _iso(row[2]), "last_seen": _iso(row[3])}
        for row in conn.execute("SELECT peer, state, state_at, last_seen FROM link_peers")
    }
    gaps = [
        {"peer": r[0], "from_seq": r[1], "to_seq": r[2], "detected_at": _iso(r[3])}
        for r in conn.execute(
            "SELECT peer, from_seq, to_seq, detected_at FROM link_gaps ORDER BY n DESC LIMIT 50"
        )
    ]
    (dead_count,) = conn.execute("SELECT COUNT(*) FROM link_dead_letters").fetchone()
    inbox_applied = sum(v["applied"] for v in inbound.values())  # kept as counters: no scan of the inbox
    return {
        "outbox": outbox,
        "outbox_total": sum(v["depth"] for v in outbox.values()),
        "inbox_applied": inbox_applied,  # messages applied, all time
        "inbound": inbound,
        "peers": peers,
        "gaps": gaps,
        "dead_letters": dead_count,
        "recent_dead_letters": list_dead_letters(conn, limit=dead_letters),
    }


def list_dead_letters(conn: sqlite3.Connection, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT n, id, peer, seq, type, topic, reason, payload, at FROM link_dead_letters ORDER BY n DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for r in rows:
        payload = bytes(r[7])
        try:
            shown = payload.decode("utf-8")
        except UnicodeDecodeError:
            shown = payload.hex()
        out.append(
            {
                "n": r[0],
                "id": r[1],
                "peer": r[2],
                "seq": r[3],
                "type": r[4],
                "topic": r[5],
                "reason": r[6],
                "payload": shown[:500],
                "at": _iso(r[8]),
            }
        )
    return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
