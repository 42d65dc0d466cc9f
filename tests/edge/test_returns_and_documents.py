"""Returns taken in at the site, the senior packer's hand-over request, the hand-over list's parcel count
and the marketplaces' hand-over documents printed — against a real site database, the real outbox and
the site's own print queue on the virtual printer (no physical printer here)."""

from __future__ import annotations

import base64
import io
import json
import sqlite3

import pytest
from edge_testkit import BAG, MUG, SHIRT, WAREHOUSE, deliver_label, outbox, pick_task, print_waiting, send

from edge_agent import store
from edge_agent.tasks import handover, inbox, returns, station
from edge_agent.tasks.common import TaskError
from sitelink.messages import check_body


def add(conn: sqlite3.Connection, body: dict) -> None:
    with store.transaction(conn):
        assert inbox.apply_pick_task(conn, body)


def scan(conn: sqlite3.Connection, st: str, code: str):
    with store.transaction(conn):
        return station.handle_scan(conn, send, st, code, WAREHOUSE)


def to_return_mode(conn: sqlite3.Connection, st: str = "pack-1") -> None:
    with store.transaction(conn):
        station.set_mode(conn, st, "return")


def test_an_expected_return_is_taken_in_good_units_back_on_hand_defective_apart(conn) -> None:
    with store.transaction(conn):
        inbox.apply_return_expected(conn, {"return_id": "wb1:7#1", "order_id": "wb1:7", "number": "WB-7",
                                           "marketplace": "wildberries", "kind": "return",
                                           "parcel_codes": ["7", "WB-7", "wb1:7"], "lines": [
                                               {"item_id": MUG["item_id"], "quantity": 2, "barcode": MUG["barcode"],
                                                "barcodes": [MUG["barcode"]], "name": MUG["name"]},
                                               {"item_id": BAG["item_id"], "quantity": 1, "barcode": BAG["barcode"],
                                                "name": BAG["name"]}]})
    to_return_mode(conn)
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "info"  # an item first: the parcel comes first
    opened = scan(conn, "pack-1", "7")  # a code printed on the parcel (the marketplace's id) opens it
    assert opened.ok and opened.data["return_id"] == "wb1:7#1"
    assert scan(conn, "pack-1", MUG["barcode"]).ok
    second = scan(conn, "pack-1", MUG["barcode"])
    assert second.ok
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "extra"  # 2 were sold: a third is not this parcel's
    wrong = scan(conn, "pack-1", SHIRT["barcode"])  # never in that order: refused, in Russian
    assert (wrong.ok, wrong.kind) == (False, "wrong_item") and "НЕ ИЗ ЭТОГО ЗАКАЗА" in wrong.message
    with store.transaction(conn):
        returns.put_aside(conn, "pack-1")  # «Отложить»: another parcel first; the scans stay
    assert scan(conn, "pack-1", BAG["barcode"]).kind == "info"  # no return open now
    assert scan(conn, "pack-1", "wb1:7").data["return_id"] == "wb1:7#1"  # the parcel again: where it stopped
    assert [ln["taken"] for ln in returns.summary(conn, "wb1:7#1")["lines"]] == [2, 0]  # mugs, bag
    assert scan(conn, "pack-1", BAG["barcode"]).ok
    with store.transaction(conn):
        returns.mark(conn, "wb1:7#1", second.data["unit"], True)  # the second mug is broken
        out = returns.commit(conn, send, "pack-1", "wb1:7#1", WAREHOUSE, "Анна")
    assert (out["good"], out["defective"]) == (2, 1)
    sent = outbox(conn)
    # the cloud moves the ledger from the report alone: no stock_delta for an announced return
    assert [t for t, _ in sent if t == "stock_delta"] == []
    (received,) = [b for t, b in sent if t == "return_received"]
    check_body("return_received", received)  # the contract both sides read
    assert received["order_id"] == "wb1:7" and received["warehouse"] == WAREHOUSE and "Анна" in received["note"]
    assert sorted((u["item_id"], u["good"], u["defective"]) for u in received["lines"]) == [
        (BAG["item_id"], 1, 0), (MUG["item_id"], 1, 1)]
    # the site's own record: the defect apart, never on hand
    moves = conn.execute("SELECT item_id, delta, reason FROM stock_moves ORDER BY id").fetchall()
    assert sorted(tuple(m) for m in moves) == [(BAG["item_id"], 1, "return"), (MUG["item_id"], 1, "defect"),
                                               (MUG["item_id"], 1, "return")]
    with pytest.raises(TaskError, match="уже принят"), store.transaction(conn):
        returns.commit(conn, send, "pack-1", "wb1:7#1", WAREHOUSE)
    assert scan(conn, "pack-1", "WB-7").kind == "extra"  # the same parcel again: already taken in


