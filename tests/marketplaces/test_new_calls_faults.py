"""Every call issue 18 added, under faults (point 8), over real HTTP against its sandbox with the
`contract` fixture on: throttling (429, Yandex.Market's 420), server errors (5xx), latency, and replies
lost after the request was applied (504). Each read gives exactly what it gives without faults, and
the sandbox shows the faults were really injected. Malformed answers are typed errors, never data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from marketplaces import open_account
from marketplaces.base import BadResponse, PriceChange
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.yandex_market_spec import register

register()
register_schemas()

TODAY = date.today()


def _options(running) -> dict[str, Any]:
    return running.app.account_options()


def _prices(adapter) -> list[tuple]:
    return sorted((p.card_id, p.offer_id, p.price, p.old_price, p.min_price) for p in adapter.read_prices())


def _stocks(adapter) -> list[tuple]:
    return sorted((s.card_id, s.warehouse_id, s.quantity) for s in adapter.read_stocks())


def _report(adapter) -> list[tuple]:
    report = adapter.realization_report(TODAY.replace(day=1), TODAY)
    return sorted((ln.kind, ln.order_native_id, ln.offer_id, ln.quantity, ln.revenue, ln.fee, ln.logistics,
                   ln.other, ln.to_pay) for ln in report.lines)


def _ym_sales(running, adapter) -> None:
    """Orders handed over and delivered, one returned: a realization report with every kind of line."""
    ids = httpx.post(running.url + "/_sandbox/orders", json={"count": 4}, timeout=10).json()["orders"]
    for order in adapter.new_orders():
        codes = {li.native_id: [f"0104607000000014215{li.native_id}{n}" for n in range(li.quantity)]
                 for li in order.lines if li.marking_required}
        assert adapter.set_order_status(order.native_id, "assemble", marking_codes=codes).ok
        assert adapter.set_order_status(order.native_id, "ship").ok
    httpx.post(running.url + "/_sandbox/x/deliver", json={"orders": ids[:3]}, timeout=10).raise_for_status()
    httpx.post(running.url + "/_sandbox/x/return", json={"orders": [ids[0]]}, timeout=10).raise_for_status()
    httpx.post(running.url + "/_sandbox/x/lose", json={"orders": [ids[3]]}, timeout=10).raise_for_status()


def _ozon_promo(running, adapter) -> None:
    cards = list(adapter.list_cards())
    assert all(r.ok for r in adapter.push_prices([PriceChange(cards[0].native_id, cards[0].offer_id,
                                                              Decimal("1500"), old_price=Decimal("1900"))]))


CASES: list[tuple[str, str, dict[str, Any], Callable[..., Any] | None, Callable[..., list[tuple]]]] = [
    ("ozon", "read_prices", {}, _ozon_promo, _prices),
    ("yandex_market", "read_prices business", {}, None, _prices),
    ("yandex_market", "read_prices campaign", {"price_level": "campaign"}, None, _prices),
    ("yandex_market", "realization_report", {}, _ym_sales, _report),
    ("megamarket", "read_stocks", {}, None, _stocks),
    ("megamarket", "read_prices", {}, None, _prices),
]


@pytest.mark.parametrize("market, call, options, prepare, read", CASES, ids=[f"{m}-{c}" for m, c, *_ in CASES])
def test_new_reads_under_faults_give_what_they_give_without(market, call, options, prepare, read,
                                                             sandbox_factory, account_for) -> None:
    running = sandbox_factory(market, seed=14, time_scale=1000)
    adapter = open_account(account_for(running, **_options(running), **options))
    if market == "yandex_market" and options.get("price_level") == "campaign":
        assert all(r.ok for r in adapter.push_prices([PriceChange("MS-00002", "MS-00002", Decimal("800"))]))
    if prepare is not None:
        prepare(running, adapter)
    clean = read(adapter)
    assert clean, "something to read"
    faults = running.url + "/_sandbox/faults"

    def injected() -> dict[str, int]:
        return httpx.get(running.url + "/_sandbox/state", timeout=10).json()["injected"]

    # a read is a request or a few: read again until each fault was met at least once
    httpx.post(faults, json={"rate_429": 0.25, "rate_5xx": 0.2, "latency_ms": 30}, timeout=10).raise_for_status()
    for _ in range(60):
        assert read(adapter) == clean
        if injected()["429"] and injected()["5xx"]:
            break
    httpx.post(faults, json={"rate_429": 0, "rate_5xx": 0, "latency_ms": 0, "lost_reply_rate": 0.35},
               timeout=10).raise_for_status()
    for _ in range(60):
        assert read(adapter) == clean
        if injected().get("lost"):
            break
    seen = injected()
    assert seen["429"] > 0 and seen["5xx"] > 0 and seen.get("lost", 0) > 0, seen


@pytest.mark.parametrize("market, call, options, prepare, read", CASES, ids=[f"{m}-{c}" for m, c, *_ in CASES])
def test_new_reads_refuse_malformed_answers(market, call, options, prepare, read, sandbox_factory, account_for,
                                            contract) -> None:
    contract.check_responses = False  # the answers are cut short on purpose
    running = sandbox_factory(market, seed=14, time_scale=1000)
    adapter = open_account(account_for(running, **_options(running), **options))
    if prepare is not None:
        prepare(running, adapter)
    httpx.post(running.url + "/_sandbox/faults", json={"malformed_rate": 1.0}, timeout=10).raise_for_status()
    with pytest.raises(BadResponse) as err:
        read(adapter)
    assert adapter.account in str(err.value) and err.value.endpoint
