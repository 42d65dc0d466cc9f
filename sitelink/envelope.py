"""The site-link envelope: one JSON object per MQTT message, `{"id", "site", "seq", "type", "ts", "body"}`.

`id` is a ULID (unique, time-ordered), `site` the site id the message belongs to (sender or addressee),
`seq` the sender's counter for that site's stream (1, 2, 3 ...), `type` one of `sitelink.messages`,
`ts` the moment of sending (ISO 8601 UTC) and `body` the type's JSON object. `parse` turns raw bytes into
an `Envelope` or raises `BadEnvelope` saying what is wrong; it never lets a malformed message through.

On the wire an MQTT payload is one envelope (a JSON object) or, when a sender drains a backlog, a batch:
a JSON array of envelopes, each checked on its own (`parse_batch` + `from_dict`).

Proof of the sender: a sent envelope also carries `kid` (the key's id) and `mac`, the HMAC-SHA256 (base64url)
of `ms/v1 <direction>\n` followed by the canonical envelope (`canonical`: the six fields above as JSON with
sorted keys, no spaces, ASCII only), with the key of that site and direction (`sitelink.keys`). `sign` adds
them when the link publishes; `verify` says why a received one fails (no MAC, unknown or expired key, a MAC
that does not match) or None when it holds.

A signed batch also carries one MAC over the whole payload, in the publish's MQTT v5 user properties
`kid` and `mac` (`batch_mac`: HMAC-SHA256 of `ms/v1 batch/<direction>\n` + the payload's exact bytes, same
key). The receiver checks it once (`verify_batch`) instead of re-encoding and checking every envelope;
each envelope inside still carries its own `kid`/`mac`, so a batch without the property (an older
sender, a broker that drops properties) or with one that does not match is checked envelope by
envelope, and an envelope copied out of a batch stands on its own proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sitelink.keys import Key, Keyring
from sitelink.messages import BadMessage, EncodedBody, check_body

FIELDS = ("id", "site", "seq", "type", "ts", "body")
PROOF = ("kid", "mac")  # added by `sign`, not part of what is signed


class BadEnvelope(BadMessage):
    """The raw message is not a well-formed envelope (or its body breaks the contract).

    `id`, `seq` and `site` are set when they could be read, so that a receiver can still acknowledge a
    message whose envelope is sound but whose type or body is not."""

    def __init__(
        self, reason: str, *, id: str | None = None, seq: int | None = None, site: str | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.id = id
        self.seq = seq
        self.site = site


@dataclass(frozen=True)
class Envelope:
    id: str
    site: str
    seq: int
    type: str
    ts: str
    body: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The canonical text (`canonical`): what the outbox stores, so `sign` need not rebuild it. Written
        field by field in canonical order (the six names sorted are body, id, seq, site, ts, type), each
        value by the canonical encoder: the same text as `canonical(self.to_dict())`, without building
        and sorting the outer object (once per message a batch of pick tasks enqueues); a body that carries
        its canonical text already (`messages.EncodedBody`) is not encoded again."""
        enc, seq, body = _CANONICAL_ENCODE, self.seq, self.body
        text = _ascii_text  # what `enc` does for a str, without its Python-level call; anything else: `enc`
        return (f'{{"body":{body.text if type(body) is EncodedBody else _encode_value(body)},"id":{text(self.id)},'
                f'"seq":{int.__repr__(seq) if type(seq) is int else enc(seq)},"site":{text(self.site)},'
                f'"ts":{text(self.ts)},"type":{text(self.type)}}}')

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "site": self.site,
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "body": self.body,
        }


_second: tuple[int, str] = (-1, "")  # the last whole second written, and its text


def now_ts() -> str:
    """The current moment as ISO 8601 UTC with milliseconds, e.g. 2026-11-26T21:40:00.123Z (the text of
    the second is made once per second: a batch of messages enqueued one by one asks for it each)."""
    global _second
    sec, ms = divmod(time.time_ns() // 1_000_000, 1000)
    known = _second
    if known[0] != sec:
        known = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{known[1]}.{ms:03d}Z"


def new_id() -> str:
    """A fresh ULID (this millisecond, 80 fresh random bits) as its text, written from the 128 bits two
    characters (10 bits) at a time: no python-ulid object (once per message sent one by one)."""
    v = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    p = _PAIRS
    return (p[v >> 120] + p[(v >> 110) & 1023] + p[(v >> 100) & 1023] + p[(v >> 90) & 1023]
            + p[(v >> 80) & 1023] + p[(v >> 70) & 1023] + p[(v >> 60) & 1023] + p[(v >> 50) & 1023]
            + p[(v >> 40) & 1023] + p[(v >> 30) & 1023] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023]
            + p[v & 1023])


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as its two characters
_LOW50 = (1 << 50) - 1


