"""`marketsync orders` and `marketsync reconcile` find cloud.toml as the service does and speak the
config's language with the right plural forms (they printed Russian hard-coded, and `orders` read only
`--config`, falling back to defaults without saying so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_sync.cli import orders, reconcile
from cloud_sync.schema import open_db


def _config(tmp_path: Path, language: str) -> Path:
    db = tmp_path / "cloud.sqlite"
    open_db(db).close()
    path = tmp_path / "cloud.toml"
    path.write_text(f'[cloud]\ndb_path = "{db}"\n\n[ui]\nlanguage = "{language}"\n')
    return path


@pytest.mark.parametrize(("language", "said"), [("ru", "выгружено 0 заказов →"), ("en", "0 orders exported →")])
def test_orders_export_found_through_the_environment_speaks_the_config_language(tmp_path, monkeypatch, capsys,
                                                                                language, said):
    monkeypatch.setenv("MARKETSYNC_CONFIG", str(_config(tmp_path, language)))
    monkeypatch.chdir(tmp_path)
    assert orders.main(["export", "--format", "csv", "--out", str(tmp_path / "o.csv")]) == 0
    assert said in capsys.readouterr().err


def test_reconcile_names_an_unknown_account_and_the_config_it_read(tmp_path, monkeypatch, capsys):
    path = _config(tmp_path, "ru")
    monkeypatch.setenv("MARKETSYNC_CONFIG", str(path))
    assert reconcile.main(["--account", "nope", "--no-read-back"]) == 2
    err = capsys.readouterr().err
    assert "нет такого кабинета: nope" in err and str(path) in err


def test_reconcile_with_nothing_to_reconcile_says_so_in_english_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MARKETSYNC_CONFIG", str(_config(tmp_path, "en")))
    assert reconcile.main(["--no-read-back"]) == 0
    out = capsys.readouterr().out
    assert "no differences: 0 items reconciled" in out
