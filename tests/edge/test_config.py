"""edge.toml: defaults, bad values (one line naming the file and the key), PIN hashes, the writer the demo
uses, and config/edge.toml documenting exactly the keys the edge accepts."""

from __future__ import annotations

import tomllib

import pytest

from edge_agent.config import (
    DEFAULTS,
    ConfigError,
    PrinterSettings,
    SiteSection,
    check_pin,
    config_from_dict,
    hash_pin,
    load_config,
    write_config,
)
from marketsync.procs import marketsync_argv, subprocess_run
from sitelink.config_file import accepted, written


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


def test_the_shipped_edge_toml_shows_the_codes_defaults() -> None:
    from edge_agent.config import LabelStock, MqttConfig, TasksSection, WebSection, read_tables

    tables = read_tables(tomllib.loads(DEFAULTS.read_text(encoding="utf-8")))
    assert (tables.web, tables.mqtt, tables.label, tables.tasks) == (WebSection(), MqttConfig(), LabelStock(),
                                                                     TasksSection())
    assert (tables.site.id, tables.site.warehouse) == (SiteSection.id, SiteSection.warehouse)
    assert tables.printer == PrinterSettings(kind="virtual", out_dir="../var/edge/labels")
    assert tables.scanners == [] and tables.cameras == []


def test_config_edge_toml_documents_exactly_the_keys_the_edge_accepts(documented_config) -> None:
    from edge_agent.config import EdgeFile, read_tables

    data = documented_config(DEFAULTS)  # with its `# key = value` examples taken as written
    read_tables(data)  # nothing documented that the edge would refuse...
    assert written(EdgeFile, data) == accepted(EdgeFile)  # ...and nothing accepted left undocumented


def _problem(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    return str(e.value)


def test_an_unknown_key_or_a_wrong_type_is_one_line_naming_file_and_key() -> None:
    assert _problem({"web": {"prot": 8090}}) == "edge.toml: web.prot: unknown key (allowed: host, monitor_token, port, secret_key)"
    assert _problem({"tasks": {"print_retry_s": "5s"}}) == 'edge.toml: tasks.print_retry_s: must be a number, got "5s"'
    assert _problem({"tasks": {"auto_pack": "false"}}) == 'edge.toml: tasks.auto_pack: must be true or false, got "false"'
    assert _problem({"site": {"stations": "pack-1"}}) == 'edge.toml: site.stations: must be a list, got "pack-1"'
    assert _problem({"label": {"width": 58}}) == "edge.toml: label.width: unknown key (allowed: dpi, height_mm, width_mm)"
    assert _problem({"printer": {"kind": "zpl_tcp", "hots": "10.0.0.5"}}).startswith(
        "edge.toml: printer.hots: unknown key (allowed: baudrate, chunk_bytes,")
    assert _problem({"scanners": [{"kind": "evdev"}, {"statoin": "pack-1"}]}).startswith(
        "edge.toml: scanners[2].statoin: unknown key")
    assert _problem({"cameras": [{"max_gb": "20"}]}) == 'edge.toml: cameras[1].max_gb: must be a number, got "20"'
    assert _problem({"staff": [{"name": "x"}]}) == "edge.toml: staff[1].pin_hash: required"
    assert _problem({"staff": [{"name": "x", "pin": "1234"}]}).startswith("edge.toml: staff[1].pin: PINs are not kept")
    assert _problem({"sites": {}}).startswith("edge.toml: sites: unknown key (allowed: cameras, chestny_znak, label, mqtt, printer,")
    for secret in ({"web": {"secret_key": 12345678}}, {"mqtt": {"password": 12345678}},
                   {"staff": [{"name": "x", "pin_hash": 12345678}]},
                   {"cameras": [{"source": ["rtsp://admin:12345678@cam/1"]}]}):
        line = _problem(secret)
        assert "12345678" not in line and line.endswith(("must be text", "must be text or a whole number"))


def test_the_tables_are_typed_and_the_devices_get_what_was_written(tmp_path) -> None:
    cfg = config_from_dict({"printer": {"kind": "zpl_tcp", "host": "10.0.0.5", "dpi": 300},
                            "label": {"width_mm": 75, "height_mm": 120},
                            "scanners": [{"kind": "virtual", "station": "tsd-1"}],
                            "cameras": [{"source": "clip.avi", "station": "pack-1", "loop": True},
                                        {"source": 0}, {"source": "rtsp://cam/1"}]}, tmp_path)
    assert cfg.printer.as_dict() == {"kind": "zpl_tcp", "host": "10.0.0.5", "dpi": 300}
    assert cfg.label_profile.as_dict() == {"width_mm": 75.0, "height_mm": 120.0, "dpi": 203}
    assert cfg.scanners[0].as_dict() == {"kind": "virtual", "station": "tsd-1"}
    assert [c.source for c in cfg.cameras] == [str(tmp_path / "clip.avi"), 0, "rtsp://cam/1"]
    assert config_from_dict({}, tmp_path).printer.as_dict() == {"kind": "virtual", "out_dir": str(tmp_path / "var/edge/labels")}


def test_marketsync_edge_serve_on_a_bad_file_exits_with_one_line(tmp_path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text('[site]\nid = "s1"\n\n[tasks]\nauto_pak = true\n')
    out = subprocess_run(marketsync_argv("edge", "serve", "--config", str(bad)), timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"marketsync edge: {bad}: tasks.auto_pak: unknown key (allowed: auto_pack,"
                                  " auto_pack_delay_s, auto_pack_short_at, auto_pack_station, bin_pattern, print_retry_s,"
                                  " wave_max_orders)")
