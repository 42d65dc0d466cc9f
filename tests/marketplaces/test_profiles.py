"""Every registered marketplace's profile is complete and consistent: its statuses map into the unified
vocabulary, its intervals are positive and within what its endpoint map (the documented limits) allows,
its push terms exist exactly where it receives pushes, and its adapter answers `NotSupported` for every
capability the profile denies. A profile that breaks these rules does not load at all."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from cloud_sync import i18n
from marketplaces import ADAPTERS, adapter_module, open_account, price_model, profile, profiles
from marketplaces.base import (
    UNIFIED_STATUSES,
    AccountConfig,
    Capabilities,
    FeeAsk,
    MarketplaceError,
    NotSupported,
    PriceModel,
)
from marketplaces.endpoints import load_endpoint_map
from marketplaces.profiles import ProfileError, load_profile, parse_profile

NAMES = list(ADAPTERS)
# the ids some adapters need before they open at all (the union: each reads the ones it knows)
IDS = {"business_id": 1, "campaign_id": 2, "merchant_id": 3}


@pytest.mark.parametrize("name", NAMES)
def test_the_profile_is_complete(name: str) -> None:
    p = profile(name)
    assert p.name == name and p.title.strip() and re.fullmatch(r"#[0-9a-fA-F]{6}", p.colour)
    assert p.statuses and all(native.strip() for native in p.statuses)
    assert set(p.statuses.values()) <= set(UNIFIED_STATUSES), "every native status maps into the vocabulary"
    assert p.min_poll_s > 0 and p.poll_reason.strip()
    assert p.min_stock_interval_s >= 0
    assert p.min_stock_interval_s == 0 or p.stock_interval_reason.strip()
    assert p.label_after in ("confirm", "assemble")
    assert {f.name for f in fields(p.can)} == {f.name for f in fields(Capabilities)}


@pytest.mark.parametrize("name", NAMES)
def test_push_terms_exist_exactly_where_it_receives_pushes(name: str) -> None:
    p = profile(name)
    assert (p.push is not None) == p.can.receive_pushes
    if p.push is None:
        return
    assert p.push.paths and all(path and not path.startswith("/") for path in p.push.paths)
    for cidr in p.push.sources:
        ipaddress.ip_network(cidr, strict=False)
    taken = p.push.answer(200, now=datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC))
    refused = p.push.answer(400, "broken: «тело»")
    json.dumps([taken, refused])  # both are JSON
    assert taken != refused and "broken: «тело»" in json.dumps(refused, ensure_ascii=False)
    assert p.push.noun.strip()


@pytest.mark.parametrize("name", NAMES)
def test_a_pushing_profile_says_where_in_the_cabinet_and_it_reads_in_russian(name: str) -> None:
    """The marketplace's own words on where the seller pastes the push URL(s) live in its profile (the
    domain names no marketplace), and the compiled Russian catalog has them (the pages and the CLI
    translate them where they are shown)."""
    p = profile(name)
    if p.push is None:
        return
    assert p.push.cabinet.strip() and "\n" not in p.push.cabinet
    russian = i18n.translations("ru").gettext(p.push.cabinet)
    assert russian != p.push.cabinet and re.search("[а-яё]", russian), russian


def test_titles_and_colours_tell_the_marketplaces_apart() -> None:
    known = profiles()
    assert list(known) == NAMES
    assert len({p.title for p in known.values()}) == len(known)
    assert len({p.colour.lower() for p in known.values()}) == len(known)


@pytest.mark.parametrize("name", NAMES)
def test_the_pace_stays_within_the_endpoint_map(name: str) -> None:
    """The poll floor is never faster than the poll endpoint's documented limit (nor the account's), and a
    card's stock never waits less than the map's per-item rule on stock updates."""
    p, emap = profile(name), load_endpoint_map(name)
    poll = emap[p.poll_endpoint]
    assert p.min_poll_s >= 1 / emap.groups[poll.group].rate - 1e-6
    if emap.account_limit is not None:
        assert p.min_poll_s >= 1 / emap.account_limit.rate - 1e-6
    stocks = emap["stocks_update"]
    if stocks.item_rule:
        rule = emap.item_rules[stocks.item_rule]
        assert p.min_stock_interval_s >= rule.window_s / rule.max
    else:
        assert p.min_stock_interval_s == 0


@pytest.mark.parametrize("name", NAMES)
def test_the_adapter_answers_what_its_profile_says(name: str) -> None:
    """A capability the profile denies is answered NotSupported before any request; pushes are parsed
    where the profile says it pushes. (`create_cards` is where the seller creates cards from a 1C item —
    the products page —, not held to the adapter: Yandex.Market's adapter can create offers too.)"""
    p = profile(name)
    module = adapter_module(name)
    assert isinstance(module.PRICE_MODEL, PriceModel) and module.PRICE_MODEL.terms.marketplace == name
    assert price_model(name) is module.PRICE_MODEL
    adapter = open_account(AccountConfig(name=f"{name}-profile", marketplace=name,  # type: ignore[arg-type]
                                         base_url="http://127.0.0.1:9", options=dict(IDS)))
    assert adapter.name == name
    calls: dict[str, Any] = {
        "hide_cards": lambda: adapter.set_visibility(["1"], False),
        "read_fbo_stock": lambda: adapter.read_stocks("fbo"),
        "realization_report": lambda: adapter.realization_report(date(2026, 1, 1), date(2026, 1, 31)),
        "read_prices": adapter.read_prices,
        "sale_fees": lambda: adapter.sale_fees([FeeAsk("1", "A", Decimal(100), category_id="1")]),
    }
    for capability, call in calls.items():
        if not getattr(p.can, capability):
            with pytest.raises(NotSupported):
                call()
    path = p.push.paths[0] if p.push else "notification"
    with pytest.raises(MarketplaceError) as raised:
        adapter.parse_push({"x-push-path": path}, b"{}")
    assert isinstance(raised.value, NotSupported) != p.can.receive_pushes


def test_an_unknown_marketplace_has_no_profile() -> None:
    with pytest.raises(ValueError, match="unknown marketplace 'ebay'"):
        profile("ebay")
    assert price_model("ebay").terms.marketplace == "ebay"  # the pass-through model


BASE: dict[str, Any] = {
    "title": "Тестмаркет", "colour": "#123456", "label_after": "assemble", "min_poll_s": 1.0,
    "poll_reason": "1 rps", "poll_endpoint": "orders", "can": {"hide_cards": True},
    "statuses": {"NEW": "new", "GONE": "cancelled"},
}


@pytest.mark.parametrize("change, problem", [
    ({"statuses": {"NEW": "brand_new"}}, "not one of"),
    ({"statuses": {}}, "native statuses"),
    ({"min_poll_s": 0}, "min_poll_s"),
    ({"min_stock_interval_s": -1}, "min_stock_interval_s"),
    ({"label_after": "ship"}, "label_after"),
    ({"colour": "purple"}, "colour"),
    ({"can": {"fly": True}}, "known capabilities"),
    ({"can": {"receive_pushes": True}}, "push] is missing"),
    ({"push": {"paths": ["order"], "accepted": {}, "refused": {}}}, "receive_pushes is false"),
    ({"can": {"receive_pushes": True}, "push": {"paths": ["/order"], "accepted": {}, "refused": {}}}, "paths"),
    ({"can": {"receive_pushes": True},
      "push": {"paths": ["order"], "sources": ["not-a-net"], "accepted": {}, "refused": {}}}, "not a network"),
    ({"can": {"receive_pushes": True},
      "push": {"paths": ["order"], "accepted": {}, "refused": {}, "cabinet": ["Settings"]}}, "push.cabinet"),
    ({"can": {"receive_pushes": True},
      "push": {"paths": ["order"], "accepted": {}, "refused": {}, "cabinet": "Settings\nAPI"}}, "push.cabinet"),
    ({"can": {"receive_pushes": True},
      "push": {"paths": ["order"], "accepted": {}, "refused": {}, "cabinet": "Settings → 100% API"}}, "push.cabinet"),
    ({"poll_seconds": 3}, "unknown keys"),
])
def test_a_profile_that_could_mislead_the_cloud_does_not_load(change: dict[str, Any], problem: str) -> None:
    assert parse_profile("testmarket", BASE).title == "Тестмаркет"
    with pytest.raises(ProfileError, match=re.escape(problem)):
        parse_profile("testmarket", {**BASE, **change})


def test_a_map_without_a_profile_table_is_refused(tmp_path) -> None:
    bare = tmp_path / "testmarket.toml"
    bare.write_text('[families]\napi = "https://api.example"\n')
    with pytest.raises(ProfileError, match="no \\[profile\\] table"):
        load_profile("testmarket", bare)
