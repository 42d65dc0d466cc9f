"""Price documents: parsing, preview (diff, margin, warnings), refusal before sending, apply, history.

Uses a real SQLite tenant database; the marketplace is the in-test FakeMarket from conftest.py (it
only records push_prices). The sandbox end-to-end test is test_pricing_sandbox.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud_sync.money import price_apply, price_list, price_preview
from cloud_sync.money.price_docs import (
    ConfirmationRequired,
    PriceDocument,
    PriceDocumentError,
    PriceLine,
    parse_document,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def doc(account, *lines):
    return PriceDocument(account=account, lines=list(lines))


def test_parse_document_collects_every_problem():
    with pytest.raises(PriceDocumentError) as e:
        parse_document({"account": "oz1", "lines": [
            {"item": "MS-1", "price": "-5"},
            {"item": "MS-2"},
            {"category": "x", "price": "abc"},
            {"item": "a", "card": "b", "price": 1},
            {"all": True, "percent": -10, "colour": "red"},
        ]})
    problems = e.value.problems
    assert any("line 1" in p and "not positive" in p for p in problems)
    assert any("line 2" in p and "either an absolute price or a percent" in p for p in problems)
    assert any("line 3" in p and "not a number" in p for p in problems)
    assert any("line 4" in p and "exactly one" in p for p in problems)
    assert any("line 5" in p and "colour" in p for p in problems)
    ok = parse_document({"account": "oz1", "lines": [{"category": "Кружки", "percent": "-10%"}]})
    assert ok.lines[0].percent == Decimal(-10)


def test_preview_diff_with_margin_and_pack_size(db):
    pv = price_preview.preview(db, doc("wb1", PriceLine("item", "MS-3", price=Decimal(150))), now=NOW)
    assert pv.ok
    [row] = pv.rows
    assert row.card.offer_id == "MS-3x2"
    assert row.old.price == Decimal(500)
    assert row.effective_price == Decimal(300)  # per unit x pack of 2
    assert row.cost == Decimal(200)
    assert row.margin == Decimal(100)
    assert row.margin_percent == Decimal("33.3")
    assert row.change_percent == Decimal("-40.0")
    assert any(n.level == "confirm" and "large drop" in n.text for n in row.notes)
    table = pv.as_table()
    assert table[0]["old_price"] == "500" and table[0]["new_price"] == "300"


def test_a_price_rise_that_looks_like_a_typo_needs_confirmation(db):
    """500 -> 5000 (an extra zero): +900%, confirmed before anything is sent; +50% goes as it is; the
    threshold is the seller's ([pricing] large_rise_percent, 0 switches it off)."""
    pv = price_preview.preview(db, doc("wb1", PriceLine("item", "MS-3", price=Decimal(2500))), now=NOW)
    [row] = pv.rows
    assert row.effective_price == Decimal(5000) and row.change_percent == Decimal("900.0")
    assert any(n.level == "confirm" and "large rise" in n.text and "+900.0%" in n.text for n in row.notes)
    assert pv.to_confirm
    pv = price_preview.preview(db, doc("wb1", PriceLine("item", "MS-3", price=Decimal(375))), now=NOW)
    assert pv.rows[0].effective_price == Decimal(750) and not pv.to_confirm
    off = price_preview.PricingSettings.from_dict({"large_rise_percent": 0})
    pv = price_preview.preview(db, doc("wb1", PriceLine("item", "MS-3", price=Decimal(2500))), now=NOW, settings=off)
    assert not pv.to_confirm


def test_category_by_marketplace_category_and_by_1c_group(db):
    pv = price_preview.preview(db, doc("oz1", PriceLine("category", "Одежда", percent=Decimal(10))), now=NOW)
    assert pv.ok
    assert {r.card.offer_id: r.effective_price for r in pv.rows} == {"MS-1": Decimal(1320), "MS-2": Decimal(1650)}
    pv = price_preview.preview(db, doc("oz1", PriceLine("category", "Кружки", percent=Decimal(-10))), now=NOW)
    assert [r.effective_price for r in pv.rows] == [Decimal(270)]


def test_refused_before_anything_is_sent(db, fake_market):
    market = fake_market("ozon", "oz1")
    bad = [
        (PriceLine("item", "NO-SUCH", price=Decimal(100)), "unknown item"),
        (PriceLine("category", "Посуда", percent=Decimal(-5)), "unknown category"),
        (PriceLine("item", "MS-1", price=Decimal(-1)), "not positive"),
        (PriceLine("item", "MS-1", price=Decimal(500), min_price=Decimal(600)), "below the card's minimum"),
        (PriceLine("item", "MS-1", price=Decimal("0.4")), "below ozon's minimum"),
    ]
    for line, expected in bad:
        d = doc("oz1", PriceLine("item", "MS-2", price=Decimal(1400)), line)
        d.rounding = Decimal("0.01")
        with pytest.raises(PriceDocumentError) as e:
            price_apply.apply(db, d, market, confirm=True, now=NOW)
        assert expected in str(e.value), (expected, str(e.value))
        row = db.execute("SELECT status FROM price_documents WHERE id=?", (d.id,)).fetchone()
        assert row["status"] == "refused"
    assert market.sent == []
    assert db.execute("SELECT COUNT(*) FROM price_history").fetchone()[0] == 0
    assert price_list.current_prices(db, "oz1") == {}


