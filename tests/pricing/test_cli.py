"""`marketsync sync prices|reports` through the real command table (marketsync.cli -> cloud_sync.cli ->
cloud_sync.cli.money), on the real SQLite file of the `db` fixture."""

from __future__ import annotations

import json

from marketsync.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_document_from_toml(db, tmp_path, capsys):
    path = str(tmp_path / "tenant.sqlite")
    doc = tmp_path / "sale.toml"
    doc.write_text('account = "oz1"\ncomment = "Black Friday"\n[[lines]]\ncategory = "Футболки"\npercent = -10\n')
    code, out, err = run(capsys, "sync", "prices", "--db", path, "--doc", str(doc))
    assert code == 0, err
    assert "2 changes" in out and "MS-1" in out and "1200 ->       1080" in out
    code, out, _ = run(capsys, "sync", "prices", "--db", path, "--doc", str(doc), "--json")
    rows = json.loads(out)["rows"]
    assert {r["offer_id"]: r["new_price"] for r in rows} == {"MS-1": "1080", "MS-2": "1350"}
    assert db.execute("SELECT COUNT(*) FROM price_history").fetchone()[0] == 0  # a preview sends nothing


def test_bad_documents_are_refused_with_a_clear_error(db, tmp_path, capsys):
    path = str(tmp_path / "tenant.sqlite")
    bad = tmp_path / "bad.toml"
    bad.write_text('account = "oz1"\n[[lines]]\nitem = "MS-1"\nprice = -100\n')
    code, _, err = run(capsys, "sync", "prices", "--db", path, "--doc", str(bad), "--apply")
    assert code == 1 and "price document refused" in err and "not positive" in err
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"account": "oz1", "lines": [{"item": "NOPE", "price": 100}]}))
    code, out, _ = run(capsys, "sync", "prices", "--db", path, "--doc", str(unknown))
    assert code == 1 and "unknown item 'NOPE'" in out
    broken = tmp_path / "broken.toml"
    broken.write_text("account = \n")
    code, _, err = run(capsys, "sync", "prices", "--db", path, "--doc", str(broken))
    assert code == 1 and "not valid TOML" in err
    code, _, err = run(capsys, "sync", "prices", "--db", path, "--add-rule", "cheaper on fridays", "--account", "oz1")
    assert code == 1 and "cannot read the rule" in err
    # a valid document for an account the config does not know cannot be sent
    good = tmp_path / "good.toml"
    good.write_text('account = "oz1"\n[[lines]]\nitem = "MS-1"\nprice = 1100\n')
    code, _, err = run(capsys, "sync", "prices", "--db", path, "--doc", str(good), "--apply")
    assert code == 2 and "неизвестный кабинет 'oz1'; настроены: нет" in err and "настройки: " in err
    assert db.execute("SELECT COUNT(*) FROM price_history").fetchone()[0] == 0


def test_add_rule_and_stock_report(db, tmp_path, capsys):
    path = str(tmp_path / "tenant.sqlite")
    code, out, err = run(capsys, "sync", "prices", "--db", path, "--account", "oz1",
                         "--add-rule", "-15% пт 18:00, back пн 09:00", "--target", "category=Кружки")
    assert code == 0, err
    assert "added" in out
    row = db.execute("SELECT lines, start_at FROM price_rules").fetchone()
    assert json.loads(row["lines"]) == [{"category": "Кружки", "percent": "-15"}] and row["start_at"] == "пт 18:00"
    rule_id = db.execute("SELECT id FROM price_rules").fetchone()[0]
    code, out, _ = run(capsys, "sync", "prices", "--db", path, "--list-rules")
    assert code == 0 and rule_id in out and "idle" in out
    code, out, _ = run(capsys, "sync", "prices", "--db", path, "--disable-rule", rule_id)
    assert code == 0 and db.execute("SELECT enabled FROM price_rules").fetchone()[0] == 0
    code, _, err = run(capsys, "sync", "prices", "--db", path, "--disable-rule", "nope")
    assert code == 1 and "no price rule 'nope'" in err
    code, out, _ = run(capsys, "sync", "reports", "--db", path, "--stock", "warehouse")
    assert code == 0 and out.splitlines()[0].startswith("Склад;")