def test_a_parcel_back_before_the_cloud_said_so_is_taken_in_as_it_was_packed(conn) -> None:
    add(conn, pick_task("a", [(MUG, 1)]))
    deliver_label(conn, "o-a")
    assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    to_return_mode(conn)
    assert scan(conn, "pack-1", "nonsense").kind == "unknown"
    label_code = conn.execute("SELECT COALESCE(barcode_text, order_id) FROM labels").fetchone()[0]
    assert scan(conn, "pack-1", label_code).ok  # the label's barcode (or the order id) names the parcel
    assert scan(conn, "pack-1", BAG["barcode"]).kind == "wrong_item"
    unit = scan(conn, "pack-1", MUG["barcode"])
    assert unit.ok
    with store.transaction(conn):
        returns.mark(conn, "ret-o-a", unit.data["unit"], True)
        out = returns.commit(conn, send, "pack-1", "ret-o-a", WAREHOUSE)
    assert (out["good"], out["defective"]) == (0, 1)
    # the cloud expects no such return: the unit goes to the ledger as a stock_delta of reason "return",
    # a defective one to the defect warehouse beside the site's (never published)
    assert [t for t, _ in outbox(conn) if t == "return_received"] == []
    (delta,) = [b for t, b in outbox(conn) if t == "stock_delta" and b["reason"] == "return"]
    assert (delta["warehouse"], delta["item_id"], delta["delta"], delta["ref"]) == (
        f"{WAREHOUSE}:defect", MUG["item_id"], 1, "o-a")
    (note,) = [b for t, b in outbox(conn) if t == "scan" and b.get("order_id") == "o-a"]
    assert "возврат без уведомления принят: годных 0, брак 1" in note["note"]  # in the order's history


def test_an_empty_return_is_not_taken_in(conn) -> None:
    with store.transaction(conn):
        inbox.apply_return_expected(conn, {"return_id": "r-2", "order_id": "o-8", "lines": [
            {"item_id": MUG["item_id"], "quantity": 1, "barcode": MUG["barcode"], "name": MUG["name"]}]})
    to_return_mode(conn)
    assert scan(conn, "pack-1", "o-8").ok
    with pytest.raises(TaskError, match="ни одной единицы"), store.transaction(conn):
        returns.commit(conn, send, "pack-1", "r-2", WAREHOUSE)
    assert not [t for t, _ in outbox(conn) if t in ("stock_delta", "return_received")]


def test_a_return_line_without_a_quantity_is_dead_lettered_not_half_applied(conn) -> None:
    with pytest.raises(inbox.Unusable, match="quantity"), store.transaction(conn):
        inbox.apply_return_expected(conn, {"return_id": "r-3", "order_id": "o-9", "lines": [
            {"item_id": MUG["item_id"], "quantity": "2"}]})
    assert conn.execute("SELECT COUNT(*) FROM returns").fetchone()[0] == 0


def test_the_senior_packer_asks_for_a_hand_over_of_an_account_with_packed_parcels(conn) -> None:
    add(conn, pick_task("a", [(MUG, 1)], account="wb-main"))
    add(conn, pick_task("b", [(BAG, 1)], account="wb-main"))
    with pytest.raises(TaskError, match="нет упакованных"), store.transaction(conn):
        handover.request(conn, send, "wb-main")
    for code in (MUG["barcode"], BAG["barcode"]):
        assert scan(conn, "pack-1", code).kind == "done"
    assert handover.accounts_to_hand_over(conn) == [{"account": "wb-main", "marketplace": "wildberries", "parcels": 2}]
    with store.transaction(conn):
        said = handover.request(conn, send, "wb-main", "Анна")
    assert "2 посылки" in said
    (body,) = [b for t, b in outbox(conn) if t == "handover_request"]
    assert body == {"account": "wb-main", "requested_by": "Анна"}
    check_body("handover_request", body)
    with store.transaction(conn):  # the cloud answers: those parcels are no longer offered
        inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "wildberries", "account": "wb-main",
                                    "order_ids": ["o-a", "o-b"]})
    assert handover.accounts_to_hand_over(conn) == []


