"""The command line finds cloud.toml the way the service does ($MARKETSYNC_CONFIG, then ./config/cloud.toml,
then /etc/marketsync/cloud.toml), names the file it read in every error, speaks the config's language,
and says so when there is nothing to show."""

from __future__ import annotations

from pathlib import Path

from cloud_sync.cli.cloud import stock_main
from cloud_sync.config import find_config

CONF = ('[accounts.wb-main]\nmarketplace = "wildberries"\nbase_url = "http://127.0.0.1:9"\n'
        'warehouses = { "10" = "main" }\n')


def test_the_config_is_found_as_the_service_finds_it(tmp_path):
    (tmp_path / "config").mkdir()
    local = tmp_path / "config" / "cloud.toml"
    named = tmp_path / "named.toml"
    assert find_config(None, env={}, cwd=tmp_path) is None  # nothing there: the defaults
    local.write_text(CONF)
    assert find_config(None, env={}, cwd=tmp_path) == local
    assert find_config(None, env={"MARKETSYNC_CONFIG": str(named)}, cwd=tmp_path) == named  # the variable wins
    assert find_config("given.toml", env={"MARKETSYNC_CONFIG": str(named)}, cwd=tmp_path) == Path("given.toml")


def test_stock_commands_name_the_config_they_read_and_say_when_there_is_nothing(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "cloud.toml"
    conf.write_text(CONF + f'[cloud]\ndb_path = "{tmp_path / "cloud.sqlite"}"\n')
    monkeypatch.setenv("MARKETSYNC_CONFIG", str(conf))
    monkeypatch.chdir(tmp_path)
    assert stock_main(["why", "MS-00011", "--account", "wb-other"]) == 2
    err = capsys.readouterr().err
    assert "неизвестный кабинет 'wb-other'; настроены: wb-main" in err and f"настройки: {conf}" in err
    assert stock_main(["why", "MS-00011", "--account", "wb-main"]) == 2
    err = capsys.readouterr().err
    assert "неизвестный товар 'MS-00011'" in err and str(conf) in err
    assert stock_main(["holds"]) == 0
    assert "ничего не задержано" in capsys.readouterr().out  # not an empty screen
    monkeypatch.delenv("MARKETSYNC_CONFIG")
    assert stock_main(["why", "X", "--account", "wb-main", "--db", str(tmp_path / "d.sqlite")]) == 2
    assert "файл настроек не найден" in capsys.readouterr().err  # and says where it looked
    conf.write_text(CONF + '[ui]\nlanguage = "en"\n')
    assert stock_main(["holds", "--config", str(conf), "--db", str(tmp_path / "d.sqlite")]) == 0
    assert "nothing is held" in capsys.readouterr().out  # the config's language
