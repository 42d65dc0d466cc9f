"""`marketsync link broker-config`: the files a real broker box needs, run here by a real Mosquitto."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from marketsync.broker import MOSQUITTO, free_port
from sitelink import cli
from sitelink.broker_config import SERVICE_DROPIN, SERVICE_DROPIN_TEXT, acl_text, deploy_conf

from .conftest import RawClient, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_template_is_what_the_generator_writes():
    assert (ROOT / "systemd/mosquitto/marketsync.conf").read_text() == deploy_conf()
    assert (ROOT / "systemd/mosquitto/acl.example").read_text() == acl_text(["site-1", "site-2"])
    assert (ROOT / "systemd/mosquitto/marketsync-limits.conf").read_text() == SERVICE_DROPIN_TEXT


def test_the_unit_drop_in_lifts_the_open_files_limit_above_the_sites_a_broker_takes(tmp_path):
    # Debian's mosquitto.service keeps systemd's soft limit of 1024 open files, one per connected site;
    # bench/broker_sites.py measured 1,000 sites on one broker
    out = tmp_path / "broker"
    assert cli.main(["broker-config", "--out", str(out), "--site", "site-1"]) == 0
    dropin = (out / SERVICE_DROPIN).read_text()
    assert "[Service]" in dropin.splitlines()
    limit = int(next(ln for ln in dropin.splitlines() if ln.startswith("LimitNOFILE=")).split("=")[1])
    assert limit >= 10 * 1024


def test_generated_config_runs_and_enforces_the_acl(tmp_path, capsys):
    out = tmp_path / "broker"
    port = free_port()
    assert (
        cli.main(
            [
                "broker-config",
                "--out",
                str(out),
                "--site",
                "site-1",
                "--site",
                "site-2",
                "--hostname",
                "127.0.0.1",
                "--port",
                str(port),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    password = (out / "credentials/site-1.password").read_text().strip()
    assert password not in printed
    assert oct((out / "credentials/site-1.password").stat().st_mode)[-3:] == "600"
    # run it as the broker box would (paths pointed at our directory; stay root for the temp files)
    conf = tmp_path / "run.conf"
    conf.write_text("user root\n" + deploy_conf(port, str(out)))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        b = SimpleNamespace(host="127.0.0.1", port=port)
        wait_for(lambda: _listening(port) or proc.poll() is not None, 10, "mosquitto to listen")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        ca = str(out / "ca.crt")
        site1 = RawClient(b, "s1", username="site-1", password=password, tls_ca=ca)
        anon = RawClient(b, "anon", tls_ca=ca)
        try:
            assert not site1.connect_rc.is_failure and anon.connect_rc.is_failure
            site1.subscribe("ms/v1/site-2/#")
            site1.subscribe("ms/v1/site-1/down")
            cloud_pw = (out / "credentials/cloud.password").read_text().strip()
            cloud = RawClient(b, "c", username="cloud", password=cloud_pw, tls_ca=ca)
            cloud.publish("ms/v1/site-2/down", "secret for site-2")
            cloud.publish("ms/v1/site-1/down", "for site-1")
            wait_for(lambda: site1.messages, 5, "site-1's own message")
            cloud.close()
            assert [p for _, p in site1.messages] == [b"for site-1"]
        finally:
            site1.close()
            anon.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
