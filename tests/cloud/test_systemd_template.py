"""The templated unit of several cloud processes (`systemd/marketsync-cloud@.service`): hardened exactly as
the single one, verified by systemd-analyze as an instance, and passing the instance to the service."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent / "marketsync"
SAME_EXCEPT = {"Description", "ExecStart", "Environment", "After"}


def directives(unit: str) -> list[tuple[str, str]]:
    return [(k.strip(), v.strip()) for line in (ROOT / "systemd" / unit).read_text().splitlines()
            if "=" in line and not line.startswith("#") for k, v in [line.split("=", 1)]]


def test_the_template_is_hardened_as_the_single_unit():
    single = [d for d in directives("marketsync-cloud.service") if d[0] not in SAME_EXCEPT]
    template = [d for d in directives("marketsync-cloud@.service") if d[0] not in SAME_EXCEPT | {"DefaultInstance"}]
    assert template == single
    d = dict(directives("marketsync-cloud@.service"))
    assert "--instance %i" in d["ExecStart"] and "--port 808%i" in d["ExecStart"]
    assert ("Environment", "MARKETSYNC_INSTANCE=%i") in directives("marketsync-cloud@.service")


def test_an_instance_passes_systemd_analyze_verify(tmp_path: Path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed on this machine: make install provides it")
    text = (ROOT / "systemd/marketsync-cloud@.service").read_text()
    unit = tmp_path / "marketsync-cloud@2.service"
    unit.write_text(text.replace("/opt/marketsync/.venv/bin/marketsync", str(VENV_BIN)))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (r.stderr + r.stdout).splitlines() if unit.name in ln]
    assert r.returncode == 0 and not ours, r.stderr
