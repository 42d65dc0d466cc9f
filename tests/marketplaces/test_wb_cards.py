"""Creating a Wildberries card the way WB takes it: subject tree, the subject's characteristics, required
ones enforced by the sandbox as by WB, the asynchronous result and the error list followed to the end,
photos through the media API. Real HTTP to the WB sandbox; every exchange held to the official spec."""

from __future__ import annotations

import time

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import Card, NewCard

MUG = 1367  # «Кружки»: Цвет, Материал изделия, Объем (мл) required
FILLED = [{"id": 14177449, "value": ["белый"]}, {"id": 12, "value": ["керамика"]}, {"id": 90630, "value": 350}]
DIMS = {"length": 12, "width": 9, "height": 10, "weightBrutto": 0.42}


@pytest.fixture
def wb(sandbox_factory, account_for):
    sb = sandbox_factory("wildberries", seed=5, time_scale=60)
    return sb, open_account(account_for(sb))


def _settled(adapter, offer_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = adapter.card_creation_status(offer_id)
        if got.state != "pending":
            return got
        time.sleep(0.05)
    raise AssertionError(f"card {offer_id} still pending after {timeout}s")


def test_subject_tree_and_characteristics(wb) -> None:
    _, adapter = wb
    found = adapter.categories("круж")
    assert [(c.id, c.name, c.parent_name) for c in found] == [("1367", "Кружки", "Дом")]
    assert {c.name for c in adapter.categories()} >= {"Футболки", "Кружки", "Рюкзаки", "Носки", "Чехлы для телефонов"}
    attrs = {a.name: a for a in adapter.category_attributes("1367")}
    assert attrs["Объем"].required and attrs["Объем"].kind == "number" and attrs["Объем"].unit == "мл"
    assert attrs["Цвет"].required and attrs["Цвет"].kind == "strings" and attrs["Цвет"].max_count == 5
    assert not attrs["Страна производства"].required


def test_a_card_without_its_required_characteristics_is_refused_naming_them(wb) -> None:
    sb, adapter = wb
    got = adapter.create_card(NewCard(offer_id="NEW-1", title="Кружка", subject_id=MUG,
                                      characteristics=[{"id": 14177449, "value": ["белый"]}], dimensions=DIMS))
    assert got.state == "failed"
    assert got.errors == ["Wildberries: не заполнены обязательные характеристики: Материал изделия, Объем"]
    assert "NEW-1" not in {c.offer_id for c in adapter.list_cards()}
    unknown = adapter.create_card(NewCard(offer_id="NEW-2", title="Кружка", subject_id=999999))
    assert unknown.state == "failed" and unknown.errors == ["Wildberries: предмета 999999 не существует"]


def test_a_full_card_is_created_asynchronously_and_gets_its_photos(wb) -> None:
    sb, adapter = wb
    httpx.post(sb.url + "/_sandbox/x/card_delay", json={"seconds": 30})  # half a second at this time scale
    new = NewCard(offer_id="NEW-10", title="Кружка с котом", subject_id=MUG, brand="MarketSync Demo",
                  description="Кружка керамическая 350 мл", characteristics=FILLED, dimensions=DIMS,
                  sizes=[{"techSize": "0", "wbSize": "", "price": 790, "skus": ["4607099999908"]}])
    assert adapter.create_card(new).state == "pending"
    assert adapter.card_creation_status("NEW-10").state == "pending"  # WB has not processed it yet
    done = _settled(adapter, "NEW-10")
    assert done.state == "created", done.errors
    card = done.card
    assert card.barcodes == ["4607099999908"] and card.category == "Кружки"
    assert card.native["dimensions"] == dict(DIMS, isValid=True)
    assert {c["name"]: c["value"] for c in card.native["characteristics"]} == {
        "Цвет": ["белый"], "Материал изделия": ["керамика"], "Объем": 350}
    urls = ["https://cdn.example.org/mug/1.jpg", "https://cdn.example.org/mug/2.webp"]
    adapter.add_photos(card, urls)
    again = next(c for c in adapter.list_cards() if c.offer_id == "NEW-10")
    assert [p["big"] for p in again.native["photos"]] == urls


def test_a_wrong_value_reaches_the_seller_through_the_error_list(wb) -> None:
    sb, adapter = wb
    wrong = [dict(c) for c in FILLED]
    wrong[2] = {"id": 90630, "value": ["триста"]}  # Объем is a number
    assert adapter.create_card(NewCard(offer_id="NEW-20", title="Кружка", subject_id=MUG, characteristics=wrong,
                                       dimensions=DIMS)).state == "pending"
    failed = _settled(adapter, "NEW-20")
    assert failed.state == "failed" and failed.errors == ["Характеристика «Объем» должна быть числом"]
    # corrected and sent again: the card leaves the error list and is created
    adapter.create_card(NewCard(offer_id="NEW-20", title="Кружка", subject_id=MUG, characteristics=FILLED,
                                dimensions=DIMS))
    time.sleep(0.1)
    assert _settled(adapter, "NEW-20").state == "created"


def test_the_error_list_is_followed_page_by_page_to_the_end(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("wildberries", seed=5, time_scale=60)
    adapter = open_account(account_for(sb, endpoints={"card_errors": {"batch": 2}}))
    for n in range(5):  # five cards whose dimensions WB refuses: five batches in the error list
        adapter.create_card(NewCard(offer_id=f"BAD-{n}", title="Кружка", subject_id=MUG, characteristics=FILLED,
                                    dimensions={"length": 0, "width": 9, "height": 10, "weightBrutto": 0.4}))
    time.sleep(0.1)
    errors = adapter.card_errors()
    assert sorted(errors) == [f"BAD-{n}" for n in range(5)]
    assert errors["BAD-4"] == ["Габариты: Длина упаковки должна быть целым числом сантиметров больше 0"]
    pages = httpx.get(sb.url + "/_sandbox/state").json()["by_path"]["/content/v2/cards/error/list"]
    assert pages == 3  # 2 + 2 + 1


def test_photos_that_are_not_direct_links_are_refused(wb) -> None:
    sb, adapter = wb
    card = next(iter(adapter.list_cards()))
    with pytest.raises(Exception, match="400"):
        adapter.add_photos(card, ["https://cdn.example.org/page.html"])
    assert isinstance(card, Card)


def test_a_card_of_marked_goods_confirms_its_code(wb) -> None:
    """Футболки carry a Честный знак code: WB's moderation refuses a card that does not confirm it (kizMarked)."""
    _, adapter = wb
    shirt = [{"id": 14177449, "value": ["белый"]}, {"id": 17596, "value": ["хлопок 100%"]},
             {"id": 14177450, "value": ["Мужской"]}]
    adapter.create_card(NewCard(offer_id="TS-1", title="Футболка", subject_id=192, characteristics=shirt,
                                dimensions=DIMS))
    refused = _settled(adapter, "TS-1")
    assert refused.state == "failed"
    assert refused.errors == ["Товар подлежит маркировке: подтвердите, что код Честного знака нанесён (kizMarked)"]
    adapter.create_card(NewCard(offer_id="TS-1", title="Футболка", subject_id=192, characteristics=shirt,
                                dimensions=DIMS, marked=True))
    time.sleep(0.1)  # processed (2 s of marketplace time); until then the old error is still listed
    made = _settled(adapter, "TS-1")
    assert made.state == "created" and made.card.native["needKiz"] and made.card.native["kizMarked"]


def test_a_re_sent_card_is_pending_not_failed_by_its_old_errors(wb) -> None:
    """Until WB has processed a corrected re-send, the error list still holds the first upload's errors:
    those listed before the re-send are stale and the card reads pending, then created."""
    sb, adapter = wb
    wrong = [dict(c) for c in FILLED]
    wrong[2] = {"id": 90630, "value": ["триста"]}
    adapter.create_card(NewCard(offer_id="NEW-30", title="Кружка", subject_id=MUG, characteristics=wrong,
                                dimensions=DIMS))
    assert _settled(adapter, "NEW-30").state == "failed"
    time.sleep(1.2)  # WB lists errors to the second
    httpx.post(sb.url + "/_sandbox/x/card_delay", json={"seconds": 60})  # a second at this time scale
    adapter.create_card(NewCard(offer_id="NEW-30", title="Кружка", subject_id=MUG, characteristics=FILLED,
                                dimensions=DIMS))
    assert adapter.card_creation_status("NEW-30").state == "pending"
    assert _settled(adapter, "NEW-30").state == "created"
