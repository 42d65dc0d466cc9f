"""Bad input on the manager's forms: refused with a message beside the field, nothing changed;
uploaded price lists validated whole before anything applies; tokens entered in Settings stored
encrypted and never shown again."""

from __future__ import annotations

import io

from openpyxl import Workbook

from cloud_sync.access import secrets

from .conftest import form_token


def _count(conn, table: str) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_price_upload_with_one_bad_row_is_refused_whole(as_user, cloud):
    _, conn, _ = cloud
    c = as_user("masha")
    token = form_token(c.get("/prices?account=wb1").text)
    csv = "item;price\nART-1;990\nART-2;-5\nART-3;abc\n".encode("utf-8-sig")
    r = c.post("/prices/upload", data={"csrf_token": token, "account": "wb1", "file": (io.BytesIO(csv), "p.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and 'id="err-file"' in r.text
    assert "строка файла 3: цена -5 не больше нуля" in r.text and "строка файла 4" in r.text
    assert _count(conn, "price_documents") == 0 and _count(conn, "price_history") == 0
    wb = Workbook()
    wb.active.append(["item", "price", "colour"])
    wb.active.append(["ART-1", 990, "red"])
    buf = io.BytesIO()
    wb.save(buf)
    r = c.post("/prices/upload", data={"csrf_token": token, "account": "wb1",
                                       "file": (io.BytesIO(buf.getvalue()), "p.xlsx")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "неизвестные столбцы: colour" in r.text
    r = c.post("/prices/upload", data={"csrf_token": token, "account": "wb1",
                                       "file": (io.BytesIO(b"not a zip"), "p.xlsx")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "не читается как файл XLSX" in r.text
    assert _count(conn, "price_documents") == 0


def test_price_editor_refuses_bad_lines_beside_the_row(as_user, cloud):
    _, conn, _ = cloud
    c = as_user("masha")
    token = form_token(c.get("/prices?account=wb1").text)
    r = c.post("/prices/preview", data={"csrf_token": token, "account": "wb1", "rows": "6", "scope_0": "item",
                                        "key_0": "ART-1", "price_0": "-10", "scope_1": "item", "key_1": "ART-2",
                                        "price_1": "100", "percent_1": "5"})
    assert r.status_code == 400
    assert 'id="err-line_0"' in r.text and "не больше нуля" in r.text
    assert 'id="err-line_1"' in r.text and "либо новую цену, либо изменение в %" in r.text
    assert 'value="-10"' in r.text  # what was typed stays in the form
    r = c.post("/prices/rules", data={"csrf_token": token, "account": "wb1", "rule": "-10% Caturday 18:00, back never"})
    assert r.status_code == 400 and 'id="err-rule"' in r.text
    assert _count(conn, "price_documents") == 0 and _count(conn, "price_rules") == 0


def test_settings_forms_refuse_bad_values_and_store_tokens_encrypted(as_user, cloud, caplog):
    app, conn, cfg = cloud
    c = as_user("olga")
    token = form_token(c.get("/settings").text)
    r = c.post("/settings/minimum", data={"csrf_token": token, "item": "ghost", "minimum": "-1"})
    assert r.status_code == 400 and 'id="err-item"' in r.text and 'id="err-minimum"' in r.text
    assert _count(conn, "stock_minimums") == 0
    r = c.post("/settings/status", data={"csrf_token": token, "marketplace": "ozon", "native": "x", "unified": "lost"})
    assert r.status_code == 400 and 'id="err-unified"' in r.text and _count(conn, "stored_settings") == 0
    r = c.post("/settings/token", data={"csrf_token": token, "account": "nope", "field": "Authorization", "value": ""})
    assert r.status_code == 400 and 'id="err-account"' in r.text and 'id="err-value"' in r.text
    secret_value = "wb-token-entered-in-settings-0042"
    with caplog.at_level("DEBUG"):
        r = c.post("/settings/token", data={"csrf_token": token, "account": "wb1", "field": "Authorization",
                                            "value": secret_value})
    assert r.status_code == 200 and secret_value not in r.text
    assert secret_value not in c.get("/settings").text
    assert secret_value not in caplog.text
    row = conn.execute("SELECT ciphertext FROM stored_secrets").fetchone()[0]
    assert secret_value.encode() not in bytes(row)
    key_file = secrets.key_file_for(cfg)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    store = secrets.SecretStore(key_file)
    assert store.get(conn, "account/wb1") == {"Authorization": secret_value}
    # the config's credentials never reach a page either
    assert "sandbox-secret-wb1" not in c.get("/settings").text


def test_a_key_file_others_can_read_is_refused(tmp_path):
    key = tmp_path / "k"
    secrets.load_key(key)
    key.chmod(0o644)
    try:
        secrets.SecretStore(key)
    except secrets.SecretError as exc:
        assert "chmod 600" in str(exc)
    else:
        raise AssertionError("a world-readable key file was used")


def test_bulk_cancel_needs_a_reason_and_packers_cannot_cancel(as_user, cloud):
    c = as_user("masha")
    token = form_token(c.get("/orders").text)
    r = c.post("/orders/bulk", data={"csrf_token": token, "action": "cancel", "keys": ["wb1:1"]})
    assert r.status_code == 400 and 'id="err-reason"' in r.text
    p = as_user("petya")
    token = form_token(p.get("/orders").text)
    r = p.post("/orders/bulk", data={"csrf_token": token, "action": "cancel", "keys": ["wb1:1"], "reason": "x"})
    assert r.status_code == 400 and "сборщик не может отменять заказы" in r.text


def test_a_good_price_upload_goes_to_the_preview_and_nothing_is_sent_yet(as_user, cloud):
    from cloud_sync.catalog import cards as catalog
    from marketplaces.base import Card

    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('I1', 'ART-1', 'Кружка')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="ART-1", title="Кружка")])
    catalog.auto_link(conn, "wb1")
    c = as_user("masha")
    token = form_token(c.get("/prices?account=wb1").text)
    wb = Workbook()
    wb.active.append(["Артикул", "Цена", "Скидка"])
    wb.active.append(["ART-1", 1200, 10])
    buf = io.BytesIO()
    wb.save(buf)
    r = c.post("/prices/upload", data={"csrf_token": token, "account": "wb1",
                                       "file": (io.BytesIO(buf.getvalue()), "prices.xlsx")},
               content_type="multipart/form-data")
    assert r.status_code == 200 and 'id="diff"' in r.text and 'id="apply-form"' in r.text
    assert 'data-offer="ART-1"' in r.text
    assert _count(conn, "price_history") == 0  # a preview sends nothing