def test_unknown_account_is_refused(db, fake_market):
    with pytest.raises(PriceDocumentError, match="no cards"):
        price_apply.apply(db, doc("nobody", PriceLine("all", percent=Decimal(1))), fake_market("ozon", "nobody"))


def test_apply_ozon_pushes_records_and_updates_price_list(db, fake_market):
    market = fake_market("ozon", "oz1", fail={"9003"})
    d = doc("oz1", PriceLine("all", percent=Decimal(-10), discount_percent=Decimal(20)),
            PriceLine("item", "MS-2", price=Decimal(1490), old_price=Decimal(1990), min_price=Decimal(1000)))
    res = price_apply.apply(db, d, market, now=NOW)
    assert res.status == "partial"
    sent = {c.offer_id: c for c in market.sent}
    assert sent["MS-1"].price == Decimal(1080) and sent["MS-1"].old_price == Decimal(1350)
    assert sent["MS-2"].price == Decimal(1490) and sent["MS-2"].old_price == Decimal(1990)
    assert sent["MS-2"].min_price == Decimal(1000)
    prices = price_list.current_prices(db, "oz1")
    assert prices["9001"].price == Decimal(1080)
    assert "9003" not in prices  # the marketplace refused it: the price list keeps no false price
    hist = price_list.history(db, "oz1")
    assert len(hist) == 3
    failed = [h for h in hist if not h["ok"]]
    assert failed[0]["offer_id"] == "MS-3" and "rejected" in failed[0]["error"]
    assert db.execute("SELECT status FROM price_documents WHERE id=?", (d.id,)).fetchone()[0] == "partial"


def test_apply_network_failure_records_failure_and_changes_nothing(db, fake_market):
    market = fake_market("ozon", "oz1", raise_error=True)
    res = price_apply.apply(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1100))), market, now=NOW)
    assert res.status == "failed"
    assert "connection refused" in res.results[0].error
    assert price_list.current_prices(db, "oz1") == {}


def test_wildberries_base_price_and_discount_per_nmid(db, fake_market):
    market = fake_market("wildberries", "wb1")
    d = doc("wb1", PriceLine("item", "MS-1", price=Decimal(700), discount_percent=Decimal(30)))
    res = price_apply.apply(db, d, market, confirm=True, now=NOW)
    assert res.status == "applied"
    assert len(market.sent) == 1  # both sizes of nmID 100 go as one change
    [c] = market.sent
    assert (c.card_id, c.price, c.discount_percent) == ("100", Decimal(1000), 30)
    assert {r.card_id for r in res.results} == {"101", "102"}
    assert price_list.current_prices(db, "wb1")["102"].price == Decimal(700)


def test_wildberries_sizes_of_one_nmid_cannot_differ(db):
    d = doc("wb1", PriceLine("card", "MS-1-S", price=Decimal(900)), PriceLine("card", "MS-1-M", price=Decimal(950)))
    pv = price_preview.preview(db, d, now=NOW)
    assert any("prices all sizes of 100 together" in e for e in pv.all_errors)


def test_wildberries_quarantine_needs_confirmation(db, fake_market):
    market = fake_market("wildberries", "wb1")
    d = doc("wb1", PriceLine("item", "MS-1", price=Decimal(300)))
    with pytest.raises(ConfirmationRequired, match="quarantine"):
        price_apply.apply(db, d, market, now=NOW)
    assert market.sent == []
    res = price_apply.apply(db, d, market, confirm=True, now=NOW)
    assert res.status == "applied"


def test_below_cost_needs_confirmation(db):
    pv = price_preview.preview(db, doc("oz1", PriceLine("item", "MS-2", price=Decimal(450))), now=NOW)
    assert pv.ok
    assert any("below the 1C cost 500" in t for t in pv.to_confirm)


def test_ozon_crossed_out_rules(db):
    # explicit old price too close to the price: refused
    pv = price_preview.preview(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1000), old_price=Decimal(1020))),
                         now=NOW)
    assert any("at least 50" in e for e in pv.all_errors)
    # discount of 90% or more: refused
    pv = price_preview.preview(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1000), discount_percent=Decimal(95))),
                         now=NOW)
    assert any("above ozon's maximum" in e for e in pv.all_errors)


