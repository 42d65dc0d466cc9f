"""The commission agent report (per item, reconciled to the marketplace's totals, XLSX/CSV) and the
stock reports, over a real SQLite database. The realization report is built in the test as the
adapter would return it (`RealizationReport`); the sandbox round trip is in test_reports_sandbox.py."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from cloud_sync.money import reports
from marketplaces.base import RealizationReport, ReportLine

D = Decimal


def line(kind, offer, card, qty, revenue, fee=0, logistics=0, other=0, to_pay=None, barcode=""):
    revenue, fee, logistics, other = D(revenue), D(fee), D(logistics), D(other)
    if to_pay is None:
        to_pay = revenue - fee - logistics - other
    return ReportLine(kind=kind, offer_id=offer, card_id=card, quantity=qty, revenue=revenue, fee=fee,
                      logistics=logistics, other=other, to_pay=D(to_pay), barcode=barcode)


LINES = [
    line("sale", "MS-1-S", "101", 2, "1800", fee="270"),
    line("sale", "MS-1-M", "102", 1, "900", fee="135"),
    line("return", "MS-1-M", "102", 1, "-900", fee="-135"),
    line("logistics", "MS-1-S", "101", 0, "0", logistics="120.50"),
    line("sale", "MS-2x2", "201", 3, "1500", fee="225", logistics="60"),
    line("sale", "", "", 1, "700", fee="105", barcode="4607000000028"),  # known only by barcode
    line("sale", "ODD-1", "301", 1, "300", fee="45"),  # a card not linked to 1C
    line("storage", "", "", 0, "0", other="88.20"),
    line("penalty", "", "", 0, "0", other="500"),
]


def native(totals=None):
    return RealizationReport(account="wb1", period_from=date(2026, 11, 16), period_to=date(2026, 11, 22),
                             lines=LINES, native_totals=totals or {}, report_id="R-1")


def our_totals():
    return {"revenue": sum(x.revenue for x in LINES), "fee": sum(x.fee for x in LINES),
            "logistics": sum(x.logistics for x in LINES), "other": sum(x.other for x in LINES),
            "to_pay": sum(x.to_pay for x in LINES)}


def test_per_item_rows_with_packs_returns_and_unlinked(db):
    rep = reports.build_commission_report(db, native(), marketplace="wildberries")
    rows = {r.key: r for r in rep.rows}
    i1 = rows["i1"]
    assert (i1.sold, i1.returned) == (3, 1)
    assert (i1.revenue, i1.fee, i1.logistics) == (D(1800), D(270), D("120.50"))
    assert sorted(i1.offer_ids) == ["MS-1-M", "MS-1-S"] and i1.name == "Футболка"
    i2 = rows["i2"]
    assert i2.sold == 3 * 2 + 1  # a pack of 2 counts 2 item units; the barcode-only line joins its item
    assert i2.revenue == D(2200)
    assert rows["offer:ODD-1"].sold == 1 and rows["offer:ODD-1"].item_id is None
    assert rows["account"].other == D("588.20")
    assert rep.totals["to_pay"] == our_totals()["to_pay"]
    assert sum(r.to_pay for r in rep.rows) == rep.totals["to_pay"]
    assert rep.reconciled is None  # the marketplace gave no totals


def test_reconciles_to_the_marketplace_totals(db):
    totals = {**our_totals(), "sold": D(8), "returned": D(1), "paymentSchedule": D("12.3")}
    rep = reports.build_commission_report(db, native(totals))
    assert rep.reconciled is True
    assert set(rep.compared) == {"revenue", "fee", "logistics", "other", "to_pay", "sold", "returned"}
    assert rep.not_compared == ["paymentSchedule"]
    wrong = {**totals, "to_pay": totals["to_pay"] + D("0.02"), "sold": D(9)}
    rep = reports.build_commission_report(db, native(wrong))
    assert rep.reconciled is False
    assert {d.name: d.delta for d in rep.differences} == {"to_pay": D("-0.02"), "sold": D(-1)}
    # within a kopeck is not a difference
    rep = reports.build_commission_report(db, native({**totals, "fee": totals["fee"] + D("0.005")}))
    assert rep.reconciled is True


def test_export_xlsx_and_csv(db, tmp_path):
    rep = reports.build_commission_report(db, native({**our_totals(), "sold": D(8)}), marketplace="wildberries")
    reports.save_report(db, rep)
    assert db.execute("SELECT COUNT(*) FROM commission_report_rows WHERE report_id=?", (rep.id,)).fetchone()[0] == 4
    assert db.execute("SELECT reconciled FROM commission_reports").fetchone()[0] == 1
    x = reports.export_commission(rep, tmp_path / "r.xlsx")
    wb = load_workbook(x)
    ws = wb["Отчёт комиссионера"]
    values = [[c.value for c in row] for row in ws.iter_rows()]
    header = values.index(["Артикул 1С", "Номенклатура", "Артикулы маркетплейса", "Продано, шт", "Возвращено, шт",
                           "Выручка", "Комиссия маркетплейса", "Эквайринг", "Логистика", "Хранение", "Штрафы",
                           "Прочие удержания", "К перечислению", "Вернулось на склад, шт", "Из них брак, шт"])
    total_row = values[-1]
    assert total_row[1] == "Итого" and total_row[12] == pytest.approx(float(our_totals()["to_pay"]))
    assert len(values) - header - 2 == 4  # four rows between header and total
    assert [r[4] for r in wb["Сверка"].iter_rows(values_only=True)][1:] == ["сходится"] * 6
    c = reports.export_commission(rep, tmp_path / "r.csv")
    text = c.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    [total] = [r for r in rows if r[1:2] == ["Итого"]]
    assert total[:5] == ["", "Итого", "", "11", "1"]  # item units: a pack of 2 counts 2
    assert D(total[12]) == our_totals()["to_pay"]
    assert ["К перечислению", str(our_totals()["to_pay"]), str(our_totals()["to_pay"]), "0.00", "сходится", ""] in rows
    assert any(r[:2] == ["MS-1", "Футболка"] for r in rows)
    with pytest.raises(reports.ReportError, match="xlsx or .csv"):
        reports.export_commission(rep, tmp_path / "r.pdf")


def test_bad_period_refused(db):
    class Market:
        name = "wildberries"

        def realization_report(self, a, b):
            raise AssertionError("must not be called")

    with pytest.raises(reports.ReportError, match="ends"):
        reports.fetch_commission_report(db, Market(), date(2026, 11, 30), date(2026, 11, 1))


def test_stock_reports(db, tmp_path):
    headers, rows = reports.stock_by_warehouse(db)
    assert ["main", "i1", "MS-1", "Футболка", 10, 3, 7] in rows
    assert ["spb", "i2", "MS-2", "Кружка", 4, 0, 4] in rows
    assert reports.stock_warehouse_totals(db)["main"] == {"items": 2, "on_hand": 19, "reserved": 3, "available": 16}
    _, rows = reports.stock_by_account(db, "wb1")
    fbs = {r[4]: r[6] for r in rows if r[2] == "FBS"}
    assert fbs == {"MS-1-S": 7, "MS-1-M": 7, "MS-2x2": 4}  # spb is not an FBS warehouse of wb1; pack of 2: 9 // 2
    fbo = {r[4]: (r[3], r[6]) for r in rows if r[2] == "FBO"}
    assert fbo == {"MS-1-S": ("W-FBO", 25), "MS-2x2": ("W-FBO", 7)}
    assert reports.stock_by_scheme(db)[1] == [["wb1", 18, 32]]
    p = reports.export_stock(db, "warehouse", tmp_path / "s.xlsx")
    assert load_workbook(p).active.max_row == 4
    with pytest.raises(reports.ReportError, match="unknown stock report"):
        reports.export_stock(db, "colour", tmp_path / "s.csv")


def test_a_marketplaces_unit_counts_are_counts_not_money(db, tmp_path):
    """Yandex.Market's realization report gives units handed to delivery and not redeemed: counts, shown and
    exported as whole numbers (they were written as money: «5,00 ₽», and a money cell in the XLSX)."""
    from cloud_sync.onec.commission import saved_report, write_xlsx
    from cloud_sync.web.pages.reports import saved_report as page_report

    theirs = RealizationReport(account="ym1", period_from=date(2026, 11, 16), period_to=date(2026, 11, 22),
                               lines=LINES, native_totals={"sold": D(8), "transferred": D(5), "unredeemed": D(2)},
                               counts=frozenset({"sold", "returned", "transferred", "unredeemed"}))
    rep = reports.build_commission_report(db, theirs, marketplace="yandex_market")
    reports.save_report(db, rep)
    assert saved_report(db, rep.id).native_counts == {"sold", "returned", "transferred", "unredeemed"}
    for built in (rep, page_report(db, rep.id)):  # as built, and as the page reads it back
        said = {x.name: x for x in reports.reconciliation_lines(built)}
        assert said["transferred"].count and said["unredeemed"].count and said["sold"].count
        assert said["transferred"].values() == [None, 5, None] and said["sold"].values() == [8, 8, 0]
        assert not said["to_pay"].count
    table = {r[0]: r for r in reports.reconciliation_table(rep)[1]}
    assert table["Передано в доставку, шт (Маркет)"][1:4] == ["", 5, ""]
    path = write_xlsx(page_report(db, rep.id), tmp_path / "r.xlsx")
    ws = load_workbook(path)["Сверка"]
    [unredeemed] = [row for row in ws.iter_rows() if row[0].value == "Невыкупы, шт (Маркет)"]
    assert unredeemed[2].value == 2 and unredeemed[2].number_format == "General"


def test_the_report_builds_job_takes_no_write_lock_when_nothing_is_asked_for(db):
    """The job looks twice a second: on PostgreSQL an ordinary write transaction stops every writer of the
    store, keyed ones too, until it ends (bench/scale.py counted ~140 of them per process for nothing)."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    try:
        assert reports.run_next_build(db, lambda account: None) is None
    finally:
        db.set_trace_callback(None)
    assert not [s for s in seen if s.lstrip().upper().startswith("BEGIN")], seen
