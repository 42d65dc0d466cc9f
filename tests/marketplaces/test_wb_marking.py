"""Честный знак codes on Wildberries: the adapter sends a marked order's code (PUT meta/sgtin) at
"assemble", refuses a missing one before any request, and the sandbox holds a supply with an order
lacking its code back from delivery. Real HTTP to the WB sandbox; every exchange held to the spec."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import MarketplaceError, Order

CODE = "0104607000000011215EirD_orEif7X\x1d91EE12\x1d92VygELprJ87wrc/qF/Vq/KEFUVpZm4vDPQt2kqUw308Y="
OTHER = "0104607000000011215QwErTy12345\x1d91EE12\x1d92AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd="
SGTIN = "/api/v3/orders/{orderId}/meta/sgtin"


@pytest.fixture
def wb(sandbox_factory, account_for):
    sb = sandbox_factory("wildberries", seed=20, time_scale=60, marking=True)
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 40})
    return sb, open_account(account_for(sb))


def _state(sb: Any) -> dict[str, Any]:
    return httpx.get(sb.url + "/_sandbox/state").json()


def _direct(sb: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, sb.url + path, json=body, headers={"Authorization": sb.credentials["Authorization"]})


def _split(orders: list[Order]) -> tuple[list[Order], list[Order]]:
    marked = [o for o in orders if o.lines[0].marking_required]
    plain = [o for o in orders if not o.lines[0].marking_required]
    assert len(marked) >= 3 and plain, "the seed makes orders of marked goods (Футболки) and others"
    return marked, plain


def test_code_is_sent_at_assemble_and_the_supply_then_delivers(wb) -> None:
    sb, adapter = wb
    marked, plain = _split(adapter.new_orders())
    m, p = marked[0], plain[0]
    assert _state(sb)["required_meta"][m.native_id] == ["sgtin"]
    assert adapter.set_order_status(m.native_id, "confirm").ok
    assert adapter.set_order_status(p.native_id, "confirm").ok
    supply = _state(sb)["supplies"]
    (sid,) = [s for s, v in supply.items() if int(m.native_id) in v["orders"]]

    # the sandbox refuses to deliver while the marked order has no code (called directly)
    refused = _direct(sb, "PATCH", f"/api/v3/supplies/{sid}/deliver")
    assert refused.status_code == 409 and refused.json()["code"] == "MetaValidationFail"
    assert [o["id"] for o in refused.json()["data"]["orders"]] == [int(m.native_id)]
    assert _state(sb)["orders"][m.native_id] == "confirm"

    change = adapter.set_order_status(m.native_id, "assemble", marking_codes={m.lines[0].offer_id: [CODE]})
    assert change.ok and change.native["sgtins"] == 1
    assert _state(sb)["sgtins"] == {m.native_id: [CODE]}
    meta = _direct(sb, "POST", "/api/marketplace/v3/orders/meta", {"orders": [int(m.native_id)]}).json()
    assert meta["orders"][0]["metaDetails"] == [{"key": "sgtin", "value": CODE, "decision": "filled"}]

    before = _state(sb)["by_path"].get(SGTIN, 0)
    assert adapter.set_order_status(p.native_id, "assemble").ok  # an unmarked order: nothing to send
    assert _state(sb)["by_path"].get(SGTIN, 0) == before

    shipped = adapter.set_order_status(m.native_id, "ship")
    assert shipped.ok
    state = _state(sb)
    assert state["orders"][m.native_id] == state["orders"][p.native_id] == "complete"


def test_a_missing_code_is_refused_before_any_request(wb) -> None:
    sb, adapter = wb
    marked, _ = _split(adapter.new_orders())
    m = marked[0]
    assert adapter.set_order_status(m.native_id, "confirm").ok
    requests = _state(sb)["requests"]
    with pytest.raises(MarketplaceError, match="marking code"):
        adapter.set_order_status(m.native_id, "assemble", marking_codes={"MS-99999": [CODE]})
    with pytest.raises(MarketplaceError, match="marking code"):
        adapter.set_order_status(m.native_id, "assemble")
    assert _state(sb)["requests"] == requests  # not even the status was read
    # a later ship of its supply is refused by WB, once, with the reason (not re-sent eight times)
    delivers = _state(sb)["by_path"].get("/api/v3/supplies/{supplyId}/deliver", 0)
    ship = adapter.set_order_status(m.native_id, "ship")
    assert not ship.ok and "MetaValidationFail" in ship.error
    assert _state(sb)["by_path"]["/api/v3/supplies/{supplyId}/deliver"] == delivers + 1
    assert _state(sb)["orders"][m.native_id] == "confirm" and not _state(sb)["sgtins"]


def test_an_adapter_that_never_listed_the_order_reads_its_marking_identifiers(wb, account_for) -> None:
    sb, first = wb
    marked, _ = _split(first.new_orders())
    m = marked[1]
    assert first.set_order_status(m.native_id, "confirm").ok
    fresh = open_account(account_for(sb))  # knows nothing of the order: asks WB which identifiers it takes
    sent = _state(sb)["by_path"].get(SGTIN, 0)
    with pytest.raises(MarketplaceError, match="marking code"):
        fresh.set_order_status(m.native_id, "assemble")
    assert _state(sb)["by_path"].get(SGTIN, 0) == sent
    assert fresh.set_order_status(m.native_id, "assemble", marking_codes={m.lines[0].card_id: [OTHER]}).ok
    assert _state(sb)["sgtins"][m.native_id] == [OTHER]
    assert fresh.set_order_status(m.native_id, "ship").ok


def test_the_sandbox_answers_sgtin_as_the_spec_says(wb) -> None:
    sb, adapter = wb
    marked, plain = _split(adapter.new_orders())
    m, p = marked[2], plain[0]
    wrong_status = _direct(sb, "PUT", f"/api/v3/orders/{m.native_id}/meta/sgtin", {"sgtins": [CODE]})
    assert wrong_status.status_code == 409 and wrong_status.json()["code"] == "FailedToUpdateMeta"  # still new
    assert adapter.set_order_status(p.native_id, "confirm").ok
    not_marked = _direct(sb, "PUT", f"/api/v3/orders/{p.native_id}/meta/sgtin", {"sgtins": [CODE]})
    assert not_marked.status_code == 409 and not_marked.json()["code"] == "MetaKeyNotRequired"
    assert adapter.set_order_status(m.native_id, "confirm").ok
    empty = _direct(sb, "PUT", f"/api/v3/orders/{m.native_id}/meta/sgtin", {"sgtins": []})
    assert empty.status_code == 400  # minItems 1
    short = _direct(sb, "PUT", f"/api/v3/orders/{m.native_id}/meta/sgtin", {"sgtins": ["0104607"]})
    assert short.status_code == 400 and short.json()["code"] == "IncorrectRequestBody"
    unknown = _direct(sb, "PUT", "/api/v3/orders/1/meta/sgtin", {"sgtins": [CODE]})
    assert unknown.status_code == 404
    assert not _state(sb)["sgtins"]


def test_marking_is_off_unless_asked_for(sandbox_factory, account_for) -> None:
    sb = sandbox_factory("wildberries", seed=20, time_scale=60)
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 10})
    assert not _state(sb)["required_meta"]  # flows that never scan codes keep delivering
    assert httpx.post(sb.url + "/_sandbox/x/marking", json={"sgtin": True}).json() == {"sgtin": True}
    httpx.post(sb.url + "/_sandbox/orders", json={"count": 30})
    required = _state(sb)["required_meta"]
    assert required and all(v == ["sgtin"] for v in required.values())
