"""An order's history is a true timeline: each event once, in the order it happened (a site's event at the
site's own time, whenever it is delivered), with who caused it. And bad input — a status for an unknown
order, a push with an unknown status, a hand-over of a parcel not packed or cancelled — is refused in
Russian, logged, changes nothing and loses nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from cloud_sync.db import transaction
from cloud_sync.orders import desk, intake, listing, mp_actions, site_messages
from marketplaces.base import OrderEvent
from sitelink import Reject
from sitelink.envelope import Envelope

from .conftest import card_id, order, seed


class _Registry:
    def __init__(self):
        self.handlers = {}

    def on(self, msg_type, handler):
        self.handlers[msg_type] = handler


def _h(cfg):
    reg = _Registry()
    site_messages.register_site_handlers(reg, cfg)
    return reg.handlers


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _progress(env_id: str, key: str, state: str, ts: datetime, **extra) -> Envelope:
    return Envelope(id=env_id, site="site-1", seq=int(env_id[-2:]), type="task_progress", ts=_iso(ts),
                    body={"task_id": f"pick-{key}", "order_id": key, "state": state, **extra})


def _timeline(conn, key):
    return [(e["kind"], e["source"], e["actor"]) for e in listing.get_order(conn, key)["events"]]


def test_site_events_delivered_out_of_order_and_twice_sort_where_they_happened_once(conn, cfg):
    seed(conn, 2)
    h = _h(cfg)
    o = order("ym", "50000001", card_id("ym", 1))
    o.created_at = datetime.now(UTC) - timedelta(minutes=30)
    intake.ingest(conn, cfg, [o])
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    picked = _progress("01ENV000000000000000000001", "ym:50000001", "picked", t0 + timedelta(minutes=1))
    packed = _progress("01ENV000000000000000000002", "ym:50000001", "packed", t0 + timedelta(minutes=3))
    # the packed message arrives first, then picked, then packed once more (a re-delivery)
    for env in (packed, picked, packed):
        with transaction(conn):
            h["task_progress"](conn, env)
    assert _timeline(conn, "ym:50000001") == [
        ("received", "marketplace", "ym"),
        ("reserved", "system", ""),
        ("picked", "site", "site-1"),
        ("packed", "site", "site-1"),
    ]
    events = listing.get_order(conn, "ym:50000001")["events"]
    assert events[2]["ts"] == pytest.approx((t0 + timedelta(minutes=1)).timestamp(), abs=1)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert listing.get_order(conn, "ym:50000001")["stage"] == "packed"


def test_a_cancellation_is_one_event_by_the_manager_and_one_answer_of_the_marketplace(conn, cfg, windows):
    seed(conn, 2)
    intake.ingest(conn, cfg, [order("oz", "C1", card_id("oz", 1))])
    with transaction(conn):
        desk.run(conn, cfg, "cancel", ["oz:C1"], by="anna", reason="покупатель передумал")
    mp_actions.run_actions(conn, cfg, windows)
    pushed = OrderEvent("cancelled", "C1", "cancelled", dedup_key="cancel:C1")
    assert intake.ingest_event(conn, cfg, "oz", pushed) == "cancelled"  # already cancelled: nothing new
    assert intake.ingest_event(conn, cfg, "oz", pushed) == "duplicate"
    kinds = _timeline(conn, "oz:C1")
    assert [k for k in kinds if k[0].startswith("cancel")] == [("cancelled", "manager", "anna"),
                                                                ("cancel_sent", "marketplace", "")]


def test_marketplace_status_changes_are_in_the_timeline_once(conn, cfg):
    seed(conn, 2)
    intake.ingest(conn, cfg, [order("ym", "7", card_id("ym", 1), status="PROCESSING")])
    ev = OrderEvent("status", "7", "PROCESSING", dedup_key="st:7:1")
    conn.execute("UPDATE orders SET native_substatus='STARTED'")
    assert intake.ingest_event(conn, cfg, "ym", ev) == "status"
    assert intake.ingest_event(conn, cfg, "ym", ev) == "duplicate"
    assert [k for k in _timeline(conn, "ym:7") if k[0] == "status"] == [("status", "marketplace", "ym")]


# ---------------------------------------------------------------- bad input


def _errors(conn):
    return [r[0] for r in conn.execute("SELECT message FROM cloud_errors ORDER BY id")]


def test_a_status_for_an_unknown_order_is_said_and_changes_nothing(conn, cfg):
    seed(conn, 1)
    ev = OrderEvent("status", "404404", "PROCESSING", dedup_key="st:404404")
    assert intake.ingest_event(conn, cfg, "ym", ev) == "unknown order"
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
    assert _errors(conn) == ["ym: статус «PROCESSING» пришёл для неизвестного заказа 404404 — ничего не изменено"]


def test_a_push_with_an_unknown_status_is_refused_and_the_order_stays(conn, cfg, caplog):
    seed(conn, 1)
    intake.ingest(conn, cfg, [order("ym", "8", card_id("ym", 1), status="PROCESSING")])
    before = dict(conn.execute("SELECT stage, status, native_status FROM orders").fetchone())
    ev = OrderEvent("status", "8", "TELEPORTED", dedup_key="st:8:x")
    with caplog.at_level(logging.WARNING, logger="cloud_sync.orders.intake"):
        assert intake.ingest_event(conn, cfg, "ym", ev) == "unknown status"
    assert dict(conn.execute("SELECT stage, status, native_status FROM orders").fetchone()) == before
    (err,) = _errors(conn)
    assert "неизвестный статус маркетплейса «TELEPORTED» — статус не изменён" in err
    assert "TELEPORTED" in caplog.text
    # the push itself counts as seen (a re-delivery is a duplicate), its outcome stays in push_events
    assert intake.ingest_event(conn, cfg, "ym", ev) == "duplicate"


@pytest.mark.parametrize("case", ["not packed", "cancelled"])
def test_a_hand_over_of_a_parcel_not_packed_or_cancelled_is_refused_in_russian(conn, cfg, case, caplog):
    seed(conn, 1)
    h = _h(cfg)
    intake.ingest(conn, cfg, [order("oz", "H1", card_id("oz", 1))])
    if case == "cancelled":
        with transaction(conn):
            desk.run(conn, cfg, "cancel", ["oz:H1"], by="anna", reason="нет")
    before = listing.get_order(conn, "oz:H1")
    env = _progress("01ENV000000000000000000009", "oz:H1", "handed_over", datetime.now(UTC))
    word = "ещё не упакован" if case == "not packed" else "отменён"
    refused = f"заказ H1 {word} — его нельзя передать курьеру"
    with caplog.at_level(logging.WARNING), pytest.raises(Reject, match=refused), transaction(conn):
        h["task_progress"](conn, env)
    after = listing.get_order(conn, "oz:H1")
    assert (after["stage"], after["status"], after["events"]) == (before["stage"], before["status"], before["events"])
    assert "нельзя передать курьеру" in caplog.text


def test_a_site_message_for_an_unknown_order_is_refused_in_russian(conn, cfg):
    seed(conn, 1)
    env = _progress("01ENV000000000000000000010", "oz:NOPE", "packed", datetime.now(UTC))
    with pytest.raises(Reject, match="для неизвестного заказа oz:NOPE"), transaction(conn):
        _h(cfg)["task_progress"](conn, env)
