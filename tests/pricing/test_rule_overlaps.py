"""Scheduled rules that meet: each rule's percent is taken from the price before any rule cut it (a −10%
never compounds on a price another rule already cut), a rule that ends puts back the price of a rule
still running, overlaps are found, and a held document waits once on the rule's page, to be confirmed or
discarded there — and is discarded by itself when the window closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud_sync.money import price_docs, price_list, price_rules
from cloud_sync.money.price_rules import RuleError, add_rule, run_due

FRI_1800_MSK = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
SAT_1000_MSK = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def _prices(db) -> dict[str, Decimal]:
    return {k: v.price for k, v in price_list.current_prices(db, "oz1").items()}


def test_a_second_rule_is_taken_from_the_price_list_not_the_cut_price_and_ends_into_the_first(db, fake_market):
    market = fake_market("ozon", "oz1")
    weekend = add_rule(db, account="oz1", text="-10% friday 18:00, back monday 09:00", lines=[{"category": "Футболки"}])
    saturday = add_rule(db, account="oz1", text="-20% saturday 10:00, back saturday 20:00", lines=[{"item": "MS-1"}])
    assert [e.action for e in run_due(db, lambda a: market, now=FRI_1800_MSK)] == ["applied"]
    assert _prices(db) == {"9001": Decimal(1080), "9002": Decimal(1350)}
    assert [e.action for e in run_due(db, lambda a: market, now=SAT_1000_MSK)] == ["applied"]
    assert _prices(db)["9001"] == Decimal(960)  # 1200 − 20 %, not 1080 − 20 % = 864
    [ev] = run_due(db, lambda a: market, now=SAT_1000_MSK + timedelta(hours=10))  # Saturday 20:00
    assert (ev.rule_id, ev.action) == (saturday.id, "reverted")
    assert _prices(db) == {"9001": Decimal(1080), "9002": Decimal(1350)}  # back to the weekend's price
    [ev] = run_due(db, lambda a: market, now=datetime(2026, 11, 30, 6, 0, tzinfo=UTC))  # Monday 09:00
    assert (ev.rule_id, ev.action) == (weekend.id, "reverted")
    assert _prices(db) == {"9001": Decimal(1200), "9002": Decimal(1500)}  # the price list's again


def test_overlapping_rules_are_found_with_the_shared_cards_and_the_moment_they_meet(db):
    weekend = add_rule(db, account="oz1", text="-10% friday 18:00, back monday 09:00", lines=[{"category": "Футболки"}])
    saturday = add_rule(db, account="oz1", text="-20% saturday 10:00, back saturday 20:00", lines=[{"item": "MS-1"}])
    add_rule(db, account="oz1", text="-5% saturday 10:00, back saturday 20:00", lines=[{"item": "MS-3"}])  # mugs
    [o] = price_rules.overlaps(db, weekend.id, now=datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert (o.other.id, o.cards, o.together_from) == (saturday.id, 1, SAT_1000_MSK)
    inside, change = price_rules.next_change(price_rules.rule(db, weekend.id), datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert (inside, change) == (False, FRI_1800_MSK)


def test_a_held_document_waits_once_is_confirmed_from_the_rule_or_discarded_when_the_window_closes(db, fake_market):
    market = fake_market("wildberries", "wb1")
    r = add_rule(db, account="wb1", text="-70% friday 18:00, back monday 09:00", lines=[{"item": "MS-1"}])
    [ev] = run_due(db, lambda a: market, now=FRI_1800_MSK)
    assert ev.action == "held" and market.sent == []
    assert run_due(db, lambda a: market, now=FRI_1800_MSK + timedelta(minutes=30)) == []  # no second draft
    [doc] = price_rules.held(db, r.id)
    assert doc == ev.document_id
    ev = price_rules.confirm_held(db, r.id, doc, market, now=FRI_1800_MSK + timedelta(hours=1))
    assert ev.action == "applied" and price_rules.rule(db, r.id).state == "active" and market.sent
    assert price_rules.held(db, r.id) == []
    assert db.execute("SELECT status FROM price_documents WHERE id=?", (doc,)).fetchone()[0] == "applied"
    with pytest.raises(RuleError, match="not waiting"):
        price_rules.confirm_held(db, r.id, doc, market, now=FRI_1800_MSK + timedelta(hours=2))

    other = add_rule(db, account="wb1", text="-70% friday 18:00, back monday 09:00", lines=[{"item": "MS-3"}])
    run_due(db, lambda a: market, now=FRI_1800_MSK + timedelta(hours=3))
    [doc] = price_rules.held(db, other.id)
    events = run_due(db, lambda a: market, now=datetime(2026, 11, 30, 6, 0, tzinfo=UTC))  # Monday: closed
    assert ("discarded", doc) in [(e.action, e.document_id) for e in events if e.rule_id == other.id]
    assert db.execute("SELECT status FROM price_documents WHERE id=?", (doc,)).fetchone()[0] == "discarded"


def test_drafts_expire_after_the_configured_days(db, fake_market):
    market = fake_market("wildberries", "wb1")
    add_rule(db, account="wb1", text="-70% friday 18:00, back monday 09:00", lines=[{"item": "MS-1"}])
    [ev] = run_due(db, lambda a: market, now=FRI_1800_MSK)
    assert price_docs.expire_drafts(db, timedelta(days=7), now=FRI_1800_MSK + timedelta(days=6)) == 0
    assert price_docs.expire_drafts(db, timedelta(days=7), now=FRI_1800_MSK + timedelta(days=8)) == 1
    assert db.execute("SELECT status FROM price_documents WHERE id=?", (ev.document_id,)).fetchone()[0] == "expired"
