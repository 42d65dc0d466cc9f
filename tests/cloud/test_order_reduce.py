"""A parcel packed short is shipped as what it holds (issue #15): when the site goes on with fewer units,
the marketplace is told before the order is assembled or shipped — the missing units leave the order on
the marketplace (one call, also across a cloud killed mid-call), then the cloud's order lines; a
marketplace that will not reduce holds the order on «Требует внимания» and nothing is assembled or shipped.
Against the real Megamarket sandbox over HTTP with the real adapter."""

from __future__ import annotations

import itertools

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.orders import handovers, intake, mp_actions, site_messages
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger
from marketplaces import open_account
from marketplaces.base import StatusChange
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo
from sitelink.envelope import Envelope

_ids = itertools.count(1)


class _Registry:
    def __init__(self):
        self.handlers = {}

    def on(self, msg_type, handler):
        self.handlers[msg_type] = handler


class MM:
    """A cloud database, one Megamarket account on its sandbox, the real adapter and the site's messages."""

    def __init__(self, tmp_path):
        self.sb = start_sandbox("megamarket", seed=8, time_scale=50.0)
        self.cfg = parse_config({"accounts": {"mm": {
            "marketplace": "megamarket", "base_url": self.sb.url, "credentials": dict(self.sb.credentials),
            "time_scale": 50.0, "options": self.sb.app.account_options()}},
            "sites": {"site-1": {"warehouses": ["main"]}}}, env={})
        self.conn = open_db(str(tmp_path / "cloud.sqlite"))
        seed_demo(self.conn, self.cfg, 8)
        self.adapter = open_account(self.cfg.accounts["mm"].account)
        with transaction(self.conn):
            catalog.import_cards(self.conn, "mm", "megamarket", list(self.adapter.list_cards()))
            catalog.auto_link(self.conn)
        reg = _Registry()
        site_messages.register_site_handlers(reg, self.cfg)
        self.handlers = reg.handlers

    def order_of_two(self) -> str:
        """A new shipment with two lots of one offer, taken into work (reserved, confirmed)."""
        for _ in range(40):
            (sid,) = [str(x) for x in self.sb.app.make_orders(1)]
            lots = self.state()["lots"][sid]
            offers = {(lot.offer_id, lot.marked) for lot in self.sb.app.shipments[sid].lots}
            if len(lots) == 2 and len(offers) == 1 and not next(iter(offers))[1]:  # no marking codes to scan
                intake.poll(self.conn, self.cfg, self.adapter)
                self.run()
                return sid
        raise AssertionError("the sandbox placed no shipment of two lots of one offer")

    def site(self, msg_type: str, body: dict) -> None:
        with transaction(self.conn):
            self.handlers[msg_type](self.conn, Envelope(id=f"01TEST{next(_ids):04d}", site="site-1", seq=1,
                                                       type=msg_type, ts="2026-11-26T00:00:00Z", body=body))

    def packed_one_of_two(self, sid: str, *, packed: bool = True) -> str:
        """At the packing table one of the two units is not there: written off, the parcel goes with one
        (`packed=False`: only the shortage is said so far; `pack_rest` says the rest)."""
        key = f"mm:{sid}"
        item = self.conn.execute("SELECT item_id FROM order_lines l JOIN orders o ON o.id=l.order_id WHERE o.key=?",
                                 (key,)).fetchone()[0]
        task = self.conn.execute("SELECT task_round FROM orders WHERE key=?", (key,)).fetchone()[0]
        task_id = f"pick-{key}" if not task else f"pick-{key}#{task}"
        lines = [{"item_id": item, "quantity": 2, "picked": 1, "short": 1, "packed": 1}]
        self.site("stock_delta", {"warehouse": "main", "item_id": item, "delta": -1, "reason": "writeoff",
                                  "ref": key, "note": "нет при упаковке"})
        self.site("task_progress", {"task_id": task_id, "order_id": key, "state": "short", "lines": lines})
        if packed:
            self.pack_rest(sid, item)
        return item

    def pack_rest(self, sid: str, item: str) -> None:
        key = f"mm:{sid}"
        task = self.conn.execute("SELECT task_round FROM orders WHERE key=?", (key,)).fetchone()[0]
        task_id = f"pick-{key}" if not task else f"pick-{key}#{task}"
        lines = [{"item_id": item, "quantity": 2, "picked": 1, "short": 1, "packed": 1}]
        self.site("stock_delta", {"warehouse": "main", "item_id": item, "delta": -1, "reason": "pick", "ref": key})
        self.site("task_progress", {"task_id": task_id, "order_id": key, "state": "packed", "lines": lines})

    def run(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.conn.execute("UPDATE order_actions SET next_try=0 WHERE state='pending'")
            mp_actions.run_actions(self.conn, self.cfg, {"mm": self.adapter})

    def state(self) -> dict:
        return self.sb.app.state()

    def action(self, sid: str, action: str) -> str | None:
        r = self.conn.execute("SELECT a.state FROM order_actions a JOIN orders o ON o.id=a.order_id WHERE o.key=?"
                              " AND a.action=?", (f"mm:{sid}", action)).fetchone()
        return r[0] if r else None

    def close(self) -> None:
        self.conn.close()
        self.sb.stop()


@pytest.fixture
def mm(tmp_path):
    shop = MM(tmp_path)
    yield shop
    shop.close()


def test_a_parcel_packed_short_is_reduced_on_the_marketplace_once_across_a_crash_then_shipped(mm, monkeypatch):
    sid = mm.order_of_two()
    item = mm.packed_one_of_two(sid)
    assert mm.action(sid, "reduce") == "pending" and mm.action(sid, "assemble") == "pending"
    # the cloud dies right after Megamarket took the reject, before it recorded the answer
    real_done = mp_actions._action_done

    def killed(conn, cfg, a, outcome, link, now):
        if a["action"] == "reduce":
            raise KeyboardInterrupt("cloud killed")
        return real_done(conn, cfg, a, outcome, link, now)
    monkeypatch.setattr(mp_actions, "_action_done", killed)
    with pytest.raises(KeyboardInterrupt):
        mm.run()
    monkeypatch.setattr(mp_actions, "_action_done", real_done)
    st = mm.state()
    assert sorted(st["lots"][sid].values()) == ["CONFIRMED", "MERCHANT_CANCELED"]  # not packed yet: it waits
    mm.run(rounds=3)  # restarted: read back, not sent again; then the parcel as it is is assembled
    st = mm.state()
    assert st["order_calls"][sid]["reject"] == [1, 1]
    assert sorted(st["lots"][sid].values()) == ["MERCHANT_CANCELED", "PACKED"]
    assert mm.action(sid, "reduce") == "done" and mm.action(sid, "assemble") == "done"
    oid, = mm.conn.execute("SELECT id FROM orders WHERE key=?", (f"mm:{sid}",)).fetchone()
    assert [tuple(r) for r in mm.conn.execute("SELECT quantity, units FROM order_lines WHERE order_id=?", (oid,))] \
        == [(1, 1)]  # one lot, one line: the other went
    events = [r[0] for r in mm.conn.execute("SELECT detail FROM order_events WHERE order_id=? AND kind='reduced'",
                                            (oid,))]
    assert len(events) == 1 and events[0].startswith("на маркетплейсе из заказа убрано") and "1 шт." in events[0]
    assert ledger.held(mm.conn, f"mm:{sid}") in ([], [(item, "main", 0)])  # the unit written off held nothing
    # handed over: shipped with the one lot it holds, delivered as such
    (ho,) = handovers.start_handover(mm.conn, mm.cfg, "mm")
    mm.site("task_progress", {"order_id": f"mm:{sid}", "state": "handed_over", "handover_id": ho["handover_id"]})
    mm.run(rounds=2)
    st = mm.state()
    assert st["orders"][sid] == "SHIPPED" and st["order_units"][sid] == {next(iter(st["order_units"][sid])): 1}
    assert st["order_calls"][sid]["ship"] == [1, 1] and st["order_calls"][sid]["reject"] == [1, 1]
    assert st["spec_violations"] == []


def test_a_reduce_the_marketplace_refuses_holds_the_order_unassembled_and_unshipped(mm, monkeypatch):
    sid = mm.order_of_two()
    mm.packed_one_of_two(sid)
    real = mm.adapter.set_order_status

    def refuse(native_id, action, **details):
        if action == "reduce":
            return StatusChange(native_id, action, False, "CONFIRMED", error="lot cannot be rejected")
        return real(native_id, action, **details)
    monkeypatch.setattr(mm.adapter, "set_order_status", refuse)
    mm.run(rounds=mp_actions.REFUSED_TRIES + 2)
    assert mm.action(sid, "reduce") == "failed" and mm.action(sid, "assemble") == "pending"
    problem = mm.conn.execute("SELECT problem FROM orders WHERE key=?", (f"mm:{sid}",)).fetchone()[0]
    assert problem.startswith("Маркетплейс не убрал из заказа товары, которых нет в посылке")
    (ho,) = handovers.start_handover(mm.conn, mm.cfg, "mm")
    mm.site("task_progress", {"order_id": f"mm:{sid}", "state": "handed_over", "handover_id": ho["handover_id"]})
    mm.run(rounds=3)
    st = mm.state()
    assert sorted(st["lots"][sid].values()) == ["CONFIRMED", "CONFIRMED"]  # nothing packed or shipped as if whole
    assert "ship" not in st["order_calls"].get(sid, {}) and mm.action(sid, "ship") == "pending"
    failed = mm.conn.execute("SELECT action FROM order_actions WHERE state='failed'").fetchall()
    assert [r[0] for r in failed] == ["reduce"]  # the attention list's failed calls show it, with «Повторить»


def test_a_reduce_refused_before_the_parcel_is_packed_stays_held_when_it_is(mm, monkeypatch):
    sid = mm.order_of_two()
    item = mm.packed_one_of_two(sid, packed=False)  # the shortage is said first; the packing goes on
    monkeypatch.setattr(mm.adapter, "set_order_status", lambda native_id, action, **details: StatusChange(
        native_id, action, False, "CONFIRMED", error="lot cannot be rejected"))
    mm.run(rounds=mp_actions.REFUSED_TRIES + 1)
    assert mm.action(sid, "reduce") == "failed"
    mm.pack_rest(sid, item)  # the same shortage said again with the packed parcel: still held, still said why
    mm.run(rounds=2)
    assert mm.action(sid, "reduce") == "failed" and mm.action(sid, "assemble") == "pending"
    problem = mm.conn.execute("SELECT problem FROM orders WHERE key=?", (f"mm:{sid}",)).fetchone()[0]
    assert problem.startswith("Маркетплейс не убрал из заказа") and "lot cannot be rejected" in problem


def test_a_marketplace_that_cannot_reduce_holds_the_order_without_a_call(mm, monkeypatch):
    from marketplaces.base import Capabilities
    sid = mm.order_of_two()
    prof = mp_actions.profile("megamarket")
    monkeypatch.setattr(mp_actions, "profile", lambda name: type("P", (), {"can": Capabilities()})()
                        if name == "megamarket" else prof)
    mm.packed_one_of_two(sid)
    mm.run(rounds=3)
    assert mm.action(sid, "reduce") == "failed" and mm.action(sid, "assemble") == "pending"
    assert "reject" not in mm.state()["order_calls"].get(sid, {})
    assert mp_actions.NO_REDUCE in mm.conn.execute("SELECT problem FROM orders WHERE key=?", (f"mm:{sid}",)).fetchone()[0]
