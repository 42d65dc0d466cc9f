"""Scheduled price rules: parsing (refused before anything is saved or sent), the window runner with an
injected clock, automatic revert, catch-up after missed ticks. The marketplace is the in-test FakeMarket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schedule

from cloud_sync.money import price_list, price_rules
from cloud_sync.money.price_rules import RuleError, add_rule, parse_when, run_due

FRI_MSK_1700 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # Friday 17:00 Moscow


def test_parse_when_accepts_seller_words():
    assert parse_when("Friday 18:00").weekday == "friday"
    assert parse_when("пт 18:00").weekday == "friday"
    assert parse_when("every monday at 9:00").at.hour == 9
    assert parse_when("daily 09:30").weekday is None
    assert parse_when("2026-12-31 23:00").on.year == 2026


@pytest.mark.parametrize("bad", ["Friday 25:00", "Fryday 18:00", "18:00", "friday", "2026-13-01 10:00",
                                 "friday 18:61"])
def test_unreadable_schedule_is_refused_and_nothing_saved(db, bad):
    with pytest.raises(RuleError) as e:
        add_rule(db, account="oz1", start=bad, end="monday 09:00", lines=[{"all": True, "percent": -10}])
    assert "cannot read" in str(e.value)
    assert db.execute("SELECT COUNT(*) FROM price_rules").fetchone()[0] == 0


def test_unreadable_phrase_and_bad_lines_are_refused(db):
    with pytest.raises(RuleError, match="cannot read the rule"):
        add_rule(db, account="oz1", text="ten percent off on fridays")
    with pytest.raises(RuleError, match="not positive"):
        add_rule(db, account="oz1", start="friday 18:00", end="monday 09:00", lines=[{"all": True, "price": -1}])
    with pytest.raises(RuleError, match="unknown time zone"):
        add_rule(db, account="oz1", text="-10% Friday 18:00, back Monday 09:00", tz="Mars/Olympus")
    assert db.execute("SELECT COUNT(*) FROM price_rules").fetchone()[0] == 0


def test_friday_sale_applies_and_reverts_on_monday(db, fake_market):
    market = fake_market("ozon", "oz1")
    rule = add_rule(db, account="oz1", text="-10% Friday 18:00, back Monday 09:00",
                    lines=[{"category": "Футболки"}])

    def tick(at):
        return run_due(db, lambda account: market, now=at)

    assert tick(FRI_MSK_1700) == []
    [ev] = tick(FRI_MSK_1700 + timedelta(hours=1))  # Friday 18:00 Moscow
    assert ev.action == "applied"
    prices = price_list.current_prices(db, "oz1")
    assert (prices["9001"].price, prices["9002"].price) == (Decimal(1080), Decimal(1350))
    assert prices["9001"].old_price == Decimal(1200)  # the old price shows crossed out
    assert "9003" not in prices  # mugs are not in the rule
    assert tick(FRI_MSK_1700 + timedelta(days=1)) == []  # Saturday: already applied, nothing re-sent
    assert len(market.sent) == 2
    [ev] = tick(datetime(2026, 11, 30, 6, 0, tzinfo=UTC))  # Monday 09:00 Moscow
    assert ev.action == "reverted"
    prices = price_list.current_prices(db, "oz1")
    assert (prices["9001"].price, prices["9002"].price) == (Decimal(1200), Decimal(1500))
    assert prices["9001"].old_price is None
    sent_back = {c.offer_id: c for c in market.sent[2:]}
    assert sent_back["MS-1"].price == Decimal(1200) and sent_back["MS-1"].old_price == Decimal(0)
    assert price_rules.rules(db)[0].state == "idle"
    # the next Friday it runs again
    [ev] = tick(FRI_MSK_1700 + timedelta(days=7, hours=1))
    assert ev.action == "applied" and rule.id == ev.rule_id


def test_missed_ticks_are_caught_up(db, fake_market):
    """The cloud was down from Thursday to Tuesday: the next tick sees the window is over (no apply)."""
    market = fake_market("ozon", "oz1")
    add_rule(db, account="oz1", text="-10% Friday 18:00, back Monday 09:00")
    assert run_due(db, lambda a: market, now=FRI_MSK_1700 - timedelta(days=1)) == []
    assert run_due(db, lambda a: market, now=FRI_MSK_1700 + timedelta(days=4)) == []
    assert market.sent == []
    # down from Saturday (applied) to Tuesday: reverted at once on start
    run_due(db, lambda a: market, now=FRI_MSK_1700 + timedelta(days=8))
    [ev] = run_due(db, lambda a: market, now=FRI_MSK_1700 + timedelta(days=12))
    assert ev.action == "reverted"


def test_refused_rule_records_error_and_retries_later(db, fake_market):
    market = fake_market("ozon", "oz1")
    add_rule(db, account="oz1", start="friday 18:00", end="monday 09:00",
             lines=[{"item": "MS-2", "price": "900", "min_price": "1000"}])
    at = FRI_MSK_1700 + timedelta(hours=1)
    [ev] = run_due(db, lambda a: market, now=at)
    assert ev.action == "refused" and "below the card's minimum" in ev.detail
    assert market.sent == []
    assert run_due(db, lambda a: market, now=at + timedelta(minutes=1)) == []  # waits before retrying
    [ev] = run_due(db, lambda a: market, now=at + timedelta(minutes=6))
    assert ev.action == "refused"
    assert "below the card's minimum" in price_rules.rules(db)[0].last_error
    from cloud_sync.alerts import outbox

    assert [a["kind"] for a in outbox.pending(db)] == ["price_rule"]  # the seller hears of it once


def test_unconfirmed_quarantine_drop_is_refused_confirmed_rule_applies(db, fake_market):
    market = fake_market("wildberries", "wb1")
    add_rule(db, account="wb1", text="-70% friday 18:00, back monday 09:00", lines=[{"item": "MS-1"}])
    [ev] = run_due(db, lambda a: market, now=FRI_MSK_1700 + timedelta(hours=1))
    assert ev.action == "held" and "quarantine" in ev.detail  # held for a person, on the rule's page
    add_rule(db, account="wb1", text="-70% friday 18:00, back monday 09:00", lines=[{"item": "MS-1"}],
             confirmed=True)
    events = run_due(db, lambda a: market, now=FRI_MSK_1700 + timedelta(hours=1))
    assert [e.action for e in events] == ["applied"]


def test_install_registers_on_a_schedule_scheduler(db, fake_market):
    sched = schedule.Scheduler()
    calls = []
    job = price_rules.install(sched, lambda: calls.append(1), every_s=30)
    assert job in sched.jobs and job.interval == 30
    sched.run_all()
    assert calls == [1]
