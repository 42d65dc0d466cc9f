"""The commission agent report for 1C: the XLSX in the layout of 1C's «Отчет комиссионера (агента) о
продажах», and the OData connector against a local server that follows the shape of 1C's standard OData
interface (Basic auth, $format=json, entity sets Document_*, Ref_Key answers, odata.error on refusal,
Post()). The 1C server is the one part that cannot run here; the stand-in is written in this test."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import date
from decimal import Decimal

import pytest
from flask import Flask, jsonify, request
from openpyxl import load_workbook
from werkzeug.serving import make_server

from cloud_sync.money.reports import CommissionReport, ItemRow, save_report
from cloud_sync.onec.commission import (
    ODataError,
    ODataSettings,
    check_legal,
    create_document,
    parties,
    saved_report,
    store_parties,
    write_xlsx,
)
from cloud_sync.schema import open_db

CUP = "0a1b2c3d-0000-4000-8000-000000000001"
MUG, RED = "0a1b2c3d-0000-4000-8000-000000000002", "0a1b2c3d-0000-4000-8000-0000000000ff"
GUIDISH = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def report() -> CommissionReport:
    rows = [
        ItemRow(key=CUP, item_id=CUP, article="ЧШ-1", name="Чашка", sold=3, returned=1, revenue=Decimal("1350.00"),
                fee=Decimal("202.50"), logistics=Decimal("150.00"), to_pay=Decimal("997.50")),
        ItemRow(key=f"{MUG}#{RED}", item_id=f"{MUG}#{RED}", article="КР-2", name="Кружка (красная)", sold=2,
                revenue=Decimal("799.80"), fee=Decimal("119.97"), to_pay=Decimal("679.83")),
        ItemRow(key="account", item_id=None, name="Услуги маркетплейса (без товара)", other=Decimal("-50.00"),
                to_pay=Decimal("-50.00")),
    ]
    totals = {k: sum((Decimal(getattr(r, k)) for r in rows), Decimal(0))
              for k in ("sold", "returned", "revenue", "fee", "logistics", "other", "to_pay")}
    return CommissionReport(account="wb-main", marketplace="wildberries", period_from=date(2026, 11, 1),
                            period_to=date(2026, 11, 15), rows=rows, totals=totals, native_totals={}, compared={},
                            differences=[], not_compared=[])


def test_xlsx_in_1c_layout(tmp_path):
    path = write_xlsx(report(), tmp_path / "r.xlsx", principal="ООО Ромашка", number="17", on=date(2026, 11, 26))
    ws = load_workbook(path).active
    assert ws["A1"].value == "Отчет комиссионера (агента) о продажах № 17 от 26.11.2026"
    assert ws["C3"].value == "Wildberries, кабинет wb-main" and ws["C4"].value == "ООО Ромашка"
    header = [c.value for c in ws[8]]
    assert header[:4] == ["№", "Код (Ид 1С)", "Артикул", "Номенклатура"] and "Сумма вознаграждения" in header
    assert header[10:16] == ["Эквайринг", "Логистика", "Хранение", "Штрафы", "Прочие удержания", "К перечислению"]
    body = [[c.value for c in row] for row in ws.iter_rows(min_row=9, max_row=11)]
    assert body[0][:10] == [1, CUP, "ЧШ-1", "Чашка", None, 3, 450.0, 1350.0, 15.0, 202.5]
    assert body[1][1] == f"{MUG}#{RED}" and body[1][4] == RED
    assert body[2][1] is None and body[2][15] == -50.0  # services of the account: no 1C item
    total = [c.value for c in ws[12]]
    assert total[3] == "Итого" and total[5] == 5 and total[7] == pytest.approx(2149.8) and total[9] == pytest.approx(322.47)


def test_xlsx_has_dates_numbers_and_the_parties_from_settings(tmp_path):
    """What 1C reads: the parties with INN/KPP and the contract from Settings, dates as date cells, money
    as numbers with two decimals (never text in «General»)."""
    conn = open_db(tmp_path / "c.db")
    assert check_legal({"inn": "12345", "kpp": "77", "contract_date": "31.01.2026"}).keys() == {
        "inn", "kpp", "contract_date"}
    store_parties(conn, "seller", {"name": "ООО Ромашка", "inn": "7701234567", "kpp": "770101001"})
    store_parties(conn, "wb-main", {"name": "ООО «Вайлдберриз»", "inn": "7721546864", "kpp": "997750001",
                                    "contract_number": "WB-2025/17", "contract_date": "2025-03-01"})
    path = write_xlsx(report(), tmp_path / "r.xlsx", number="17", on=date(2026, 11, 26),
                      legal=parties(conn, "wb-main"))
    wb = load_workbook(path)
    ws = wb["Отчет комиссионера"]
    assert ws["C3"].value == "ООО «Вайлдберриз», ИНН 7721546864, КПП 997750001"
    assert ws["C4"].value == "ООО Ромашка, ИНН 7701234567, КПП 770101001"
    assert ws["C5"].value == "№ WB-2025/17"
    assert ws["F5"].is_date and ws["F5"].value.date() == date(2025, 3, 1) and ws["F5"].number_format == "DD.MM.YYYY"
    assert ws["C6"].is_date and ws["C6"].value.date() == date(2026, 11, 1)
    assert ws["D6"].is_date and ws["D6"].value.date() == date(2026, 11, 15)
    assert ws["C2"].is_date and ws["C2"].value.date() == date(2026, 11, 26)
    for col in (7, 8, 10, 11, 12, 13, 14, 15, 16):  # price, sum, commission, the deductions, to pay
        for row in (9, 10, 11, 12) if col != 7 else (9, 10, 11):  # the total row has no price
            cell = ws.cell(row, col)
            assert cell.data_type == "n" and isinstance(cell.value, int | float), (row, col, cell.value)
            assert cell.number_format == "#,##0.00", (row, col, cell.number_format)
    assert ws.cell(9, 6).data_type == "n" and ws.cell(9, 6).value == 3  # quantity: a whole number
    assert "Сверка" in wb.sheetnames
    conn.close()


def test_saved_report_reads_back(tmp_path):
    conn = open_db(tmp_path / "c.db")
    r = report()
    save_report(conn, r)
    back = saved_report(conn, r.id)
    assert [(x.item_id, x.sold, x.revenue, x.fee) for x in back.rows] == [(x.item_id, x.sold, x.revenue, x.fee)
                                                                         for x in r.rows]


@pytest.fixture
def odata_1c():
    """A stand-in 1C infobase publishing the standard OData interface for one document type."""
    app = Flask("fake-1c")
    state = {"docs": {}, "catalog": {CUP, MUG}, "characteristics": {RED}}

    def error(code: int, text: str):
        return jsonify({"odata.error": {"code": "-1", "message": {"lang": "ru", "value": text}}}), code

    @app.before_request
    def auth():
        a = request.authorization
        if a is None or (a.username, a.password) != ("Администратор", "pw-1c"):
            return "", 401, {"WWW-Authenticate": 'Basic realm="1C"'}
        if request.args.get("$format") != "json":
            return error(400, "нужен $format=json")
        return None

    @app.post("/base/odata/standard.odata/Document_ОтчетКомиссионера")
    def create():
        doc = request.get_json()
        if not GUIDISH.match(doc.get("Контрагент_Key", "")):
            return error(400, "Контрагент_Key: неверный формат")
        for line in doc.get("Товары", []):
            if line.get("Номенклатура_Key") not in state["catalog"]:
                return error(400, f"Номенклатура_Key {line.get('Номенклатура_Key')}: объект не найден")
            ch = line.get("Характеристика_Key")
            if ch and ch not in state["characteristics"]:
                return error(400, f"Характеристика_Key {ch}: объект не найден")
        ref = str(uuid.uuid4())
        state["docs"][ref] = {**doc, "Ref_Key": ref, "Posted": False, "Number": f"0000-{len(state['docs']) + 1:06d}"}
        return jsonify(state["docs"][ref]), 201

    @app.post("/base/odata/standard.odata/Document_ОтчетКомиссионера(guid'<ref>')/Post()")
    def post(ref):
        if ref not in state["docs"]:
            return error(404, "объект не найден")
        state["docs"][ref]["Posted"] = True
        return "", 200

    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/base", state
    finally:
        server.shutdown()
        t.join(10)


def settings(url: str, **kw) -> ODataSettings:
    return ODataSettings(base_url=url, login="Администратор", password="pw-1c",
                         counterparty_key="11111111-2222-4333-8444-555555555555", **kw)


def test_odata_creates_and_posts_the_document(odata_1c):
    url, state = odata_1c
    result = create_document(report(), settings(url, post=True))
    doc = state["docs"][result.ref_key]
    assert result.posted and doc["Posted"] and result.lines == 2
    assert result.skipped == ["Услуги маркетплейса (без товара)"]
    first, second = doc["Товары"]
    assert first == {"LineNumber": "1", "Номенклатура_Key": CUP, "Количество": 3, "Цена": 450.0, "Сумма": 1350.0,
                     "СуммаВознаграждения": 202.5}
    assert second["Номенклатура_Key"] == MUG and second["Характеристика_Key"] == RED


def test_odata_refusals_are_clear_and_hold_no_secret(odata_1c):
    url, state = odata_1c
    with pytest.raises(ODataError) as exc:
        create_document(report(), ODataSettings(base_url=url, login="Администратор", password="wrong-pw"))
    assert "401" in str(exc.value) and "wrong-pw" not in str(exc.value)
    state["catalog"].discard(CUP)
    with pytest.raises(ODataError) as exc:
        create_document(report(), settings(url))
    assert "объект не найден" in str(exc.value)
    r = report()
    r.rows[0].item_id = "item-1"  # not a 1C reference: nothing is sent at all
    with pytest.raises(ODataError) as exc:
        create_document(r, settings(url))
    assert "item-1" in str(exc.value) and state["docs"] == {}


def test_cli_writes_the_xlsx_of_a_saved_report(tmp_path, capsys):
    import json

    from cloud_sync.cli.onec import main

    conn = open_db(tmp_path / "c.db")
    r = report()
    save_report(conn, r)
    conn.close()
    assert main(["commission", r.id, "--db", str(tmp_path / "c.db"), "--xlsx", str(tmp_path / "o.xlsx")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"] == 3 and load_workbook(out["xlsx"]).active["B9"].value == CUP
    assert main(["commission", "nope", "--db", str(tmp_path / "c.db"), "--xlsx", str(tmp_path / "o.xlsx")]) == 1
    assert "no commission report" in capsys.readouterr().err
