"""The cloud's per-marketplace defaults come from the marketplaces' profiles (marketplaces.profile): the
status map, the poll floor, the stock interval and the label timing. Changing a profile changes the
cloud's default; an account's own setting still wins; a marketplace added to the registry is accepted
without a line of cloud_sync changing."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import marketplaces
from cloud_sync.config import UNIFIED_STATUSES, parse_config
from marketplaces.base import UNIFIED_STATUSES as BASE_UNIFIED


def _one_account(marketplace: str, **extra: object) -> dict:
    return {"accounts": {"a": {"marketplace": marketplace, "base_url": "http://127.0.0.1:9", **extra}}}


def test_the_unified_vocabulary_is_the_common_interfaces() -> None:
    assert UNIFIED_STATUSES is BASE_UNIFIED


def test_todays_defaults_are_kept() -> None:
    expected = {"wildberries": (0.0, "confirm", 0.2), "ozon": (30.0, "assemble", 0.1),
                "yandex_market": (0.0, "assemble", 0.75), "megamarket": (0.0, "assemble", 1.0)}
    for mp, (stock_s, label_after, poll_floor) in expected.items():
        settings = parse_config(_one_account(mp), env={}).accounts["a"]
        assert (settings.min_stock_interval_s, settings.label_after, settings.poll_interval(0.0)) == (
            stock_s, label_after, poll_floor), mp
    cfg = parse_config({}, env={})
    assert list(cfg.status_map) == ["wildberries", "ozon", "yandex_market", "megamarket"]
    assert cfg.unified_status("wildberries", "confirm", "sold") == "delivered"
    assert cfg.unified_status("yandex_market", "PROCESSING", "READY_TO_SHIP") == "packed"
    assert cfg.unified_status("megamarket", "PENDING_SHIPPING") == "packed"


def test_changing_a_profile_changes_the_clouds_default(monkeypatch) -> None:
    ozon = marketplaces.profile("ozon")
    monkeypatch.setitem(marketplaces.PROFILES, "ozon", replace(
        ozon, min_stock_interval_s=7.5, label_after="confirm", min_poll_s=3.0,
        statuses=MappingProxyType({**ozon.statuses, "awaiting_packaging": "in_work"})))
    cfg = parse_config(_one_account("ozon"), env={})
    settings = cfg.accounts["a"]
    assert (settings.min_stock_interval_s, settings.label_after) == (7.5, "confirm")
    assert settings.poll_interval(0.5) == 3.0 and settings.poll_interval(10.0) == 10.0
    assert cfg.unified_status("ozon", "awaiting_packaging") == "in_work"
    assert ozon.statuses["awaiting_packaging"] == "new"  # the profile itself is not touched by the config
    own = parse_config(_one_account("ozon", min_stock_interval_s=45, label_after="assemble"), env={}).accounts["a"]
    assert (own.min_stock_interval_s, own.label_after) == (45.0, "assemble")  # the account's own setting wins


def test_a_marketplace_added_to_the_registry_is_known_to_the_cloud(monkeypatch) -> None:
    monkeypatch.setitem(marketplaces.ADAPTERS, "testmarket", "marketplaces.megamarket:MegamarketAdapter")
    monkeypatch.setitem(marketplaces.PROFILES, "testmarket", replace(
        marketplaces.profile("megamarket"), name="testmarket", title="Тестмаркет", min_poll_s=2.0,
        min_stock_interval_s=60.0, stock_interval_reason="once a minute", label_after="confirm",
        statuses=MappingProxyType({"NEW": "new", "GONE": "cancelled"})))
    cfg = parse_config(_one_account("testmarket", time_scale=2.0), env={})
    settings = cfg.accounts["a"]
    assert (settings.min_stock_interval_s, settings.label_after, settings.poll_interval(0.0)) == (60.0, "confirm", 1.0)
    assert cfg.status_map["testmarket"] == {"NEW": "new", "GONE": "cancelled"}
    assert cfg.unified_status("testmarket", "GONE") == "cancelled"
