"""The commission agent report end to end: orders sold in the Wildberries sandbox (created, confirmed
into a supply, delivered through the real adapter), its finance `sales-reports` read by the adapter,
summed per 1C item, reconciled with the marketplace's totals and exported."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import httpx
from openpyxl import load_workbook

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature as nom
from cloud_sync.db import transaction
from cloud_sync.money import reports
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import AccountConfig
from marketplaces.sandbox.seed import demo_items


def test_wildberries_sales_become_a_reconciled_commission_report(tmp_path, sandbox_process):
    info = sandbox_process("wildberries")
    conn = open_db(tmp_path / "tenant.sqlite")
    items = demo_items(10)
    adapter = open_account(AccountConfig(name="wb", marketplace="wildberries", base_url=info["url"],
                                         credentials=info["credentials"]))
    with transaction(conn):
        nom.upsert_items(conn, [nom.Item(id=i.item_id, name=i.name, article=i.article, barcodes=[i.barcode])
                                for i in items])
        catalog.import_cards(conn, "wb", "wildberries", list(adapter.list_cards()))
        catalog.auto_link(conn, "wb")
    httpx.post(f"{info['url']}/_sandbox/orders", json={"count": 4}, timeout=10).raise_for_status()
    orders = adapter.new_orders()
    assert len(orders) == 4
    for o in orders:
        assert adapter.set_order_status(o.native_id, "confirm").ok
    for o in orders:
        assert adapter.set_order_status(o.native_id, "ship").ok
    today = date.today()
    rep = reports.fetch_commission_report(conn, adapter, today - timedelta(days=1), today + timedelta(days=1))
    assert rep.reconciled is True, rep.differences
    assert rep.totals["sold"] == 4
    goods = [r for r in rep.rows if r.key != "account"]
    assert all(r.item_id for r in goods), [r.key for r in rep.rows]  # every sale found its 1C item
    assert [r.other for r in rep.rows if r.key == "account"] == [Decimal("30.00")]  # WB's deduction: no goods
    # «К перечислению» is what WB pays: its «Итого к оплате» (bankPaymentSum), every deduction taken
    revenue, fee, acquiring = rep.totals["revenue"], rep.totals["fee"], rep.totals["acquiring"]
    assert rep.totals["logistics"] == 4 * Decimal("55.00") and rep.totals["storage"] == 4 * Decimal("4.20")
    assert rep.totals["penalty"] == Decimal("150.00") and acquiring == (revenue * Decimal("0.015")).quantize(
        Decimal("0.01")) or acquiring > 0
    expected = revenue - fee - acquiring - 4 * Decimal("55.00") - 4 * Decimal("4.20") - 150 - 30
    assert rep.totals["to_pay"] == expected == rep.native_totals["to_pay"] == rep.compared["to_pay"]
    assert {"revenue", "logistics", "storage", "penalty", "other", "to_pay"} <= set(rep.compared)
    assert sum((r.logistics for r in rep.rows), Decimal(0)) == rep.totals["logistics"] > 0
    out = reports.export_commission(rep, tmp_path / "wb.xlsx")
    ws = load_workbook(out)["Отчёт комиссионера"]
    assert ws.cell(ws.max_row, 2).value == "Итого"
    assert conn.execute("SELECT reconciled FROM commission_reports WHERE id=?", (rep.id,)).fetchone()[0] == 1
    conn.close()


def test_ozon_sales_become_a_report_with_each_items_own_logistics(tmp_path, sandbox_process):
    """Ozon end to end, the sandbox in its own process: postings sold through the adapter; the report takes
    each posting's logistics and processing from /v3/finance/transaction/list onto its 1C item's row (not
    one «Услуги маркетплейса» line), and «К перечислению» and the logistics agree with Ozon's totals."""
    info = sandbox_process("ozon")
    conn = open_db(tmp_path / "tenant.sqlite")
    adapter = open_account(AccountConfig(name="oz", marketplace="ozon", base_url=info["url"],
                                         credentials=info["credentials"], options={
                                             "client_id": info["credentials"]["Client-Id"]}))
    with transaction(conn):
        nom.upsert_items(conn, [nom.Item(id=i.item_id, name=i.name, article=i.article, barcodes=[i.barcode])
                                for i in demo_items(10)])
        catalog.import_cards(conn, "oz", "ozon", list(adapter.list_cards()))
        catalog.auto_link(conn, "oz")
    httpx.post(f"{info['url']}/_sandbox/orders", json={"count": 3}, timeout=10).raise_for_status()
    for o in adapter.new_orders():
        assert adapter.set_order_status(o.native_id, "assemble").ok
        assert adapter.set_order_status(o.native_id, "ship").ok
    today = date.today()
    rep = reports.fetch_commission_report(conn, adapter, today.replace(day=1), today)
    assert rep.reconciled is True, rep.differences
    assert {"revenue", "fee", "logistics", "to_pay"} <= set(rep.compared)
    goods = [r for r in rep.rows if r.key != "account"]
    assert goods and all(r.item_id for r in goods) and not [r for r in rep.rows if r.key == "account"]
    assert all(r.logistics > 0 and r.to_pay == r.revenue - r.fee - r.logistics for r in goods)
    assert rep.totals["logistics"] == 3 * Decimal("76.00") == rep.native_totals["logistics"]
    assert rep.totals["to_pay"] == rep.native_totals["to_pay"]
    conn.close()
