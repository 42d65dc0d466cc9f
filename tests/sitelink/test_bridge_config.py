"""`marketsync link bridge-config` and broker-config's cloud processes: the files a region's broker and
the central broker need, the shipped examples equal to what the generator writes, the texts in Russian."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloud_sync.cli.link import main as link_main
from sitelink.bridge_config import bridge_conf, bridge_topics, central_acl, write_bridge
from sitelink.broker_config import BrokerError, acl_text, write_deployment

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_bridge_examples_are_what_the_generator_writes():
    sites = ["site-3", "site-4"]
    assert (ROOT / "systemd/mosquitto/bridge.conf.example").read_text() == bridge_conf(
        "north", sites, central_host="central.example.lan", central_port=8883, password="CHANGE-ME",
        central_ca="/etc/mosquitto/marketsync/central-ca.crt")
    assert (ROOT / "systemd/mosquitto/acl-bridge.example").read_text() == central_acl("north", sites)
    assert (ROOT / "systemd/mosquitto/acl-regional.example").read_text() == acl_text(sites, with_cloud=False)


def test_the_bridge_carries_each_sites_own_tree_in_its_direction_only():
    lines = bridge_topics(["s1"])
    assert lines == ["topic ms/v1/s1/up out 1", "topic ms/v1/s1/ack/up out 1", "topic ms/v1/s1/state out 1",
                     "topic ms/v1/s1/down in 1", "topic ms/v1/s1/ack/down in 1", "topic ms/v1/cloud/state in 1"]
    assert not [t for t in lines if "#" in t or "+" in t], "no wildcard: only the region's sites"
    for bad in ("s/1", "s+", "cloud", ""):
        with pytest.raises(BrokerError):
            bridge_topics([bad])


def test_a_regions_files_and_the_russian_words_of_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no cloud.toml here: the default language, Russian
    monkeypatch.delenv("MARKETSYNC_CONFIG", raising=False)
    out = tmp_path / "north"
    assert link_main(["bridge-config", "--region", "north", "--site", "site-3", "--site", "site-4",
                      "--central-host", "central.example.lan", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "регион north: 2 пункта" in said and "допишите" in said and "предел открытых файлов" in said
    for name in ("marketsync.conf", "ca.crt", "server.crt", "server.key", "passwd", "acl",
                 "conf.d/zz-marketsync-bridge.conf", "mosquitto.service.d/marketsync-limits.conf"):
        assert (out / "regional" / name).is_file(), name
    acl = (out / "regional" / "acl").read_text()
    assert "user site-3" in acl and "user cloud" not in acl, "the regional broker knows its sites only"
    password = (out / "credentials" / "bridge-north.password").read_text().strip()
    conf = (out / "regional" / "conf.d" / "zz-marketsync-bridge.conf").read_text()
    assert f"remote_password {password}" in conf and "remote_username bridge-north" in conf
    for secret in (out / "credentials" / "site-3.password", out / "regional" / "conf.d" / "zz-marketsync-bridge.conf",
                   out / "central" / "passwd-bridge-north"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert (out / "central" / "passwd-bridge-north").read_text().startswith("bridge-north:$7$")
    assert (out / "central" / "acl-bridge-north").read_text() == central_acl("north", ["site-3", "site-4"])


def test_a_bad_region_is_refused_in_words(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MARKETSYNC_CONFIG", raising=False)
    assert link_main(["bridge-config", "--region", "a/b", "--site", "s1", "--central-host", "c",
                      "--out", str(tmp_path / "x")]) == 2
    assert "мост не записан" in capsys.readouterr().err
    with pytest.raises(BrokerError):
        write_bridge(tmp_path / "y", "north", [], central_host="c")


def test_broker_config_makes_a_user_per_cloud_process_reading_only_what_goes_up(tmp_path):
    write_deployment(tmp_path, ["site-1"], cloud_processes=2)
    acl = (tmp_path / "acl").read_text()
    block = acl.split("user cloud-2\n")[1].split("\n\n")[0]
    assert block == "topic read ms/v1/+/up\ntopic write ms/v1/+/ack/down"
    users = [line.split(":")[0] for line in (tmp_path / "passwd").read_text().splitlines()]
    assert {"cloud", "cloud-1", "cloud-2", "site-1"} <= set(users)
    assert not (tmp_path / "credentials" / "cloud-1.password").exists(), "a member's password is the cloud's"
    with pytest.raises(BrokerError, match="cloud process"):
        write_deployment(tmp_path / "z", ["cloud-1"], cloud_processes=1)
