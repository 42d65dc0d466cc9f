"""systemd units (checked by systemd-analyze verify), the Raspberry Pi install script (staged with
--root: no apt, user or systemctl here), and sd_notify READY/WATCHDOG from a real `edge serve` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import check_pin, load_config

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["marketsync-edge.service", "marketsync-cloud.service"]
VENV_BIN = Path(sys.executable).parent / "marketsync"


def _directives(unit: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@pytest.mark.parametrize("unit", UNITS)
def test_units_pass_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed on this machine: make install provides it")
    text = (ROOT / "systemd" / unit).read_text().replace("/opt/marketsync/.venv/bin/marketsync", str(VENV_BIN))
    (tmp_path / unit).write_text(text)
    r = subprocess.run([tool, "verify", "--man=no", str(tmp_path / unit)], capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (r.stderr + r.stdout).splitlines() if unit in ln]
    assert r.returncode == 0 and not ours, r.stderr


def test_units_are_hardened_and_watched() -> None:
    edge = _directives("marketsync-edge.service")
    assert edge["Type"] == "notify" and int(edge["WatchdogSec"]) > 0 and edge["Restart"] == "always"
    assert set(edge["SupplementaryGroups"].split()) == {"input", "lp", "video", "dialout"}
    for unit in UNITS:
        d = _directives(unit)
        assert (d["NoNewPrivileges"], d["ProtectSystem"], d["PrivateTmp"]) == ("yes", "strict", "yes")
        assert d["User"] == "marketsync" and "WatchdogSec" in d


def _stage(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "systemd" / "install-edge.sh"), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})


def test_install_script_copies_the_code_again_when_it_changed_while_read(tmp_path: Path) -> None:
    # GNU tar ends with status 1 when a file or folder of the tree changed while it read it (here: another
    # test of this checkout creating a folder in it at that moment, seen once in CI); the first copy is made
    # to fail that way by a tar in front of the real one on PATH (the race itself cannot be timed here)
    shim, real = tmp_path / "bin", shutil.which("tar")
    shim.mkdir()
    (shim / "tar").write_text(f"""#!/usr/bin/env bash
case " $* " in *" -cf "*)
  if [ ! -e "{tmp_path}/changed-once" ]; then  # the archive is written, and the warning and status follow
    touch "{tmp_path}/changed-once"; {real} "$@"; echo "tar: .: file changed as we read it" >&2; exit 1
  fi;;
esac
exec {real} "$@"
""")
    (shim / "tar").chmod(0o755)
    stage = tmp_path / "root"
    r = subprocess.run(["bash", str(ROOT / "systemd" / "install-edge.sh"), "--root", str(stage), "--site", "wh-1",
                        "--mqtt-host", "mq.lan"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHON": sys.executable, "PATH": f"{shim}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert "copying it again" in r.stderr
    assert (stage / "opt/marketsync/systemd/install-edge.sh").is_file()


def test_install_script_stages_user_config_and_unit(tmp_path: Path) -> None:
    stage = tmp_path / "root"
    r = _stage(stage, "--site", "wh-kazan", "--mqtt-host", "mq.lan", "--mqtt-port", "8883", "--pin", "2468",
               "--name", "Анна")
    assert r.returncode == 0, r.stderr
    cfg = load_config(stage / "etc/marketsync/edge.toml")
    assert (cfg.site_id, cfg.mqtt.host, cfg.mqtt.port, cfg.web_host) == ("wh-kazan", "mq.lan", 8883, "0.0.0.0")
    assert cfg.db_path == "/var/lib/marketsync/site.sqlite" and cfg.secret_key
    assert cfg.staff[0].name == "Анна" and check_pin("2468", cfg.staff[0].pin_hash)
    assert "2468" not in (stage / "etc/marketsync/edge.toml").read_text()  # only the hash is stored
    assert (stage / "etc/systemd/system/marketsync-edge.service").exists()
    assert (stage / "opt/marketsync/edge_agent/cli.py").exists()
    before = (stage / "etc/marketsync/edge.toml").read_text()
    again = _stage(stage, "--site", "other", "--pin", "1111")
    assert again.returncode == 0 and "keeping" in again.stdout
    assert (stage / "etc/marketsync/edge.toml").read_text() == before  # a second run keeps the config
    bad = _stage(tmp_path / "bad", "--site", "a/b")
    assert bad.returncode == 2 and "site id" in bad.stderr


def _serve_under_notify_socket(tmp_path: Path, role: str, config_text: str) -> None:
    """Run `marketsync <role> serve` with a NOTIFY_SOCKET of the test's own: it must say READY=1, feed
    the watchdog, and say STOPPING=1 when SIGTERM stops it cleanly."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    cfg = tmp_path / f"{role}.toml"
    cfg.write_text(config_text)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1500000", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", role, "serve", "--config", str(cfg)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["role"] == role and first["url"].startswith("http://127.0.0.1:")
        got = [sock.recv(4096).decode() for _ in range(2)]
        assert got[0].startswith("READY=1") and got[1] == "WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert any(sock.recv(4096).decode() == "STOPPING=1" for _ in range(5))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_edge_serve_notifies_systemd_ready_and_watchdog(tmp_path: Path) -> None:
    _serve_under_notify_socket(tmp_path, "edge", '[site]\ndb_path = "site.sqlite"\n[web]\nport = 0\n[mqtt]\nport = 1\n'
                               '[printer]\nkind = "virtual"\nout_dir = "labels"\n')


def test_cloud_serve_tells_systemd_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    """The cloud unit is Type=notify with WatchdogSec: a real `cloud serve` feeds it the same way."""
    _serve_under_notify_socket(tmp_path, "cloud", '[cloud]\ndb_path = "cloud.sqlite"\nport = 0\nsync_on_start = false\n'
                               '[link]\nenabled = false\n')
