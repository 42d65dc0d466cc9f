"""The envelope: round trip, and every kind of malformed message refused with a clear reason."""

from __future__ import annotations

import json

import pytest

from sitelink import envelope
from sitelink.envelope import BadEnvelope
from sitelink.messages import _JSON_KINDS, FIELDS, OPTIONAL, BadMessage, check_body

from .conftest import pick_body


def good(**over) -> dict:
    env = envelope.make("site-1", 7, "pick_task", pick_body(1)).to_dict()
    env.update(over)
    return env


def test_round_trip():
    env = envelope.make("site-1", 7, "pick_task", pick_body(1))
    back = envelope.parse(env.to_json().encode())
    assert back == env
    assert len(env.id) == 26 and env.ts.endswith("Z")


def test_stored_text_is_the_canonical_text():
    """`to_json` writes the envelope field by field: byte for byte what `canonical` gives (which the MAC
    covers), for bodies with non-ASCII text, nested objects with keys out of order, numbers and nulls."""
    body = pick_body(1)
    body["lines"] = [{"quantity": 2, "item_id": "A-1", "name": "Кружка «Север» — 350 мл", "barcodes": ["4600", "46"],
                      "marking_required": False, "title": "\u2603 \"q\"", "bin": None}]
    body["deadline"] = "2026-12-07T10:00:00+00:00"
    for site, seq in (("site-1", 7), ("склад-2", 123456789)):
        env = envelope.make(site, seq, "pick_task", body)
        text = env.to_json()
        assert text == envelope.canonical(env.to_dict()).decode("ascii")
        assert text.isascii() and json.loads(text) == env.to_dict()


@pytest.mark.parametrize(
    ("raw", "reason", "knows_id"),
    [
        (b"\xff\xfe", "not UTF-8", False),
        (b"{not json", "not JSON", False),
        (b"[1, 2]", "must be a JSON object", False),
        (json.dumps({"id": "x"}).encode(), "lacks", False),
        (json.dumps(good(id="not-a-ulid")).encode(), "ULID", False),
        (json.dumps(good(seq=0)).encode(), "seq", False),
        (json.dumps(good(seq="3")).encode(), "seq", False),
        (json.dumps(good(extra=1)).encode(), "unknown fields", True),
        (json.dumps(good(type="teleport")).encode(), "unknown message type", True),
        (json.dumps(good(body={"task_id": "t"})).encode(), "lacks required field", True),
        (json.dumps(good(body=[])).encode(), "must be a JSON object", True),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(raw, reason, knows_id):
    with pytest.raises(BadEnvelope) as err:
        envelope.parse(raw)
    assert reason in str(err.value)
    assert (err.value.id is not None and err.value.seq == 7) is knows_id


def test_the_fast_body_check_judges_every_field_kind_as_the_full_one():
    """`check_body` clears the usual body in one pass of exact types; whatever it does not clear goes to
    the full check. Per type and field: the right kind passes, a wrong kind (a bool for a number too) is
    refused, a missing field is refused, an optional field of the wrong kind is refused."""
    good = {"str": "x", "int": 3, "num": 2.5, "bool": True, "list": [], "dict": {}}
    wrong = {"str": 5, "int": True, "num": False, "bool": 1, "list": {}, "dict": []}
    assert set(good) == set(_JSON_KINDS)
    for msg_type, spec in FIELDS.items():
        if msg_type in ("task_progress", "return_received"):
            continue  # checks beyond kinds: their own tests
        body = {name: good[kind] for name, kind in spec.items()}
        check_body(msg_type, body)
        for name, kind in spec.items():
            with pytest.raises(BadMessage):
                check_body(msg_type, {**body, name: wrong[kind]})
            with pytest.raises(BadMessage):
                check_body(msg_type, {k: v for k, v in body.items() if k != name})
        for name, kind in OPTIONAL.get(msg_type, {}).items():
            check_body(msg_type, {**body, name: good[kind]})
            check_body(msg_type, {**body, name: None})
            with pytest.raises(BadMessage):
                check_body(msg_type, {**body, name: wrong[kind]})


def test_now_ts_is_the_current_moment_in_milliseconds():
    """`now_ts` writes each second's text once: still ISO 8601 UTC with milliseconds, the moment it is
    asked, also across a change of second."""
    import re
    import time
    from datetime import UTC, datetime

    for _ in range(3):
        before = datetime.now(UTC).timestamp()
        ts = envelope.now_ts()
        after = datetime.now(UTC).timestamp()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
        at = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert before - 0.001 <= at <= after
        time.sleep(0.6)


def test_the_canonical_encoder_made_once_writes_what_the_json_encoder_writes():
    """Bodies (and anything canonical covers) are written by the C encoder made once: the very text of
    `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)`; a container that holds itself or
    a value JSON has no form for is refused as before."""
    values = [
        pick_body(1), {}, [], "text", "Кружка «Север»\u2603\"\\\n", 0, -7, 2**70, 1.5, 1e-300, float("inf"), None,
        True, {"b": [1, {"z": None, "a": [True, False]}], "a": "ё", "é": 2.25}, [[[]]], {"1": 1, "10": 2, "2": 3},
    ]
    for value in values:
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert envelope.canonical_json(value) == expected
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        envelope.canonical_json(loop)
    with pytest.raises(ValueError, match="Circular"):  # the encoder keeps no trace of the failure
        envelope.canonical_json(loop)
    with pytest.raises(TypeError, match="not JSON serializable"):
        envelope.canonical_json({"a": object()})
    assert envelope.canonical_json({"a": [1, 2]}) == '{"a":[1,2]}'
