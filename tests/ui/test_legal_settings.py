"""Settings: the legal details the commission report names (the seller, each account's marketplace and
its contract), entered by the owner in Russian, checked next to the field, and written into the 1C
XLSX the Reports page gives."""

from __future__ import annotations

import io
import json
import time

from openpyxl import load_workbook

from cloud_sync.onec.commission import parties

from .conftest import form_token, start_db


def test_the_owner_enters_the_parties_and_the_xlsx_names_them(as_user, cloud):
    _, conn, _cfg = cloud
    c = as_user("olga")
    page = c.get("/settings").text
    assert 'id="legal-form"' in page and "Реквизиты для отчёта комиссионера" in page
    token = form_token(page)
    bad = c.post("/settings/legal", data={"csrf_token": token, "legal_scope": "wb1", "legal_name": "ООО «РВБ»",
                                          "legal_inn": "12345", "legal_kpp": "9977", "legal_contract_date": "1.3.25"})
    assert bad.status_code == 400
    assert 'id="err-legal_inn"' in bad.text and "ИНН — 10 цифр у организации или 12 у ИП" in bad.text
    assert 'id="err-legal_kpp"' in bad.text and 'id="err-legal_contract_date"' in bad.text
    assert 'value="ООО «РВБ»"' in bad.text.replace("&#34;", '"')  # what was typed is kept
    assert parties(conn, "wb1").marketplace.name == ""  # nothing stored from a refused form
    ok = c.post("/settings/legal", data={"csrf_token": token, "legal_scope": "wb1", "legal_name": "ООО «РВБ»",
                                         "legal_inn": "9714053621", "legal_kpp": "507401001",
                                         "legal_contract_number": "WB-17", "legal_contract_date": "2025-03-01"})
    assert ok.status_code == 200 and "сохранены" in ok.text
    c.post("/settings/legal", data={"csrf_token": token, "legal_scope": "seller", "legal_name": "ИП Иванов И. И.",
                                    "legal_inn": "770123456789"})
    legal = parties(conn, "wb1")
    assert (legal.seller.name, legal.seller.inn) == ("ИП Иванов И. И.", "770123456789")
    assert (legal.marketplace.inn, legal.contract_number, str(legal.contract_date)) == (
        "9714053621", "WB-17", "2025-03-01")
    page = c.get("/settings").text
    assert "9714053621" in page and "№ WB-17" in page
    assert c.post("/settings/legal", data={"csrf_token": token, "legal_scope": "nope",
                                           "legal_name": "x"}).status_code == 400
    # a saved report downloaded as XLSX carries them in 1C's layout
    conn.execute("INSERT INTO commission_reports(id, account, marketplace, period_from, period_to, totals,"
                 " native_totals, reconciled, differences, built_ts) VALUES ('rep-9', 'wb1', 'wildberries',"
                 " '2026-11-01', '2026-11-07', ?, '{}', NULL, '[]', ?)",
                 (json.dumps({"revenue": "1000", "to_pay": "800"}), time.time()))
    conn.execute("INSERT INTO commission_report_rows(report_id, row_no, item_id, article, name, sold, returned,"
                 " revenue, fee, logistics, other, to_pay, storage) VALUES ('rep-9', 1, 'i1', 'A-1', 'Кружка', 2, 0,"
                 " '1000', '150', '40', '0', '800', '10')")
    conn.commit()
    x = c.get("/reports/commission/rep-9.xlsx")
    assert x.status_code == 200
    ws = load_workbook(io.BytesIO(x.data))["Отчет комиссионера"]
    assert ws["C3"].value == "ООО «РВБ», ИНН 9714053621, КПП 507401001"
    assert ws["C4"].value == "ИП Иванов И. И., ИНН 770123456789"
    assert ws["C5"].value == "№ WB-17" and ws["F5"].is_date
    assert ws["H9"].value == 1000 and ws["H9"].number_format == "#,##0.00"


def test_legal_details_have_a_home_in_cloud_toml_and_settings_override_them(tmp_path, users_db):
    """[legal] in cloud.toml: read and checked once at start; the Settings page shows it and what the owner
    enters there wins, field by field (before, the details lived only in the database)."""

    import pytest

    from cloud_sync.config import ConfigError, parse_config
    from cloud_sync.schema import open_db
    from cloud_sync.web.app import create_app

    from .conftest import login

    accounts = {"wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9",
                        "credentials": {"Authorization": "sandbox-secret-wb1"}}}
    legal = {"seller": {"name": "ООО «Ромашка»", "inn": "7701234567", "kpp": "770101001"},
             "accounts": {"wb1": {"name": "ООО «РВБ»", "inn": "9714053621", "contract_number": "WB-1",
                                  "contract_date": "2025-01-15"}}}
    for bad, said in ((["seller", "inn"], "legal.seller.inn"), (["accounts", "wb1", "contract_date"],
                                                                 "legal.accounts.wb1.contract_date")):
        broken = json.loads(json.dumps(legal))
        where = broken
        for key in bad[:-1]:
            where = where[key]
        where[bad[-1]] = "12-34"
        with pytest.raises(ConfigError, match=said.replace(".", r"\.")):
            parse_config({"accounts": accounts, "legal": broken})
    with pytest.raises(ConfigError, match="names no account"):
        parse_config({"accounts": accounts, "legal": {"accounts": {"oz9": {"name": "x"}}}})
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")}, "accounts": accounts, "legal": legal})
    conn = open_db(cfg.db_path)
    assert parties(conn, "wb1", cfg.legal).seller.inn == "7701234567"
    assert parties(conn, "wb1", cfg.legal).contract_number == "WB-1"
    c = create_app(cfg).test_client()
    assert login(c, "olga").status_code == 302
    page = c.get("/settings").text
    assert "7701234567" in page and "9714053621" in page and "№ WB-1" in page
    ok = c.post("/settings/legal", data={"csrf_token": form_token(page), "legal_scope": "wb1", "legal_name": "ООО «РВБ»",
                                         "legal_inn": "9714053621", "legal_contract_number": "WB-17",
                                         "legal_contract_date": "2025-03-01"})
    assert ok.status_code == 200
    p = parties(conn, "wb1", cfg.legal)
    assert (p.contract_number, str(p.contract_date), p.seller.name) == ("WB-17", "2025-03-01", "ООО «Ромашка»")
    conn.close()
