"""A batch of new orders writes its pick tasks' canonical text itself (`records.PickTasks`: each item's line
text made once per batch, the body written field by field) instead of having the link encode every body:
the texts are the canonical encoding of the bodies, the bodies are the ones a resend of the stored order
builds, and a batch written that way leaves every row — orders, lines, history, reservations, moves,
levels, the stock planner's marks and zeros, the outbox — the same as the plain bodies do, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_sync.orders import intake, records
from cloud_sync.schema import open_db
from marketplaces.base import OrderLine
from sitelink.envelope import canonical, canonical_json
from sitelink.messages import EncodedBody

from .conftest import card_id, order, seed

NOW = 1_800_000_000.0


def _batch(items: list) -> list:
    """New orders of every kind a poll brings: enough stock and not, several lines, a card title of its own
    with characters JSON escapes, no deadline, marking asked by the marketplace, an unlinked card, an order
    cancelled before we saw it, a number of its own, the same order twice."""
    scarce = next(i for i in items if i.stock == 2)
    out = [order(("wb", "oz", "ym", "mm")[k % 4], f"B{k}", card_id(("wb", "oz", "ym", "mm")[k % 4], 1 + k % 6),
                 qty=1 + k % 3, ship_in_h=24 + k % 5) for k in range(40)]
    out += [order("wb", f"S{k}", card_id("wb", scarce.index), qty=1 + k % 2) for k in range(3)]
    multi = order("oz", "M1", card_id("oz", 1), qty=2)
    multi.lines += [order("oz", "x", card_id("oz", 3)).lines[0], order("oz", "x", card_id("oz", 4), qty=3).lines[0]]
    titled = order("mm", "T1", card_id("mm", 2))
    titled.lines[0].title = 'Футболка "красная" \\ 🚀\t"quantity":\x01'  # (no NUL: PostgreSQL's text holds none)
    undated = order("ym", "U1", card_id("ym", 5), ship_in_h=None)
    marked = order("wb", "K1", card_id("wb", 6))
    marked.lines[0].marking_required = True
    marked.lines[0].barcode = "0460000000000"
    unlinked = order("wb", "N1", "no-such-card", offer_id="NOPE")
    gone = order("oz", "C1", card_id("oz", 2), status="cancelled")
    numbered = order("mm", "R1", card_id("mm", 3))
    numbered.number = "ММ-№7"
    odd = order("ym", "Q1", card_id("ym", 6))
    odd.lines.append(OrderLine(card_id=card_id("ym", 7), offer_id="", quantity=1, price=odd.lines[0].price,
                               title='"\\"'))
    return out + [multi, titled, undated, marked, unlinked, gone, numbered, odd, out[0]]


def _rows(conn) -> dict[str, list]:
    """Every row the batch wrote or moved (the seed's own moments left out), the outbox's bodies decoded."""
    def q(sql: str) -> list:
        return [tuple(r) for r in conn.execute(sql)]
    got = {
        "orders": q("SELECT * FROM orders ORDER BY id"),
        "order_lines": q("SELECT * FROM order_lines ORDER BY order_id, line_no"),
        "order_events": q("SELECT * FROM order_events ORDER BY id"),
        "order_actions": q("SELECT * FROM order_actions ORDER BY order_id, action"),
        "stock_moves": q("SELECT item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after,"
                         " reserved_after, source, ref, note, ts FROM stock_moves WHERE kind!='balance' ORDER BY id"),
        "stock_reservations": q("SELECT * FROM stock_reservations ORDER BY ref, item_id"),
        "stock_levels": q("SELECT item_id, warehouse, on_hand, reserved FROM stock_levels ORDER BY item_id"),
        "stock_dirty": q("SELECT item_id, cause FROM stock_dirty ORDER BY item_id"),
        "stock_push_queue": q("SELECT * FROM stock_push_queue ORDER BY account, card_id, warehouse_id"),
        "stock_published": q("SELECT * FROM stock_published ORDER BY account, card_id, warehouse_id"),
    }
    outbox = []
    for peer, seq, kind, payload in conn.execute("SELECT peer, seq, type, payload FROM link_outbox ORDER BY peer, seq"):
        assert canonical(json.loads(payload)).decode() == payload  # what the link signs as it is
        outbox.append((peer, seq, kind, json.loads(payload)["body"]))
    got["link_outbox"] = outbox
    return got


def test_pick_task_texts_are_the_canonical_encoding_of_the_bodies_a_resend_builds(conn, cfg):
    items = seed(conn, 10)
    orders = _batch(items)
    res = intake.ingest(conn, cfg, orders, now=NOW)
    assert res.reserved >= 20 and res.short >= 10 and res.problems == 1 and res.cancelled == 1
    tasks = conn.execute("SELECT payload FROM link_outbox WHERE type='pick_task'").fetchall()
    assert len(tasks) == res.reserved
    for (payload,) in tasks:
        body = json.loads(payload)["body"]
        assert canonical(json.loads(payload)).decode() == payload
        oid = conn.execute("SELECT id FROM orders WHERE key=?", (body["order_id"],)).fetchone()[0]
        assert body == records.pick_task_body(conn, oid)  # what sending the stored order again gives
    titled = next(json.loads(p)["body"] for (p,) in tasks if '"T1"' in p)
    assert titled["lines"][0]["title"] == 'Футболка "красная" \\ 🚀\t"quantity":\x01'
    assert "deadline" not in next(json.loads(p)["body"] for (p,) in tasks if '"U1"' in p)


def test_a_body_made_by_the_batch_is_the_canonical_text_of_itself(conn):
    """Each body is an `EncodedBody` whose text is exactly the canonical encoding of it, or a plain dict where
    the batch cannot write it (a quantity that is not a whole number, a line whose text holds the
    placeholder); and the same dict either way."""
    items = seed(conn, 4)
    facts = records.item_facts(conn, [i.item_id for i in items])
    tasks = records.PickTasks(facts)
    cases = [
        ("wb:1", "wildberries", "wb", "1", "N-1", "main", "2026-12-01T10:00:00+00:00",
         [(items[0].item_id, 2, "", "", False), (items[1].item_id, 1, "", "Своё «имя»", True)]),
        ("oz:2", "ozon", "oz", "2", "2", "main", None, [(items[2].item_id, 5, "46000", 'a"b\\c\n', False)]),
        ("ym:3", "yandex_market", "ym", "3", "№3", "main", None, [("no-such-item", 1, "", "t", False)]),
    ]
    for key, mp, account, native_id, number, warehouse, deadline, lines in cases:
        body = tasks.body(conn, key, mp, account, native_id, number, warehouse, deadline, lines)
        assert type(body) is EncodedBody
        assert body.text == canonical_json(dict(body))
        want = {"task_id": records.pick_task_id(key), "order_id": key, "marketplace": mp,
                "lines": [records.task_line(conn, i, u, b, t, m, facts) for i, u, b, t, m in lines],
                "account": account, "native_id": native_id, "number": number, "warehouse": warehouse}
        if deadline:
            want["deadline"] = deadline
        assert dict(body) == want
    # a title holding the placeholder, even as the marker's own characters: inside a JSON string every quote
    # is escaped, so the marker is found once, where the quantity goes
    for title in ("x\x00quantity", '"quantity":"\x00quantity"'):
        body = tasks.body(conn, "wb:8", "wildberries", "wb", "8", "8", "main", None,
                          [(items[0].item_id, 3, "", title, False)])
        assert type(body) is EncodedBody and body.text == canonical_json(dict(body))
        assert body["lines"][0]["title"] == title and body["lines"][0]["quantity"] == 3
    # a quantity that is not a whole number, or a field that is not text: left to the link's encoder
    assert type(tasks.body(conn, "wb:9", "wildberries", "wb", "9", "9", "main", None,
                           [(items[0].item_id, 1.5, "", "", False)])) is dict
    assert type(tasks.body(conn, "wb:7", "wildberries", "wb", "7", "7", "main", None,
                           [(items[0].item_id, True, "", "", False)])) is dict
    assert type(tasks.body(conn, "wb:6", "wildberries", "wb", "6", 6, "main", None,  # type: ignore[arg-type]
                           [(items[0].item_id, 1, "", "", False)])) is dict


def test_a_batch_leaves_the_same_rows_whether_the_batch_or_the_link_encodes_its_pick_tasks(
        tmp_path: Path, cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same batch into two real database files: one as the intake writes it, one with every pick task a
    plain dict the link encodes (the way before). Every row is the same, the outbox's text too."""
    written, polls = {}, []
    for how in ("batch", "link"):
        if how == "link":
            monkeypatch.setattr(records.PickTasks, "body", lambda self, *a, made=records.PickTasks.body:
                                dict(made(self, *a)))
        db = open_db(tmp_path / f"{how}.sqlite")
        items = seed(db, 10)
        if not polls:  # the very same orders for both (their moments too): three polls, the later ones seeing
            orders = _batch(items)  # what the first took, each with the odd ones again
            polls = [orders[k:k + 20] + orders[40:] for k in range(0, 60, 20)]
        for k, poll in enumerate(polls):
            intake.ingest(db, cfg, poll, now=NOW + k)
        written[how] = _rows(db)
        db.close()
    assert written["batch"]["link_outbox"] and written["batch"]["stock_moves"]
    for table, rows in written["batch"].items():
        assert rows == written["link"][table], table


def test_a_line_text_is_the_canonical_encoding_around_its_quantity() -> None:
    lines = [
        {"item_id": "i1", "quantity": 0, "name": "Кружка «Лес»", "barcodes": ["4600", "ШК-2"], "marking_required": True,
         "barcode": "4600", "bin": "A-1/2", "title": 'x"y\\z\n\u2028'},
        {"item_id": "i2", "quantity": 0, "name": "", "barcodes": [], "marking_required": False},
        {"quantity": 0},
        {"zz": None, "quantity": 0, "aa": 7},
    ]
    for line in lines:
        head, tail = records._around_quantity(line)
        for units in (1, 12, 0):
            assert f"{head}{units}{tail}" == canonical_json({**line, "quantity": units})
    for odd in ({"quantity": 0, "price": 1.5}, {"quantity": 0, "x": {"a": 1}}, {"quantity": 0, "x": [1]},
                {"name": "no quantity"}):
        assert records._around_quantity(odd) is None


def test_an_item_renamed_between_batches_is_sent_by_its_new_name(conn, cfg):
    """The lines made for an item are kept for the next batches by the item's facts as each batch reads them:
    an item renamed, binned or given another barcode in 1C between two polls goes down as it is now."""
    from cloud_sync.catalog import nomenclature
    from cloud_sync.db import transaction

    items = seed(conn, 3)
    intake.ingest(conn, cfg, [order("wb", "A1", card_id("wb", 1))], now=NOW)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id=items[0].item_id, name="Кружка новая",
                                                           article=items[0].article, barcodes=["4600000099999"])])
    intake.ingest(conn, cfg, [order("wb", "A2", card_id("wb", 1)), order("oz", "A3", card_id("oz", 1))], now=NOW)
    bodies = {json.loads(p)["body"]["order_id"]: json.loads(p)["body"]
              for (p,) in conn.execute("SELECT payload FROM link_outbox WHERE type='pick_task'")}
    assert bodies["wb:A1"]["lines"][0]["name"] == items[0].name
    for key in ("wb:A2", "oz:A3"):
        line = bodies[key]["lines"][0]
        assert (line["name"], line["barcodes"]) == ("Кружка новая", ["4600000099999"]), line
        oid = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()[0]
        assert bodies[key] == records.pick_task_body(conn, oid)