def test_ozon_ten_updates_per_hour(db, fake_market):
    market = fake_market("ozon", "oz1")
    for n in range(10):
        price_apply.apply(db, doc("oz1", PriceLine("item", "MS-3", price=Decimal(300 + n + 1))), market,
                      now=NOW + timedelta(minutes=n))
    with pytest.raises(PriceDocumentError, match="10 price updates per product per hour"):
        price_apply.apply(db, doc("oz1", PriceLine("item", "MS-3", price=Decimal(400))), market,
                      now=NOW + timedelta(minutes=30))
    # an hour after the first, it is allowed again
    res = price_apply.apply(db, doc("oz1", PriceLine("item", "MS-3", price=Decimal(400))), market,
                        now=NOW + timedelta(minutes=61))
    assert res.status == "applied"


def test_unchanged_prices_are_not_sent(db, fake_market):
    market = fake_market("ozon", "oz1")
    price_apply.apply(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1100))), market, now=NOW)
    res = price_apply.apply(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1100))), market, now=NOW)
    assert res.unchanged == 1 and res.results == []
    assert len(market.sent) == 1


def test_megamarket_crossed_out_not_sent(db, fake_market, card_adder):
    card_adder(db, "mm1", "megamarket", "SKU-1", "MS-1", item_id="i1", price=1000)
    market = fake_market("megamarket", "mm1")
    d = doc("mm1", PriceLine("item", "MS-1", price=Decimal(900), old_price=Decimal(1200)))
    res = price_apply.apply(db, d, market, now=NOW)
    assert res.status == "applied"
    [c] = market.sent
    assert (c.price, c.old_price) == (Decimal(900), None)


def test_price_list_shows_current_prices_and_margins(db, fake_market):
    price_apply.apply(db, doc("wb1", PriceLine("item", "MS-3", price=Decimal(260))), fake_market("wildberries", "wb1"),
                  now=NOW)
    rows = {r["offer_id"]: r for r in price_list.price_list(db, "wb1")}
    assert rows["MS-3x2"]["price"] == "520" and rows["MS-3x2"]["known"]
    assert rows["MS-3x2"]["cost"] == "200" and rows["MS-3x2"]["margin"] == "320"
    assert rows["MS-1-S"]["price"] == "1000" and not rows["MS-1-S"]["known"]  # as imported, never sent


def test_configured_marketplace_floor_and_drop_threshold(db):
    settings = price_preview.PricingSettings.from_dict({"large_drop_percent": 5, "rules": {"ozon": {"min_price": 1000}}})
    pv = price_preview.preview(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(999))), settings=settings, now=NOW)
    assert any("below ozon's minimum 1000" in e for e in pv.all_errors)
    pv = price_preview.preview(db, doc("oz1", PriceLine("item", "MS-1", price=Decimal(1100))), settings=settings, now=NOW)
    assert pv.ok and any("large drop" in t for t in pv.to_confirm)
    with pytest.raises(ValueError, match="unknown price rule"):
        price_preview.rules_for("ozon", {"colour": 1})


def test_wildberries_sizes_not_named_change_with_their_nmid(db, fake_market):
    market = fake_market("wildberries", "wb1")
    res = price_apply.apply(db, doc("wb1", PriceLine("card", "MS-1-S", price=Decimal(900))), market, now=NOW)
    assert [c.card_id for c in market.sent] == ["100"]
    assert {r.offer_id for r in res.results} == {"MS-1-S", "MS-1-M"}
    prices = price_list.current_prices(db, "wb1")
    assert prices["101"].price == prices["102"].price == Decimal(900)


def test_a_wb_price_a_whole_discount_cannot_reach_is_explained_and_needs_a_choice(db, fake_market):
    """2990 with 3990 crossed out: WB's whole-percent discount makes it 2992.50 — said in words, with the
    crossed-out prices that give exactly 2990, and nothing is sent until a person chooses."""
    market = fake_market("wildberries", "wb1")
    d = doc("wb1", PriceLine("item", "MS-1", price=Decimal(2990), old_price=Decimal(3990)))
    pv = price_preview.preview(db, d, now=NOW)
    notes = [n.replace("\u00a0", " ") for n in pv.to_confirm]  # money is written with no-break spaces
    assert any("2 990 ₽ нельзя получить из зачёркнутой 3 990 ₽" in n and "2 992,50 ₽ (скидка 25%)" in n
               and "зачёркнутая 4 600 ₽ при скидке 35%" in n for n in notes), notes
    with pytest.raises(ConfirmationRequired, match="целым процентом"):
        price_apply.apply(db, d, market, now=NOW)
    assert market.sent == []
    exact = doc("wb1", PriceLine("item", "MS-1", price=Decimal(2990), old_price=Decimal(4600)))
    pv = price_preview.preview(db, exact, now=NOW)
    assert not any("целым процентом" in n for n in pv.to_confirm)
    assert {r.effective_price for r in pv.rows} == {Decimal(2990)}
