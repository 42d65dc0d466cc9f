"""Stock in the marketplaces' own warehouses (FBO): recorded per warehouse with its name, kept apart from
the FBS ledger, a warehouse missing from a reading kept (not zeroed) and flagged, days of cover from the
card's recent sales, and the critical-stock alert on it («MS-00011: осталось 3 на складе Коледино …»)."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud_sync.alerts import checks, outbox
from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.stock import fbo
from marketplaces.base import Card, StockLevel

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def _seed(db) -> None:
    with transaction(db):
        nom.upsert_items(db, [nom.Item(id="i11", name="Кружка керамическая", article="MS-00011"),
                              nom.Item(id="i12", name="Рюкзак", article="MS-00012")])
        catalog.import_cards(db, "wb-main", "wildberries", [Card("400000011", "MS-00011"), Card("400000012", "MS-00012")])
        catalog.link(db, "wb-main", "400000011", "i11")
        catalog.link(db, "wb-main", "400000012", "i12")


def _sell(db, card: str, n: int, days_ago: float, oid: int) -> None:
    at = datetime.fromtimestamp(NOW - days_ago * 86400, UTC).isoformat()
    db.execute("INSERT INTO orders(id, key, account, marketplace, native_id, number, stage, status, created_at,"
               " ingested_ts, updated_ts) VALUES (?,?,'wb-main','wildberries',?,?,'handed_over','handed_over',?,0,0)",
               (oid, f"wb-main:{oid}", str(oid), str(oid), at))
    db.execute("INSERT INTO order_lines(order_id, line_no, card_id, offer_id, quantity, units, price)"
               " VALUES (?,1,?,'',?,?,'100')", (oid, card, n, n))


def lv(card: str, wh: str, name: str, qty: int) -> StockLevel:
    return StockLevel(card, "", wh, qty, "fbo", warehouse_name=name)


def test_fbo_alert_with_days_of_cover_once_per_episode(db) -> None:
    _seed(db)
    for k in range(14):  # 14 units over the last two weeks: one a day... and 7 more this week
        _sell(db, "400000011", 1, k + 0.5, 100 + k)
    _sell(db, "400000011", 7, 2, 200)
    _sell(db, "400000011", 50, 20, 201)  # older than the window: not counted
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 3), lv("400000012", "507", "Коледино", 40)],
                   now=NOW)
    [line] = [ln for ln in fbo.lines(db, now=NOW) if ln.card_id == "400000011"]
    assert line.sold_per_day == 21 / 14 and round(line.days_of_cover, 1) == 2.0
    assert checks.check_fbo_stock(db, min_quantity=1, cover_days=7, now=NOW) == ["fbo:wb-main:400000011:507"]
    [row] = outbox.pending(db)
    assert row["text"] == "📦 MS-00011: осталось 3 на складе Коледино (wb-main), ~2 дня продаж"
    assert checks.check_fbo_stock(db, min_quantity=1, cover_days=7, now=NOW + 60) == []  # same episode
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 60), lv("400000012", "507", "Коледино", 40)],
                   now=NOW + 120)
    assert checks.check_fbo_stock(db, min_quantity=1, cover_days=7, now=NOW + 180) == []  # restocked
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 2), lv("400000012", "507", "Коледино", 40)],
                   now=NOW + 240)
    assert checks.check_fbo_stock(db, min_quantity=1, cover_days=7, now=NOW + 300) == ["fbo:wb-main:400000011:507"]
    assert len(outbox.pending(db)) == 2


def test_no_sales_alerts_on_the_quantity_and_says_so(db) -> None:
    _seed(db)
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000012", "120762", "Электросталь", 2)], now=NOW)
    assert checks.check_fbo_stock(db, min_quantity=3, cover_days=7, now=NOW) == ["fbo:wb-main:400000012:120762"]
    assert outbox.pending(db)[0]["text"].endswith("продаж за последние 14 дн. не было")
    checks.set_minimum(db, "i12", 1)  # the item's own critical level wins over the default
    db.execute("DELETE FROM alert_state")
    assert checks.check_fbo_stock(db, min_quantity=3, cover_days=7, now=NOW + 1) == []


def test_fbo_is_kept_apart_from_fbs_and_a_missing_warehouse_is_kept_flagged(db) -> None:
    _seed(db)
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 3), lv("400000011", "120762", "Электросталь", 9)],
                   now=NOW)
    assert db.execute("SELECT COUNT(*) FROM stock_levels").fetchone()[0] == 0  # never in the FBS ledger
    with transaction(db):
        got = fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 4)], now=NOW + 60)
    assert got.missing == ["120762"]
    by = {ln.warehouse_id: ln for ln in fbo.lines(db, "wb-main", now=NOW)}
    assert by["507"].quantity == 4 and by["507"].missing_since is None
    assert by["120762"].quantity == 9 and by["120762"].missing_since == NOW + 60  # not turned into zero
    assert by["120762"].warehouse == "Электросталь"
    with transaction(db):
        fbo.record(db, "wb-main", [lv("400000011", "507", "Коледино", 4), lv("400000011", "120762", "", 1)],
                   now=NOW + 120)
    by = {ln.warehouse_id: ln for ln in fbo.lines(db, "wb-main", now=NOW)}
    assert by["120762"].quantity == 1 and by["120762"].missing_since is None and by["120762"].warehouse == "Электросталь"
