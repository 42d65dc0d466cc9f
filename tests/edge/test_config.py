"""edge.toml: defaults, bad values, PIN hashes, the writer the demo uses."""

from __future__ import annotations

import pytest

from edge_agent.config import DEFAULTS, ConfigError, check_pin, hash_pin, load_config, write_config


def test_shipped_defaults_load_and_the_demo_pin_works() -> None:
    cfg = load_config(DEFAULTS)
    assert cfg.site_id == "site-1" and cfg.auto_pack is False and cfg.printer.kind == "virtual"
    assert check_pin("1234", cfg.staff[0].pin_hash) and not check_pin("1235", cfg.staff[0].pin_hash)


def test_bad_config_values_say_what_is_wrong(tmp_path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text('[web]\nport = "eighty"\n')
    with pytest.raises(ConfigError, match="web.port"):
        load_config(bad)
    bad.write_text("[[staff]]\nname = 'x'\npin = '1234'\n")
    with pytest.raises(ConfigError, match="pin_hash"):
        load_config(bad)
    bad.write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError):
        hash_pin("12a4")


def test_write_config_round_trips_and_keeps_secrets_out(tmp_path, monkeypatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    path = write_config(tmp_path / "e.toml", site_id="site-1", db_path=str(tmp_path / "s.sqlite"),
                        labels_dir=str(tmp_path / "labels"), mqtt_port=8883, mqtt_username="site-1",
                        mqtt_password_file=str(pw), tls_ca=str(tmp_path / "ca.crt"), auto_pack=True,
                        staff={'Анна "А"': "4321"})
    text = path.read_text(encoding="utf-8")
    assert "4321" not in text and "s3cret" not in text
    cfg = load_config(path)
    assert (cfg.mqtt.port, cfg.mqtt.username, cfg.auto_pack, cfg.web_port) == (8883, "site-1", True, 0)
    assert cfg.mqtt_password() == "s3cret"
    monkeypatch.setenv("MARKETSYNC_MQTT_PASSWORD", "from-env")
    assert cfg.mqtt_password() == "from-env"
    assert cfg.staff[0].name == 'Анна "А"' and check_pin("4321", cfg.staff[0].pin_hash)
