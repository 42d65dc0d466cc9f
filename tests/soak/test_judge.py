"""The soak's judge on small crafted evidence: a clean day gives zeros, and each defect it exists to find
is found and named (so a soak cannot pass because its judge looks at nothing)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from PIL import Image

from edge_agent.barcodes import symbol_image
from marketsync.soak import _counted
from marketsync.soak_judge import (
    KEYS,
    Evidence,
    final_state,
    judge,
    order_finals,
    order_of_label,
    order_ref,
    read_labels,
    summary_line,
)

WB, MM = "wb-main:5000000001", "mm-main:9300000000001"


def clean() -> Evidence:
    """Two orders, both shipped, labelled once before their hand-over; ledger, listing and link right."""
    return Evidence(
        placed={WB: "complete", MM: "SHIPPED"},
        marketplace_of={WB: "wildberries", MM: "megamarket"},
        moves={WB: ["new", "confirm", "complete"], MM: ["0:CONFIRMED", "0:PACKED", "0:SHIPPED"]},
        supplies={"wb-main:WB-GI-1": [WB]},
        in_cloud={WB, MM},
        units={WB: {("i1", "wh"): 1}, MM: {("i2", "wh"): 2}},
        site_tasks={WB: 1, MM: 1},
        handed_over={WB: 100.0, MM: 101.0},
        site_moved={WB: {"i1": -1}, MM: {"i2": -2}},
        cloud_moved={WB: {"i1": -1}, MM: {"i2": -2}},
        picked={WB: {"i1": 1}, MM: {"i2": 2}},
        shelf={("i1", "wh"): -1, ("i2", "wh"): -2},
        site_warehouse="wh",
        labels={WB: [("a.png", 90.0)], MM: [("b.png", 95.0)]},
        onec={("i1", "wh"): 5, ("i2", "wh"): 5},
        on_hand={("i1", "wh"): 4, ("i2", "wh"): 3},
        published={("wb-main", "c1", "700001"): 4, ("mm-main", "c2", "1"): 3},
        shown={("wb-main", "c1", "700001"): 4, ("mm-main", "c2", "1"): 3},
        outbox={"cloud": 0, "site": 0},
        dead_letters={"cloud": 2, "site": 1},
        injected_malformed={"cloud": 2, "site": 1},
        gaps={"cloud": 0, "site": 0},
        faults=9,
    )


def test_a_clean_day_gives_zeros() -> None:
    v = judge(clean())
    assert v.clean and v.lines == []
    assert v.counts == {"orders": 2, "lost": 0, "duplicated": 0, "stuck": 0, "mislisted": 0, "labels_twice": 0,
                        "faults": 9}
    assert list(__import__("json").loads(summary_line(v))) == list(KEYS)


def _only(ev: Evidence, key: str, n: int = 1) -> list[str]:
    v = judge(ev)
    others = {k: c for k, c in v.counts.items() if k not in (key, "orders", "faults") and c}
    assert v.counts[key] == n and not others, (v.counts, v.lines)
    assert not v.clean
    return v.lines


def test_a_label_printed_twice() -> None:
    ev = clean()
    ev.labels[WB].append(("c.png", 92.0))
    (line,) = _only(ev, "labels_twice")
    assert WB in line and "c.png" in line


def test_a_parcel_handed_over_before_its_label_or_without_one() -> None:
    ev = clean()
    ev.handed_over[WB] = 80.0  # label printed at 90
    assert WB in _only(ev, "labels_twice")[0]
    ev = clean()
    del ev.labels[MM]
    assert MM in _only(ev, "labels_twice")[0]
    ev = clean()
    ev.part_files = ["/x/20261206-0001-printer.png.part"]
    assert "printer.png.part" in _only(ev, "labels_twice")[0]


def test_a_mislisted_card() -> None:
    ev = clean()
    ev.shown[("wb-main", "c1", "700001")] = 3  # the marketplace took one off its own stock
    (line,) = _only(ev, "mislisted")
    assert "wb-main/c1@700001" in line and "3" in line and "4" in line
    ev = clean()
    ev.shown[("mm-main", "c2", "1")] = None  # not there at all
    _only(ev, "mislisted")


def test_a_parcel_handed_over_but_never_shipped_is_lost_and_one_still_at_the_site_is_stuck() -> None:
    ev = clean()
    ev.placed[MM] = "PACKED"
    assert MM in _only(ev, "lost")[0]
    ev = clean()
    ev.placed[MM] = "PACKED"
    del ev.handed_over[MM]
    assert MM in _only(ev, "stuck")[0]


def test_an_order_short_of_stock_waits_for_the_seller_and_is_told_not_counted() -> None:
    ev = clean()
    ev.placed[MM], ev.moves[MM] = "NEW", []
    del ev.handed_over[MM]
    ev.units.pop(MM)
    ev.site_moved.pop(MM)
    ev.cloud_moved.pop(MM)
    ev.picked.pop(MM)
    ev.shelf.pop(("i2", "wh"))
    ev.labels.pop(MM)
    ev.on_hand[("i2", "wh")] = 5
    ev.short = {MM}
    v = judge(ev)
    assert v.clean and len(v.lines) == 1 and MM in v.lines[0]
    ev.short = set()
    assert MM in _only(ev, "stuck")[0]


def test_an_order_that_never_reached_the_cloud_is_lost() -> None:
    ev = clean()
    ev.placed["ozon-main:40000001-0001-1"] = "awaiting_packaging"
    ev.marketplace_of["ozon-main:40000001-0001-1"] = "ozon"
    assert "40000001-0001-1" in _only(ev, "lost")[0]


def test_a_marketplace_action_done_twice() -> None:
    ev = clean()
    ev.moves[MM] = ["0:CONFIRMED", "0:PACKED", "0:PACKED", "0:SHIPPED"]
    (line,) = _only(ev, "duplicated")
    assert MM in line and "0:PACKED" in line
    ev = clean()
    ev.supplies["wb-main:WB-GI-2"] = [WB]
    _only(ev, "duplicated")


def test_a_pick_applied_twice_by_the_cloud() -> None:
    ev = clean()
    ev.cloud_moved[MM] = {"i2": -3}  # a replay with a new seq applied again
    ev.on_hand[("i2", "wh")] = 2
    lines = _only(ev, "duplicated", 2)  # the order's move and the item's balance
    assert any(MM in line for line in lines) and any("i2@wh" in line for line in lines)


def test_a_site_move_that_never_reached_the_ledger() -> None:
    ev = clean()
    ev.cloud_moved.pop(WB)
    ev.on_hand[("i1", "wh")] = 5
    _only(ev, "lost", 2)


def test_the_link_left_messages_gaps_or_unexpected_dead_letters() -> None:
    ev = clean()
    ev.outbox["site"] = 3
    _only(ev, "stuck", 3)
    ev = clean()
    ev.gaps["cloud"] = 1
    _only(ev, "stuck")
    ev = clean()
    ev.dead_letters["cloud"] = 4  # two real messages were dead-lettered
    _only(ev, "lost", 2)


@pytest.mark.parametrize("mp,status,final", [
    ("wildberries", "complete", "shipped"), ("wildberries", "confirm", None), ("wildberries", "cancel", "cancelled"),
    ("ozon", "delivering", "shipped"), ("ozon", "awaiting_deliver", None), ("ozon", "cancelled", "cancelled"),
    ("yandex_market", "PROCESSING/SHIPPED", "shipped"), ("yandex_market", "PROCESSING/READY_TO_SHIP", None),
    ("yandex_market", "CANCELLED/USER_CHANGED_MIND", "cancelled"),
    ("megamarket", "SHIPPED", "shipped"), ("megamarket", "PACKED", None), ("megamarket", "CUSTOMER_CANCELED", "cancelled"),
])
def test_final_states(mp: str, status: str, final: str | None) -> None:
    assert final_state(mp, status) == final


def test_labels_are_read_back_from_the_printed_files(tmp_path: Path) -> None:
    """Each file is decoded and given to its order; acts and QR codes of no order are not labels."""
    texts = {"1.png": ["5000000001"], "2.png": ["5001234*9300000000001*1"], "3.png": ["ho-mm-main-1"],
             "4.png": ["5000000001"]}
    for name in texts:
        Image.new("1", (4, 4)).save(tmp_path / name)
    (tmp_path / "5.png.part").write_bytes(b"")
    labels, parts = read_labels(tmp_path, {}, [WB, MM], decode=lambda p: texts[Path(p).name])
    assert sorted(Path(f).name for f, _ in labels[WB]) == ["1.png", "4.png"]
    assert [Path(f).name for f, _ in labels[MM]] == ["2.png"]
    assert [Path(p).name for p in parts] == ["5.png.part"]
    assert order_of_label(["x"], {"x": MM}, {}) == MM


def test_the_evidence_is_not_shared_between_calls() -> None:
    ev = clean()
    before = copy.deepcopy(ev)
    judge(ev)
    assert ev == before


def test_real_label_files_are_decoded_to_their_orders(tmp_path: Path) -> None:
    """The edge's own decoder reads the printed pictures: a WB sticker printed twice and a Megamarket
    label (its barcode holds the shipment id) are found, the white margin keeps them readable."""
    def label(name: str, text: str) -> None:
        img = symbol_image("code128", text, 3, 120)
        page = Image.new("L", (img.width + 80, img.height + 80), 255)
        page.paste(img.convert("L"), (40, 40))
        page.save(tmp_path / name)

    label("a.png", "5000000001")
    label("b.png", "5001234*9300000000001*1")
    label("c.png", "5000000001")
    label("d.png", "ho-mm-main-1")
    labels, parts = read_labels(tmp_path, {}, [WB, MM])
    assert {o: sorted(Path(f).name for f, _ in files) for o, files in labels.items()} == {
        WB: ["a.png", "c.png"], MM: ["b.png"]}
    assert parts == []


def test_after_the_hand_over_an_order_stays_shipped_whatever_becomes_of_it() -> None:
    """Delivered, cancelled on its way, not accepted, returned: the marketplace took the parcel (its fate
    was drawn at the hand-over), so the order is shipped — not lost, not stuck."""
    state = {"orders": {"1": "RETURNED/DELIVERED_USER_RECEIVED", "2": "CANCELLED/USER_CHANGED_MIND",
                        "3": "PROCESSING/READY_TO_SHIP", "4": "CANCELLED/USER_REFUSED_DELIVERY"},
             "after_handover": {"fates": {"1": "returned", "4": "cancelled"}}}
    assert order_finals("yandex_market", state) == {"1": "shipped", "2": "cancelled", "3": None, "4": "shipped"}
    ev = clean()
    ev.placed[MM] = "CUSTOMER_CANCELED"
    ev.went_out = {WB, MM}
    assert judge(ev).clean
    ev.went_out = {WB}
    ev.placed[MM] = "PACKED"  # handed over at the site, never taken by the marketplace
    assert MM in _only(ev, "lost")[0]


def test_returns_write_offs_and_reissued_tasks_are_the_ledger_s_own_moves() -> None:
    """A unit not found (written off, the task issued again), a return back on the shelf and a defective
    one kept apart: the ledger follows the site's moves, nothing is counted as a defect."""
    ev = clean()
    ev.site_moved[MM] = {"i2": -2}  # written off 1, picked 2, 1 returned fit, 1 returned defective: net -2
    ev.cloud_moved[MM] = {"i2": -2}
    ev.shelf = {("i1", "wh"): -1, ("i2", "wh"): -2, ("i2", "wh:defect"): 1}
    ev.on_hand = {("i1", "wh"): 4, ("i2", "wh"): 3, ("i2", "wh:defect"): 1}
    assert judge(ev).clean
    ev.on_hand[("i2", "wh:defect")] = 0  # the defective unit never reached the ledger
    assert "i2@wh:defect" in _only(ev, "duplicated")[0]
    ev = clean()
    ev.picked[MM] = {"i2": 1}  # the courier took two units, one was picked
    assert MM in _only(ev, "lost")[0]
    assert order_ref("mm-main:9300000000002#1") == "mm-main:9300000000002"


def test_the_clean_verdict_counts_in_russian_plural_forms():
    """«без дефектов: 94 заказов» read wrong: the word follows the count."""
    assert [_counted(n, "заказ", "заказа", "заказов") for n in (1, 3, 11, 21, 94, 105)] == [
        "1 заказ", "3 заказа", "11 заказов", "21 заказ", "94 заказа", "105 заказов"]
