"""Orders in one flow: ingest, unified status, reserve + pick task in one transaction, confirm, labels,
cancellations, deadlines, and the site's up messages applied to the ledger."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.orders import handovers, intake, listing, mp_actions, records, site_messages
from cloud_sync.stock import ledger
from marketplaces.base import OrderEvent
from sitelink import Reject
from sitelink.envelope import Envelope

from .conftest import card_id, order, seed


def _outbox(conn):
    return [(r["type"], json.loads(r["payload"])["body"]) for r in conn.execute("SELECT * FROM link_outbox ORDER BY seq")]


def test_new_order_is_reserved_and_its_pick_task_queued_together(conn, cfg):
    items = seed(conn, 3)
    res = intake.ingest(conn, cfg, [order("wb", "1001", card_id("wb", 1), qty=2)])
    assert (res.new, res.reserved) == (1, 1)
    assert ledger.level(conn, items[0].item_id, "main").reserved == 2
    (kind, body), = _outbox(conn)
    assert kind == "pick_task" and body["order_id"] == "wb:1001" and body["lines"][0]["quantity"] == 2
    assert body["lines"][0]["barcode"] == items[0].barcode
    o = listing.list_orders(conn)[0]
    assert (o["status"], o["stage"], o["site"], o["warehouse"]) == ("reserved", "reserved", "site-1", "main")
    assert conn.execute("SELECT action FROM order_actions").fetchone()[0] == "confirm"


def test_the_same_order_twice_is_taken_once(conn, cfg):
    items = seed(conn, 2)
    o = order("oz", "P-1", card_id("oz", 1))
    intake.ingest(conn, cfg, [o])
    res = intake.ingest(conn, cfg, [o])
    assert (res.new, res.known) == (0, 1)
    assert ledger.level(conn, items[0].item_id, "main").reserved == 1
    assert len(_outbox(conn)) == 1


def test_order_beyond_stock_is_never_confirmed(conn, cfg):
    items = seed(conn, 10)
    scarce = next(i for i in items if i.stock == 2)
    res = intake.ingest(conn, cfg, [order("ym", "Y1", card_id("ym", scarce.index), qty=3)])
    assert res.short == 1
    o = listing.list_orders(conn)[0]
    assert o["stage"] == "short" and f"артикул {scarce.article} «{scarce.name}», есть 2, нужно 3" in o["problem"]
    assert conn.execute("SELECT COUNT(*) FROM order_actions").fetchone()[0] == 0
    assert _outbox(conn) == []
    assert ledger.level(conn, scarce.item_id, "main").reserved == 0


def test_multi_line_order_reserves_all_lines_or_none(conn, cfg):
    items = seed(conn, 10)
    scarce = next(i for i in items if i.stock == 2)
    o = order("mm", "M1", card_id("mm", 1), qty=1)
    o.lines.append(order("mm", "x", card_id("mm", scarce.index), qty=5).lines[0])
    intake.ingest(conn, cfg, [o])
    assert ledger.level(conn, items[0].item_id, "main").reserved == 0


def test_unlinked_card_is_a_problem_not_a_reservation(conn, cfg):
    seed(conn, 1)
    intake.ingest(conn, cfg, [order("wb", "1", "no-such-card", offer_id="NOPE")])
    o = listing.list_orders(conn)[0]
    assert o["stage"] == "problem" and "NOPE" in o["problem"]


def test_confirm_then_label_to_the_site_then_packed_assemble(conn, cfg, windows):
    seed(conn, 2)
    intake.ingest(conn, cfg, [order("wb", "1001", card_id("wb", 1))])
    assert mp_actions.run_actions(conn, cfg, windows) == 1  # confirm (supply + add)
    assert windows["wb"].moves[0][:2] == ("1001", "confirm")
    assert mp_actions.run_actions(conn, cfg, windows) == 1  # label
    types = [t for t, _ in _outbox(conn)]
    assert types == ["pick_task", "label"]
    label = _outbox(conn)[1][1]
    assert label["order_id"] == "wb:1001" and label["format"] == "svg"
    o = listing.get_order(conn, "wb:1001")
    assert o["confirmed"] == 1 and o["supply_id"] == "WB-GI-1" and o["label_sent"] == 1


def test_ozon_label_comes_after_assembly(conn, cfg, windows):
    seed(conn, 2)
    handlers = _handlers(cfg)
    intake.ingest(conn, cfg, [order("oz", "P-1", card_id("oz", 1), status="awaiting_packaging")])
    mp_actions.run_actions(conn, cfg, windows)
    assert [t for t, _ in _outbox(conn)] == ["pick_task"]
    with transaction(conn):
        handlers["task_progress"](conn, _env("task_progress", {"task_id": "pick-oz:P-1", "order_id": "oz:P-1",
                                                               "state": "packed"}))
    mp_actions.run_actions(conn, cfg, windows)  # assemble
    mp_actions.run_actions(conn, cfg, windows)  # label
    assert [m[1] for m in windows["oz"].moves] == ["confirm", "assemble"]
    assert [t for t, _ in _outbox(conn)] == ["pick_task", "label"]


def test_cancellation_releases_and_stops_the_site(conn, cfg, windows):
    items = seed(conn, 2)
    o = order("oz", "P-2", card_id("oz", 1), qty=3)
    intake.ingest(conn, cfg, [o])
    o.native_status = "cancelled"
    intake.ingest(conn, cfg, [o])  # the next poll/refresh sees it cancelled
    assert ledger.level(conn, items[0].item_id, "main").reserved == 0
    assert [t for t, _ in _outbox(conn)] == ["pick_task", "cancel_task"]
    assert listing.get_order(conn, "oz:P-2")["status"] == "cancelled"
    assert stock_push_dirty(conn, items[0].item_id)


def _history(conn, kind):
    return [r[0] for r in conn.execute("SELECT detail FROM order_events WHERE kind=? ORDER BY id", (kind,))]


def test_a_poll_that_finds_the_deadline_moved_moves_it_once_and_tells_the_site(conn, cfg):
    """A missed push (or a marketplace that pushes none): the next poll finds the order's new assembly
    deadline, the order takes it, its history says it, and its pick task at the site is told."""
    seed(conn, 2)
    o = order("oz", "P-7", card_id("oz", 1))
    intake.ingest(conn, cfg, [o])
    first = o.ship_by
    o.ship_by = first + timedelta(days=1, hours=2)
    res = intake.ingest(conn, cfg, [o])
    assert (res.new, res.known) == (0, 1)
    stored = listing.get_order(conn, "oz:P-7")["ship_by"]
    assert datetime.fromisoformat(stored) == o.ship_by
    assert _history(conn, "ship_by") == [f"{first.isoformat()} → {o.ship_by.isoformat()}"]
    assert [t for t, _ in _outbox(conn)] == ["pick_task", "task_deadline"]
    body = _outbox(conn)[1][1]
    assert body == {"task_id": "pick-oz:P-7", "order_id": "oz:P-7", "deadline": o.ship_by.isoformat()}
    # the next poll reads the same: nothing written, nothing said; nor for the same minute read again
    intake.ingest(conn, cfg, [o])
    o.ship_by += timedelta(seconds=20)
    intake.ingest(conn, cfg, [o])
    assert len(_history(conn, "ship_by")) == 1 and len(_outbox(conn)) == 2
    assert datetime.fromisoformat(listing.get_order(conn, "oz:P-7")["ship_by"]) == o.ship_by - timedelta(seconds=20)
    # a marketplace answer without a deadline keeps the one stored
    o.ship_by = None
    intake.ingest(conn, cfg, [o])
    assert len(_history(conn, "ship_by")) == 1


def test_a_moved_deadline_of_an_order_past_assembly_or_short_of_stock_is_kept_or_taken_without_a_task(conn, cfg):
    items = seed(conn, 10)
    scarce = next(i for i in items if i.stock == 2)
    short = order("ym", "Y7", card_id("ym", scarce.index), qty=3)  # waits for stock: no task at the site
    gone = order("oz", "P-8", card_id("oz", 1))
    intake.ingest(conn, cfg, [short, gone])
    gone.native_status = "cancelled"
    intake.ingest(conn, cfg, [gone])
    before = len(_outbox(conn))
    short.ship_by += timedelta(hours=5)
    gone.ship_by += timedelta(hours=5)
    intake.ingest(conn, cfg, [short, gone])
    assert datetime.fromisoformat(listing.get_order(conn, "ym:Y7")["ship_by"]) == short.ship_by  # it waits by it
    assert datetime.fromisoformat(listing.get_order(conn, "oz:P-8")["ship_by"]) != gone.ship_by  # cancelled: kept
    assert len(_history(conn, "ship_by")) == 1 and len(_outbox(conn)) == before


def stock_push_dirty(conn, item_id):
    return conn.execute("SELECT 1 FROM stock_dirty WHERE item_id=?", (item_id,)).fetchone() is not None


def test_pushed_events_are_deduplicated_with_polling(conn, cfg):
    seed(conn, 2)
    o = order("ym", "555", card_id("ym", 1), status="PROCESSING")
    ev = OrderEvent("created", "555", "PROCESSING", order=o, dedup_key="ORDER_CREATED:555")
    assert intake.ingest_event(conn, cfg, "ym", ev) == "new"
    assert intake.ingest_event(conn, cfg, "ym", ev) == "duplicate"
    assert intake.ingest(conn, cfg, [o]).known == 1
    cancel = OrderEvent("cancelled", "555", "CANCELLED", dedup_key="ORDER_CANCELLED:555")
    assert intake.ingest_event(conn, cfg, "ym", cancel) == "cancelled"
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1


def test_unified_status_map_defaults_and_override():
    cfg = parse_config({"status_map": {"ozon": {"awaiting_deliver": "handed_over"}}}, env={})
    assert cfg.unified_status("wildberries", "confirm") == "in_work"
    assert cfg.unified_status("wildberries", "complete", "sold") == "delivered"  # wbStatus tells more
    assert cfg.unified_status("wildberries", "complete", "canceled_by_client") == "returned"
    assert cfg.unified_status("wildberries", "new", "waiting") == "new"
    assert cfg.unified_status("wildberries", "confirm", "waiting") == "in_work"
    assert cfg.unified_status("yandex_market", "PROCESSING", "READY_TO_SHIP") == "packed"
    assert cfg.unified_status("yandex_market", "PROCESSING", "OTHER") == "in_work"
    assert cfg.unified_status("megamarket", "CUSTOMER_CANCELED") == "cancelled"
    assert cfg.unified_status("ozon", "awaiting_deliver") == "handed_over"
    # our own progress moves the status forward, the marketplace's cancellation always wins
    assert records.unified(cfg, "wildberries", "confirm", "", "packed") == "packed"
    assert records.unified(cfg, "wildberries", "sold", "", "packed") == "delivered"
    assert records.unified(cfg, "wildberries", "cancel", "", "packed") == "cancelled"


def test_list_sorted_by_deadline_then_status(conn, cfg):
    seed(conn, 3)
    intake.ingest(conn, cfg, [order("wb", "late", card_id("wb", 1), ship_in_h=48),
                              order("oz", "soon", card_id("oz", 1), ship_in_h=2),
                              order("mm", "none", card_id("mm", 1), ship_in_h=None),
                              order("ym", "past", card_id("ym", 1), ship_in_h=-1)])
    assert [o["native_id"] for o in listing.list_orders(conn)] == ["past", "soon", "late", "none"]
    near = listing.deadlines_near(conn, 3 * 3600)
    assert [o["key"] for o in near] == ["ym:past", "oz:soon"]


# ---------------------------------------------------------------- site handlers


class _Registry:
    def __init__(self):
        self.handlers = {}

    def on(self, msg_type, handler):
        self.handlers[msg_type] = handler


def _handlers(cfg):
    reg = _Registry()
    site_messages.register_site_handlers(reg, cfg)
    return reg.handlers


def _env(msg_type, body, site="site-1"):
    return Envelope(id="01TEST", site=site, seq=1, type=msg_type, ts="2026-11-26T00:00:00Z", body=body)


def test_site_messages_move_orders_and_the_ledger(conn, cfg):
    items = seed(conn, 2)
    h = _handlers(cfg)
    intake.ingest(conn, cfg, [order("wb", "1001", card_id("wb", 1), qty=2)])
    with transaction(conn):
        h["task_progress"](conn, _env("task_progress", {"task_id": "pick-wb:1001", "order_id": "wb:1001",
                                                        "state": "packed"}))
        h["stock_delta"](conn, _env("stock_delta", {"warehouse": "main", "item_id": items[0].item_id, "delta": -2,
                                                    "reason": "pick", "ref": "wb:1001"}))
        h["printed"](conn, _env("printed", {"order_id": "wb:1001", "printer": "virtual", "file": "x.png"}))
        h["stock_count"](conn, _env("stock_count", {"warehouse": "main", "item_id": items[1].item_id, "counted": 1}))
        h["device_status"](conn, _env("device_status", {"devices": [{"name": "printer", "online": True}]}))
        h["scan"](conn, _env("scan", {"code": "123", "note": "unknown barcode"}))
    lv = ledger.level(conn, items[0].item_id, "main")
    assert (lv.on_hand, lv.reserved) == (items[0].stock - 2, 0)
    assert ledger.level(conn, items[1].item_id, "main").on_hand == 1
    s = listing.summary(conn)
    assert (s["orders_seen"], s["orders_packed"], s["labels_printed"]) == (1, 1, 1)
    assert listing.get_order(conn, "wb:1001")["status"] == "packed"
    assert {a["action"] for a in listing.get_order(conn, "wb:1001")["actions"]} == {"confirm", "assemble"}


def test_site_delta_that_would_make_stock_negative_is_rejected(conn, cfg):
    items = seed(conn, 1)
    h = _handlers(cfg)
    with pytest.raises(Reject, match="would make it"), transaction(conn):
        h["stock_delta"](conn, _env("stock_delta", {"warehouse": "main", "item_id": items[0].item_id,
                                                    "delta": -1000, "reason": "writeoff"}))
    assert ledger.level(conn, items[0].item_id, "main").on_hand == items[0].stock
    assert listing.summary(conn)["errors"] == 0  # the rejected transaction rolled back its error row as well


def test_handover_ships_a_wb_supply_only_when_its_last_parcel_is_handed_over(conn, cfg, windows):
    seed(conn, 3)
    h = _handlers(cfg)
    intake.ingest(conn, cfg, [order("wb", "1", card_id("wb", 1)), order("wb", "2", card_id("wb", 2))])
    mp_actions.run_actions(conn, cfg, windows)  # both confirmed into supply WB-GI-1
    conn.execute("UPDATE orders SET supply_id='WB-GI-1'")  # ShopWindow has no get_order for these
    with transaction(conn):
        for n in ("1", "2"):
            h["task_progress"](conn, _env("task_progress", {"task_id": f"pick-wb:{n}", "order_id": f"wb:{n}",
                                                            "state": "packed", "marking_codes": ["0104607000000011215abc"]}))
    (ho,) = handovers.start_handover(conn, cfg, "wb")
    assert ho["orders"] == ["wb:1", "wb:2"] and ho["supply_id"] == "WB-GI-1"
    assert _outbox(conn)[-1] == ("handover", {"handover_id": ho["handover_id"], "marketplace": "wildberries",
                                              "order_ids": ["wb:1", "wb:2"], "account": "wb", "supply_id": "WB-GI-1"})
    with transaction(conn):
        h["task_progress"](conn, _env("task_progress", {"task_id": "pick-wb:1", "order_id": "wb:1",
                                                        "state": "handed_over", "handover_id": ho["handover_id"]}))
    ships = "SELECT COUNT(*) FROM order_actions WHERE action='ship'"
    assert conn.execute(ships).fetchone()[0] == 0  # wb:2 is still on the table: delivering now would take it too
    with transaction(conn):
        h["task_progress"](conn, _env("task_progress", {"task_id": "pick-wb:2", "order_id": "wb:2",
                                                        "state": "handed_over", "handover_id": ho["handover_id"]}))
    assert conn.execute(ships).fetchone()[0] == 1
    mp_actions.run_actions(conn, cfg, windows)
    assert [m[1] for m in windows["wb"].moves].count("ship") == 1
    assert mp_actions._marking_by_offer(conn, 1) == {"wb-1": ["0104607000000011215abc"]}


def test_order_for_a_card_not_imported_yet_is_matched_like_auto_linking(conn, cfg):
    items = seed(conn, 2)
    intake.ingest(conn, cfg, [order("mm", "new-card", "MS-NEW", offer_id=items[1].article)])
    o = listing.get_order(conn, "mm:new-card")
    assert o["stage"] == "reserved" and o["lines"][0]["item_id"] == items[1].item_id
    with transaction(conn):  # unlinked by hand: no guessing
        from cloud_sync.catalog import cards as catalog
        from cloud_sync.catalog import nomenclature
        from marketplaces.base import Card

        nomenclature.upsert_items(conn, [nomenclature.Item(id="SOLO-ID", name="solo", article="SOLO")])
        ledger.set_balances(conn, "main", {"SOLO-ID": 5})
        catalog.import_cards(conn, "mm", "megamarket", [Card("MS-LOCK", "SOLO")])
        catalog.unlink(conn, "mm", "MS-LOCK")
    intake.ingest(conn, cfg, [order("mm", "locked", "MS-LOCK", offer_id="SOLO")])
    assert listing.get_order(conn, "mm:locked")["stage"] == "problem"


def test_sites_get_the_catalog_once_and_then_only_what_changed(conn, cfg):
    items = seed(conn, 3)
    conn.execute("UPDATE items SET updated_at=datetime('now', '-1 minute')")
    assert site_messages.send_site_catalogs(conn, cfg) == 3
    (kind, body), = _outbox(conn)
    assert kind == "catalog" and {i["item_id"] for i in body["items"]} == {i.item_id for i in items}
    assert body["items"][0]["barcode"] in {i.barcode for i in items}
    assert site_messages.send_site_catalogs(conn, cfg) == 0
    conn.execute("UPDATE items SET name='новое', updated_at=datetime('now', '-2 seconds') WHERE id=?",
                 (items[1].item_id,))
    assert site_messages.send_site_catalogs(conn, cfg) == 1


def test_marketplace_says_marking_required_even_when_1c_does_not(conn, cfg):
    seed(conn, 2)
    o = order("mm", "M-mark", card_id("mm", 2))
    o.lines[0].marking_required = True
    intake.ingest(conn, cfg, [o])
    (_, body), = _outbox(conn)
    assert body["lines"][0]["marking_required"] is True


def test_order_polls_never_faster_than_the_marketplace_budget():
    from cloud_sync.config import parse_config as parse

    cfg = parse({"accounts": {"mm": {"marketplace": "megamarket", "base_url": "http://127.0.0.1:9", "time_scale": 10},
                              "wb": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9"},
                              "oz": {"marketplace": "ozon", "base_url": "http://127.0.0.1:9", "orders_poll_s": 30}}},
                env={})
    assert cfg.accounts["mm"].poll_interval(0.01) == pytest.approx(0.1)  # 1 s / time scale 10
    assert cfg.accounts["wb"].poll_interval(0.01) == pytest.approx(0.2)
    assert cfg.accounts["wb"].poll_interval(5.0) == 5.0
    assert cfg.accounts["oz"].poll_interval(5.0) == 30.0


def test_a_parcel_that_stayed_when_its_hand_over_closed_is_offered_to_the_next_courier(conn, cfg, windows):
    """The site closed a hand-over with a parcel missing (its label had not printed): the cloud takes it
    out of that hand-over, says why, and the next courier's hand-over lists it."""
    seed(conn, 3)
    h = _handlers(cfg)
    intake.ingest(conn, cfg, [order("oz", "1", card_id("oz", 1)), order("oz", "2", card_id("oz", 2))])
    with transaction(conn):
        for n in ("1", "2"):
            h["task_progress"](conn, _env("task_progress", {"task_id": f"pick-oz:{n}", "order_id": f"oz:{n}",
                                                            "state": "packed"}))
    (ho,) = handovers.start_handover(conn, cfg, "oz")
    assert ho["orders"] == ["oz:1", "oz:2"]
    assert handovers.start_handover(conn, cfg, "oz") == []  # both are in the open hand-over
    with transaction(conn):
        h["task_progress"](conn, _env("task_progress", {"task_id": "pick-oz:1", "order_id": "oz:1",
                                                        "state": "handed_over", "handover_id": ho["handover_id"]}))
        h["handover_closed"](conn, _env("handover_closed", {
            "handover_id": ho["handover_id"], "handed": ["oz:1"], "missing": ["oz:2"],
            "missing_why": {"oz:2": "этикетка не напечатана"}}))
    (again,) = handovers.start_handover(conn, cfg, "oz")
    assert again["orders"] == ["oz:2"]
    events = [e["text"] for e in listing.events_after(conn, 0) if e["kind"] == "handover_missing"]
    assert events and "этикетка не напечатана" in events[0] and "next courier" in events[0]


def test_the_packer_gets_the_1c_name_and_the_card_title_as_a_second_line(conn, cfg):
    """One name per item: the pick task's line is named as 1C names the item; the marketplace card's own
    title (here another colour than 1C's) goes along only as a second line, and only when it differs."""
    items = seed(conn, 2)
    o = order("mm", "M-title", card_id("mm", 1))
    o.lines[0].title = "Футболка хлопковая, красный (карточка)"
    same = order("mm", "M-same", card_id("mm", 2))
    same.lines[0].title = items[1].name
    intake.ingest(conn, cfg, [o, same])
    bodies = {b["order_id"]: b for t, b in _outbox(conn) if t == "pick_task"}
    line = bodies["mm:M-title"]["lines"][0]
    assert line["name"] == items[0].name and line["title"] == "Футболка хлопковая, красный (карточка)"
    assert "title" not in bodies["mm:M-same"]["lines"][0]
