"""Честный знак codes on Ozon: at "assemble" the adapter gets the posting's product items
(`exemplar/create-or-get`), sends their codes (`exemplar/set`), checks them (`exemplar/status`) and only
then packs (`/v4/posting/fbs/ship`); a missing code is refused before anything is sent, and the sandbox
refuses to pack a marked posting without its codes. Real HTTP; every exchange held to the spec."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import MarketplaceError, Order

CODE = "0104607000000011215EirD_orEif7X\x1d91EE12\x1d92VygELprJ87wrc/qF/Vq/KEFUVpZm4vDPQt2kqUw308Y="
SET = "/v6/fbs/posting/product/exemplar/set"
SHIP = "/v4/posting/fbs/ship"


@pytest.fixture
def oz(sandbox_factory, account_for):
    sb = sandbox_factory("ozon", seed=20, time_scale=60, marking=True)
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 30})
    return sb, open_account(account_for(sb))


def _state(sb: Any) -> dict[str, Any]:
    return httpx.get(sb.url + "/_sandbox/state").json()


def _direct(sb: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(sb.url + path, json=body, headers=dict(sb.credentials))


def _split(orders: list[Order]) -> tuple[list[Order], list[Order]]:
    marked = [o for o in orders if any(ln.marking_required for ln in o.lines)]
    plain = [o for o in orders if not any(ln.marking_required for ln in o.lines)]
    assert len(marked) >= 2 and plain, "the seed makes postings of marked goods (Футболки) and others"
    return marked, plain


def test_codes_are_set_on_the_items_before_the_posting_is_packed(oz) -> None:
    sb, adapter = oz
    marked, plain = _split(adapter.new_orders())
    m, p = marked[0], plain[0]
    assert _state(sb)["marks_required"] == sorted(o.native_id for o in marked)
    line = m.lines[0]
    change = adapter.set_order_status(m.native_id, "assemble", marking_codes={line.offer_id: [CODE]})
    assert change.ok and change.native_status == "awaiting_deliver"
    state = _state(sb)
    assert list(state["exemplars"][m.native_id].values()) == [[CODE]]
    assert state["orders"][m.native_id] == "awaiting_deliver"
    check = _direct(sb, "/v5/fbs/posting/product/exemplar/status", {"posting_number": m.native_id}).json()
    assert check["status"] == "update_not_available"  # packed: the items are final
    assert check["products"][0]["exemplars"][0]["marks"][0]["mark"] == CODE

    sets = state["by_path"][SET]
    assert adapter.set_order_status(p.native_id, "assemble").ok  # nothing marked: straight to ship
    assert _state(sb)["by_path"][SET] == sets


def test_a_missing_code_is_refused_before_anything_is_sent(oz) -> None:
    sb, adapter = oz
    marked, _ = _split(adapter.new_orders())
    m = marked[1]
    writes = {k: _state(sb)["by_path"].get(k, 0) for k in (SET, SHIP)}
    with pytest.raises(MarketplaceError, match="marking code"):
        adapter.set_order_status(m.native_id, "assemble")
    with pytest.raises(MarketplaceError, match="marking code"):
        adapter.set_order_status(m.native_id, "assemble", marking_codes={"MS-99999": [CODE]})
    state = _state(sb)
    assert {k: state["by_path"].get(k, 0) for k in (SET, SHIP)} == writes
    assert state["orders"][m.native_id] == "awaiting_packaging" and m.native_id not in state["exemplars"]
    # keyed by the sku the codes go through as well
    assert adapter.set_order_status(m.native_id, "assemble", marking_codes={m.lines[0].native_id: [CODE]}).ok


def test_the_sandbox_refuses_to_pack_a_marked_posting_without_its_codes(oz) -> None:
    sb, adapter = oz
    marked, _ = _split(adapter.new_orders())
    m = marked[0]
    sku = int(m.lines[0].native_id)
    ship = {"posting_number": m.native_id, "packages": [{"products": [{"product_id": sku, "quantity": 1}]}]}
    refused = _direct(sb, SHIP, ship)
    assert refused.status_code == 400 and refused.json()["code"] == 3
    assert "exemplar/set" in refused.json()["message"]

    items = _direct(sb, "/v6/fbs/posting/product/exemplar/create-or-get", {"posting_number": m.native_id}).json()
    (product,) = items["products"]
    assert product["product_id"] == sku and product["is_mandatory_mark_needed"] and len(product["exemplars"]) == 1
    eid = product["exemplars"][0]["exemplar_id"]
    unknown = _direct(sb, SET, {"posting_number": m.native_id,
                                "products": [{"product_id": sku, "exemplars": [{"exemplar_id": 1}]}]})
    assert unknown.status_code == 400
    other_sku = _direct(sb, SET, {"posting_number": m.native_id,
                                  "products": [{"product_id": 1, "exemplars": [{"exemplar_id": eid}]}]})
    assert other_sku.status_code == 400 and "UNKNOWN_PRODUCT_DEFINED" in other_sku.json()["message"]
    no_marks = _direct(sb, SET, {"posting_number": m.native_id,
                                 "products": [{"product_id": sku, "exemplars": [{"exemplar_id": eid}]}]})
    assert no_marks.status_code == 200
    assert _direct(sb, SHIP, ship).status_code == 400  # an item without its mark is still refused
    status = _direct(sb, "/v5/fbs/posting/product/exemplar/status", {"posting_number": m.native_id}).json()
    assert status["status"] == "ship_not_available"
    marks = [{"mark": CODE, "mark_type": "mandatory_mark"}]
    assert _direct(sb, SET, {"posting_number": m.native_id, "products": [
        {"product_id": sku, "exemplars": [{"exemplar_id": eid, "marks": marks}]}]}).status_code == 200
    assert _direct(sb, SHIP, ship).status_code == 200
    assert _state(sb)["orders"][m.native_id] == "awaiting_deliver"


def test_marking_is_off_unless_asked_for(sandbox_factory) -> None:
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 10})
    assert not _state(sb)["marks_required"]  # flows that never scan codes keep packing
    assert httpx.post(sb.url + "/_sandbox/x/marking", json={}).json() == {"mandatory_mark": True}
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 30})
    assert _state(sb)["marks_required"]