def new_ids(n: int) -> list[str]:
    """`n` fresh ULIDs of one moment, in order: one random ULID and its successors (the ULID spec's
    monotonic order, the randomness counted up by one), so a batch of messages costs one draw. The draw is
    80 fresh random bits of its own (not `ULID()`, whose same-millisecond successor is the previous one + 1:
    it would fall inside the run). Only the last 10 characters (the low 50 bits) change along the run; a
    draw too close to their end is redrawn."""
    if n <= 0:
        return []
    ms = time.time_ns() // 1_000_000
    while True:
        rand = int.from_bytes(os.urandom(10), "big")
        low = rand & _LOW50
        if low + n <= _LOW50:
            break
    # the first 16 characters: the 78 bits above the low 50 (48 of time, 30 random), two per 10 bits
    # (what `str(ULID.from_bytes(...))[:16]` writes, without the object)
    top = (ms << 30) | (rand >> 50)
    pairs = _PAIRS
    head = "".join([pairs[(top >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0)])
    out = []
    for x in range(low, low + n):
        out.append(head + pairs[x >> 40] + pairs[(x >> 30) & 1023] + pairs[(x >> 20) & 1023]
                   + pairs[(x >> 10) & 1023] + pairs[x & 1023])
    return out


def make(site: str, seq: int, msg_type: str, body: dict[str, Any]) -> Envelope:
    """A new envelope with a fresh ULID and the current time; the body is checked against the contract."""
    check_body(msg_type, body)
    return Envelope(id=new_id(), site=site, seq=seq, type=msg_type, ts=now_ts(), body=body)


def parse(raw: bytes | str, *, check: bool = True) -> Envelope:
    """Parse one raw message. Raises BadEnvelope with a plain reason (and id/seq/site when readable)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise BadEnvelope(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEnvelope(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return from_dict(data, check=check)


def _envelope(msg_id: str, site: str, seq: int, msg_type: str, ts: str, body: Any) -> Envelope:
    """`Envelope(...)` of fields already checked, without the frozen dataclass's per-field
    `object.__setattr__` (half the cost, once per received message)."""
    env = _new(Envelope)
    _set(env, "__dict__", {"id": msg_id, "site": site, "seq": seq, "type": msg_type, "ts": ts, "body": body})
    return env


_new, _set = object.__new__, object.__setattr__


def from_dict(data: Any, *, check: bool = True) -> Envelope:
    """An envelope from already decoded JSON (one element of a batch, see `parse_batch`)."""
    if type(data) is dict and (data.keys() == _SHAPE or data.keys() == _SIGNED_SHAPE):
        # the usual case, checked in one go; anything off takes the long way below, which says what
        msg_id, seq, site, msg_type, ts = data["id"], data["seq"], data["site"], data["type"], data["ts"]
        if (type(msg_id) is str and _ULID.fullmatch(msg_id) is not None and type(seq) is int and seq > 0
                and type(site) is str and site and type(msg_type) is str and type(ts) is str):
            if check:
                try:
                    check_body(msg_type, data["body"])
                except BadMessage as exc:
                    raise BadEnvelope(str(exc), id=msg_id, seq=seq, site=site) from None
            return _envelope(msg_id, site, seq, msg_type, ts, data["body"])
    if not isinstance(data, dict):
        raise BadEnvelope(f"envelope must be a JSON object, got {type(data).__name__}")
    msg_id = data.get("id")
    seq = data.get("seq")
    site = data.get("site")
    known = {
        "id": msg_id if isinstance(msg_id, str) and _is_ulid(msg_id) else None,
        "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None,
        "site": site if isinstance(site, str) and site else None,
    }
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise BadEnvelope(f"envelope lacks {', '.join(missing)}", **known)
    extra = sorted(set(data) - set(FIELDS) - set(PROOF))
    if extra:
        raise BadEnvelope(f"envelope has unknown fields {', '.join(extra)}", **known)
    if known["id"] is None:
        raise BadEnvelope(f"envelope id must be a ULID string, got {msg_id!r}"[:200], **known)
    if known["site"] is None:
        raise BadEnvelope("envelope site must be a non-empty string", **known)
    if known["seq"] is None:
        raise BadEnvelope(f"envelope seq must be a positive integer, got {seq!r}"[:200], **known)
    if not isinstance(data["type"], str):
        raise BadEnvelope("envelope type must be a string", **known)
    if not isinstance(data["ts"], str):
        raise BadEnvelope("envelope ts must be a string", **known)
    env = Envelope(id=msg_id, site=site, seq=seq, type=data["type"], ts=data["ts"], body=data["body"])
    if check:
        try:
            check_body(env.type, env.body)
        except BadMessage as exc:
            raise BadEnvelope(str(exc), **known) from None
    return env


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes a MAC covers: the envelope's six fields (never `kid`/`mac`), sorted keys at every level,
    no spaces, ASCII only (non-ASCII as \\u escapes), so both sides compute them alike from parsed JSON."""
    return _encode_value({k: data.get(k) for k in FIELDS}).encode("ascii")


# the canonical encoder, made once (`json.dumps` with these options builds a new encoder on every call)
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_CANONICAL_ENCODE = _CANONICAL_ENCODER.encode


def _canonical_encode_fn() -> Any:
    """`_CANONICAL_ENCODE` for a body (a dict, a list...): the C encoder `JSONEncoder.encode` builds on every
    call (its options, a dict of the containers being written for the circular check), built once. The check
    of circular containers is kept: a new dict of them per call (a container that holds itself raises
    ValueError as before, and two threads encoding at once share nothing). Without the C encoder: the
    encoder's own `encode`."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _CANONICAL_ENCODE
    e = _CANONICAL_ENCODER
    args = (e.default, json.encoder.encode_basestring_ascii, e.indent, e.key_separator, e.item_separator,
            e.sort_keys, e.skipkeys, e.allow_nan)

    def encode(value: Any, _make: Any = make, _args: tuple = args, _join: Any = "".join) -> str:
        return _join(_make({}, *_args)(value, 0))

    return encode


_encode_value = _canonical_encode_fn()


def canonical_json(value: Any) -> str:
    """Any JSON value as `canonical` writes the values it covers (sorted keys, no spaces, ASCII only): what a
    maker of an `EncodedBody` writes its text to equal."""
    return _encode_value(value)


def _ascii_text(value: Any) -> str:
    """`_CANONICAL_ENCODE(value)`: for a str the encoder's own C function, called directly."""
    return _encode_ascii(value) if type(value) is str else _encode_value(value)


_encode_ascii = json.encoder.encode_basestring_ascii


def mac(secret: bytes, direction: str, data: dict[str, Any]) -> str:
    """The MAC of a decoded envelope for `direction` (base64url, no padding)."""
    digest = hmac.new(secret, b"ms/v1 " + direction.encode() + b"\n" + canonical(data), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def sign(payload: str, key: Key) -> str:
    """One envelope (as stored in the outbox) with `kid` and `mac` added for `key`'s direction. The
    outbox holds canonical text (`Envelope.to_json`; it starts with `{"body":`, the first key sorted):
    signed as it is. Anything else (a row written before envelopes were canonical) is rebuilt first."""
    if payload.startswith('{"body":'):
        text = payload.encode("ascii")
    else:
        text = canonical(json.loads(payload))
    digest = hmac.new(key.secret, b"ms/v1 " + key.direction.encode() + b"\n" + text, hashlib.sha256).digest()
    proof = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return f'{text[:-1].decode("ascii")},"kid":{json.dumps(key.kid)},"mac":"{proof}"}}'


def verify(data: dict[str, Any], keys: Keyring, site: str, direction: str) -> str | None:
    """Why the decoded envelope `data`, received on `site`'s `direction` stream, is not proven to come
    from its sender; None when its MAC holds. The reason never holds a key."""
    kid, got = data.get("kid"), data.get("mac")
    if kid is None and got is None:
        return "MAC check failed: the envelope carries no kid/mac"
    if not isinstance(kid, str) or not isinstance(got, str):
        return "MAC check failed: kid and mac must be strings"
    key = keys.find(site, direction, kid)
    if key is None:
        return f"MAC check failed: no {direction} key {kid[:40]!r} for site {site!r}"
    if not key.valid_at(datetime.now(UTC)):
        assert key.expires is not None
        return f"MAC check failed: {direction} key {kid!r} of site {site!r} expired at {key.expires:%Y-%m-%dT%H:%M:%SZ}"
    if not hmac.compare_digest(got.encode(), mac(key.secret, direction, data).encode()):
        return f"MAC check failed: the MAC does not match ({direction} key {kid!r} of site {site!r})"
    return None


def batch_mac(key: Key, payload: bytes) -> str:
    """The MAC of a whole batch as published (`ms/v1 batch/<direction>\n` + the payload's bytes, no
    re-encoding), sent beside it as MQTT v5 user properties `kid` and `mac` (`batch_proof`)."""
    digest = hmac.new(key.secret, b"ms/v1 batch/" + key.direction.encode() + b"\n" + payload, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def batch_proof(properties: Any) -> tuple[str, str] | None:
    """(kid, mac) from a received publish's user properties, or None when it carries no batch MAC."""
    pairs = getattr(properties, "UserProperty", None) or []
    found = {k: v for k, v in pairs if k in ("kid", "mac")}
    if isinstance(found.get("kid"), str) and isinstance(found.get("mac"), str):
        return found["kid"], found["mac"]
    return None


def verify_batch(payload: bytes, proof: tuple[str, str] | None, keys: Keyring, site: str,
                 direction: str) -> bool:
    """True when `proof` is the MAC of this very payload by a valid key of `site`'s `direction`: every
    envelope inside is then proven at once. False (no proof, unknown or expired key, no match) means
    only that each envelope is checked on its own (`verify`), as when a batch comes without one."""
    if proof is None:
        return False
    kid, got = proof
    key = keys.find(site, direction, kid)
    if key is None or not key.valid_at(datetime.now(UTC)):
        return False
    return hmac.compare_digest(got.encode(), batch_mac(key, payload).encode())


def _ack_mac(secret: bytes, direction: str, acks: Any, text: bytes | None = None) -> str:
    """`text`: the canonical `{"acks": ...}` already written (`sign_acks`), else encoded here."""
    if text is None:
        text = json.dumps({"acks": acks}, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    digest = hmac.new(secret, b"ms/v1 ack/" + direction.encode() + b"\n" + text, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_acks(acks: list[tuple[int, str]], key: Key | None) -> str:
    """An acknowledgement payload `{"acks": [[seq, id], ...]}`, with `kid` and `mac` when there is a key
    (the acknowledging side's key for the way the ack travels: a site's acks go up).

    The usual acks (int seqs, ids of letters and digits: ULIDs) are written as text directly: the same
    bytes `json.dumps` writes, canonical as they are (nothing to sort or escape), so the MAC is computed
    over that very text; anything else is encoded by `json`."""
    if acks and all(type(s) is int and type(i) is str for s, i in acks) and (
            (ids := "".join([i for _, i in acks])).isascii() and ids.isalnum()):
        listed = "[" + ",".join([f'[{s},"{i}"]' for s, i in acks]) + "]"
        if key is None:
            return '{"acks":' + listed + "}"
        proof = _ack_mac(key.secret, key.direction, None, ('{"acks":' + listed + "}").encode("ascii"))
        return '{"acks":' + listed + ',"kid":' + json.dumps(key.kid) + ',"mac":"' + proof + '"}'
    data: dict[str, Any] = {"acks": [[s, i] for s, i in acks]}
    if key is not None:
        data["kid"] = key.kid
        data["mac"] = _ack_mac(key.secret, key.direction, data["acks"])
    return json.dumps(data, separators=(",", ":"))


def verify_acks(data: dict[str, Any], keys: Keyring, site: str, direction: str) -> str | None:
    """Why a decoded acknowledgement from `site`'s `direction` stream is not proven; None when it holds.
    A forged ack would make the other side drop messages that never arrived."""
    kid, got = data.get("kid"), data.get("mac")
    if not isinstance(kid, str) or not isinstance(got, str):
        return "MAC check failed: the acknowledgement carries no kid/mac"
    key = keys.find(site, direction, kid)
    if key is None or not key.valid_at(datetime.now(UTC)):
        return f"MAC check failed: the acknowledgement's kid {kid[:40]!r} is no valid {direction} key of {site!r}"
    if not hmac.compare_digest(got.encode(), _ack_mac(key.secret, direction, data.get("acks")).encode()):
        return f"MAC check failed: the acknowledgement's MAC does not match ({direction} key {kid!r})"
    return None


def parse_batch(raw: bytes | str) -> list[Any]:
    """Decode one MQTT payload: a JSON object is one envelope, a JSON array a batch of them (the link
    packs a backlog into batches). Returns the decoded items (not yet checked: see `from_dict`); raises
    BadEnvelope when the payload itself is not UTF-8 JSON of either shape."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise BadEnvelope(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEnvelope(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(data, list):
        if not data:
            raise BadEnvelope("an empty batch")
        return data
    return [data]


_CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_ULID = re.compile("[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")  # _is_ulid, in one step (ASCII only)
_SHAPE = frozenset(FIELDS)
_SIGNED_SHAPE = frozenset(FIELDS + PROOF)


def _is_ulid(value: str) -> bool:
    return len(value) == 26 and value[0] in "01234567" and set(value.upper()) <= _CROCKFORD
