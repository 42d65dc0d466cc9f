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
    # logistics: Ozon's processing_and_delivery, compared with the per-item charges of its operations
    assert report.native_totals["logistics"] == 3 * DELIVERY_CHARGE
    assert "processing_and_delivery" not in report.native_totals
    per_item = [ln for ln in report.lines if ln.kind == "logistics"]
    assert len(per_item) == sum(ln.quantity for ln in sales)  # one line per unit of each posting
    sold_skus = {ln.card_id for ln in sales}
    assert {ln.card_id for ln in per_item} == sold_skus and all(ln.offer_id for ln in per_item)
    assert sum((ln.logistics for ln in per_item), Decimal(0)) == 3 * DELIVERY_CHARGE
    assert all(ln.to_pay == -ln.logistics and ln.order_native_id for ln in per_item)
    assert report.native_totals["to_pay"] == revenue - fee - 3 * DELIVERY_CHARGE
    conn = open_db(tmp_path / "tenant.sqlite")
    rep = reports.build_commission_report(conn, report, marketplace="ozon")
    assert rep.reconciled is True, rep.differences
    assert set(rep.compared) == {"revenue", "fee", "logistics", "to_pay"}
    assert rep.totals["logistics"] == 3 * DELIVERY_CHARGE
    assert rep.totals["to_pay"] == revenue - fee - 3 * DELIVERY_CHARGE == rep.native_totals["to_pay"]
    said = {r[0]: r for r in reports.reconciliation_table(rep)[1]}  # in Russian, as the files say it
    assert said["Логистика"][4] == "сходится" and "по товарам" in said["Логистика"][5]
    assert said["К перечислению"][4] == "сходится" and "итогов транзакций Ozon" in said["К перечислению"][5]
    conn.close()


def test_logistics_per_item_from_ozons_operations(oz, tmp_path) -> None:
    """Each posting's logistics and processing services (/v3/finance/transaction/list) go to its item's row,
    not to one account line; an operation of no items (a correction) is the account's."""
    sb, adapter = oz
    _sell(sb, adapter, 2)
    httpx.post(sb.url + "/_sandbox/x/transaction", json={"processing_and_delivery": "-12.40", "type": "services"},
               timeout=10).raise_for_status()
    report = adapter.realization_report(*_this_month())
    conn = open_db(tmp_path / "tenant.sqlite")
    rep = reports.build_commission_report(conn, report, marketplace="ozon")
    by_offer = {r.offer_ids[0]: r for r in rep.rows if r.offer_ids}
    sales = [ln for ln in report.lines if ln.kind == "sale"]
    for ln in sales:
        row = by_offer[ln.offer_id]
        postings = sum(1 for x in sales if x.offer_id == ln.offer_id)  # a sale line per posting sold
        assert row.logistics == DELIVERY_CHARGE * postings
        assert row.to_pay == row.revenue - row.fee - row.logistics
    [account] = [r for r in rep.rows if r.key == "account"]
    assert account.logistics == Decimal("12.40")
    assert rep.totals["logistics"] == 2 * DELIVERY_CHARGE + Decimal("12.40") == rep.compared["logistics"]
    assert rep.reconciled is True, rep.differences
    conn.close()


def test_the_operation_list_pages_and_refuses_a_long_period(oz) -> None:
    sb, adapter = oz
    _sell(sb, adapter, 3)
    now = datetime.now(UTC).date()
    first = {"filter": {"date": {"from": f"{now.replace(day=1)}T00:00:00.000Z", "to": f"{now}T23:59:59.999Z"},
                        "transaction_type": "orders"}, "page": 1, "page_size": 2}
    page1 = adapter.http.call("transaction_list", json=first).json_object()["result"]
    assert page1["row_count"] == 3 and page1["page_count"] == 2 and len(page1["operations"]) == 2
    op = page1["operations"][0]
    assert sum(sv["price"] for sv in op["services"]) == -float(DELIVERY_CHARGE)
    assert op["amount"] == round(op["accruals_for_sale"] + op["sale_commission"] - float(DELIVERY_CHARGE), 2)
    with pytest.raises(MarketplaceError) as refused:
        adapter.http.call("transaction_list", json={"filter": {"date": {"from": "2026-01-01T00:00:00.000Z",
                                                                        "to": "2026-03-01T00:00:00.000Z"}},
                                                    "page": 1, "page_size": 10})
    assert refused.value.status == 400


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


def test_a_service_charge_of_no_posting_is_an_other_deduction_of_the_account(oz, tmp_path) -> None:
    sb, adapter = oz
    _sell(sb, adapter, 1)
    httpx.post(sb.url + "/_sandbox/x/transaction", json={"services_amount": "-40.00", "type": "services"},
               timeout=10).raise_for_status()
    report = adapter.realization_report(*_this_month())
    [line] = [ln for ln in report.lines if not ln.card_id]
    assert (line.kind, line.other, line.logistics, line.to_pay) == ("other", Decimal("40.00"), 0, Decimal("-40.00"))
    conn = open_db(tmp_path / "tenant.sqlite")
    rep = reports.build_commission_report(conn, report, marketplace="ozon")
    assert rep.reconciled is True, rep.differences  # «К перечислению» takes it off, as Ozon's totals do
    assert "services_amount" in rep.not_compared
    conn.close()
