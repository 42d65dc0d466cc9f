"""The code base stays ruff-clean: lint runs as part of the suite."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "marketsync.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("demo", "sandbox", "link", "cloud", "edge", "decode", "onec", "sync", "stock"):
        assert f"  {name}" in result.stdout
