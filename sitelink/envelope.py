"""The site-link envelope: one JSON object per MQTT message, `{"id", "site", "seq", "type", "ts", "body"}`.

`id` is a ULID (unique, time-ordered), `site` the site id the message belongs to (sender or addressee),
`seq` the sender's counter for that site's stream (1, 2, 3 ...), `type` one of `sitelink.messages`,
`ts` the moment of sending (ISO 8601 UTC) and `body` the type's JSON object. `parse` turns raw bytes into
an `Envelope` or raises `BadEnvelope` saying what is wrong; it never lets a malformed message through.

On the wire an MQTT payload is one envelope (a JSON object) or, when a sender drains a backlog, a batch:
a JSON array of envelopes, each checked on its own (`parse_batch` + `from_dict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from sitelink.messages import BadMessage, check_body

FIELDS = ("id", "site", "seq", "type", "ts", "body")


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
        return json.dumps(
            {
                "id": self.id,
                "site": self.site,
                "seq": self.seq,
                "type": self.type,
                "ts": self.ts,
                "body": self.body,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "site": self.site,
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "body": self.body,
        }


def now_ts() -> str:
    """The current moment as ISO 8601 UTC with milliseconds, e.g. 2026-11-26T21:40:00.123Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id() -> str:
    return str(ULID())


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


def from_dict(data: Any, *, check: bool = True) -> Envelope:
    """An envelope from already decoded JSON (one element of a batch, see `parse_batch`)."""
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
    extra = sorted(set(data) - set(FIELDS))
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


def _is_ulid(value: str) -> bool:
    return len(value) == 26 and value[0] in "01234567" and set(value.upper()) <= _CROCKFORD