def test_the_hand_over_list_counts_parcels_as_a_number(tmp_path) -> None:
    """"ho-mm-main-e40515eb 25": the list showed the length of the JSON text of the order ids."""
    from edge_testkit import edge_config

    from edge_agent.app import handover_list
    from edge_agent.site import Site

    site = Site(edge_config(tmp_path), with_link=False, with_devices=False)
    try:
        with store.transaction(site.conn):
            inbox.apply_handover(site.conn, {"handover_id": "ho-mm-main-e40515eb", "marketplace": "megamarket",
                                             "order_ids": ["9300000000061"]})
        (h,) = handover_list(site)
        assert h["parcels"] == 1 and h["order_ids"] == ["9300000000061"]
    finally:
        site.close()


def _png(text: str) -> str:
    import segno

    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=6)
    return base64.b64encode(buf.getvalue()).decode()


def test_a_marketplace_document_prints_once_and_our_hand_over_list_names_the_parcels(conn, tmp_path) -> None:
    import zxingcpp
    from PIL import Image

    for t in ("a", "b"):
        add(conn, pick_task(t, [(MUG, 1)], account="oz-main", marketplace="ozon"))
        deliver_label(conn, f"o-{t}")
        assert scan(conn, "pack-1", MUG["barcode"]).kind == "done"
    print_waiting(conn, tmp_path)
    with store.transaction(conn):
        inbox.apply_handover(conn, {"handover_id": "h2", "marketplace": "ozon", "account": "oz-main",
                                    "order_ids": ["o-a", "o-b"]})
        station.set_mode(conn, "pack-1", "handover", "h2")
    assert scan(conn, "pack-1", "o-a").ok and scan(conn, "pack-1", "o-b").ok
    with store.transaction(conn):
        handover.close(conn, send, "h2")
    act = json.loads(conn.execute("SELECT payload FROM print_jobs WHERE kind = 'act'").fetchone()[0])
    assert (act["count"], act["numbers"], act["marketplace"]) == (2, ["Na", "Nb"], "ozon")
    sheet = handover.sheet(conn, "h2")
    assert (sheet["count"], [p["number"] for p in sheet["parcels"]], sheet["missing"]) == (2, ["Na", "Nb"], [])
    doc = {"handover_id": "h2", "kind": "supply_qr", "format": "png", "data_b64": _png("WB-GI-777"),
           "title": "QR-код поставки", "width_mm": 58, "height_mm": 40}
    sheet = {"handover_id": "h2", "kind": "act", "format": "pdf", "data_b64": base64.b64encode(b"%PDF-1.4 act").decode(),
             "title": "Акт приёма-передачи", "width_mm": 210, "height_mm": 297}
    check_body("handover_document", doc)
    for _ in range(2):  # sent twice (a lost acknowledgement): printed once
        with store.transaction(conn):
            inbox.apply_handover_document(conn, doc)
        inbox.apply_handover_document(conn, sheet)  # an A4 act: kept for the page, not for the label printer
    with pytest.raises(inbox.Unusable, match="format"), store.transaction(conn):
        inbox.apply_handover_document(conn, {**doc, "kind": "waybill", "format": "docx"})
    kept = conn.execute("SELECT kind, job_id IS NOT NULL FROM documents ORDER BY id").fetchall()
    assert [tuple(r) for r in kept] == [("supply_qr", 1), ("act", 0)]
    printed = print_waiting(conn, tmp_path)
    texts = [{r.text for r in zxingcpp.read_barcodes(Image.open(p).convert("L"))} for p in printed[-2:]]
    assert texts == [{"h2"}, {"WB-GI-777"}]  # our list (its barcode: the hand-over), then the supply's QR
    kinds = [b.get("kind") for t, b in outbox(conn) if t == "printed"]
    assert kinds[-2:] == ["act", "document"]
