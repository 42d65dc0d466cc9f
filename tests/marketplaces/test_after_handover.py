"""Orders after the hand-over, over real HTTP with the `contract` fixture on (every request and answer
checked against the official spec both ways): each sandbox moves a handed-over parcel to its fate
(delivered, cancelled on the way, not accepted, returned) in marketplace time, at seeded rates or as
forced; each adapter reads those statuses (`order_statuses`) and, where the marketplace has a returns
list (Ozon `/v1/returns/list`, Yandex.Market `getReturns`), the returns; the profiles map every status
reached to a unified one. The new reads give the same under 429s, 5xx and lost replies, and a malformed
answer is a typed error."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from marketplaces import open_account, profile
from marketplaces.base import BadResponse, NotSupported
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.yandex_market_spec import register

register()
register_schemas()

MARKETS = ("wildberries", "ozon", "yandex_market", "megamarket")
FATES = ("delivered", "cancelled", "not_accepted", "returned")
# the unified status each fate ends in, per marketplace (Megamarket and WB have no return after delivery:
# the buyer's refusal at pick-up brings the parcel back)
ENDS = {
    "wildberries": {"delivered": "delivered", "cancelled": "cancelled", "not_accepted": "returned",
                    "returned": "returned"},
    "ozon": {"delivered": "delivered", "cancelled": "cancelled", "not_accepted": "returned", "returned": "delivered"},
    "yandex_market": {"delivered": "delivered", "cancelled": "cancelled", "not_accepted": "cancelled",
                      "returned": "returned"},
    "megamarket": {"delivered": "delivered", "cancelled": "cancelled", "not_accepted": "cancelled",
                   "returned": "cancelled"},
}
HAS_RETURNS = {"ozon", "yandex_market"}


def _open(running: Any, account_for: Any) -> Any:
    return open_account(account_for(running, **running.app.account_options()))


def hand_over(running: Any, adapter: Any, n: int) -> list[str]:
    """n new orders confirmed, assembled and shipped through the adapter, as the cloud does."""
    market = running.app.marketplace
    ids = [str(x) for x in httpx.post(running.url + "/_sandbox/orders", json={"count": n}, timeout=10).json()["orders"]]
    assert len(ids) == n
    by_id = {o.native_id: o for o in adapter.new_orders()}
    batch = ""
    for oid in ids:
        kw: dict[str, Any] = {"batch_id": batch} if batch else {"new_batch": True} if market == "wildberries" else {}
        change = adapter.set_order_status(oid, "confirm", **kw)
        assert change.ok, change
        batch = batch or change.batch_id
        order = by_id.get(oid) or adapter.get_order(oid)
        codes = {li.native_id or li.offer_id: [f"0104607000000014215{oid}{k}" for k in range(li.quantity)]
                 for li in order.lines if li.marking_required}
        assert adapter.set_order_status(oid, "assemble", marking_codes=codes).ok
    for oid in ids:
        kw = {"batch_id": batch, "handed_over": ids} if market == "wildberries" else {}
        assert adapter.set_order_status(oid, "ship", **kw).ok
    return ids


def _unified(market: str, status: tuple[str, str]) -> str | None:
    table = profile(market).statuses
    if status[1] and f"{status[0]}/{status[1]}" in table:
        return table[f"{status[0]}/{status[1]}"]
    main, sub = table.get(status[0]), table.get(status[1]) if status[1] else None
    for terminal in ("returned", "cancelled"):
        if terminal in (main, sub):
            return terminal
    order = ("new", "in_work", "reserved", "picking", "packed", "handed_over", "delivered")
    found = [s for s in (main, sub) if s]
    return max(found, key=order.index) if found else None


@pytest.mark.parametrize("market", MARKETS)
def test_each_fate_reaches_its_final_status_and_returns_are_listed(market, sandbox_factory, account_for) -> None:
    running = sandbox_factory(market, seed=14, time_scale=1000)
    adapter = _open(running, account_for)
    ids = hand_over(running, adapter, 4)
    before = adapter.order_statuses(ids)
    assert {_unified(market, s) for s in before.values()} == {"handed_over"}, before
    forced = dict(zip(ids, FATES, strict=True))
    httpx.post(running.url + "/_sandbox/fates", json={"orders": forced, "now": True}, timeout=10).raise_for_status()
    after = adapter.order_statuses(ids + ["99999999"])  # one the marketplace does not know: left out
    assert set(after) == set(ids)
    assert {oid: _unified(market, after[oid]) for oid in ids} == {oid: ENDS[market][f] for oid, f in forced.items()}
    if market in HAS_RETURNS:
        since = datetime.now(UTC) - timedelta(days=1)
        found = adapter.returns(since)
        by_order = {r.order_native_id: r for r in found}
        assert set(by_order) == {oid for oid, f in forced.items() if f != "delivered"}
        assert by_order[ids[3]].kind == "return"  # the buyer's, after delivery
        assert by_order[ids[1]].kind == by_order[ids[2]].kind == "unredeemed"
        assert all(sum(ln.quantity for ln in r.lines) >= 1 and r.lines[0].offer_id for r in found)
        assert [r.return_id for r in adapter.returns(since, [ids[3]])] == [by_order[ids[3]].return_id]
        assert adapter.returns(datetime.now(UTC) + timedelta(days=2)) == []
    else:
        with pytest.raises(NotSupported) as err:
            adapter.returns(datetime.now(UTC))
        assert err.value.for_seller()


def test_fates_come_in_marketplace_time_at_seeded_rates(sandbox_factory, account_for) -> None:
    """Nothing forced: with transit 20 marketplace seconds at time_scale 1000, every parcel reaches a fate
    within moments; the rates decide which (here: every second one returned, the rest delivered)."""
    running = sandbox_factory("ozon", seed=14, time_scale=1000)
    adapter = _open(running, account_for)
    httpx.post(running.url + "/_sandbox/fates", json={"rates": {"delivered": 1, "returned": 1}, "transit_s": 20,
                                                      "return_s": 20}, timeout=10).raise_for_status()
    ids = hand_over(running, adapter, 6)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = httpx.get(running.url + "/_sandbox/state", timeout=10).json()
        if len(st["after_handover"]["steps"]) == 6 and st["after_handover"]["pending"] == 0:
            break
        time.sleep(0.1)
    fates = st["after_handover"]["fates"]
    assert sorted(fates) == sorted(ids) and set(fates.values()) <= {"delivered", "returned"}
    assert {_unified("ozon", s) for s in adapter.order_statuses(ids).values()} == {"delivered"}
    returned = {r.order_native_id for r in adapter.returns(datetime.now(UTC) - timedelta(hours=1))}
    assert returned == {o for o, f in fates.items() if f == "returned"}
    # the same seed draws the same fates
    again = sandbox_factory("ozon", seed=14, time_scale=1000)
    adapter2 = _open(again, account_for)
    httpx.post(again.url + "/_sandbox/fates", json={"rates": {"delivered": 1, "returned": 1}}, timeout=10)
    ids2 = hand_over(again, adapter2, 6)
    fates2 = httpx.get(again.url + "/_sandbox/state", timeout=10).json()["after_handover"]["fates"]
    assert [fates2[i] for i in ids2] == [fates[i] for i in ids]


def test_profiles_map_every_status_the_marketplaces_document() -> None:
    assert profile("megamarket").statuses["PACKING_EXPIRED"] == "cancelled"
    assert profile("megamarket").statuses["SHIPPING_EXPIRED"] == "cancelled"
    assert profile("yandex_market").statuses["UNKNOWN"] == "new"
    assert profile("ozon").statuses["not_accepted"] == "returned"


# ---------------------------------------------------------------- faults


def _statuses(adapter: Any, ids: list[str]) -> list[tuple]:
    return sorted((k, *v) for k, v in adapter.order_statuses(ids).items())


def _returns(adapter: Any, ids: list[str]) -> list[tuple]:
    return sorted((r.return_id, r.order_native_id, r.kind, tuple((ln.offer_id, ln.quantity) for ln in r.lines))
                  for r in adapter.returns(datetime.now(UTC) - timedelta(days=1)))


CASES = [(m, "order_statuses", _statuses) for m in MARKETS] + [(m, "returns", _returns) for m in sorted(HAS_RETURNS)]


def _prepared(market: str, sandbox_factory: Any, account_for: Any) -> tuple[Any, Any, list[str]]:
    running = sandbox_factory(market, seed=14, time_scale=1000)
    adapter = _open(running, account_for)
    ids = hand_over(running, adapter, 4)
    httpx.post(running.url + "/_sandbox/fates", json={"orders": dict(zip(ids, FATES, strict=True)), "now": True},
               timeout=10).raise_for_status()
    return running, adapter, ids


@pytest.mark.parametrize("market, call, read", CASES, ids=[f"{m}-{c}" for m, c, _ in CASES])
def test_after_handover_reads_under_faults_give_what_they_give_without(market, call, read, sandbox_factory,
                                                                       account_for) -> None:
    running, adapter, ids = _prepared(market, sandbox_factory, account_for)
    clean = read(adapter, ids)
    assert clean
    faults = running.url + "/_sandbox/faults"

    def injected() -> dict[str, int]:
        return httpx.get(running.url + "/_sandbox/state", timeout=10).json()["injected"]

    httpx.post(faults, json={"rate_429": 0.25, "rate_5xx": 0.2, "latency_ms": 20}, timeout=10).raise_for_status()
    for _ in range(60):
        assert read(adapter, ids) == clean
        if injected()["429"] and injected()["5xx"]:
            break
    httpx.post(faults, json={"rate_429": 0, "rate_5xx": 0, "latency_ms": 0, "lost_reply_rate": 0.35},
               timeout=10).raise_for_status()
    for _ in range(60):
        assert read(adapter, ids) == clean
        if injected().get("lost"):
            break
    seen = injected()
    assert seen["429"] > 0 and seen["5xx"] > 0 and seen.get("lost", 0) > 0, seen


@pytest.mark.parametrize("market, call, read", CASES, ids=[f"{m}-{c}" for m, c, _ in CASES])
def test_after_handover_reads_refuse_malformed_answers(market, call, read, sandbox_factory, account_for,
                                                       contract) -> None:
    contract.check_responses = False  # the answers are cut short on purpose
    running, adapter, ids = _prepared(market, sandbox_factory, account_for)
    httpx.post(running.url + "/_sandbox/faults", json={"malformed_rate": 1.0}, timeout=10).raise_for_status()
    with pytest.raises(BadResponse) as err:
        read(adapter, ids)
    assert adapter.account in str(err.value) and err.value.endpoint
