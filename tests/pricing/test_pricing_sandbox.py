"""End to end against the real sandboxes (subprocess `marketsync sandbox serve <mp> --port 0 --seed N`,
real HTTP, the real adapters through `open_account`): a price document applied shows its new prices in
the sandbox's `GET /_sandbox/state`."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.money import price_apply, price_docs, price_list, price_preview
from cloud_sync.money.price_list import read_prices
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import AccountConfig
from marketplaces.sandbox.seed import demo_items

SEED = 10


def _tenant(tmp_path, account, marketplace, info):
    conn = open_db(tmp_path / "tenant.sqlite")
    items = demo_items(SEED)
    with transaction(conn):
        for cat in {i.category for i in items}:
            nom.upsert_group(conn, cat, cat)
        nom.upsert_items(conn, [nom.Item(id=i.item_id, name=i.name, article=i.article, group_id=i.category,
                                         barcodes=[i.barcode]) for i in items])
        nom.upsert_price_type(conn, "cost", "Себестоимость", is_cost=True)
        for i in items:
            nom.set_item_price(conn, i.item_id, "cost", i.cost)
    adapter = open_account(AccountConfig(name=account, marketplace=marketplace, base_url=info["url"],
                                         credentials=info["credentials"], options=info.get("options", {})))
    with transaction(conn):
        catalog.import_cards(conn, account, marketplace, list(adapter.list_cards()))
        catalog.auto_link(conn, account)
    read_prices(conn, account, adapter)
    return conn, adapter


# Ozon's cards carry their prices, so a percent change works from what was read back; WB's content API
# gives no prices (and the adapter offers no price read yet), so its document sets absolute prices.
LINES = {
    "ozon": [{"category": "Кружки", "percent": "-10"}],
    "wildberries": [{"category": "Кружки", "price": "333", "discount_percent": "10"}],
}


@pytest.mark.parametrize("marketplace", ["ozon", "wildberries"])
def test_price_document_reaches_the_sandbox(tmp_path, sandbox_process, marketplace):
    info = sandbox_process(marketplace, SEED)
    conn, adapter = _tenant(tmp_path, "acc", marketplace, info)
    if marketplace == "ozon":
        assert price_list.current_prices(conn, "acc"), "no prices were read back from the sandbox"
    doc = price_docs.parse_document({"account": "acc", "lines": LINES[marketplace]})
    pv = price_preview.preview(conn, doc, marketplace=marketplace)
    assert pv.ok, pv.all_errors
    assert pv.changed
    res = price_apply.apply(conn, doc, adapter, confirm=True)
    assert res.status == "applied", [r.error for r in res.failed]
    state = httpx.get(f"{info['url']}/_sandbox/state", timeout=10).json()["prices"]
    for row in pv.changed:
        native = state[str(row.change.card_id)]
        assert Decimal(str(native["price"])) == row.change.price
        if marketplace == "wildberries":
            assert int(native["discount"]) == row.change.discount_percent
        else:
            assert Decimal(str(native["old_price"])) == row.new.old_price
    assert all(h["ok"] for h in price_list.history(conn, "acc"))
    conn.close()


@pytest.mark.parametrize("marketplace", ["yandex_market", "megamarket"])
def test_price_document_reaches_ym_and_mm_sandboxes(tmp_path, sandbox_process, marketplace):
    """YM and MM through their real adapters against their sandboxes (the account ids are the ones the
    sandbox announces): a crossed-out price goes to YM as discountBase; Megamarket takes only the price
    (its crossed-out price comes from the feed)."""
    info = sandbox_process(marketplace, SEED)
    conn, adapter = _tenant(tmp_path, "acc", marketplace, info)
    doc = price_docs.parse_document({"account": "acc", "lines": [
        {"category": "Кружки", "price": "333", "old_price": "400"}]})
    pv = price_preview.preview(conn, doc, marketplace=marketplace)
    assert pv.ok, pv.all_errors
    assert pv.changed
    res = price_apply.apply(conn, doc, adapter, confirm=True)
    assert res.status == "applied", [r.error for r in res.failed]
    state = httpx.get(f"{info['url']}/_sandbox/state", timeout=10).json()
    for row in pv.changed:
        native = state["prices"][row.card.offer_id]
        value = native["price"] if isinstance(native, dict) else native
        assert Decimal(str(value)) == Decimal(333)
        if marketplace == "yandex_market":
            detail = state["business_price_details"][row.card.offer_id]
            assert Decimal(str(detail["discountBase"])) == 400, detail
    conn.close()
