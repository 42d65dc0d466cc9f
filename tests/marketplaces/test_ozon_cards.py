"""Creating an Ozon product the way Ozon takes it: the category tree, the type's attributes, dictionary
values looked up, `/v3/product/import` followed through `/v1/product/import/info` to its end, pictures.
Real HTTP to the Ozon sandbox; every exchange held to the official spec."""

from __future__ import annotations

import time

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import NewCard

MUG = "17030267:91367"  # «Посуда» / «Кружки»: Бренд, Название модели, Цвет товара, Материал, Объем, мл required
DIMS = {"length": 12, "width": 9, "height": 10, "weightBrutto": 0.42}


@pytest.fixture
def oz(sandbox_factory, account_for):
    sb = sandbox_factory("ozon", seed=5, time_scale=60)
    return sb, open_account(account_for(sb))


def _filled(adapter) -> list[dict]:
    a = {x.name: x.id for x in adapter.category_attributes(MUG)}
    return [{"id": a["Бренд"], "value": ["MarketSync Demo"]}, {"id": a["Название модели (для объединения в одну карточку)"],
                                                             "value": ["Кружка 350"]},
            {"id": a["Цвет товара"], "value": ["чёрный", "белый"]}, {"id": a["Материал"], "value": ["керамика"]},
            {"id": a["Объем, мл"], "value": 350}]


def _settled(adapter, offer_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = adapter.card_creation_status(offer_id)
        if got.state != "pending":
            return got
        time.sleep(0.05)
    raise AssertionError(f"{offer_id} still pending")


def test_category_tree_and_attributes(oz) -> None:
    _, adapter = oz
    found = adapter.categories("круж")
    assert [(c.id, c.name, c.parent_name) for c in found] == [(MUG, "Кружки", "Посуда")]
    attrs = {a.name: a for a in adapter.category_attributes(MUG)}
    assert attrs["Цвет товара"].required and attrs["Цвет товара"].dictionary and attrs["Цвет товара"].max_count == 5
    assert attrs["Объем, мл"].kind == "number" and not attrs["Объем, мл"].dictionary
    assert not attrs["Страна-изготовитель"].required


def test_a_product_is_imported_and_followed_to_created(oz) -> None:
    sb, adapter = oz
    httpx.post(sb.url + "/_sandbox/x/import_delay", json={"seconds": 120})  # two seconds here: seen pending on a busy box
    photos = ["https://cdn.example.org/mug/1.jpg", "https://cdn.example.org/mug/2.png"]
    new = NewCard(offer_id="OZ-NEW-1", title="Кружка с котом", subject_id=0, category_id=MUG,
                  characteristics=_filled(adapter), dimensions=DIMS, photos=photos,
                  sizes=[{"techSize": "0", "wbSize": "", "price": 790, "skus": ["4607099999915"]}])
    assert adapter.create_card(new).state == "pending"
    assert adapter.card_creation_status("OZ-NEW-1").state == "pending"
    done = _settled(adapter, "OZ-NEW-1")
    assert done.state == "created", done.errors
    assert done.card.barcodes == ["4607099999915"] and done.card.photos == photos
    product = sb.app.products[int(done.card.native_id)]
    assert product["dimensions"] == {"depth": 120, "width": 90, "height": 100, "dimension_unit": "mm",
                                     "weight": 420, "weight_unit": "g"}
    colour = next(a for a in product["attributes"] if a["id"] == 10096)
    assert [v["dictionary_value_id"] for v in colour["values"]] == [61574, 61571]  # «чёрный» found as «черный»
    adapter.add_photos(done.card, photos[:1])
    assert sb.app.products[int(done.card.native_id)]["images"] == photos[:1]


def test_missing_or_wrong_attributes_come_back_in_words(oz) -> None:
    sb, adapter = oz
    filled = _filled(adapter)
    not_in_dictionary = [dict(c) for c in filled]
    not_in_dictionary[2] = {"id": 10096, "value": ["бирюзовый"]}
    before = sb.app.state()["by_path"].get("/v3/product/import", 0)
    refused = adapter.create_card(NewCard(offer_id="OZ-2", title="Кружка", subject_id=0, category_id=MUG,
                                          characteristics=not_in_dictionary, dimensions=DIMS,
                                          sizes=[{"price": 500, "skus": []}]))
    assert refused.state == "failed"
    assert refused.errors == ["Ozon: значения «бирюзовый» нет в справочнике характеристики «Цвет товара»"]
    assert sb.app.state()["by_path"].get("/v3/product/import", 0) == before  # nothing was sent
    lacking = [c for c in filled if c["id"] != 8415]  # no «Объем, мл»
    assert adapter.create_card(NewCard(offer_id="OZ-3", title="Кружка", subject_id=0, category_id=MUG,
                                       characteristics=lacking, dimensions=DIMS,
                                       photos=["https://cdn.example.org/a.gif"],
                                       sizes=[{"price": 500, "skus": []}])).state == "pending"
    failed = _settled(adapter, "OZ-3")
    assert failed.state == "failed"
    assert failed.errors == ["Ozon: «Объем, мл»: Не заполнена обязательная характеристика «Объем, мл»",
                             "Ozon: images: Изображение должно быть ссылкой на JPG или PNG: https://cdn.example.org/a.gif"]


def test_a_restarted_cloud_reads_the_product_itself(oz, account_for) -> None:
    sb, adapter = oz
    adapter.create_card(NewCard(offer_id="OZ-4", title="Кружка", subject_id=0, category_id=MUG,
                                characteristics=_filled(adapter), dimensions=DIMS, sizes=[{"price": 500, "skus": []}]))
    time.sleep(0.1)
    other = open_account(account_for(sb, name="after-restart"))  # knows no import task
    got = _settled(other, "OZ-4")
    assert got.state == "created" and got.card.offer_id == "OZ-4"
