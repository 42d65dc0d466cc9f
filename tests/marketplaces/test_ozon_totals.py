"""Ozon's own totals for the realization report (`POST /v3/finance/transaction/totals`) against the Ozon
sandbox, over real HTTP: a clean month reconciles with the report's lines; a correction Ozon booked
outside the report shows as a difference. The `contract` fixture validates every exchange."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from cloud_sync.money import reports
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import MarketplaceError

TOTALS_PATH = "/v3/finance/transaction/totals"
DELIVERY_CHARGE = Decimal("76.00")  # the sandbox's charge per posting sold


@pytest.fixture
def oz(sandbox_factory, account_for):
    sb = sandbox_factory("ozon", seed=20, time_scale=60)
    return sb, open_account(account_for(sb))


def _sell(sb, adapter, count: int) -> None:
    """Postings created, packed and handed over through the adapter: sold in the sandbox."""
    httpx.post(sb.url + "/_sandbox/orders", json={"count": count}, timeout=10).raise_for_status()
    for o in adapter.new_orders():
        assert adapter.set_order_status(o.native_id, "assemble").ok
        assert adapter.set_order_status(o.native_id, "ship").ok


def _this_month():
    today = datetime.now(UTC).date()
    return today.replace(day=1), today


def test_a_clean_month_reconciles_with_ozons_totals(oz, tmp_path) -> None:
    sb, adapter = oz
    _sell(sb, adapter, 3)
    report = adapter.realization_report(*_this_month())
    sales = [ln for ln in report.lines if ln.kind == "sale"]
    assert len(sales) == 3
    revenue = sum((ln.revenue for ln in sales), Decimal(0))
    fee = sum((ln.fee for ln in sales), Decimal(0))
    assert report.native_totals["revenue"] == revenue > 0
    assert report.native_totals["fee"] == fee > 0  # Ozon gives the commission negative; the report, charged
    assert report.native_totals["processing_and_delivery"] == -3 * DELIVERY_CHARGE
    # the logistics the realization report does not carry come off what Ozon pays (not 0, as before)
    [logistics] = [ln for ln in report.lines if ln.kind == "logistics"]
    assert logistics.logistics == 3 * DELIVERY_CHARGE and logistics.to_pay == -3 * DELIVERY_CHARGE
    assert report.native_totals["to_pay"] == revenue - fee - 3 * DELIVERY_CHARGE
    conn = open_db(tmp_path / "tenant.sqlite")
    rep = reports.build_commission_report(conn, report, marketplace="ozon")
    assert rep.reconciled is True, rep.differences
    assert set(rep.compared) == {"revenue", "fee", "to_pay"}
    assert rep.totals["logistics"] == 3 * DELIVERY_CHARGE
    assert rep.totals["to_pay"] == revenue - fee - 3 * DELIVERY_CHARGE == rep.native_totals["to_pay"]
    assert "processing_and_delivery" in rep.not_compared
    said = {r[0]: r for r in reports.reconciliation_table(rep)[1]}  # in Russian, as the files say it
    assert said["Обработка и доставка (Ozon)"][4:] == ["не сравнивается",
                                                   "обработка и доставка: вычтено в «Логистика» (строка «Услуги маркетплейса»)"]
    assert said["К перечислению"][4] == "сходится" and "итогов транзакций Ozon" in said["К перечислению"][5]
    conn.close()


def test_a_correction_outside_the_report_shows_as_a_difference(oz, tmp_path) -> None:
    sb, adapter = oz
    _sell(sb, adapter, 2)
    httpx.post(sb.url + "/_sandbox/x/transaction", json={"accruals_for_sale": "-150.50", "type": "other"},
               timeout=10).raise_for_status()
    report = adapter.realization_report(*_this_month())
    conn = open_db(tmp_path / "tenant.sqlite")
    rep = reports.build_commission_report(conn, report, marketplace="ozon")
    assert rep.reconciled is False
    # Ozon booked 150.50 less than the report sold: both the revenue and what Ozon pays differ by it
    assert [(d.name, d.delta) for d in rep.differences] == [("revenue", Decimal("150.50")),
                                                            ("to_pay", Decimal("150.50"))]
    conn.close()


def test_a_month_with_no_sales_has_zero_totals(oz) -> None:
    sb, adapter = oz
    report = adapter.realization_report(datetime(2025, 3, 1).date(), datetime(2025, 3, 31).date())
    assert report.lines == [] and report.native_totals["revenue"] == report.native_totals["fee"] == 0


def test_totals_by_posting_and_refused_periods(oz) -> None:
    sb, adapter = oz
    _sell(sb, adapter, 2)
    number = next(iter(httpx.get(sb.url + "/_sandbox/state", timeout=10).json()["orders"]))
    one = adapter.http.call("transaction_totals", json={"posting_number": number}).json_object()["result"]
    assert one["sale_commission"] < 0 < one["accruals_for_sale"]
    assert one["processing_and_delivery"] == -float(DELIVERY_CHARGE)
    with pytest.raises(MarketplaceError) as refused:
        adapter.http.call("transaction_totals", json={"date": {"from": "2026-05-02T00:00:00.000Z",
                                                               "to": "2026-05-01T00:00:00.000Z"}})
    assert refused.value.status == 400
