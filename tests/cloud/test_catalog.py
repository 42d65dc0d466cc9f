"""The linked catalog: auto-link by barcode then article, ambiguity and suggestions, manual links, packs,
hiding, Wildberries card creation followed to the end."""

from __future__ import annotations

import pytest

from cloud_sync.catalog import card_fill, nomenclature
from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.stock import push as stock_push
from marketplaces.base import Card, CardCreation

from .conftest import seed


def _items(conn):
    with transaction(conn):
        nomenclature.upsert_items(conn, [
            nomenclature.Item(id="I1", name="Кружка белая", article="MUG-1", barcodes=["4600000000011"]),
            nomenclature.Item(id="I2", name="Кружка чёрная", article="MUG-2", barcodes=["4600000000028"]),
            nomenclature.Item(id="I3", name="Кружка синяя", article="MUG-3", barcodes=["4600000000035"]),
            nomenclature.Item(id="I4", name="Кружка синяя, набор", article="MUG-3", barcodes=[]),  # same article
        ])


def test_link_by_barcode_then_article_and_report_the_rest(conn):
    _items(conn)
    with transaction(conn):
        catalog.import_cards(conn, "wb", "wildberries", [
            Card("c1", "ANY-1", barcodes=["4600000000011"], category="Кружки"),  # barcode wins over article
            Card("c2", "MUG-2", barcodes=[], category="Кружки"),  # by article
            Card("c3", "MUG-3", barcodes=[], category="Кружки"),  # article of two items: ambiguous
            Card("c4", "MUG-22", title="Кружка чёрная", category="Посуда"),  # nothing: suggestions
        ])
        report = catalog.auto_link(conn)
    assert (report.linked_by_barcode, report.linked_by_article) == (1, 1)
    assert [(p.card_id, sorted(p.candidates)) for p in report.ambiguous] == [("c3", ["I3", "I4"])]
    assert [p.card_id for p in report.unmatched] == ["c4"] and report.unmatched[0].candidates[0] == "I2"
    links = {c.card_id: (c.item_id, c.link_source) for c in catalog.cards(conn, account="wb")}
    assert links["c1"] == ("I1", "barcode") and links["c2"] == ("I2", "article") and links["c3"][0] is None
    assert catalog.categories(conn, "wb") == {"Кружки": 3, "Посуда": 1}


def test_reimport_keeps_links_and_manual_unlink_sticks(conn):
    _items(conn)
    with transaction(conn):
        catalog.import_cards(conn, "oz", "ozon", [Card("c1", "MUG-1", barcodes=["4600000000011"])])
        catalog.auto_link(conn)
        catalog.import_cards(conn, "oz", "ozon", [Card("c1", "MUG-1", title="new title", barcodes=["4600000000011"])])
    assert catalog.card(conn, "oz", "c1").item_id == "I1"
    with transaction(conn):
        catalog.unlink(conn, "oz", "c1")
        report = catalog.auto_link(conn)
    assert catalog.card(conn, "oz", "c1").item_id is None and report.unmatched[0].reason == "unlinked by hand"
    with transaction(conn):
        catalog.link(conn, "oz", "c1", "I3", pack=6)
    c = catalog.card(conn, "oz", "c1")
    assert (c.item_id, c.pack, c.link_source) == ("I3", 6, "manual")


def test_bad_links_are_refused(conn):
    _items(conn)
    with transaction(conn):
        catalog.import_cards(conn, "oz", "ozon", [Card("c1", "MUG-1")])
    for args, msg in ((("oz", "c1", "nope"), "unknown item"), (("oz", "zz", "I1"), "unknown card")):
        with pytest.raises(catalog.CatalogError, match=msg), transaction(conn):
            catalog.link(conn, *args)
    with pytest.raises(catalog.CatalogError, match="pack"), transaction(conn):
        catalog.link(conn, "oz", "c1", "I1", pack=0)


def test_hiding_zeroes_stock_first_and_publishes_zero(conn, cfg, windows):
    seed(conn, 2)
    with transaction(conn):
        catalog.record_warehouses(conn, "wb", [("10", "FBS", "fbs", "main")])
        catalog.set_visibility(conn, windows["wb"], "wb", ["wb-1"], False)
    assert windows["wb"].pushes[0][0].quantity == 0  # zero went out before the card was hidden
    stock_push.plan(conn, cfg)
    assert conn.execute("SELECT quantity FROM stock_push_queue WHERE account='wb' AND card_id='wb-1'").fetchone()[0] == 0
    with transaction(conn):
        catalog.set_visibility(conn, windows["wb"], "wb", ["wb-1"], True)
    stock_push.plan(conn, cfg)
    assert conn.execute("SELECT quantity FROM stock_push_queue WHERE account='wb' AND card_id='wb-1'").fetchone()[0] == 25


class CardFactory:
    """Answers like WB's asynchronous card creation: pending first, then created (or failed)."""

    name, account = "wildberries", "wb"

    def __init__(self, outcome: str) -> None:
        self.outcome, self.asked, self.created = outcome, 0, None

    def create_card(self, new):
        self.created = new
        return CardCreation(new.offer_id, "pending")

    def card_creation_status(self, offer_id):
        self.asked += 1
        if self.asked < 2:
            return CardCreation(offer_id, "pending")
        if self.outcome == "failed":
            return CardCreation(offer_id, "failed", ["Недопустимое значение характеристики Цвет"])
        return CardCreation(offer_id, "created", card=Card("777", offer_id, barcodes=self.created.sizes[0]["skus"]))


@pytest.mark.parametrize("outcome", ["created", "failed"])
def test_wb_card_creation_followed_to_the_end(conn, outcome):
    _items(conn)
    dims = {"Длина": "12", "Ширина": "9", "Высота": "10", "Вес": "0.4"}
    wb = CardFactory(outcome)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id="I1", name="Кружка белая", article="MUG-1",
                                                           barcodes=["4600000000011"], properties=dims)])
        new = card_fill.new_card(conn, "wildberries", "I1", "1367", [], brand="Demo", price=590)
        catalog.create_card(conn, wb, "wb", "I1", new)
    assert new.offer_id == "MUG-1" and new.sizes[0]["skus"] == ["4600000000011"]
    for _ in range(2):
        with transaction(conn):
            catalog.follow_creations(conn, wb, "wb")
    state = catalog.creations(conn, "wb")[0]
    assert state["state"] == outcome
    if outcome == "created":
        assert catalog.card(conn, "wb", "777").item_id == "I1"
    else:
        assert "Цвет" in state["errors"]
